package ui

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/google/go-cmp/cmp"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

var update = flag.Bool("update", false, "rewrite the golden views in testdata")

func ptr[T any](v T) *T { return &v }

// hexID is the socket id written id, as tcpvet writes one.
func hexID(id string) diag.Cookie {
	var c diag.Cookie
	if err := c.UnmarshalText([]byte(id)); err != nil {
		panic(err)
	}
	return c
}

// fixture is a small namespace with one connection in each interesting state.
func fixture() *diag.Snapshot {
	est := func(id, remote string) diag.Socket {
		return diag.Socket{
			ID: hexID(id), State: diag.Established, Family: "inet", Inode: 7000,
			Local:  netip.MustParseAddrPort("10.0.0.5:" + id),
			Remote: netip.MustParseAddrPort(remote),
			Timer:  diag.Timer{Kind: diag.TimerKeepalive, ExpiresMS: 30000},
			TCPInfo: &diag.TCPInfo{Size: 280, RTOUs: 204000, SndWnd: 65535, LastDataRecvMS: 1200, LastDataSentMS: 1200,
				LastAckRecvMS: 1200, TotalRetrans: 0},
			Keepalive:     diag.Keepalive{Enabled: ptr(true), IdleS: ptr(60), IntervalS: ptr(10), Probes: ptr(5), Source: "socket"},
			UserTimeoutMS: ptr(0),
			Processes:     []diag.Process{{PID: 42, Comm: "api", FD: 9}},
		}
	}
	healthy := est("40001", "10.0.1.9:443")
	healthy.Conntrack = []diag.Flow{{Netns: "host", ExpiresInS: 431998, TimeoutS: 432000, TCPState: "ESTABLISHED",
		Original: "10.0.0.5:40001->10.0.1.9:443", Reply: "10.0.1.9:443->10.0.0.5:40001", Side: "original"}}
	noKA := est("40002", "10.0.1.9:5432")
	noKA.Keepalive = diag.Keepalive{Enabled: ptr(false), IdleS: ptr(7200), IntervalS: ptr(75), Probes: ptr(9), Source: "namespace"}
	noKA.Timer = diag.Timer{}
	dead := est("40003", "10.0.2.7:8080")
	dead.Timer = diag.Timer{Kind: diag.TimerOn, ExpiresMS: 900, Retrans: 4}
	dead.SendQ = 1460
	dead.TCPInfo.Retransmits, dead.TCPInfo.Backoff, dead.TCPInfo.Unacked = 4, 4, 1
	dead.TCPInfo.RTOUs, dead.TCPInfo.LastAckRecvMS, dead.TCPInfo.TotalRetrans = 3264000, 4000, 4
	cw := est("40004", "10.0.3.3:6379")
	cw.State = diag.CloseWait
	listen := diag.Socket{ID: 0x9, State: diag.Listen, Family: "inet6",
		Local: netip.MustParseAddrPort("[::]:8080"), Remote: netip.MustParseAddrPort("[::]:0"),
		SendQ: 4096, Keepalive: diag.Keepalive{Enabled: ptr(false), IdleS: ptr(7200), IntervalS: ptr(75), Probes: ptr(9), Source: "namespace"},
		UserTimeoutMS: ptr(0), Processes: []diag.Process{{PID: 42, Comm: "api", FD: 3}}}
	tw := diag.Socket{ID: 0x7, State: diag.TimeWait, Family: "inet",
		Local: netip.MustParseAddrPort("10.0.0.5:39000"), Remote: netip.MustParseAddrPort("10.0.1.9:443"),
		Timer: diag.Timer{Kind: diag.TimerTimeWait, ExpiresMS: 41000}, Keepalive: diag.Keepalive{Source: "unknown", Reason: "no file descriptor"}}
	snap := &diag.Snapshot{
		Schema: diag.Schema, TakenAt: time.Date(2026, 11, 23, 3, 4, 5, 0, time.UTC),
		Target: diag.Namespace{Role: diag.Target, NetnsInode: 4026532177, Path: "/proc/42/ns/net", PID: 42},
		Host: diag.Namespace{Role: diag.Host, Visible: true, NetnsInode: 4026531833, Path: "/proc/1/ns/net", IPVS: &diag.IPVS{
			Present: true, TCPTimeoutS: 900, ServicesListed: true, TCPServices: 2,
			Services: []diag.IPVSService{{VIP: noKA.Remote}, {VIP: healthy.Remote}},
		}},
		Sockets: []diag.Socket{healthy, noKA, dead, cw, listen, tw},
	}
	snap.Target.Sysctls = diag.Sysctls{diag.KeepaliveTime: 7200, diag.KeepaliveIntvl: 75, diag.KeepaliveProbes: 9, diag.Retries2: 15}
	snap.Host.Sysctls = diag.Sysctls{diag.KeepaliveTime: 600, diag.KeepaliveIntvl: 75, diag.KeepaliveProbes: 9, diag.Retries2: 15}
	return snap
}

