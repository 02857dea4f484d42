package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
)

// nsOf is a namespace of the fixture's sockets picked by id, its report
// what the rules make of them; edit changes the snapshot first.
func nsOf(inode uint64, path string, pod *node.Pod, ids []string, edit func(*diag.Snapshot)) node.Namespace {
	snap := fixture()
	snap.Target = diag.Namespace{Role: diag.Target, NetnsInode: inode, Path: path, Sysctls: snap.Target.Sysctls}
	// The host's sysctls as the namespace's: no finding about the
	// difference, so each namespace's findings are its sockets'.
	snap.Host.Sysctls = snap.Target.Sysctls
	var keep []diag.Socket
	for _, s := range snap.Sockets {
		for _, id := range ids {
			if s.ID.String() == id {
				keep = append(keep, s)
			}
		}
	}
	snap.Sockets = keep
	if edit != nil {
		edit(snap)
	}
	return node.Namespace{Inode: inode, Path: path, Pod: pod, Snapshot: snap, Report: rules.Evaluate(snap, nil)}
}

// nodeFixture is a node of seven namespaces, listed out of urgency order:
// pods named by the runtime and by a cgroup, namespaces of no pod, one
// that vanished mid-sweep, and findings of every severity, failing now,
// in minutes, or at no known time.
func nodeFixture() *node.Sweep {
	cri := func(ns, name string) *node.Pod {
		return &node.Pod{Namespace: ns, Name: name, UID: "uid-" + name, Container: "c0ffee", Source: "cri"}
	}
	namespaces := []node.Namespace{
		// Healthy: a listener and a time-wait.
		nsOf(4026532301, "/run/netns/blue", nil, []string{"9", "7"}, nil),
		// Vanished before it could be read.
		{Inode: 4026532302, Path: "/proc/4242/ns/net", Notes: []diag.Note{{Code: diag.NoteNamespaceUnreadable, Text: "netns vanished mid-sweep: open /proc/4242/ns/net: no such file or directory"}}},
		// Critical, no keepalive through IPVS: fails in about 15 minutes.
		// The sweep has a word about it.
		nsOf(4026532303, "/proc/310/ns/net", cri("shop", "cart-5d8f7"), []string{"40002", "9"}, nil),
		// Warning: a connection its application never closed.
		nsOf(4026532304, "/proc/320/ns/net", &node.Pod{UID: "1b2c3d4e-0000-4a5b-8c9d-0123456789ab", Container: "d00d", Source: "cgroup"}, []string{"40004"}, nil),
		// Critical, the same with 10 minutes quiet already: fails sooner.
		nsOf(4026532305, "/proc/330/ns/net", cri("shop", "db-0"), []string{"40002"}, func(s *diag.Snapshot) {
			ti := s.Sockets[0].TCPInfo
			ti.LastDataRecvMS, ti.LastDataSentMS, ti.LastAckRecvMS = 600_000, 600_000, 600_000
		}),
		// Info: the kernel gives up on a dead peer in time, but not soon.
		nsOf(4026532306, "/proc/340/ns/net", cri("kube-system", "coredns-6f4"), []string{"40001"}, func(s *diag.Snapshot) {
			s.Target.Sysctls[diag.Retries2] = 8
			s.Host.Sysctls = s.Target.Sysctls
		}),
		// Critical, a dead peer: failing now.
		nsOf(4026532307, "/proc/42/ns/net", cri("shop", "api-7f9c4"), []string{"40001", "40002", "40003", "40004", "9", "7"}, nil),
	}
	namespaces[2].Notes = []diag.Note{{Code: diag.NoteCRIIncomplete, Text: "pod named by the runtime, its container's cgroup not found"}}
	return &node.Sweep{
		TakenAt:    time.Date(2026, 11, 23, 3, 4, 5, 0, time.UTC),
		Duration:   1840 * time.Millisecond,
		Namespaces: namespaces,
		Errors:     1,
		Notes:      []diag.Note{{Code: diag.NoteCRISocketMissing, Text: "no CRI socket (/run/containerd/containerd.sock): pods named from their cgroups"}},
	}
}

func sweepOf(sw *node.Sweep) NodeSource {
	return func(context.Context) (*node.Sweep, error) { return sw, nil }
}

// driveNode feeds msgs to a fresh node model of the given size holding sw.
func driveNode(t testing.TB, w, h int, sw *node.Sweep, msgs ...tea.Msg) Model {
	t.Helper()
	var m tea.Model = New(Options{Interval: time.Second, Sweep: sweepOf(sw)})
	m, _ = m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m, _ = m.Update(sweepMsg{sweep: sw})
	for _, msg := range msgs {
		m, _ = m.Update(msg)
	}
	return m.(Model)
}

// manyNamespaces is the node fixture's namespaces n times over, with
// distinct inodes: more rows than a screen holds.
func manyNamespaces(n int) *node.Sweep {
	sw := nodeFixture()
	base := sw.Namespaces
	sw.Namespaces = nil
	for i := range n {
		ns := base[i%len(base)]
		ns.Inode = 4026540000 + uint64(i)
		sw.Namespaces = append(sw.Namespaces, ns)
	}
	return sw
}

