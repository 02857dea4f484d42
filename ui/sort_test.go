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

// TestSortBySendQueue: Q sorts by SEND-Q, the column under its arrow, not
// by both queues.
func TestSortBySendQueue(t *testing.T) {
	snap := fixture()
	snap.Sockets[3].RecvQ = 100_000 // the CLOSE_WAIT, nothing to send
	m := drive(t, 160, 40, snap, keyMsg("Q"))
	if m.table.sortCol != colSendQ || !m.table.sortDesc {
		t.Fatalf("Q sorts by %v desc %v", m.table.sortCol, m.table.sortDesc)
	}
	var sendQ []uint32
	for _, i := range m.table.visible {
		sendQ = append(sendQ, m.table.rows[i].s.SendQ)
	}
	if !slices.IsSortedFunc(sendQ, func(a, b uint32) int { return int(b) - int(a) }) {
		t.Errorf("SEND-Q↓ shows send queues %v, ids %v", sendQ, visibleIDs(m))
	}
}
