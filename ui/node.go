package ui

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
)

// nodeRow is one namespace of a sweep as the node table draws it.
type nodeRow struct {
	ns *node.Namespace
	// worst is the namespace's most urgent finding, -1 for none.
	worst  int
	counts [rules.Critical + 1]int // findings by severity
	name   string
	procs  string // the commands holding its sockets, most sockets first
	// haystack is what the filter looks in, built when first filtered.
	haystack string
	// order is the namespace's place in the sweep: the tie-break.
	order int
	isNew bool
}

// worstFinding is the row's most urgent finding, nil for none.
func (r *nodeRow) worstFinding() *rules.Finding {
	if r.worst < 0 {
		return nil
	}
	return &r.ns.Report.Findings[r.worst]
}

// readable says whether the sweep could read the namespace.
func (r *nodeRow) readable() bool { return r.ns.Snapshot != nil }

// nodeUrgency orders namespaces most urgent first, as the sweep does
// (node.CompareUrgency), whatever order a sweep arrives in.
func nodeUrgency(a, b *nodeRow) int {
	if c := node.CompareUrgency(a.ns, b.ns); c != 0 {
		return c
	}
	return cmp.Compare(a.order, b.order)
}

func newNodeRow(ns *node.Namespace, order int) nodeRow {
	r := nodeRow{ns: ns, worst: -1, name: namespaceName(ns), order: order}
	if ns.Snapshot != nil {
		r.procs = strings.Join(processNames(ns.Snapshot, 3), ", ")
	}
	for i, f := range ns.Report.Findings {
		if f.Severity >= rules.Info && f.Severity <= rules.Critical {
			r.counts[f.Severity]++
		}
		if r.worst < 0 || rules.Urgency(f, ns.Report.Findings[r.worst]) < 0 {
			r.worst = i
		}
	}
	return r
}

// namespaceName names a namespace by its pod: "namespace/name" when the
// runtime named it, its UID when only a cgroup did, else how the sweep
// opened it.
func namespaceName(ns *node.Namespace) string {
	if p := ns.Pod; p != nil {
		switch {
		case p.Name != "" && p.Namespace != "":
			return p.Namespace + "/" + p.Name
		case p.Name != "":
			return p.Name
		case p.UID != "":
			return "pod " + p.UID
		}
	}
	if ns.Path != "" {
		return ns.Path
	}
	return "netns " + strconv.FormatUint(ns.Inode, 10)
}

// failsText says when a finding's connection fails: now, at its next
// write, in a time the rules predict, or "-".
func failsText(f *rules.Finding) string {
	switch {
	case f.Failing == rules.FailingNow:
		return "now"
	case f.Failing == rules.FailingNextWrite:
		return "next write"
	case f.FailsInS != nil:
		return "in " + shortDur(time.Duration(max(0, *f.FailsInS)*float64(time.Second)))
	}
	return "-"
}

// nodeTable is the node view's table: one row per namespace of the last
// sweep, most urgent first, those that pass the filter, and a cursor that
// stays on its namespace from sweep to sweep.
type nodeTable struct {
	all []nodeRow
	// rows are the rows of all that pass the filter, in the same order.
	rows   []nodeRow
	words  []string // the filter, lower case, split into words
	cursor int
	offset int
	// seen holds the inodes of the last sweep, to mark namespaces new since.
	seen map[uint64]bool
}

// load takes in a new sweep, keeping the cursor on the same namespace.
func (t *nodeTable) load(sw *node.Sweep, h int) {
	first := t.seen == nil
	seen := make(map[uint64]bool, len(sw.Namespaces))
	t.all = t.all[:0]
	for i := range sw.Namespaces {
		r := newNodeRow(&sw.Namespaces[i], i)
		r.isNew = !first && !t.seen[r.ns.Inode]
		seen[r.ns.Inode] = true
		t.all = append(t.all, r)
	}
	t.seen = seen
	slices.SortFunc(t.all, func(a, b nodeRow) int { return nodeUrgency(&a, &b) })
	t.refilter(h)
}