// rowNames are the node table's names, top to bottom.
func rowNames(m Model) []string {
	var out []string
	for _, r := range m.nodes.rows {
		out = append(out, r.name)
	}
	return out
}

// wantOrder is the node fixture most urgent first: failing now, the
// criticals failing soonest, then a warning, an info, the namespace that
// could not be read, and the healthy one.
var wantOrder = []string{
	"shop/api-7f9c4", "shop/db-0", "shop/cart-5d8f7", "pod 1b2c3d4e-0000-4a5b-8c9d-0123456789ab",
	"kube-system/coredns-6f4", "/proc/4242/ns/net", "/run/netns/blue",
}

func TestNodeViewGolden(t *testing.T) {
	for _, size := range [][2]int{{160, 45}, {80, 24}} {
		w, h := size[0], size[1]
		name := fmt.Sprintf("%dx%d", w, h)
		t.Run(name, func(t *testing.T) {
			m := driveNode(t, w, h, nodeFixture())
			golden(t, "node-"+name, m.View().Content)
			s := screen(m)
			for _, line := range strings.Split(s, "\n") {
				if ansi.StringWidth(line) > w {
					t.Errorf("line wider than %d: %q", w, line)
				}
			}
			if n := strings.Count(s, "\n") + 1; n != h {
				t.Errorf("%d lines on a %d-line terminal", n, h)
			}
			// What a node view must say whatever the width: the sweep's
			// time, its counts, the error, and each namespace by name.
			flatS := flat(s)
			for _, want := range append([]string{"swept 03:04:05 UTC", "7 namespaces, 5 pods", "1 unreadable", "4 critical", "5 warning", "1 info",
				"no CRI socket", "half-open +3", "now", "in 5m", "in 14m", "unreadable: netns"}, wantOrder...) {
				if !strings.Contains(flatS, flat(want)) && !strings.Contains(s, ansi.Truncate(want, 22, "")) {
					t.Errorf("the node view lacks %q:\n%s", want, s)
				}
			}
		})
	}
}

// TestNodeUrgencyOrder: namespaces are ordered by their worst finding as
// the rules order findings, whatever order the sweep lists them in; those
// that could not be read come after every finding, the healthy last.
func TestNodeUrgencyOrder(t *testing.T) {
	sw := nodeFixture()
	for i := range 2 * len(sw.Namespaces) {
		shuffled := *sw
		shuffled.Namespaces = slices.Clone(sw.Namespaces)
		if i >= len(sw.Namespaces) {
			slices.Reverse(shuffled.Namespaces)
		}
		k := i % len(sw.Namespaces)
		shuffled.Namespaces = append(shuffled.Namespaces[k:], shuffled.Namespaces[:k]...)
		m := driveNode(t, 160, 45, &shuffled)
		if got := rowNames(m); !slices.Equal(got, wantOrder) {
			t.Fatalf("sweep order %d: rows %q, want %q", i, got, wantOrder)
		}
		// The screen shows them in that order too.
		s := screen(m)
		last := -1
		for _, name := range wantOrder {
			at := strings.Index(s, name)
			if at <= last {
				t.Fatalf("%q is not below the namespace before it:\n%s", name, s)
			}
			last = at
		}
	}

	// Each step of the rules' order, two namespaces at a time: the first
	// of each pair ranks first, and is listed second.
	secs := func(v float64) *float64 { return &v }
	f := func(sev rules.Severity, failing rules.Failing, in *float64) []rules.Finding {
		return []rules.Finding{{Rule: "r", Severity: sev, Failing: failing, FailsInS: in}, {Rule: "r", Severity: rules.Info}}
	}
	ns := func(name string, findings []rules.Finding) node.Namespace {
		return node.Namespace{Inode: uint64(len(name)), Path: name, Snapshot: &diag.Snapshot{}, Report: rules.Report{Findings: findings}}
	}
	for _, c := range []struct {
		name          string
		first, second node.Namespace
	}{
		{"critical before warning failing now", ns("a", f(rules.Critical, "", nil)), ns("bb", f(rules.Warning, rules.FailingNow, secs(1)))},
		{"now before the next write", ns("a", f(rules.Critical, rules.FailingNow, nil)), ns("bb", f(rules.Critical, rules.FailingNextWrite, secs(1)))},
		{"the next write before a time", ns("a", f(rules.Critical, rules.FailingNextWrite, nil)), ns("bb", f(rules.Critical, "", secs(1)))},
		{"sooner before later", ns("a", f(rules.Critical, "", secs(10))), ns("bb", f(rules.Critical, "", secs(100)))},
		{"a time before none", ns("a", f(rules.Warning, "", secs(1e6))), ns("bb", f(rules.Warning, "", nil))},
		{"info before unreadable", ns("a", f(rules.Info, "", nil)), node.Namespace{Inode: 9, Path: "gone", Notes: []diag.Note{{Code: diag.NoteNamespaceUnreadable, Text: "vanished"}}}},
		{"unreadable before healthy", node.Namespace{Inode: 9, Path: "gone"}, ns("bb", nil)},
		{"as urgent: more findings that bad, whatever the rules' names", ns("a", []rules.Finding{{Rule: "z", Severity: rules.Critical}, {Rule: "z", Severity: rules.Critical}}),
			ns("bb", []rules.Finding{{Rule: "a", Severity: rules.Critical, Socket: ptr(diag.Cookie(1))}, {Rule: "a", Severity: rules.Warning}, {Rule: "a", Severity: rules.Warning}})},
		{"the worst finding counts, not the first listed", ns("a", []rules.Finding{{Rule: "x", Severity: rules.Info}, {Rule: "y", Severity: rules.Critical}}), ns("bb", f(rules.Warning, rules.FailingNow, nil))},
	} {
		sw := &node.Sweep{Namespaces: []node.Namespace{c.second, c.first}}
		m := driveNode(t, 120, 30, sw)
		if got := m.nodes.rows[0].ns.Path; got != c.first.Path {
			t.Errorf("%s: %q first, want %q", c.name, got, c.first.Path)
		}
	}
	// Equals keep the sweep's order.
	eq := &node.Sweep{Namespaces: []node.Namespace{ns("z", nil), ns("yy", nil), ns("xxx", nil)}}
	if got := rowNames(driveNode(t, 120, 30, eq)); !slices.Equal(got, []string{"z", "yy", "xxx"}) {
		t.Errorf("healthy namespaces reordered: %q", got)
	}
}

