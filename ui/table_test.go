package ui

import (
	"math"
	"slices"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/rules"
)

// headerAt is the column titles of the connection table at width columns.
func headerAt(t *testing.T, m Model) []string {
	t.Helper()
	for _, l := range strings.Split(screen(m), "\n") {
		if strings.Contains(l, "STATE") && strings.Contains(l, "FINDING") {
			return strings.Fields(l)
		}
	}
	t.Fatalf("no column titles:\n%s", screen(m))
	return nil
}

// lineOf is the screen's line (escapes kept) whose text holds marker.
func lineOf(t *testing.T, content, marker string) string {
	t.Helper()
	for _, l := range strings.Split(content, "\n") {
		if strings.Contains(ansi.Strip(l), marker) {
			return l
		}
	}
	t.Fatalf("no line with %q:\n%s", marker, ansi.Strip(content))
	return ""
}

// TestColumnsAtCommonWidths: the columns the table keeps at common
// terminal widths. The queues, how an SRE sees an application that stopped
// reading or a peer that stopped taking, are kept from 100 columns on, with
// the path's memory of the connection and, from 120, the local address.
func TestColumnsAtCommonWidths(t *testing.T) {
	for _, c := range []struct {
		width int
		want  string
	}{
		{80, "STATE REMOTE PROCESS KEEPALIVE FINDING↓"},
		{90, "STATE REMOTE PROCESS QUEUES KEEPALIVE FINDING↓"},
		{100, "STATE REMOTE PROCESS QUEUES KEEPALIVE PATH FINDING↓"},
		{120, "STATE LOCAL REMOTE PROCESS QUEUES KEEPALIVE PATH FINDING↓"},
		{160, "STATE LOCAL REMOTE PROCESS QUEUES TIMER RETR RTO IDLE KEEPALIVE PATH FINDING↓"},
		{200, "STATE LOCAL REMOTE PROCESS QUEUES TIMER RETR RTO IDLE KEEPALIVE USER-TO PATH FINDING↓"},
	} {
		m := drive(t, c.width, 30, fixture())
		if got := strings.Join(headerAt(t, m), " "); got != c.want {
			t.Errorf("%d columns: %q, want %q", c.width, got, c.want)
		}
		for _, l := range strings.Split(screen(m), "\n") {
			if w := ansi.StringWidth(l); w > c.width {
				t.Errorf("%d columns: a line %d wide: %q", c.width, w, l)
			}
		}
	}
	// Sorted by the queues, they are kept even at 80 columns, under the arrow.
	if got := headerAt(t, drive(t, 80, 24, fixture(), keyMsg("Q"))); !slices.Contains(got, "QUEUES↓") {
		t.Errorf("80 columns sorted by queue: %q", got)
	}
}

// TestReceiveQueueShows: at 100 and 120 columns a socket's receive queue
// is on its row, left of the slash, and when it grows that side alone is
// marked; a send queue that grows is marked on its side.
func TestReceiveQueueShows(t *testing.T) {
	for _, w := range []int{100, 120} {
		snap := fixture()
		snap.Sockets[3].RecvQ = 12 << 10 // the CLOSE_WAIT: its application stopped reading
		m := drive(t, w, 30, snap)
		if l := ansi.Strip(lineOf(t, m.View().Content, "10.0.3.3:6379")); !strings.Contains(l, " 12K/0 ") {
			t.Errorf("%d columns: the receive queue is not on the row: %q", w, l)
		}
		if l := ansi.Strip(lineOf(t, m.View().Content, "10.0.2.7:8080")); !strings.Contains(l, "   0/1460 ") {
			t.Errorf("%d columns: the half-open socket's send queue is not on its row: %q", w, l)
		}

		next := fixture()
		next.Sockets[3].RecvQ = 20_000
		next.Sockets[0].SendQ = 100 // 10.0.1.9:443, not the selected row
		var tm tea.Model = m
		tm, _ = tm.Update(snapshotMsg{snap: next, rep: rules.Evaluate(next, nil)})
		m = tm.(Model)
		changed := m.styles.Changed.Render
		if l := lineOf(t, m.View().Content, "10.0.3.3:6379"); !strings.Contains(l, changed(" 20K")+"/0   ") {
			t.Errorf("%d columns: a receive queue that grew is not marked on its side alone: %q", w, l)
		}
		if l := lineOf(t, m.View().Content, "10.0.1.9:443 "); !strings.Contains(l, "   0/"+changed("100 ")) {
			t.Errorf("%d columns: a send queue that grew is not marked on its side alone: %q", w, l)
		}
	}
}

// TestShortBytes: a queue is written in at most four characters, exact
// while it fits, rounded to K, M or G of 1024 beyond.
func TestShortBytes(t *testing.T) {
	for v, want := range map[uint32]string{
		0: "0", 1460: "1460", 4096: "4096", 9999: "9999", 10_000: "10K", 12 << 10: "12K",
		999<<10 + 511: "999K", 999<<10 + 512: "1M", 6 << 20: "6M", 999 << 20: "999M",
		1000 << 20: "1G", math.MaxUint32: "4G",
	} {
		if got := shortBytes(v); got != want {
			t.Errorf("shortBytes(%d) = %q, want %q", v, got, want)
		}
	}
	for v := uint64(1); v <= math.MaxUint32; v = v*3 + 7 {
		if s := shortBytes(uint32(v)); len(s) > queueSide {
			t.Errorf("shortBytes(%d) = %q, wider than %d", v, s, queueSide)
		}
	}
}

// TestPlainQueues: the plain table has the live view's columns, the queues
// among them as recv/send, in exact bytes (a pipe has no width to save);
// a listener's are its accept queue and backlog, as ss shows them.
func TestPlainQueues(t *testing.T) {
	snap := fixture()
	snap.Sockets[3].RecvQ = 100_000
	out := plain(t, snap)
	lines := strings.Split(out, "\n")
	titles := strings.Fields(lines[0])
	live := headerAt(t, drive(t, 200, 30, snap))
	live[len(live)-1] = strings.TrimSuffix(live[len(live)-1], "↓")
	slices.Sort(titles)
	slices.Sort(live)
	if !slices.Equal(titles, live) {
		t.Errorf("plain columns %q, live columns %q", titles, live)
	}
	for marker, want := range map[string]string{"10.0.3.3:6379": "CLOSE_WAIT  100000/0 ", "[::]:8080": "LISTEN      0/4096 ", "10.0.2.7:8080": "ESTABLISHED 0/1460 "} {
		if l := lineOf(t, out, marker); !strings.HasPrefix(l, want) {
			t.Errorf("plain row of %s: %q, want it to start %q", marker, l, want)
		}
	}
}