// drive feeds msgs to a fresh model of the given size holding snap.
func drive(t testing.TB, w, h int, snap *diag.Snapshot, msgs ...tea.Msg) Model {
	t.Helper()
	var m tea.Model = New(Options{Interval: time.Second})
	m, _ = m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m, _ = m.Update(snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)})
	for _, msg := range msgs {
		m, _ = m.Update(msg)
	}
	return m.(Model)
}

func screen(m Model) string { return ansi.Strip(m.View().Content) }

func press(s string) tea.Msg {
	switch s {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	}
	r := []rune(s)[0]
	return tea.KeyPressMsg{Code: r, Text: s}
}

func typeText(s string) []tea.Msg {
	var out []tea.Msg
	for _, r := range s {
		out = append(out, press(string(r)))
	}
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ui -update)", err)
	}
	if got != string(want) {
		// The lines that differ, as text and with their escapes.
		t.Errorf("%s differs from %s (go test ./ui -update rewrites it); -want +got:\n%s\nescapes -want +got:\n%s", name, path,
			cmp.Diff(strings.Split(ansi.Strip(string(want)), "\n"), strings.Split(ansi.Strip(got), "\n")),
			cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")))
	}
}

func TestViewsGolden(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {160, 40}} {
		w, h := size[0], size[1]
		name := fmt.Sprintf("%dx%d", w, h)
		t.Run(name, func(t *testing.T) {
			// The golden views keep their colour sequences: colours are half
			// of what the screen says.
			m := drive(t, w, h, fixture())
			golden(t, "table-"+name, m.View().Content)
			golden(t, "findings-"+name, drive(t, w, h, fixture(), press("f")).View().Content)
			golden(t, "help-"+name, drive(t, w, h, fixture(), press("?")).View().Content)
			for _, line := range strings.Split(screen(m), "\n") {
				if ansi.StringWidth(line) > w {
					t.Errorf("line wider than %d: %q", w, line)
				}
			}
			if n := strings.Count(screen(m), "\n") + 1; n > h {
				t.Errorf("%d lines on a %d-line terminal", n, h)
			}
		})
	}
}

func TestWorstConnectionFirstAndDetails(t *testing.T) {
	m := drive(t, 160, 40, fixture())
	lines := strings.Split(screen(m), "\n")
	top := lines[headerLines+1] + lines[headerLines+2]
	if !strings.Contains(top, "half-open") || !strings.Contains(top, "no-keepalive") {
		t.Errorf("first rows %q, want the two critical connections", top)
	}
	dm := drive(t, 160, 40, fixture(), append(append([]tea.Msg{press("/")}, typeText("half")...), press("enter"), press("enter"))...)
	d := screen(dm)
	for _, want := range []string{"socket 40003", "Own options", "SO_KEEPALIVE", "CRITICAL half-open", "gives_up_in_s"} {
		if !strings.Contains(d, want) {
			t.Errorf("details lack %q:\n%s", want, d)
		}
	}
	// The rest is a scroll away.
	all := ansi.Strip(dm.details.GetContent())
	for _, want := range []string{"tcp_info (280 bytes", "rto_us", "Envoy cluster"} {
		if strings.Contains(d, want) || !strings.Contains(all, want) {
			t.Errorf("%q should be below the fold of the details", want)
		}
	}
}

// TestDetailsSayWhyAMiddleboxApplies: the details of a finding name the
// middlebox, why the connection meets it, and what it does then.
func TestDetailsSayWhyAMiddleboxApplies(t *testing.T) {
	dm := drive(t, 160, 40, fixture(), append(append([]tea.Msg{press("/")}, typeText("5432")...), press("enter"), press("enter"))...)
	all := ansi.Strip(dm.details.GetContent())
	for _, want := range []string{
		"socket 40002", "CRITICAL no-keepalive", "middlebox = ipvs (host)",
		"middlebox_match = 10.0.1.9:5432 is a virtual service of the host's IPVS", "on_expiry = reset",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("details lack %q:\n%s", want, all)
		}
	}
}