// TestNodeEnterAndEsc: enter opens the selected namespace's connection
// view, esc returns to the node view on the same row; a namespace that
// could not be read says why instead.
func TestNodeEnterAndEsc(t *testing.T) {
	m := driveNode(t, 160, 45, nodeFixture(), keyMsg("down"), keyMsg("enter"))
	if m.mode != modeTable || m.inNS != 4026532305 {
		t.Fatalf("mode %v netns %d, want the table of shop/db-0", m.mode, m.inNS)
	}
	s := screen(m)
	if !strings.Contains(s, "pod shop/db-0  netns 4026532305") || !strings.Contains(s, "10.0.1.9:5432") || strings.Contains(s, "10.0.2.7:8080") || !strings.Contains(s, "1/1") {
		t.Errorf("the connection view of shop/db-0 should hold its one socket:\n%s", s)
	}
	if !strings.Contains(s, "esc back") {
		t.Errorf("the footer does not say esc goes back:\n%s", s)
	}
	// Its findings and details are this namespace's.
	if fm, _ := step(m, keyMsg("f")); len(fm.findItems) != len(fm.nodes.rows[1].ns.Report.Findings) {
		t.Errorf("%d findings listed, the namespace has %d", len(fm.findItems), len(fm.nodes.rows[1].ns.Report.Findings))
	}
	if dm, _ := step(m, keyMsg("enter")); dm.mode != modeDetails || !strings.Contains(screen(dm), "socket 40002") {
		t.Errorf("enter in its table: mode %v:\n%s", dm.mode, screen(dm))
	}

	back, _ := step(m, keyMsg("esc"))
	if back.mode != modeNode || back.nodes.cursor != 1 || back.inNS != 0 {
		t.Fatalf("esc: mode %v cursor %d netns %d, want the node view on row 2", back.mode, back.nodes.cursor, back.inNS)
	}
	if s := screen(back); !strings.Contains(s, "7 namespaces") || !strings.Contains(s, "enter open namespace") {
		t.Errorf("esc should show the node view:\n%s", s)
	}

	// The filter goes first, then the table.
	filtered := driveNode(t, 160, 45, nodeFixture(), append(append([]tea.Msg{keyMsg("enter"), keyMsg("/")}, typeText("close")...), keyMsg("enter"))...)
	if len(filtered.table.visible) != 1 {
		t.Fatalf("filter close: %d rows", len(filtered.table.visible))
	}
	filtered, _ = step(filtered, keyMsg("esc"))
	if filtered.mode != modeTable || filtered.filter.Value() != "" || len(filtered.table.visible) != 6 {
		t.Errorf("esc with a filter: mode %v filter %q rows %d, want the filter cleared", filtered.mode, filtered.filter.Value(), len(filtered.table.visible))
	}
	filtered, _ = step(filtered, keyMsg("esc"))
	if filtered.mode != modeNode {
		t.Errorf("esc without a filter: mode %v, want the node view", filtered.mode)
	}
	// Another namespace starts afresh: no filter, no socket marked new.
	other, _ := step(filtered, keyMsg("down"))
	other, _ = step(other, keyMsg("down"))
	other, _ = step(other, keyMsg("enter"))
	if other.inNS != 4026532303 || other.filter.Value() != "" || len(other.table.visible) != 2 {
		t.Errorf("shop/cart-5d8f7: netns %d filter %q rows %d", other.inNS, other.filter.Value(), len(other.table.visible))
	}
	// What the sweep says of it is among its notes.
	if !strings.Contains(screen(other), "1 note (f)") {
		t.Errorf("the sweep's note on shop/cart-5d8f7 is not counted:\n%s", screen(other))
	}
	if f, _ := step(other, keyMsg("f")); !strings.Contains(screen(f), "its container's cgroup not found") {
		t.Errorf("the sweep's note on shop/cart-5d8f7 is not in its findings view:\n%s", screen(f))
	}
	for _, r := range other.table.rows {
		if r.isNew {
			t.Errorf("socket %s marked new on opening a namespace", r.s.ID)
		}
	}

	// Help follows the mode.
	if h, _ := step(back, keyMsg("?")); !strings.Contains(screen(h), "Keys in the node view") || !strings.Contains(screen(h), "open namespace") {
		t.Errorf("help over the node view:\n%s", screen(h))
	}
	if h, _ := step(m, keyMsg("?")); !strings.Contains(screen(h), "Keys in the table") || !regexp.MustCompile(`esc +clear filter.*\n.*esc +back`).MatchString(screen(h)) {
		t.Errorf("help over a namespace's table:\n%s", screen(h))
	}

	// The namespace that vanished: enter says why, and stays.
	gone := driveNode(t, 80, 24, nodeFixture())
	for gone.nodes.current().name != "/proc/4242/ns/net" {
		gone, _ = step(gone, keyMsg("down"))
	}
	gone, _ = step(gone, keyMsg("enter"))
	if gone.mode != modeNode || !strings.Contains(strings.Join(strings.Fields(screen(gone)), ""), "couldnotberead:netnsvanishedmid-sweep:open/proc/4242/ns/net:nosuchfileordirectory") {
		t.Errorf("enter on an unreadable namespace: mode %v:\n%s", gone.mode, screen(gone))
	}
}

