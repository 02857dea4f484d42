package ui

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// deaths are connections that ended, oldest first, as the live view's
// source lists them: two or more of each cause the watch tells apart,
// with the sentences it gives, one seen by no sample and one the path
// forgot first.
func deaths() []diag.Closed {
	at := time.Date(2026, 11, 23, 3, 3, 40, 0, time.UTC)
	info := func(segsIn, retrans uint32) *diag.TCPInfo {
		return &diag.TCPInfo{Size: 280, RTOUs: 204000, SegsIn: segsIn, SegsOut: segsIn + 2, TotalRetrans: retrans, LastDataRecvMS: 900}
	}
	c := func(id int, remote, cause, why string, lived float64, state string, ti *diag.TCPInfo) diag.Closed {
		return diag.Closed{ID: diag.Cookie(0x5000 + id), Local: netip.MustParseAddrPort(fmt.Sprintf("10.0.0.5:%d", 41000+id)),
			Remote: netip.MustParseAddrPort(remote), Cause: cause, Why: why, LivedS: ptr(lived), LastState: state, TCPInfo: ti}
	}
	out := []diag.Closed{
		c(1, "10.0.1.9:443", diag.CauseClosed, "the last sample saw it in TIME_WAIT: FINs went both ways", 12.5, "TIME_WAIT", info(40, 0)),
		c(2, "10.0.2.7:8080", diag.CauseTimeout, "the kernel gave up: it died retransmitting (5 retransmissions, the last RTO 3.2s), and nothing arrived after the last sample (segs_in 18)", 95, "ESTABLISHED", info(18, 5)),
		c(3, "10.0.1.9:5432", diag.CauseReset, "a segment arrived after the last sample (segs_in 301 → 302) but no ACK did (last ACK 1.1s before its death): a reset, while it was idle", 3600, "ESTABLISHED", info(302, 0)),
		c(4, "10.0.3.3:6379", diag.CauseUnknown, "it died retransmitting, but ACKs arrived after the last sample (segs_in 7 → 9), so a reset among them looks the same as a give-up", 40, "ESTABLISHED", info(9, 2)),
		c(5, "10.0.1.9:443", diag.CauseClosed, "its application closed it with 0 bytes unread and nothing arrived after the last sample", 2, "ESTABLISHED", info(6, 0)),
		c(6, "10.0.2.7:8080", diag.CauseTimeout, "the kernel gave up: TCP_USER_TIMEOUT 5000 ms passed with data unacknowledged", 61, "ESTABLISHED", info(30, 7)),
		c(7, "10.0.1.9:5432", diag.CauseReset, "the path forgot it (its conntrack entry ended while established), then its next segment met a reset", 900, "ESTABLISHED", info(120, 0)),
		c(8, "10.0.1.9:443", diag.CauseClosed, "the last sample saw it in FIN_WAIT2: its FIN was acknowledged", 0.4, "FIN_WAIT2", info(4, 0)),
		c(9, "10.0.9.1:9000", diag.CauseUnknown, "the kernel sent no final tcp_info with its death", 0, "", nil),
	}
	out[6].PathForgotAt = ptr(at)
	out[8].LivedS = nil
	return out
}

// watched is the fixture as the live view's source gives it after a
// while: every socket observed, and the first n deaths listed.
func watched(n int, taken time.Time) *diag.Snapshot {
	snap := fixture()
	snap.TakenAt = taken
	snap.Closed = deaths()[:n]
	return snap
}

func refreshed(snap *diag.Snapshot) tea.Msg {
	return snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)}
}

var t0 = fixture().TakenAt

// driveClosed is a view that saw four deaths listed at its first
// refresh, and the rest 40 s later.
func driveClosed(t *testing.T, w, h int, msgs ...tea.Msg) Model {
	t.Helper()
	return drive(t, w, h, watched(4, t0.Add(-40*time.Second)), append([]tea.Msg{refreshed(watched(9, t0))}, msgs...)...)
}

func TestClosedViewGolden(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {160, 40}} {
		w, h := size[0], size[1]
		name := fmt.Sprintf("%dx%d", w, h)
		t.Run(name, func(t *testing.T) {
			m := driveClosed(t, w, h, keyMsg("c"))
			if m.mode != modeClosed {
				t.Fatalf("mode %v after c", m.mode)
			}
			golden(t, "closed-"+name, m.View().Content)
			s := screen(m)
			for _, line := range strings.Split(s, "\n") {
				if ansi.StringWidth(line) > w {
					t.Errorf("line wider than %d: %q", w, line)
				}
			}
			if n := strings.Count(s, "\n") + 1; n > h {
				t.Errorf("%d lines on a %d-line terminal", n, h)
			}
		})
	}
}