// setFilter keeps only the namespaces that match every word of q.
func (t *nodeTable) setFilter(q string, h int) {
	t.words = strings.Fields(strings.ToLower(q))
	t.refilter(h)
}

// refilter rebuilds the rows shown, keeping the cursor on its namespace
// while it is among them.
func (t *nodeTable) refilter(h int) {
	keep, had := uint64(0), false
	if r := t.current(); r != nil {
		keep, had = r.ns.Inode, true
	}
	t.rows = t.rows[:0]
	for i := range t.all {
		if t.all[i].matches(t.words) {
			t.rows = append(t.rows, t.all[i])
		}
	}
	if had {
		for i := range t.rows {
			if t.rows[i].ns.Inode == keep {
				t.cursor = i
			}
		}
	}
	t.clamp(h)
}

// matches reports whether every word appears in the namespace's pod,
// path, inode, rules found or processes.
func (r *nodeRow) matches(words []string) bool {
	if len(words) == 0 {
		return true
	}
	if r.haystack == "" {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %d %s", strings.ToLower(r.name), r.ns.Path, r.ns.Inode, strings.ToLower(r.procs))
		if p := r.ns.Pod; p != nil {
			fmt.Fprintf(&b, " %s %s", strings.ToLower(p.UID), strings.ToLower(p.Container))
		}
		for _, f := range r.ns.Report.Findings {
			b.WriteString(" " + f.Rule)
		}
		if !r.readable() {
			b.WriteString(" unreadable")
		}
		r.haystack = b.String()
	}
	for _, w := range words {
		if !strings.Contains(r.haystack, w) {
			return false
		}
	}
	return true
}

func (t *nodeTable) current() *nodeRow {
	if t.cursor < 0 || t.cursor >= len(t.rows) {
		return nil
	}
	return &t.rows[t.cursor]
}

// clamp keeps the cursor on a row and in the h rows drawn.
func (t *nodeTable) clamp(h int) {
	t.cursor = max(0, min(t.cursor, len(t.rows)-1))
	if t.cursor < t.offset {
		t.offset = t.cursor
	}
	if h > 0 && t.cursor >= t.offset+h {
		t.offset = t.cursor - h + 1
	}
	t.offset = max(0, min(t.offset, len(t.rows)-h))
}

// update handles the keys that move through the table, h rows high, and
// says whether msg was one of them.
func (t *nodeTable) update(msg tea.KeyPressMsg, k NodeKeys, h int) bool {
	cur, ok := k.move(msg, t.cursor, max(1, h-1), len(t.rows)-1)
	if ok {
		t.cursor = cur
		t.clamp(h)
	}
	return ok
}

// position is the "row/rows" counter.
func (t *nodeTable) position() string { return rowPosition(t.cursor, len(t.rows), len(t.all)) }

// nodeColumn is a column of the node table.
type nodeColumn int

const (
	ncName nodeColumn = iota
	ncNetns
	ncSockets
	ncFinding
	ncFails
	ncCritical
	ncWarning
	ncInfo
	ncProcesses
	ncNotes
	numNodeColumns
)

// nodeColumnDef is everything about one column of the node table, as
// columnDef is for the connection table: title, width, importance when
// the terminal is narrow (lower keeps longer), cell text and colour.
type nodeColumnDef struct {
	title    string
	width    int
	flex     bool
	right    bool
	priority int
	text     func(r *nodeRow) string
	// style colours a cell that is not selected, when ok.
	style func(r *nodeRow, st *Styles) (s lipgloss.Style, ok bool)
}

func (d *nodeColumnDef) fit(s string, w int) string {
	if d.right {
		return fitRight(s, w)
	}
	return fit(s, w)
}

