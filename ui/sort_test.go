package ui

import (
	"slices"
	"testing"
)

func visibleIDs(m Model) []string {
	var ids []string
	for _, i := range m.table.visible {
		ids = append(ids, m.table.rows[i].s.ID.String())
	}
	return ids
}

// TestSortPutsMissingValuesLast: rows whose cell shows "-" (a CLOSE_WAIT's
// idle, a time-wait's retransmits) sort after every row with a value,
// ascending or descending.
func TestSortPutsMissingValuesLast(t *testing.T) {
	snap := fixture()
	snap.Sockets[3].TCPInfo.LastDataRecvMS, snap.Sockets[3].TCPInfo.LastDataSentMS = 9_000_000, 9_000_000 // the CLOSE_WAIT
	for _, c := range []struct {
		key string
		col column
	}{{"I", colIdle}, {"T", colRetrans}} {
		for _, presses := range []int{1, 2} {
			m := drive(t, 160, 40, snap)
			for range presses {
				m, _ = step(m, keyMsg(c.key))
			}
			seenMissing := false
			for _, i := range m.table.visible {
				r := &m.table.rows[i]
				missing := r.cell(c.col, &m.report, m.table.cache) == "-"
				if seenMissing && !missing {
					t.Errorf("%s (desc %v): %s has a value yet sorts after a \"-\": %v", c.key, m.table.sortDesc, r.s.ID, visibleIDs(m))
				}
				seenMissing = seenMissing || missing
			}
			if !seenMissing {
				t.Fatalf("%s: the fixture has no row without a value", c.key)
			}
		}
	}
}

// TestSortByQueue: Q sorts by the QUEUES column, the larger of each
// socket's two queues, whichever way it is stuck; a listener by its accept
// queue, not by its backlog (the Send-Q ss shows it with). Q again turns
// the order around.
func TestSortByQueue(t *testing.T) {
	snap := fixture()
	snap.Sockets[3].RecvQ = 100_000 // the CLOSE_WAIT: the application stopped reading
	snap.Sockets[0].RecvQ, snap.Sockets[0].SendQ = 900, 2000
	snap.Sockets[4].RecvQ = 3 // the listener: 3 waiting to be accepted, backlog 4096
	// By the larger queue: CLOSE_WAIT 100000, 40001 2000, half-open 1460,
	// the listener 3, then the others in address order.
	want := []string{"40004", "40001", "40003", "9", "40002", "7"}
	m := drive(t, 160, 40, snap, keyMsg("Q"))
	if m.table.sortCol != colQueues || !m.table.sortDesc {
		t.Fatalf("Q sorts by %v desc %v", m.table.sortCol, m.table.sortDesc)
	}
	if got := visibleIDs(m); !slices.Equal(got, want) {
		t.Errorf("QUEUES↓ sorts %v, want %v", got, want)
	}
	m, _ = step(m, keyMsg("Q"))
	slices.Reverse(want[:4])
	want = append([]string{"40002", "7"}, want[:4]...)
	if got := visibleIDs(m); m.table.sortDesc || !slices.Equal(got, want) {
		t.Errorf("QUEUES↑ (desc %v) sorts %v, want %v", m.table.sortDesc, got, want)
	}
}