func TestFilter(t *testing.T) {
	msgs := append([]tea.Msg{press("/")}, typeText("close")...)
	m := drive(t, 160, 40, fixture(), append(msgs, press("enter"))...)
	s := screen(m)
	if !strings.Contains(s, "CLOSE_WAIT") || strings.Contains(s, "10.0.2.7:8080") || !strings.Contains(s, "1/1 of 6") {
		t.Errorf("filter 'close' should keep only CLOSE_WAIT:\n%s", s)
	}
	// By rule name and by process.
	m = drive(t, 160, 40, fixture(), append(append([]tea.Msg{press("/")}, typeText("no-keepalive")...), press("enter"))...)
	if s := screen(m); !strings.Contains(s, "10.0.1.9:5432") || !strings.Contains(s, "1/1 of 6") {
		t.Errorf("filter by rule:\n%s", s)
	}
	// esc clears it.
	m = drive(t, 160, 40, fixture(), append(append([]tea.Msg{press("/")}, typeText("close")...), press("enter"), press("esc"))...)
	if s := screen(m); !strings.Contains(s, "1/6") || strings.Contains(s, " of 6") {
		t.Errorf("esc should clear the filter:\n%s", s)
	}
}

func TestFindingsEnterJumpsToSocket(t *testing.T) {
	m := drive(t, 160, 40, fixture(), press("f"), press("enter"))
	if m.mode != modeDetails || m.detailsID != 0x40003 { // half-open sorts first among critical rules
		t.Errorf("mode %v socket %q, want details of the half-open socket", m.mode, m.detailsID)
	}
}

func TestSortAndChangeMarks(t *testing.T) {
	m := drive(t, 160, 40, fixture(), press("R"))
	if m.table.sortCol != colRemote || m.table.sortDesc {
		t.Fatalf("sort = %v desc %v", m.table.sortCol, m.table.sortDesc)
	}
	if !strings.Contains(screen(m), "REMOTE↑") {
		t.Error("no arrow on the sorted column")
	}
	// A refresh where the dead peer retransmitted again and a socket appeared.
	next := fixture()
	next.Sockets[2].TCPInfo.TotalRetrans = 5
	extra := next.Sockets[0]
	extra.ID, extra.Local = 0x50000, netip.MustParseAddrPort("10.0.0.5:50000")
	next.Sockets = append(next.Sockets, extra)
	var tm tea.Model = m
	tm, _ = tm.Update(snapshotMsg{snap: next, rep: rules.Evaluate(next, nil)})
	m = tm.(Model)
	var changed, fresh bool
	for _, r := range m.table.rows {
		changed = changed || r.s.ID == 0x40003 && r.retransUp
		fresh = fresh || r.s.ID == 0x50000 && r.isNew
	}
	if !changed || !fresh {
		t.Errorf("retransmit growth marked %v, new socket marked %v", changed, fresh)
	}
}

func TestPauseAndRefresh(t *testing.T) {
	m := drive(t, 80, 24, fixture(), press("space"))
	if !m.paused || !strings.Contains(screen(m), "paused") {
		t.Errorf("space should pause:\n%s", screen(m))
	}
	// A tick while paused fetches nothing.
	if _, cmd := m.Update(tickMsg{}); cmd != nil {
		t.Error("paused model scheduled a fetch")
	}
}

func TestQuit(t *testing.T) {
	for _, k := range []tea.Msg{press("q"), tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}} {
		_, cmd := drive(t, 80, 24, fixture()).Update(k)
		if cmd == nil {
			t.Fatalf("%v: no command", k)
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Errorf("%v does not quit", k)
		}
	}
}

func TestRefreshErrorKeepsLastSnapshot(t *testing.T) {
	var tm tea.Model = drive(t, 120, 30, fixture())
	tm, _ = tm.Update(snapshotMsg{err: fmt.Errorf("read sock_diag: no such process")})
	s := screen(tm.(Model))
	if !strings.Contains(s, "refresh failed: read sock_diag") || !strings.Contains(s, "10.0.2.7:8080") {
		t.Errorf("error should flash over the last good table:\n%s", s)
	}
}