// countColumn is the column of the findings of one severity.
func countColumn(title string, sev rules.Severity, priority int) nodeColumnDef {
	return nodeColumnDef{title: title, width: 4, right: true, priority: priority,
		text: func(r *nodeRow) string {
			if !r.readable() {
				return "-"
			}
			return strconv.Itoa(r.counts[sev])
		},
		style: func(r *nodeRow, st *Styles) (lipgloss.Style, bool) {
			if r.counts[sev] == 0 {
				return st.Dim, true
			}
			return st.Severity(sev), true
		},
	}
}

var nodeColumns = [numNodeColumns]nodeColumnDef{
	ncName: {title: "POD / NETNS", width: 24, flex: true, priority: 0,
		text: func(r *nodeRow) string { return r.name },
	},
	ncNetns: {title: "INODE", width: 10, right: true, priority: 6,
		text: func(r *nodeRow) string { return strconv.FormatUint(r.ns.Inode, 10) },
	},
	ncSockets: {title: "SOCKETS", width: 7, right: true, priority: 3,
		text: func(r *nodeRow) string {
			if !r.readable() {
				return "-"
			}
			return strconv.Itoa(len(r.ns.Snapshot.Sockets))
		},
	},
	ncFinding: {title: "WORST FINDING", width: 18, flex: true, priority: 1,
		text: func(r *nodeRow) string {
			if !r.readable() {
				return "unreadable: " + strings.Join(diag.NoteTexts(r.ns.Notes), "; ")
			}
			f := r.worstFinding()
			if f == nil {
				return ""
			}
			name := f.Rule
			if n := len(r.ns.Report.Findings); n > 1 {
				name += fmt.Sprintf(" +%d", n-1)
			}
			return name
		},
		style: func(r *nodeRow, st *Styles) (lipgloss.Style, bool) {
			if !r.readable() {
				return st.FlashErr, true
			}
			if f := r.worstFinding(); f != nil {
				return st.Severity(f.Severity), true
			}
			return lipgloss.Style{}, false
		},
	},
	ncFails: {title: "FAILS", width: 10, priority: 2,
		text: func(r *nodeRow) string {
			if f := r.worstFinding(); f != nil {
				return failsText(f)
			}
			return ""
		},
		style: func(r *nodeRow, st *Styles) (lipgloss.Style, bool) {
			if f := r.worstFinding(); f != nil {
				return st.Severity(f.Severity), true
			}
			return lipgloss.Style{}, false
		},
	},
	ncCritical: countColumn("CRIT", rules.Critical, 4),
	ncWarning:  countColumn("WARN", rules.Warning, 5),
	ncInfo:     countColumn("INFO", rules.Info, 5),
	ncProcesses: {title: "PROCESSES", width: 16, flex: true, priority: 7,
		text: func(r *nodeRow) string { return r.procs },
	},
	ncNotes: {title: "NOTES", width: 5, right: true, priority: 8,
		text: func(r *nodeRow) string {
			n := len(r.ns.Notes)
			if r.readable() {
				n += len(r.ns.Snapshot.Notes)
			}
			if n == 0 {
				return ""
			}
			return strconv.Itoa(n)
		},
		style: func(r *nodeRow, st *Styles) (lipgloss.Style, bool) { return st.Warning, true },
	},
}

// nodeLayout picks the node table's columns that fit in width.
func nodeLayout(width int) (cols []nodeColumn, widths []int) {
	shapes := make([]colShape, numNodeColumns)
	for i := range nodeColumns {
		shapes[i] = colShape{width: nodeColumns[i].width, flex: nodeColumns[i].flex, priority: nodeColumns[i].priority}
	}
	idx, widths := fitColumns(shapes, width)
	for _, c := range idx {
		cols = append(cols, nodeColumn(c))
	}
	return cols, widths
}