// TestClosedNewestFirst: the list starts with the connection that ended
// last, and says how long ago each was first listed.
func TestClosedNewestFirst(t *testing.T) {
	m := driveClosed(t, 160, 40, keyMsg("c"))
	all := deaths()
	var got []string
	for _, e := range m.closed.entries {
		got = append(got, e.ID.String())
	}
	var wantIDs []string
	for i := len(all) - 1; i >= 0; i-- {
		wantIDs = append(wantIDs, all[i].ID.String())
	}
	if strings.Join(got, " ") != strings.Join(wantIDs, " ") {
		t.Fatalf("order %v, want newest first %v", got, wantIDs)
	}
	lines := strings.Split(screen(m), "\n")
	first, last := lines[headerLines+1], lines[headerLines+len(all)]
	if !strings.Contains(first, all[8].Remote.String()) || !strings.Contains(first, "just now") {
		t.Errorf("first row %q, want %s just now", first, all[8].Remote)
	}
	if !strings.Contains(last, all[0].Local.String()) || !strings.Contains(last, "40s ago") {
		t.Errorf("last row %q, want %s 40s ago", last, all[0].Local)
	}
}

// TestClosedCountsSinceTheViewStarted: the header counts every connection
// that ended once, by cause, also those that left the source's window;
// when a refresh finds none it listed before, the counts say "at least".
func TestClosedCountsSinceTheViewStarted(t *testing.T) {
	all := deaths()
	m := drive(t, 160, 40, watched(0, t0))
	if l := strings.Split(screen(m), "\n")[2]; !strings.Contains(l, "closed: none yet (c)") {
		t.Errorf("no death yet: header line %q", l)
	}
	window := func(from, to int, at time.Duration) tea.Msg {
		snap := watched(0, t0.Add(at))
		snap.Closed = all[from:to]
		return refreshed(snap)
	}
	// A window of three, sliding: 1-3, 3-5, 5-7 are 7 deaths.
	m, _ = step(m, window(0, 3, time.Second))
	m, _ = step(m, window(2, 5, 2*time.Second))
	m, _ = step(m, window(4, 7, 3*time.Second))
	want := "closed: 2 reset, 2 timeout, 2 closed, 1 unknown (c)"
	if l := strings.Split(screen(m), "\n")[2]; !strings.Contains(l, want) {
		t.Errorf("header line %q, want %q", l, want)
	}
	// The same window again counts nothing twice.
	m, _ = step(m, window(4, 7, 4*time.Second))
	if l := strings.Split(screen(m), "\n")[2]; !strings.Contains(l, want) {
		t.Errorf("a refresh with nothing new: header line %q, want %q", l, want)
	}
	// A window with none of those: more ended than the window holds.
	m, _ = step(m, window(7, 9, 5*time.Second))
	want = "closed: at least 2 reset, 2 timeout, 3 closed, 2 unknown (c)"
	if l := strings.Split(screen(m), "\n")[2]; !strings.Contains(l, want) {
		t.Errorf("after a gap: header line %q, want %q", l, want)
	}
	// At 80 columns the count is whole; the path's timeouts give way.
	m, _ = step(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	if l := strings.Split(screen(m), "\n")[2]; !strings.Contains(l, want) || ansi.StringWidth(l) > 80 {
		t.Errorf("80 columns: header line %q, want %q", l, want)
	}
}

// TestClosedColours: a reset and a give-up are drawn as errors, a close
// dim, an unknown cause as a warning, in the list and the header.
func TestClosedColours(t *testing.T) {
	m := driveClosed(t, 160, 40, keyMsg("c")) // the cursor on the newest, off the rows looked at
	st := m.styles
	view := m.View().Content
	for id, style := range map[int]string{
		2: sgr(st.Critical), 3: sgr(st.Critical), 1: sgr(st.Dim), 4: sgr(st.Warning),
	} {
		e := deaths()[id-1]
		if got := styleBefore(t, view, e.Local.String(), e.Cause); got != style {
			t.Errorf("%s: cause drawn with %q, want %q", e.Cause, got, style)
		}
	}
	for text, style := range map[string]string{"2 reset": sgr(st.Critical), "2 timeout": sgr(st.Critical), "3 closed": sgr(st.Dim), "2 unknown": sgr(st.Warning)} {
		if got := styleBefore(t, view, "closed:", text); got != style {
			t.Errorf("header %q drawn with %q, want %q", text, got, style)
		}
	}
}

// TestClosedDetails: enter shows every field of the connection that ended
// and its final tcp_info; esc returns to the list, and again to the table.
func TestClosedDetails(t *testing.T) {
	m := driveClosed(t, 120, 40, keyMsg("c"))
	all := deaths()
	for i := 0; i < len(all); i++ {
		e := m.closed.current()
		d, _ := step(m, keyMsg("enter"))
		if d.mode != modeDetails {
			t.Fatalf("enter: mode %v", d.mode)
		}
		text := flat(ansi.Strip(d.details.GetContent()))
		for _, want := range []string{"closed " + e.ID.String(), e.Local.String(), e.Remote.String(), "cause " + e.Cause, flat(e.Why)} {
			if !strings.Contains(text, want) {
				t.Errorf("details of %s lack %q:\n%s", e.ID, want, text)
			}
		}
		switch {
		case e.LivedS == nil:
			if !strings.Contains(text, "lived unknown") {
				t.Errorf("details of %s: lived not said unknown:\n%s", e.ID, text)
			}
		case !strings.Contains(text, "lived at least "+shortDur(secDur(*e.LivedS))):
			t.Errorf("details of %s: lived not %s:\n%s", e.ID, shortDur(secDur(*e.LivedS)), text)
		}
		if e.TCPInfo != nil {
			for _, f := range []string{"segs_in " + fmt.Sprint(e.TCPInfo.SegsIn), "total_retrans " + fmt.Sprint(e.TCPInfo.TotalRetrans), "280 bytes"} {
				if !strings.Contains(text, f) {
					t.Errorf("details of %s: tcp_info lacks %q:\n%s", e.ID, f, text)
				}
			}
		} else if !strings.Contains(text, "tcp_info none") {
			t.Errorf("details of %s: no tcp_info not said:\n%s", e.ID, text)
		}
		if (e.PathForgotAt != nil) != strings.Contains(text, "path forgot it at 03:03:40.000 UTC") {
			t.Errorf("details of %s: path forgot at %v:\n%s", e.ID, e.PathForgotAt, text)
		}
		if e.LastState != "" && !strings.Contains(text, "last state "+e.LastState) {
			t.Errorf("details of %s: last state %q missing:\n%s", e.ID, e.LastState, text)
		}
		back, _ := step(d, keyMsg("esc"))
		if back.mode != modeClosed || back.closed.cursor != i {
			t.Fatalf("esc from details: mode %v cursor %d, want the list on %d", back.mode, back.closed.cursor, i)
		}
		m, _ = step(back, keyMsg("j"))
	}
	table, _ := step(m, keyMsg("esc"))
	if table.mode != modeTable {
		t.Errorf("esc from the list: mode %v", table.mode)
	}
	// A refresh while details are open keeps the same connection shown.
	d, _ := step(m, keyMsg("enter"))
	id := d.detailsClosed
	d, _ = step(d, refreshed(watched(9, t0.Add(time.Second))))
	if !strings.Contains(ansi.Strip(d.details.GetContent()), "closed "+id.String()) {
		t.Errorf("after a refresh, details no longer show %s", id)
	}
	// Once it left the source's window, they say so.
	d, _ = step(d, refreshed(watched(0, t0.Add(2*time.Second))))
	if !strings.Contains(ansi.Strip(d.details.GetContent()), "no longer listed") {
		t.Errorf("details of a connection no longer listed:\n%s", ansi.Strip(d.details.GetContent()))
	}
}

// TestClosedNotFollowed: when the snapshot lists no deaths at all, the
// closed view says why (the note) rather than show an empty list, and the
// header counts nothing.
func TestClosedNotFollowed(t *testing.T) {
	snap := fixture()
	note := "connections that close are not listed: joining sock_diag's destroy groups: operation not permitted"
	snap.Notes = []diag.Note{{Code: diag.NoteIPVSUnreadable, Text: "target IPVS unreadable"}, {Code: diag.NoteDeathsUnwatched, Text: note}}
	m := drive(t, 80, 24, snap, keyMsg("c"))
	s := screen(m)
	if m.mode != modeClosed || !strings.Contains(flat(s), flat(note)) || strings.Contains(s, "IPVS unreadable") {
		t.Errorf("closed view without deaths followed:\n%s", s)
	}
	if strings.Contains(s, "closed:") || strings.Contains(s, "no connection has ended") {
		t.Errorf("counts or an empty list where deaths are not followed:\n%s", s)
	}
	if n := strings.Count(s, "\n") + 1; n != 24 {
		t.Errorf("%d lines on a 24-line terminal: the footer is not at the bottom:\n%s", n, s)
	}
	// No note about it: still not an empty list.
	s = screen(drive(t, 80, 24, fixture(), keyMsg("c")))
	if !strings.Contains(s, "not listed here") || strings.Contains(s, "no connection has ended") {
		t.Errorf("closed view without deaths followed or a note:\n%s", s)
	}
	// Followed, none yet: an empty list that says so.
	s = screen(drive(t, 80, 24, watched(0, t0), keyMsg("c")))
	if !strings.Contains(s, "no connection has ended since the view started") {
		t.Errorf("closed view with none ended:\n%s", s)
	}
}

// TestClosedInANamespaceOfTheNode: a namespace opened from a sweep was read
// once, not watched; c says deaths are followed only when one namespace is
// watched.
func TestClosedInANamespaceOfTheNode(t *testing.T) {
	m := driveNode(t, 80, 24, nodeFixture(), keyMsg("enter"), keyMsg("c"))
	if m.mode != modeTable || !strings.Contains(flat(screen(m)), "followed only when tcpvet watches one namespace") {
		t.Errorf("c in a namespace of the node: mode %v\n%s", m.mode, screen(m))
	}
}

// TestClosedCursorFollows: on the first row the cursor follows the newest
// death as refreshes bring more; moved, it stays on the connection it was
// moved to.
func TestClosedCursorFollows(t *testing.T) {
	all := deaths()
	m := drive(t, 120, 40, watched(3, t0), keyMsg("c"))
	m, _ = step(m, refreshed(watched(5, t0.Add(time.Second))))
	if e := m.closed.current(); e == nil || e.ID != all[4].ID {
		t.Errorf("on the first row: cursor on %v, want the newest %s", e, all[4].ID)
	}
	m, _ = step(m, keyMsg("j"))
	m, _ = step(m, keyMsg("j"))
	held := m.closed.current().ID
	m, _ = step(m, refreshed(watched(9, t0.Add(2*time.Second))))
	if e := m.closed.current(); e == nil || e.ID != held {
		t.Errorf("moved: cursor on %v, want still %s", e, held)
	}
}

// TestClosedSmallTerminals: the closed view, its details and its help fit
// the smallest screen drawn.
func TestClosedSmallTerminals(t *testing.T) {
	for _, keys := range [][]tea.Msg{{keyMsg("c")}, {keyMsg("c"), keyMsg("enter")}, {keyMsg("c"), keyMsg("?")}} {
		s := screen(driveClosed(t, minWidth, minHeight, keys...))
		lines := strings.Split(s, "\n")
		if len(lines) > minHeight {
			t.Errorf("%d lines on a %d-line terminal:\n%s", len(lines), minHeight, s)
		}
		for _, l := range lines {
			if ansi.StringWidth(l) > minWidth {
				t.Errorf("line wider than %d: %q", minWidth, l)
			}
		}
	}
	// Help over the closed view says what its colours mean.
	if s := screen(driveClosed(t, 160, 40, keyMsg("c"), keyMsg("?"))); !strings.Contains(s, "timeout the kernel gave up on it") {
		t.Errorf("help of the closed view:\n%s", s)
	}
}

// BenchmarkClosedRefresh is one refresh and frame of the closed view
// holding the most the live view's source keeps (1,000 deaths), ten new
// each refresh; BenchmarkClosedRefresh/none is the same without deaths
// followed, for the ratio.
func BenchmarkClosedRefresh(b *testing.B) {
	base := deaths()
	all := make([]diag.Closed, 2000)
	for i := range all {
		all[i] = base[i%len(base)]
		all[i].ID = diag.Cookie(0x10000 + i)
	}
	const windows = 100
	for _, follow := range []bool{true, false} {
		name := map[bool]string{true: "1000", false: "none"}[follow]
		b.Run(name, func(b *testing.B) {
			msgs := make([]tea.Msg, windows)
			for i := range msgs {
				snap := fixture()
				if follow {
					snap.Closed = all[i*10 : i*10+1000]
				}
				msgs[i] = refreshed(snap)
			}
			var m tea.Model = New(Options{Interval: time.Second})
			m, _ = m.Update(tea.WindowSizeMsg{Width: 200, Height: 60})
			m, _ = m.Update(keyMsg("c"))
			i := 0
			for b.Loop() {
				m, _ = m.Update(msgs[i%windows])
				_ = m.View()
				i++
			}
		})
	}
}