// BenchmarkRefreshRender applies a 40,000-socket snapshot and draws a frame,
// what the live view does every interval.
func BenchmarkRefreshRender(b *testing.B) {
	base := fixture()
	snap := *base
	snap.Sockets = make([]diag.Socket, 0, 40000)
	for i := range 40000 {
		s := base.Sockets[i%4]
		s.ID = diag.Cookie(i + 1)
		s.Local = netip.AddrPortFrom(s.Local.Addr(), uint16(i%60000+1024))
		snap.Sockets = append(snap.Sockets, s)
	}
	rep := rules.Evaluate(&snap, nil)
	var m tea.Model = New(Options{Interval: time.Second})
	m, _ = m.Update(tea.WindowSizeMsg{Width: 200, Height: 60})
	b.ResetTimer()
	for b.Loop() {
		m, _ = m.Update(snapshotMsg{snap: &snap, rep: rep})
		_ = m.View()
	}
}

// BenchmarkScroll is one key press and frame on the 40,000-socket table.
func BenchmarkScroll(b *testing.B) {
	base := fixture()
	snap := *base
	snap.Sockets = nil
	for i := range 40000 {
		s := base.Sockets[i%4]
		s.ID = diag.Cookie(i + 1)
		snap.Sockets = append(snap.Sockets, s)
	}
	m := drive(b, 200, 60, &snap)
	var tm tea.Model = m
	down := press("down")
	for b.Loop() {
		tm, _ = tm.Update(down)
		_ = tm.View()
	}
}

// TestIdleCountsBothDirections: a connection that only sends is busy, not
// idle, however long ago it last received. The IDLE column and its sort
// must agree with the rules, which time flows out by traffic either way.
func TestIdleCountsBothDirections(t *testing.T) {
	snap := fixture()
	sender, quiet := snap.Sockets[0].TCPInfo, snap.Sockets[1].TCPInfo
	sender.LastDataRecvMS, sender.LastDataSentMS = 3_600_000, 100
	quiet.LastDataRecvMS, quiet.LastDataSentMS = 50_000, 60_000
	m := drive(t, 160, 40, snap, press("I"))
	if m.table.sortCol != colIdle {
		t.Fatalf("I sorts by %v", m.table.sortCol)
	}
	idle := map[string]string{}
	var order []string
	for _, i := range m.table.visible {
		r := &m.table.rows[i]
		idle[r.s.ID.String()] = r.cell(colIdle, &m.report, m.table.cache)
		order = append(order, r.s.ID.String())
	}
	if idle["40001"] != "100ms" || idle["40002"] != "50s" {
		t.Errorf("IDLE of the sender = %q, of the quiet one = %q; want 100ms and 50s", idle["40001"], idle["40002"])
	}
	if senderLater := slices.Index(order, "40001") > slices.Index(order, "40002"); senderLater != m.table.sortDesc {
		t.Errorf("sorted by idle (desc %v): %v", m.table.sortDesc, order)
	}
}

// TestDetailsShowWhatKeepsTheFlowAlive: once the live view has watched a
// connection, its details say for how long, its longest quiet, and what
// crossed it: the evidence that something (HTTP/2 pings) keeps it busy.
func TestDetailsShowWhatKeepsTheFlowAlive(t *testing.T) {
	snap := fixture()
	snap.Sockets[1].Observed = &diag.Observed{WatchedS: 60, Samples: 61, LongestQuietS: 10.2, RefreshedBy: diag.RefreshedByAppPings,
		Pings: &diag.Pings{PeriodS: 10, SizeBytes: 17, Count: 6}, DataExchanges: 6}
	snap.Sockets[2].Observed = &diag.Observed{WatchedS: 60, Samples: 61, LongestQuietS: 75, RefreshedBy: diag.RefreshedByNone}
	m := drive(t, 160, 40, snap)
	got := ansi.Strip(m.socketText(&m.snap.Sockets[1]))
	for _, want := range []string{"watched            60s in 61 samples, longest quiet seen 10s", "kept alive by      application pings: 6 of 17 bytes, one every 10s"} {
		if !strings.Contains(got, want) {
			t.Errorf("details lack %q:\n%s", want, got)
		}
	}
	if got := ansi.Strip(m.socketText(&m.snap.Sockets[2])); !strings.Contains(got, "kept alive by      nothing crossed it while watched") {
		t.Errorf("a silent connection's details:\n%s", got)
	}
	if got := ansi.Strip(m.socketText(&m.snap.Sockets[4])); strings.Contains(got, "watched") {
		t.Errorf("a socket not watched has nothing to say of it:\n%s", got)
	}
}