// view draws the column titles and h rows, width wide, a line each.
func (t *nodeTable) view(width, h int, st *Styles, loaded bool) []string {
	cols, widths := nodeLayout(width - markWidth)
	titles := make([]string, 0, len(cols))
	for _, c := range cols {
		titles = append(titles, nodeColumns[c].fit(nodeColumns[c].title, widths[c]))
	}
	lines := make([]string, 1, h+1)
	lines[0] = strings.Repeat(" ", markWidth) + st.Header.Render(strings.Join(titles, " "))
	for i := t.offset; i < t.offset+h; i++ {
		if i < len(t.rows) {
			lines = append(lines, t.renderRow(&t.rows[i], cols, widths, i == t.cursor, st))
		} else {
			lines = append(lines, "")
		}
	}
	if len(t.rows) == 0 && loaded && h > 0 {
		msg := "  the sweep found no network namespace"
		if len(t.all) > 0 {
			msg = "  no namespace matches the filter"
		}
		lines[1] = st.Dim.Render(msg)
	}
	return lines
}

func (t *nodeTable) renderRow(r *nodeRow, cols []nodeColumn, widths []int, selected bool, st *Styles) string {
	mark := rowMark(selected, r.isNew)
	cells := make([]string, 0, len(cols))
	for _, c := range cols {
		def := &nodeColumns[c]
		text := def.fit(def.text(r), widths[c])
		if !selected && def.style != nil {
			if s, ok := def.style(r, st); ok {
				text = s.Render(text)
			}
		}
		cells = append(cells, text)
	}
	line := strings.Join(cells, " ")
	if selected {
		line = st.Selected.Render(line)
	}
	return string(mark) + line
}

// nodeHeader is the node view's block of facts: what the sweep covered,
// when and how long it took, what it found across the node, and what it
// could not do.
func (m Model) nodeHeader() string {
	st := m.styles
	lines := make([]string, 0, headerLines)
	sw := m.sweep
	if sw == nil {
		msg := "sweeping every network namespace…"
		if m.lastErr != nil {
			msg = st.FlashErr.Render(m.lastErr.Error())
		}
		lines = append(lines, st.Title.Render("tcpvet")+"  "+msg)
		for len(lines) < headerLines {
			lines = append(lines, "")
		}
		return strings.Join(lines, "\n")
	}
	pods, sockets := 0, 0
	var findings, worst [rules.Critical + 1]int
	healthy := 0
	for i := range m.nodes.all {
		r := &m.nodes.all[i]
		if r.ns.Pod != nil {
			pods++
		}
		if r.readable() {
			sockets += len(r.ns.Snapshot.Sockets)
		}
		for s, n := range r.counts {
			findings[s] += n
		}
		switch f := r.worstFinding(); {
		case f != nil:
			if f.Severity >= rules.Info && f.Severity <= rules.Critical {
				worst[f.Severity]++
			}
		case r.readable():
			healthy++
		}
	}
	state := fmt.Sprintf("every %s", m.opts.Interval)
	switch {
	case m.paused:
		state = st.Value.Render("paused (space resumes)")
	case m.loading:
		state += " ⟳"
	}
	unread := st.Dim.Render("every namespace read")
	if sw.Errors > 0 {
		unread = st.FlashErr.Render(fmt.Sprintf("%d unreadable", sw.Errors))
	}
	lines = append(lines, strings.Join([]string{st.Title.Render("tcpvet"),
		st.Value.Render("node: " + plural(len(sw.Namespaces), "namespace") + ", " + plural(pods, "pod")), unread,
		st.Label.Render(plural(sockets, "socket"))}, "  "))
	counts := strings.Join([]string{
		st.Critical.Render(fmt.Sprintf("%d critical", findings[rules.Critical])),
		st.Warning.Render(fmt.Sprintf("%d warning", findings[rules.Warning])),
		st.Info.Render(fmt.Sprintf("%d info", findings[rules.Info])),
	}, "  ")
	swept := st.Dim.Render("swept " + sw.TakenAt.UTC().Format("15:04:05") + " UTC")
	took := st.Dim.Render(" in " + shortDur(sw.Duration))
	// Longest first; the time of the sweep is the last thing to go.
	for i, l := range []string{
		st.Label.Render("findings:") + " " + counts + "  " + swept + took + "  " + state,
		counts + "  " + swept + took + "  " + state,
		counts + "  " + swept + "  " + state,
		counts + "  " + swept,
	} {
		if ansi.StringWidth(l) <= m.width || i == 3 {
			lines = append(lines, l)
			break
		}
	}
	byWorst := strings.Join([]string{
		st.Critical.Render(fmt.Sprintf("%d critical", worst[rules.Critical])),
		st.Warning.Render(fmt.Sprintf("%d warning", worst[rules.Warning])),
		st.Info.Render(fmt.Sprintf("%d info", worst[rules.Info])),
		st.OK.Render(fmt.Sprintf("%d healthy", healthy)),
	}, "  ")
	lines = append(lines, st.Label.Render("namespaces by worst finding:")+" "+byWorst)
	notes := st.Dim.Render("notes: none")
	if n := len(sw.Notes); n > 0 {
		notes = st.Warning.Render(fmt.Sprintf("notes (%d): %s", n, strings.Join(diag.NoteTexts(sw.Notes), " · ")))
	}
	lines = append(lines, notes)
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, m.width, "…")
	}
	return strings.Join(lines, "\n")
}