// TestNodeSweepRefreshesTheOpenNamespace: each sweep refreshes the node
// table, keeping the cursor on its namespace wherever it moved, and the
// connection view of the namespace open; one gone from the sweep says so
// and keeps what was last read.
func TestNodeSweepRefreshesTheOpenNamespace(t *testing.T) {
	m := driveNode(t, 160, 45, nodeFixture(), keyMsg("G")) // the healthy namespace, last
	// The dead peer moves to it: it is now the one failing now, first.
	next := nodeFixture()
	for i := range next.Namespaces {
		switch ns := &next.Namespaces[i]; ns.Path {
		case "/run/netns/blue":
			*ns = nsOf(ns.Inode, ns.Path, nil, []string{"9", "7", "40003"}, nil)
		case "/proc/42/ns/net":
			*ns = nsOf(ns.Inode, ns.Path, ns.Pod, []string{"40001", "40002", "40004", "9", "7"}, nil)
		}
	}
	m, _ = step(m, sweepMsg{sweep: next})
	if r := m.nodes.current(); r.name != "/run/netns/blue" || m.nodes.cursor != 0 {
		t.Errorf("cursor on %q at %d, want /run/netns/blue, now first", r.name, m.nodes.cursor)
	}

	m = driveNode(t, 160, 45, nodeFixture(), keyMsg("enter"))
	grown := nodeFixture()
	api := &grown.Namespaces[len(grown.Namespaces)-1]
	extra := api.Snapshot.Sockets[0]
	extra.ID, extra.Local = 0x50000, netip.AddrPortFrom(extra.Local.Addr(), 50000)
	*api = nsOf(api.Inode, api.Path, api.Pod, nil, func(s *diag.Snapshot) { s.Sockets = append(fixture().Sockets, extra) })
	m, _ = step(m, sweepMsg{sweep: grown})
	if m.mode != modeTable || len(m.table.rows) != 7 {
		t.Fatalf("mode %v, %d rows after a sweep with one more socket", m.mode, len(m.table.rows))
	}
	for _, r := range m.table.rows {
		if r.isNew != (r.s.ID == 0x50000) {
			t.Errorf("socket %s new %v", r.s.ID, r.isNew)
		}
	}
	// Its inode number given to another namespace (the pod's deleted, a
	// new one made): that one's sockets are not this pod's.
	reused := nodeFixture()
	other := &reused.Namespaces[len(reused.Namespaces)-1]
	*other = nsOf(other.Inode, "/run/netns/other", nil, []string{"9"}, nil)
	m, _ = step(m, sweepMsg{sweep: reused})
	if s := flat(screen(m)); !strings.Contains(s, "netns 4026532307 is gone from the latest sweep") || !strings.Contains(s, "10.0.0.5:50000") {
		t.Errorf("the namespace's inode number reused by another:\n%s", screen(m))
	}
	// Gone from the next sweep.
	without := nodeFixture()
	without.Namespaces = without.Namespaces[:len(without.Namespaces)-1]
	m, _ = step(m, sweepMsg{sweep: without})
	if s := flat(screen(m)); !strings.Contains(s, "netns 4026532307 is gone from the latest sweep") || !strings.Contains(s, "10.0.0.5:50000") {
		t.Errorf("a namespace gone from the sweep:\n%s", screen(m))
	}
	// A failed sweep flashes and keeps the last one.
	m, _ = step(m, keyMsg("esc"))
	m, _ = step(m, sweepMsg{err: fmt.Errorf("read /proc: permission denied")})
	if s := screen(m); !strings.Contains(s, "sweep failed: read /proc: permission denied") || !strings.Contains(s, "shop/db-0") {
		t.Errorf("a failed sweep:\n%s", s)
	}
}