// TestDetailsSayTheWatchSawTheEntryGo: a conntrack table a watch saw an
// entry of the connection in, which holds none now, forgot it; a table
// that still holds one says so as before.
func TestDetailsSayTheWatchSawTheEntryGo(t *testing.T) {
	snap := fixture()
	snap.Sockets[1].Observed = &diag.Observed{WatchedS: 60, Samples: 61, LongestQuietS: 40, RefreshedBy: diag.RefreshedByNone,
		EntriesSeen: []diag.SeenEntry{{Netns: diag.Target}, {Netns: diag.Host, NAT: "dnat"}}}
	snap.Sockets[1].Conntrack = []diag.Flow{{Netns: diag.Target, TCPState: "ESTABLISHED", ExpiresInS: 20}}
	m := drive(t, 160, 40, snap)
	got := ansi.Strip(m.socketText(&m.snap.Sockets[1]))
	for _, want := range []string{"conntrack (host)   nothing any more: an earlier sample of the watch saw its entry", "conntrack (target) ESTABLISHED, forgets it in 20s"} {
		if !strings.Contains(got, want) {
			t.Errorf("details lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "conntrack (target) nothing") {
		t.Errorf("a table that still holds the entry is said to have forgotten it:\n%s", got)
	}
}

// TestNotesAreShown: what tcpvet could not read is counted in the header
// and spelled out, wrapped, in the findings view, findings or not.
func TestNotesAreShown(t *testing.T) {
	long := "host namespace not visible: open network namespace /proc/1/ns/net: permission denied (run as root or with CAP_SYS_PTRACE)"
	for _, healthy := range []bool{false, true} {
		snap := fixture()
		if healthy {
			snap.Sockets, snap.Host.Sysctls = nil, snap.Target.Sysctls
		}
		snap.Notes = []diag.Note{{Code: diag.NoteHostNotVisible, Text: long}, {Code: diag.NoteIPVSUnreadable, Text: "target IPVS unreadable: EPERM"}}
		m := drive(t, 80, 24, snap)
		if got := screen(m); !strings.Contains(got, "2 notes (f)") {
			t.Errorf("header does not count the notes:\n%s", got)
		}
		got := screen(drive(t, 80, 24, snap, press("f")))
		flat := strings.Join(strings.Fields(got), " ")
		if !strings.Contains(got, "notes (2)") || !strings.Contains(flat, long) || !strings.Contains(flat, "target IPVS unreadable") {
			t.Errorf("findings view (healthy %v) does not spell the notes out:\n%s", healthy, got)
		}
		for _, l := range strings.Split(got, "\n") {
			if ansi.StringWidth(l) > 80 {
				t.Errorf("line wider than the screen: %q", l)
			}
		}
		if healthy && !strings.Contains(got, "no findings") {
			t.Errorf("healthy namespace, yet no \"no findings\":\n%s", got)
		}
	}
}

// TestDetailsNameTheProxyARedirectEndsAt: a connection the namespace's
// netfilter redirected names where it went and who listens there.
func TestDetailsNameTheProxyARedirectEndsAt(t *testing.T) {
	snap := fixture()
	app := &snap.Sockets[1]
	app.RedirectedTo = ptr(netip.MustParseAddrPort("127.0.0.1:15001"))
	m := drive(t, 160, 40, snap)
	if got := ansi.Strip(m.socketText(app)); !strings.Contains(got, "127.0.0.1:15001 by this namespace's netfilter") {
		t.Errorf("no listener known, details say:\n%s", got)
	}
	if got := screen(m); !strings.Contains(got, "10.0.1.9:5432⇢:15001") {
		t.Errorf("the table does not show the redirect:\n%s", got)
	}
	if got := screen(drive(t, 160, 40, snap, append([]tea.Msg{press("/")}, typeText("15001")...)...)); !strings.Contains(got, "10.0.1.9:5432⇢:15001") || strings.Contains(got, "10.0.2.7:8080") {
		t.Errorf("filtering by the proxy's port misses the redirected connection:\n%s", got)
	}
	snap = fixture()
	app = &snap.Sockets[1]
	app.RedirectedTo = ptr(netip.MustParseAddrPort("127.0.0.1:15001"))
	app.Peer = 0x9
	if got := ansi.Strip(m.socketText(app)); !strings.Contains(got, "socket 9 ([::]:8080, api pid 42) in this namespace") {
		t.Errorf("details do not name the peer:\n%s", got)
	}
	proxy := snap.Sockets[4] // the listener on [::]:8080
	proxy.ID, proxy.Local = 0x15, netip.MustParseAddrPort("[::]:15001")
	proxy.Processes = []diag.Process{{PID: 7, Comm: "envoy", FD: 30}}
	snap.Sockets = append(snap.Sockets, proxy)
	m = drive(t, 160, 40, snap)
	if got := strings.Join(strings.Fields(ansi.Strip(m.socketText(app))), " "); !strings.Contains(got, "127.0.0.1:15001, where envoy (pid 7) listens: the connection ends in this namespace") {
		t.Errorf("details do not name the proxy:\n%s", got)
	}
}

// TestFindingsKeysWithNoFindings: moving and entering in an empty findings
// view does nothing, rather than index a finding that is not there.
func TestFindingsKeysWithNoFindings(t *testing.T) {
	snap := fixture()
	snap.Sockets, snap.Host.Sysctls = nil, snap.Target.Sysctls
	m := drive(t, 80, 24, snap, press("f"), press("down"), press("enter"), press("up"), press("enter"))
	if !strings.Contains(screen(m), "no findings") {
		t.Errorf("want the empty findings view still:\n%s", screen(m))
	}
}

// TestFindingsFollowTheFilter: with the table filtered, the findings view
// lists only the findings about the connections the filter keeps, and
// says so; without one, all of them.
func TestFindingsFollowTheFilter(t *testing.T) {
	snap := fixture()
	all := drive(t, 160, 40, snap, keyMsg("f"))
	if len(all.findItems) < 2 {
		t.Fatalf("the fixture's findings: %d, want several", len(all.findItems))
	}
	m := drive(t, 160, 40, snap, append(append([]tea.Msg{keyMsg("/")}, typeText("40003")...), keyMsg("enter"), keyMsg("f"))...)
	if len(m.findItems) == 0 || len(m.findItems) >= len(all.findItems) {
		t.Fatalf("filtered to one connection: %d findings of %d", len(m.findItems), len(all.findItems))
	}
	for _, fi := range m.findItems {
		f := m.report.Findings[fi]
		if f.Socket == nil || !strings.HasSuffix(f.Summary[:strings.Index(f.Summary, " ->")], ":40003") {
			t.Errorf("a finding the filter does not keep: %s", f.Summary)
		}
	}
	if s := screen(m); !strings.Contains(s, "only the findings about the connections the filter /40003 keeps") {
		t.Errorf("the findings view does not say it is filtered:\n%s", s)
	}
}

// TestFindingsFollowAFilterSetAfter: the findings view, seen once, then the
// table filtered, lists only what the filter keeps when opened again, as
// its line says, before any refresh.
func TestFindingsFollowAFilterSetAfter(t *testing.T) {
	snap := fixture()
	msgs := []tea.Msg{keyMsg("f"), keyMsg("esc"), keyMsg("/")}
	msgs = append(append(msgs, typeText("40003")...), keyMsg("enter"), keyMsg("f"))
	m := drive(t, 160, 40, snap, msgs...)
	if m.mode != modeFindings {
		t.Fatalf("mode %v, want the findings view", m.mode)
	}
	for _, fi := range m.findItems {
		f := m.report.Findings[fi]
		if f.Socket == nil || !strings.HasSuffix(f.Summary[:strings.Index(f.Summary, " ->")], ":40003") {
			t.Errorf("a finding the filter does not keep, under the line saying it is filtered: %s", f.Summary)
		}
	}
}

// TestPathCellFits: the PATH cell of an entry with minutes and seconds
// left, conntrack's or IPVS's, fits its column rather than lose its end
// to an ellipsis.
func TestPathCellFits(t *testing.T) {
	for _, left := range []uint32{41, 299, 599, 5999, 35999} {
		for _, s := range []diag.Socket{
			{Conntrack: []diag.Flow{{ExpiresInS: left}}},
			{IPVS: &diag.IPVSConn{ExpiresInS: left}},
		} {
			if cell := pathCell(&s, false); len(cell) > pathWidth {
				t.Errorf("PATH %q is %d wide, its column %d", cell, len(cell), pathWidth)
			}
		}
	}
}