// nodeView is the node table and, in the lines its rows leave empty, the
// sweep's notes in full: what it could not do bounds what it found.
func (m Model) nodeView() string {
	st := m.styles
	h := m.tableHeight()
	lines := m.nodes.view(m.width, h, &st, m.sweep != nil)
	if m.sweep == nil || len(m.sweep.Notes) == 0 {
		return strings.Join(lines, "\n")
	}
	start := 1 + max(1, len(m.nodes.rows)-m.nodes.offset) + 1
	if len(lines)-start < 2 {
		return strings.Join(lines, "\n")
	}
	notes := []string{st.Section.Render(fmt.Sprintf("notes (%d): what the sweep could not do", len(m.sweep.Notes)))}
	for _, n := range m.sweep.Notes {
		for _, l := range strings.Split(ansi.Wrap(n.Text, max(20, m.width-4), " "), "\n") {
			notes = append(notes, "  "+st.Warning.Render(l))
		}
	}
	if room := len(lines) - start; len(notes) > room {
		notes = notes[:room]
		notes[room-1] = ansi.Truncate(notes[room-1], max(1, m.width-1), "") + "…"
	}
	copy(lines[start:], notes)
	return strings.Join(lines, "\n")
}

func (m Model) nodeKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.keys.Node
	if cmd, ok := m.liveKey(msg, k.Live); ok {
		return m, cmd
	}
	if m.nodes.update(msg, k, m.tableHeight()) {
		return m, nil
	}
	switch {
	case key.Matches(msg, k.Quit):
		return m, tea.Quit
	case key.Matches(msg, k.Open):
		m.openNamespace()
	case key.Matches(msg, k.Filter):
		m.open(modeFilter)
		return m, m.nodeFilter.Focus()
	case key.Matches(msg, k.ClearFilter) && m.nodeFilter.Value() != "":
		m.nodeFilter.SetValue("")
		m.refilter()
	}
	return m, nil
}

// openNamespace opens the connection view of the selected namespace; one
// the sweep could not read says why instead.
func (m *Model) openNamespace() {
	r := m.nodes.current()
	if r == nil {
		return
	}
	if !r.readable() {
		m.flash, m.flashErr = unreadable(r), true
		return
	}
	m.inNS, m.podName, m.nsNotes = r.ns.Inode, "", r.ns.Notes
	m.inWas, m.inCookie = node.Namespace{Path: r.ns.Path, Pod: r.ns.Pod}, cookieOf(r.ns)
	if r.ns.Pod != nil {
		m.podName = r.name
	}
	// Another namespace's sockets: nothing is new or changed against the
	// last one's, and its filter and findings list do not apply. The sort
	// is the user's and stays.
	t := newTable()
	t.sortCol, t.sortDesc = m.table.sortCol, m.table.sortDesc
	m.table = t
	m.filter.SetValue("")
	m.findItems, m.findCur = nil, 0
	m.open(modeTable)
	m.apply(r.ns.Snapshot, r.ns.Report)
}