// TestNodeHelpKeysDoWhatTheySay presses every key the node view's help
// lists, and every key of the table opened from it, and checks each did
// what its help says.
func TestNodeHelpKeysDoWhatTheySay(t *testing.T) {
	t.Chdir(t.TempDir()) // exports land here
	sw := manyNamespaces(120)
	// Filtered, so that esc has a filter to clear.
	start := driveNode(t, 80, 24, sw, append(append([]tea.Msg{keyMsg("/")}, typeText("shop")...), keyMsg("enter"))...)
	if n := len(start.nodes.rows); n < 30 || n == len(start.nodes.all) {
		t.Fatalf("filter shop: %d of %d rows", n, len(start.nodes.all))
	}
	start.nodes.cursor = 21 // a readable namespace in the middle
	start.clampCursor()
	if !start.nodes.current().readable() {
		t.Fatalf("row %d cannot be read", start.nodes.cursor)
	}
	checkKeys(t, start, start.keys.Node, merge(
		moveChecks(func(m Model) int { return m.nodes.cursor }, func(m Model) int { return m.tableHeight() - 1 }, func(m Model) int { return len(m.nodes.rows) - 1 }),
		liveChecks(modeNode),
		map[string]keyCheck{
			"filter": inMode(modeFilter),
			"clear filter": func(b, a Model, _ tea.Cmd) error {
				return want(a.mode == modeNode && a.nodeFilter.Value() == "" && len(a.nodes.rows) == len(a.nodes.all) && a.nodes.current().ns == b.nodes.current().ns,
					"mode %v filter %q, %d of %d rows", a.mode, a.nodeFilter.Value(), len(a.nodes.rows), len(a.nodes.all))
			},
			"open namespace": func(b, a Model, _ tea.Cmd) error {
				return want(a.mode == modeTable && a.inNS == b.nodes.current().ns.Inode && a.snap == b.nodes.current().ns.Snapshot,
					"mode %v netns %d, want the table of %d", a.mode, a.inNS, b.nodes.current().ns.Inode)
			},
			"quit": quitCheck,
		}))

	table, _ := step(driveNode(t, 80, 24, nodeFixture(), keyMsg("enter")), keyMsg("G"))
	table.table.cursor = 2
	backToNode := func(b, a Model, _ tea.Cmd) error {
		// esc clears a filter first; with none it goes back.
		return want(a.mode == modeNode && a.nodes.cursor == b.nodes.cursor, "mode %v cursor %d, want the node view on row %d", a.mode, a.nodes.cursor, b.nodes.cursor)
	}
	checkKeys(t, table, table.keys.Table, merge(
		tableChecks(),
		moveChecks(func(m Model) int { return m.table.cursor }, func(m Model) int { return m.tableHeight() - 1 }, func(m Model) int { return len(m.table.visible) - 1 }),
		map[string]keyCheck{"back": backToNode, "clear filter": backToNode,
			"closed connections": func(b, a Model, _ tea.Cmd) error {
				// A namespace of a sweep was read, not watched.
				return want(a.mode == modeTable && a.flash == notFollowedInSweep, "mode %v flash %q, want the table saying why nothing is listed", a.mode, a.flash)
			}},
	))
}