// cookieOf is the cookie of the namespace ns, 0 when unknown.
func cookieOf(ns *node.Namespace) uint64 {
	if ns.Snapshot == nil {
		return 0
	}
	return ns.Snapshot.Target.NetnsCookie
}

// another says whether ns, with the inode number of the namespace shown
// (was, as the sweep that opened it knew it, with its cookie), is another
// namespace: the kernel gives a deleted namespace's number to the next one
// made. Cookies, never reused, tell for sure where both are known (Linux
// 5.14+). Else what both sweeps know is compared: pod UIDs, else bound
// files. A pod named
// only later, or a file bound to a namespace since, is the same one; a
// pod's namespace that names no pod any more, with no file to tell, is
// taken for another (its pod's processes and the runtime both let go of
// it); one only processes ever held has nothing steadier than its number.
func another(ns *node.Namespace, was *node.Namespace, wasCookie uint64) bool {
	if c := cookieOf(ns); c != 0 && wasCookie != 0 {
		return c != wasCookie
	}
	uid := func(n *node.Namespace) string {
		if n.Pod == nil {
			return ""
		}
		return n.Pod.UID
	}
	bound := func(n *node.Namespace) bool { return !strings.HasPrefix(n.Path, "/proc/") }
	switch {
	case uid(ns) != "" && uid(was) != "":
		return uid(ns) != uid(was)
	case bound(ns) && bound(was):
		return ns.Path != was.Path
	case uid(was) != "":
		return true
	}
	return false
}

// unreadable says why the sweep could not read a namespace.
func unreadable(r *nodeRow) string {
	why := "the sweep gave no reason"
	if len(r.ns.Notes) > 0 {
		why = strings.Join(diag.NoteTexts(r.ns.Notes), "; ")
	}
	return fmt.Sprintf("%s (netns %d) could not be read: %s", r.name, r.ns.Inode, why)
}

// applySweep takes in a new sweep: the node table, and the connection view
// of the namespace it shows, if any.
func (m *Model) applySweep(sw *node.Sweep) {
	m.sweep = sw
	m.nodes.load(sw, m.tableHeight())
	if m.inNS == 0 {
		return
	}
	for i := range m.nodes.all {
		r := &m.nodes.all[i]
		if r.ns.Inode != m.inNS {
			continue
		}
		if another(r.ns, &m.inWas, m.inCookie) {
			// The kernel gives a deleted namespace's inode number to the
			// next one made: another namespace, not this one.
			break
		}
		// Known better (its pod named, a file bound): compared so from now.
		m.inWas = node.Namespace{Path: r.ns.Path, Pod: r.ns.Pod}
		if c := cookieOf(r.ns); c != 0 {
			m.inCookie = c
		}
		if !r.readable() {
			m.flash, m.flashErr = unreadable(r)+"; showing what was read before", true
			return
		}
		m.nsNotes = r.ns.Notes
		m.apply(r.ns.Snapshot, r.ns.Report)
		return
	}
	m.flash, m.flashErr = fmt.Sprintf("netns %d is gone from the latest sweep; showing what was read before (esc: the node)", m.inNS), true
}

// exportSweep writes the whole sweep's document, as --all-netns --json
// prints it.
func (m Model) exportSweep() tea.Cmd {
	sw := m.sweep
	if sw == nil {
		return nil
	}
	name := fmt.Sprintf("tcpvet-node-%s.json", sw.TakenAt.Format("20060102T150405"))
	return m.writeExport(name, func(w io.Writer) error { return node.WriteIndentedJSON(w, sw) })
}

// plural says how many of a thing: "1 pod", "7 pods".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}