// TestNodeExport: the export key in the node view writes the whole sweep,
// the document --all-netns --json prints; in a namespace's connection
// view it writes that namespace's, as --json does for one target.
func TestNodeExport(t *testing.T) {
	dir := shortDir(t)
	var m tea.Model = New(Options{Interval: time.Second, ExportDir: dir, Sweep: sweepOf(nodeFixture())})
	m, _ = m.Update(tea.WindowSizeMsg{Width: 120, Height: 30})
	m, _ = m.Update(sweepMsg{sweep: nodeFixture()})
	m, _ = m.Update(keyMsg("down"))
	m, cmd := m.Update(keyMsg("e"))
	if cmd == nil {
		t.Fatal("e returned no command")
	}
	msg, ok := cmd().(exportedMsg)
	if !ok || msg.err != nil {
		t.Fatalf("export: %#v", msg)
	}
	b, err := os.ReadFile(msg.path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := node.WriteIndentedJSON(&want, nodeFixture()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want.Bytes()) {
		t.Errorf("the node view exported %s, not the sweep's document", msg.path)
	}
	var doc struct {
		Namespaces []json.RawMessage `json:"namespaces"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Namespaces) != len(nodeFixture().Namespaces) {
		t.Errorf("exported %d namespaces (%v), want %d", len(doc.Namespaces), err, len(nodeFixture().Namespaces))
	}

	// A namespace's connection view exports that namespace.
	m, _ = m.Update(keyMsg("enter"))
	_, cmd = m.Update(keyMsg("e"))
	one := cmd().(exportedMsg)
	b, err = os.ReadFile(one.path)
	if err != nil {
		t.Fatal(err)
	}
	var single struct {
		Target   diag.Namespace  `json:"target"`
		Sockets  []diag.Socket   `json:"sockets"`
		Findings []rules.Finding `json:"findings"`
	}
	if err := json.Unmarshal(b, &single); err != nil {
		t.Fatal(err)
	}
	if single.Target.NetnsInode != 4026532305 || len(single.Sockets) != 1 || len(single.Findings) != 2 {
		t.Errorf("exported netns %d with %d sockets and %d findings, want shop/db-0's 1 and 2", single.Target.NetnsInode, len(single.Sockets), len(single.Findings))
	}
}

// bigSweep is a node of n namespaces of per sockets each, the fixture's
// sockets over again, every one evaluated.
func bigSweep(n, per int) *node.Sweep {
	sw := nodeFixture()
	sw.Namespaces = nil
	for i := range n {
		snap := fixture()
		base := snap.Sockets
		snap.Sockets = make([]diag.Socket, 0, per)
		for j := range per {
			s := base[j%len(base)]
			s.ID = diag.Cookie(j + 1)
			s.Local = netip.AddrPortFrom(s.Local.Addr(), uint16(20000+j))
			snap.Sockets = append(snap.Sockets, s)
		}
		snap.Target.NetnsInode = 4026540000 + uint64(i)
		sw.Namespaces = append(sw.Namespaces, node.Namespace{Inode: snap.Target.NetnsInode, Path: fmt.Sprintf("/proc/%d/ns/net", 1000+i),
			Pod: &node.Pod{Namespace: "shop", Name: fmt.Sprintf("api-%d", i), UID: fmt.Sprint(i), Source: "cri"}, Snapshot: snap, Report: rules.Evaluate(snap, nil)})
	}
	return sw
}

// BenchmarkNodeSweepRender takes in a sweep of 250 namespaces of 200
// sockets and draws a frame, what the node view does every interval.
func BenchmarkNodeSweepRender(b *testing.B) {
	sw := bigSweep(250, 200)
	m := driveNode(b, 200, 60, sw)
	var tm tea.Model = m
	for b.Loop() {
		tm, _ = tm.Update(sweepMsg{sweep: sw})
		_ = tm.View()
	}
}

// BenchmarkNodeScroll is one key press and frame in that node view.
func BenchmarkNodeScroll(b *testing.B) {
	var tm tea.Model = driveNode(b, 200, 60, bigSweep(250, 200))
	down := keyMsg("down")
	for b.Loop() {
		tm, _ = tm.Update(down)
		_ = tm.View()
	}
}

// TestNodeColours: a namespace's worst finding and its failure are drawn
// in that finding's severity, counts in theirs (zero dimmed), a namespace
// that could not be read as an error; names stay plain.
func TestNodeColours(t *testing.T) {
	m := driveNode(t, 160, 45, nodeFixture(), keyMsg("G")) // the rows checked are drawn unselected
	out := m.View().Content
	st := m.styles
	for _, c := range []struct {
		row, text string
		want      lipgloss.Style
	}{
		{"shop/api-7f9c4", "half-open", st.Critical},
		{"shop/api-7f9c4", "now", st.Critical},
		{"shop/db-0", "in 5m", st.Critical},
		{"pod 1b2c3d4e", "close-wait", st.Warning},
		{"kube-system/coredns-6f4", "slow-dead-peer", st.Info},
		{"/proc/4242/ns/net ", "unreadable", st.FlashErr},
	} {
		if s := styleBefore(t, out, c.row, c.text); s != sgr(c.want) {
			t.Errorf("%s: %q drawn %q, want %q", c.row, c.text, s, sgr(c.want))
		}
	}
	if s := styleBefore(t, out, "shop/db-0", "shop/db-0"); s != "" {
		t.Errorf("a name is drawn %q, want plain", s)
	}
	// CRIT WARN INFO of shop/db-0: 1 1 0.
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(ansi.Strip(l), "shop/db-0") {
			line = l
		}
	}
	counts := regexp.MustCompile(`((?:\x1b\[[0-9;:]*m)*) +([0-9]+)\x1b\[m`).FindAllStringSubmatch(line[strings.Index(line, "in 5m"):], 3)
	if len(counts) != 3 {
		t.Fatalf("no three counts after the failure: %q", line)
	}
	for i, want := range []lipgloss.Style{st.Critical, st.Warning, st.Dim} {
		if counts[i][1] != sgr(want) {
			t.Errorf("count %d (%s) drawn %q, want %q", i, counts[i][2], counts[i][1], sgr(want))
		}
	}
}

// TestNodeSmallTerminals: the node view and a namespace opened from it
// fit the smallest screen drawn.
func TestNodeSmallTerminals(t *testing.T) {
	for _, keys := range [][]tea.Msg{nil, {keyMsg("?")}, {keyMsg("enter")}, {keyMsg("enter"), keyMsg("f")}, {keyMsg("G"), keyMsg("enter")}} {
		s := screen(driveNode(t, minWidth, minHeight, manyNamespaces(30), keys...))
		lines := strings.Split(s, "\n")
		if len(lines) > minHeight {
			t.Errorf("%v: %d lines on a %d-line terminal:\n%s", keys, len(lines), minHeight, s)
		}
		for _, l := range lines {
			if ansi.StringWidth(l) > minWidth {
				t.Errorf("%v: line wider than %d: %q", keys, minWidth, l)
			}
		}
	}
	// Not yet swept, or the first sweep failed: the header says so.
	var m tea.Model = New(Options{Sweep: sweepOf(nodeFixture())})
	m, _ = m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	if s := screen(m.(Model)); !strings.Contains(s, "sweeping every network namespace") {
		t.Errorf("before the first sweep:\n%s", s)
	}
	m, _ = m.Update(sweepMsg{err: fmt.Errorf("no /proc")})
	if s := screen(m.(Model)); !strings.Contains(s, "sweep failed: no /proc") {
		t.Errorf("after a failed first sweep:\n%s", s)
	}
}

// TestNodeFilter: / filters the node view by pod, netns, rule or process;
// esc clears it; a namespace's table has a filter of its own.
func TestNodeFilter(t *testing.T) {
	filter := func(q string, more ...tea.Msg) Model {
		return driveNode(t, 160, 45, nodeFixture(), append(append(append([]tea.Msg{keyMsg("/")}, typeText(q)...), keyMsg("enter")), more...)...)
	}
	for q, want := range map[string][]string{
		"shop":              {"shop/api-7f9c4", "shop/db-0", "shop/cart-5d8f7"},
		"no-keepalive":      {"shop/api-7f9c4", "shop/db-0", "shop/cart-5d8f7"},
		"close-wait 320":    {"pod 1b2c3d4e-0000-4a5b-8c9d-0123456789ab"},
		"1b2c3d4e":          {"pod 1b2c3d4e-0000-4a5b-8c9d-0123456789ab"},
		"4026532302":        {"/proc/4242/ns/net"},
		"unreadable":        {"/proc/4242/ns/net"},
		"blue":              {"/run/netns/blue"},
		"KUBE-SYSTEM":       {"kube-system/coredns-6f4"},
		"nothing-like-this": nil,
	} {
		m := filter(q)
		if got := rowNames(m); !slices.Equal(got, want) {
			t.Errorf("filter %q: rows %q, want %q", q, got, want)
		}
		if s := screen(m); !strings.Contains(s, "of 7") || (want == nil) != strings.Contains(s, "no namespace matches the filter") {
			t.Errorf("filter %q:\n%s", q, s)
		}
	}
	// The namespace opened from a filtered view is the one selected, and
	// the table's filter is its own.
	m := filter("shop", keyMsg("down"), keyMsg("enter"))
	if m.inNS != 4026532305 || m.filter.Value() != "" || len(m.table.visible) != 1 {
		t.Fatalf("enter on the second shop row: netns %d, table filter %q, %d rows", m.inNS, m.filter.Value(), len(m.table.visible))
	}
	if s := screen(m); strings.Contains(s, "/shop") {
		t.Errorf("the node's filter shows over a namespace's table:\n%s", s)
	}
	m, _ = step(m, keyMsg("esc"))
	if m.mode != modeNode || m.nodeFilter.Value() != "shop" || len(m.nodes.rows) != 3 || m.nodes.current().name != "shop/db-0" {
		t.Errorf("back in the node view: mode %v filter %q, %d rows, on %q", m.mode, m.nodeFilter.Value(), len(m.nodes.rows), m.nodes.current().name)
	}
	m, _ = step(m, keyMsg("esc"))
	if m.nodeFilter.Value() != "" || len(m.nodes.rows) != 7 || m.nodes.current().name != "shop/db-0" {
		t.Errorf("esc: filter %q, %d rows, on %q", m.nodeFilter.Value(), len(m.nodes.rows), m.nodes.current().name)
	}
	// A new sweep keeps the filter.
	m = filter("shop")
	m, _ = step(m, sweepMsg{sweep: nodeFixture()})
	if len(m.nodes.rows) != 3 {
		t.Errorf("after a sweep, %d rows pass the filter shop", len(m.nodes.rows))
	}
}

// TestNodeFetchRunsTheSweep: the model's command calls the sweep, with a
// deadline, off the UI loop; every tick sweeps again; a sweep that
// returns nothing is an error, not a blank screen.
func TestNodeFetchRunsTheSweep(t *testing.T) {
	calls := 0
	sw := nodeFixture()
	m := New(Options{Interval: time.Second, Sweep: func(ctx context.Context) (*node.Sweep, error) {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the sweep runs without a deadline")
		}
		return sw, nil
	}})
	if calls != 0 {
		t.Fatal("New swept")
	}
	msg := m.fetch()()
	if got, ok := msg.(sweepMsg); !ok || got.sweep != sw || calls != 1 {
		t.Fatalf("fetch gave %#v after %d calls", msg, calls)
	}
	m, _ = step(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	m, cmd := step(m, msg)
	if cmd == nil || m.loading {
		t.Fatal("no tick after a sweep")
	}
	if _, cmd = step(m, tickMsg{}); cmd == nil {
		t.Fatal("a tick does not sweep again")
	} else if _, ok := cmd().(sweepMsg); !ok || calls != 2 {
		t.Errorf("the tick's command swept %d times", calls)
	}

	empty := New(Options{Sweep: func(context.Context) (*node.Sweep, error) { return nil, nil }})
	empty, _ = step(empty, tea.WindowSizeMsg{Width: 80, Height: 24})
	empty, _ = step(empty, empty.fetch()())
	if s := screen(empty); !strings.Contains(s, "sweep failed: the sweep returned nothing") {
		t.Errorf("a sweep of nothing:\n%s", s)
	}
}

// TestNodeOpenNamespaceNamedLater: the namespace shown is the same one when
// a later sweep knows more of it: its pod named once the runtime answers
// (the first sweep found only its bound file), or a file bound to it
// (ip netns attach) where the first sweep had only its processes. Neither
// is another namespace given its inode number.
func TestNodeOpenNamespaceNamedLater(t *testing.T) {
	for _, tt := range []struct {
		name       string
		path, then string
		pod        *node.Pod
	}{
		{"its pod named once the runtime answers", "/run/netns/blue", "/run/netns/blue", &node.Pod{Namespace: "shop", Name: "web-0", UID: "uid-web-0", Source: "cri"}},
		{"a file bound to it since", "/proc/777/ns/net", "/run/netns/blue", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first := nodeFixture()
			blue := &first.Namespaces[0] // healthy, no pod: last in the table
			*blue = nsOf(blue.Inode, tt.path, nil, []string{"9", "7"}, nil)
			m := driveNode(t, 160, 45, first, keyMsg("G"), keyMsg("enter"))
			if m.mode != modeTable || m.inNS != blue.Inode {
				t.Fatalf("mode %v, showing netns %d; want netns %d's table", m.mode, m.inNS, blue.Inode)
			}
			next := nodeFixture()
			same := &next.Namespaces[0]
			*same = nsOf(same.Inode, tt.then, tt.pod, []string{"9", "7", "40003"}, nil)
			m, _ = step(m, sweepMsg{sweep: next})
			if s := flat(screen(m)); strings.Contains(s, "is gone from the latest sweep") || len(m.table.rows) != 3 {
				t.Errorf("the same namespace, known better: %d rows, screen:\n%s", len(m.table.rows), screen(m))
			}
		})
	}
}

// TestNodeOpenNamespaceByCookie: where the kernel gives namespaces cookies,
// the cookie decides whether a namespace with the inode number of the one
// shown is that one: the same cookie under another name is, another cookie
// under the same name is not.
func TestNodeOpenNamespaceByCookie(t *testing.T) {
	cookie := func(c uint64) func(*diag.Snapshot) {
		return func(s *diag.Snapshot) { s.Target.NetnsCookie = c }
	}
	for _, tt := range []struct {
		name     string
		then     string
		cookie   uint64
		wantGone bool
	}{
		{"the same cookie, bound under another name", "/run/netns/renamed", 77, false},
		{"another cookie under the same name", "/run/netns/blue", 78, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first := nodeFixture()
			blue := &first.Namespaces[0]
			*blue = nsOf(blue.Inode, "/run/netns/blue", nil, []string{"9", "7"}, cookie(77))
			m := driveNode(t, 160, 45, first, keyMsg("G"), keyMsg("enter"))
			next := nodeFixture()
			same := &next.Namespaces[0]
			*same = nsOf(same.Inode, tt.then, nil, []string{"9", "7", "40003"}, cookie(tt.cookie))
			m, _ = step(m, sweepMsg{sweep: next})
			gone := strings.Contains(flat(screen(m)), "is gone from the latest sweep")
			if gone != tt.wantGone || !gone && len(m.table.rows) != 3 {
				t.Errorf("gone %v (want %v), %d rows:\n%s", gone, tt.wantGone, len(m.table.rows), screen(m))
			}
		})
	}
}
