package ui

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// table is the connection table: its rows, which of them pass the filter,
// how they are sorted, the cursor and the first row drawn. The root model
// holds one and routes the table's keys to it; it draws itself with view.
type table struct {
	cache *rowCache
	rep   rules.Report
	rows  []row
	// visible indexes rows that pass the filter, in sorted order.
	visible []int
	words   []string // the filter, lower case, split into words

	sortCol  column
	sortDesc bool
	cursor   int // index into visible
	offset   int // first visible row drawn
}

func newTable() table {
	return table{cache: &rowCache{}, sortCol: colFinding, sortDesc: true}
}

// load takes in a new snapshot, keeping the cursor on the same socket.
func (t *table) load(snap *diag.Snapshot, rep rules.Report, h int) {
	keep := t.currentID()
	t.rep = rep
	t.rows = t.cache.build(snap, &t.rep)
	t.sort()
	t.refilter(h)
	if keep != 0 {
		t.selectSocket(keep, h)
	}
}

// setFilter keeps only the rows that match every word of q.
func (t *table) setFilter(q string, h int) {
	t.words = strings.Fields(strings.ToLower(q))
	t.refilter(h)
}

func (t *table) refilter(h int) {
	t.visible = t.visible[:0]
	for i := range t.rows {
		if len(t.words) == 0 || t.rows[i].matches(t.words, &t.rep, t.cache) {
			t.visible = append(t.visible, i)
		}
	}
	t.clamp(h)
}

// sortBy sorts by c, or turns the order around when already sorted by c.
// Numbers sort largest first, text in alphabetical order.
func (t *table) sortBy(c column, h int) {
	if t.sortCol == c {
		t.sortDesc = !t.sortDesc
	} else {
		t.sortCol, t.sortDesc = c, columns[c].num != nil
	}
	keep := t.currentID()
	t.sort()
	t.refilter(h)
	t.selectSocket(keep, h)
}

func (t *table) sort() {
	def := &columns[t.sortCol]
	if def.num != nil {
		t.rows = t.cache.sortNumeric(t.rows, def.num, t.sortDesc)
		return
	}
	by := def.cmp
	if by == nil {
		by = byLocal
	}
	// Ties fall back to the snapshot's own order, so rows do not jump
	// around between refreshes; with every tie broken an unstable sort is
	// deterministic.
	less := func(a, b *row) int {
		if r := by(a, b); r != 0 {
			return r
		}
		return cmp.Compare(a.order, b.order)
	}
	slices.SortFunc(t.rows, func(a, b row) int {
		if t.sortDesc {
			return less(&b, &a)
		}
		return less(&a, &b)
	})
}

func (t *table) selectSocket(id diag.Cookie, h int) {
	for i, ri := range t.visible {
		if t.rows[ri].s.ID == id {
			t.cursor = i
			t.clamp(h)
			return
		}
	}
}

func (t *table) current() *row {
	if t.cursor < 0 || t.cursor >= len(t.visible) {
		return nil
	}
	return &t.rows[t.visible[t.cursor]]
}

func (t *table) currentID() diag.Cookie {
	if r := t.current(); r != nil {
		return r.s.ID
	}
	return 0
}

// clamp keeps the cursor on a row and in the h rows drawn.
func (t *table) clamp(h int) {
	t.cursor = max(0, min(t.cursor, len(t.visible)-1))
	if t.cursor < t.offset {
		t.offset = t.cursor
	}
	if h > 0 && t.cursor >= t.offset+h {
		t.offset = t.cursor - h + 1
	}
	t.offset = max(0, min(t.offset, len(t.visible)-h))
}

// sortKeys are the keys that sort the table, by column.
func (k TableKeys) sortKeys() []struct {
	b   key.Binding
	col column
} {
	return []struct {
		b   key.Binding
		col column
	}{
		{k.SortState, colState}, {k.SortRemote, colRemote}, {k.SortProcess, colProcess}, {k.SortQueue, colQueues},
		{k.SortRetrans, colRetrans}, {k.SortIdle, colIdle}, {k.SortSeverity, colFinding},
	}
}

// update handles the keys that move through or sort the table, h rows
// high, and says whether msg was one of them.
func (t *table) update(msg tea.KeyPressMsg, k TableKeys, h int) bool {
	if cur, ok := k.move(msg, t.cursor, max(1, h-1), len(t.visible)-1); ok {
		t.cursor = cur
		t.clamp(h)
		return true
	}
	for _, s := range k.sortKeys() {
		if key.Matches(msg, s.b) {
			t.sortBy(s.col, h)
			return true
		}
	}
	return false
}

// position is the "row/rows" counter.
func (t *table) position() string { return rowPosition(t.cursor, len(t.visible), len(t.rows)) }

// rowPosition is a list's "row/rows" counter for the cursor at cursor
// among shown rows, with " of all" when a filter hides some: every list of
// the live view counts the same way.
func rowPosition(cursor, shown, all int) string {
	pos := fmt.Sprintf("%d/%d", min(cursor+1, shown), shown)
	if shown != all {
		pos += fmt.Sprintf(" of %d", all)
	}
	return pos
}

// markWidth is the table's first column: "›" on the selected row, which
// shows without colour (TERM=dumb, NO_COLOR), and "+" on a row new since
// the last refresh.
const markWidth = 2

// view draws the column titles and h rows, width wide.
func (t *table) view(width, h int, st *Styles, loaded bool) string {
	cols, widths := layout(width-markWidth, t.sortCol)
	var b strings.Builder
	var titles []string
	for _, c := range cols {
		title := columns[c].title
		if c == t.sortCol {
			if t.sortDesc {
				title += "↓"
			} else {
				title += "↑"
			}
		}
		titles = append(titles, columns[c].fit(title, widths[c]))
	}
	b.WriteString(strings.Repeat(" ", markWidth) + st.Header.Render(strings.Join(titles, " ")))
	for i := t.offset; i < t.offset+h; i++ {
		b.WriteString("\n")
		if i >= len(t.visible) {
			continue
		}
		b.WriteString(t.renderRow(&t.rows[t.visible[i]], cols, widths, i == t.cursor, st))
	}
	if len(t.visible) == 0 && loaded {
		b.WriteString("\n" + st.Dim.Render("  no connection matches the filter"))
	}
	return b.String()
}

// rowMark is the two columns before a row's cells: › on the selected row,
// + on a row new since the last refresh.
func rowMark(selected, isNew bool) []rune {
	mark := []rune("  ")
	if selected {
		mark[0] = '›'
	}
	if isNew {
		mark[1] = '+'
	}
	return mark
}

func (t *table) renderRow(r *row, cols []column, widths [numColumns]int, selected bool, st *Styles) string {
	mark := rowMark(selected, r.isNew)
	cells := make([]string, 0, len(cols))
	for _, c := range cols {
		def := &columns[c]
		text := def.fit(def.text(r, &t.rep, t.cache), widths[c])
		// Colour says severity alone; what changed is in weight. The
		// selected row is drawn in one style whole.
		switch {
		case selected:
		case def.paint != nil:
			text = def.paint(r, text, st)
		case def.style != nil:
			if s, ok := def.style(r, &t.rep, t.cache, st); ok {
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

// column is a column of the connection table.
type column int

const (
	colState column = iota
	colLocal
	colRemote
	colProcess
	colQueues
	colTimer
	colRetrans
	colRTO
	colIdle
	colKeepalive
	colUserTimeout
	colPath
	colFinding
	numColumns
)

// columnDef is everything about one column: its title, how wide it is, how
// important it is to keep when the terminal is narrow (lower keeps
// longer), how its cells read, sort and are coloured.
type columnDef struct {
	title    string
	width    int
	flex     bool // grows into spare width
	right    bool // right-aligned
	priority int
	// text formats the cell, uncoloured.
	text func(r *row, rep *rules.Report, rc *rowCache) string
	// num is the sort key of a column that sorts by a number, largest
	// first: the value, and false where the row has none (its cell shows
	// "-"), which sorts last either way.
	num func(r *row) (uint32, bool)
	// cmp orders the rows of a column that sorts otherwise; with neither
	// num nor cmp the column sorts by local address.
	cmp func(a, b *row) int
	// style colours a cell that is not selected, when ok.
	style func(r *row, rep *rules.Report, rc *rowCache, st *Styles) (s lipgloss.Style, ok bool)
	// paint, where set, colours a cell that is not selected part by part
	// (one of the two queues), in place of style.
	paint func(r *row, cell string, st *Styles) string
	// full is the cell in the plain table, where the live view's is
	// shortened to fit.
	full func(r *row) string
}

// fit pads or truncates s to the column's width and alignment.
func (d *columnDef) fit(s string, w int) string {
	if d.right {
		return fitRight(s, w)
	}
	return fit(s, w)
}

// cell formats one cell of r, uncoloured.
func (r *row) cell(c column, rep *rules.Report, rc *rowCache) string {
	return columns[c].text(r, rep, rc)
}

var columns = [numColumns]columnDef{
	colState: {title: "STATE", width: 11, priority: 0,
		text: func(r *row, _ *rules.Report, _ *rowCache) string { return r.s.State.String() },
		cmp:  func(a, b *row) int { return cmp.Compare(a.s.State.String(), b.s.State.String()) },
		style: func(r *row, _ *rules.Report, _ *rowCache, st *Styles) (lipgloss.Style, bool) {
			return st.OK, r.s.State == diag.Established && r.first < 0
		},
	},
	colLocal: {title: "LOCAL", width: 21, flex: true, priority: 6,
		text: func(r *row, _ *rules.Report, _ *rowCache) string { return r.s.Local.String() },
		cmp:  byLocal,
	},
	colRemote: {title: "REMOTE", width: 21, flex: true, priority: 1,
		text: remoteCell,
		cmp:  func(a, b *row) int { return a.s.Remote.Compare(b.s.Remote) },
	},
	colProcess: {title: "PROCESS", width: 13, priority: 4,
		text: func(r *row, _ *rules.Report, _ *rowCache) string {
			if len(r.s.Processes) == 0 {
				return "-"
			}
			p := r.s.Processes[0]
			return p.Comm + "/" + strconv.Itoa(p.PID)
		},
		cmp: func(a, b *row) int { return cmp.Compare(procKey(a.s), procKey(b.s)) },
	},
	colQueues: {title: "QUEUES", width: 2*queueSide + 1, priority: 5,
		text:  func(r *row, _ *rules.Report, _ *rowCache) string { return queuesCell(r.s) },
		full:  func(r *row) string { return fmt.Sprintf("%d/%d", r.s.RecvQ, r.s.SendQ) },
		num:   queueKey,
		paint: paintQueues,
	},
	colTimer: {title: "TIMER", width: 17, priority: 8,
		text: func(r *row, _ *rules.Report, _ *rowCache) string {
			s := r.s
			if s.Timer.Kind == diag.TimerOff {
				return "off"
			}
			return fmt.Sprintf("%s %s/%d", s.Timer.Kind, shortDur(s.Timer.Expires()), s.Timer.Retrans)
		},
	},
	colRetrans: {title: "RETR", width: 5, right: true, priority: 9,
		text: func(r *row, _ *rules.Report, _ *rowCache) string {
			if r.s.TCPInfo == nil {
				return "-"
			}
			return strconv.FormatUint(uint64(r.s.TCPInfo.TotalRetrans), 10)
		},
		num: func(r *row) (uint32, bool) { return retrans(r.s), r.s.TCPInfo != nil },
		style: func(r *row, _ *rules.Report, _ *rowCache, st *Styles) (lipgloss.Style, bool) {
			return st.Changed, r.retransUp
		},
	},
	colRTO: {title: "RTO", width: 6, right: true, priority: 11,
		text: func(r *row, _ *rules.Report, _ *rowCache) string {
			if r.s.TCPInfo == nil || r.s.TCPInfo.RTO() == 0 {
				return "-"
			}
			return shortDur(r.s.TCPInfo.RTO())
		},
	},
	colIdle: {title: "IDLE", width: 6, right: true, priority: 10,
		text: func(r *row, _ *rules.Report, _ *rowCache) string {
			if _, ok := idleKey(r); ok {
				return shortDur(r.s.Idle())
			}
			return "-"
		},
		num: idleKey,
	},
	colKeepalive: {title: "KEEPALIVE", width: 9, priority: 3,
		text: func(r *row, _ *rules.Report, _ *rowCache) string {
			k := r.s.Keepalive
			switch {
			case k.Enabled == nil && r.s.Inode == 0:
				// The kernel's alone (TIME_WAIT, an orphan, a request):
				// no options to know, none missing.
				return "-"
			case k.Enabled == nil:
				return "unknown"
			case !*k.Enabled:
				return "off"
			case k.IdleS == nil:
				// On, as the kernel's timer shows; its timings unread.
				return "on"
			}
			return fmt.Sprintf("%d/%d/%d", *k.IdleS, *k.IntervalS, *k.Probes)
		},
		style: func(r *row, rep *rules.Report, rc *rowCache, st *Styles) (lipgloss.Style, bool) {
			// Keepalive that is off is coloured by the finding about it.
			if e := r.s.Keepalive.Enabled; e == nil || *e {
				return lipgloss.Style{}, false
			}
			sev, ok := keepaliveFinding(r, rep, rc)
			return st.Severity(sev), ok
		},
	},
	colUserTimeout: {title: "USER-TO", width: 7, right: true, priority: 12,
		text: func(r *row, _ *rules.Report, _ *rowCache) string {
			u, known := r.s.UserTimeout()
			switch {
			case !known && r.s.Inode == 0:
				return "-"
			case !known:
				return "?"
			case u == 0:
				return "-"
			}
			return shortDur(u)
		},
	},
	colPath: {title: "PATH", width: pathWidth, priority: 7,
		text: func(r *row, rep *rules.Report, rc *rowCache) string {
			forgotten := false
			rc.findings(r, func(i int) { forgotten = forgotten || rep.Findings[i].Rule == rules.RuleFlowForgotten })
			return pathCell(r.s, forgotten)
		},
	},
	colFinding: {title: "FINDING", width: 18, priority: 2,
		text: func(r *row, rep *rules.Report, rc *rowCache) string {
			if r.first < 0 {
				return ""
			}
			n := 0
			rc.findings(r, func(int) { n++ })
			name := rep.Findings[r.first].Rule
			if n > 1 {
				name += fmt.Sprintf(" +%d", n-1)
			}
			return name
		},
		num: func(r *row) (uint32, bool) { return urgencyKey(r), true },
		style: func(r *row, _ *rules.Report, _ *rowCache, st *Styles) (lipgloss.Style, bool) {
			return st.Severity(r.worst), r.first >= 0
		},
	},
}

func byLocal(a, b *row) int { return a.s.Local.Compare(b.s.Local) }

func remoteCell(r *row, _ *rules.Report, _ *rowCache) string {
	s := r.s
	if s.State == diag.Listen {
		// A listener has no peer: say what it listens on, for narrow screens without LOCAL.
		return fmt.Sprintf("(listening :%d)", s.Local.Port())
	}
	if to := s.RedirectedTo; to != nil {
		// Why a sidecar's client shows no finding: it never leaves.
		return fmt.Sprintf("%s⇢:%d", s.Remote, to.Port())
	}
	return s.Remote.String()
}

// queueSide is how wide each queue of the QUEUES cell is.
const queueSide = 4

// queuesCell is the receive and send queues as "recv/send", each side in
// queueSide characters around a slash that stays in place from row to row,
// so a column of receive queues reads down the left of it. For a listener
// they are, as in ss, its accept queue and its backlog.
func queuesCell(s *diag.Socket) string {
	return fitRight(shortBytes(s.RecvQ), queueSide) + "/" + fit(shortBytes(s.SendQ), queueSide)
}

// shortBytes writes a byte count in at most four characters: exact up to
// 9999 (an MSS, a backlog of 4096 read as ss shows them), then rounded to
// K, M or G of 1024.
func shortBytes(v uint32) string {
	if v < 10000 {
		return strconv.FormatUint(uint64(v), 10)
	}
	n := float64(v)
	for _, unit := range []string{"K", "M"} {
		n /= 1024
		if r := math.Round(n); r < 1000 {
			return strconv.Itoa(int(r)) + unit
		}
	}
	return strconv.Itoa(int(math.Round(n/1024))) + "G"
}

// queueKey sorts by the larger queue, whichever way it is stuck: data the
// application does not read, or data the peer or the path does not take.
// A listener's Send-Q is its backlog, a limit rather than a queue: it
// sorts by its accept queue alone.
func queueKey(r *row) (uint32, bool) {
	if r.s.State == diag.Listen {
		return r.s.RecvQ, true
	}
	return max(r.s.RecvQ, r.s.SendQ), true
}

// paintQueues marks, in a QUEUES cell, the queue that grew since the last
// refresh.
func paintQueues(r *row, cell string, st *Styles) string {
	if !r.recvUp && !r.sendUp {
		return cell
	}
	recv, send, ok := strings.Cut(cell, "/")
	if !ok {
		return st.Changed.Render(cell)
	}
	if r.recvUp {
		recv = st.Changed.Render(recv)
	}
	if r.sendUp {
		send = st.Changed.Render(send)
	}
	return recv + "/" + send
}

// idleKey is how long an established socket has been quiet, in ms.
func idleKey(r *row) (uint32, bool) {
	return uint32(r.s.Idle().Milliseconds()), r.s.TCPInfo != nil && r.s.State == diag.Established
}

// keepaliveFinding is the worst severity of the row's findings about its
// keepalive, and whether there is one.
func keepaliveFinding(r *row, rep *rules.Report, rc *rowCache) (rules.Severity, bool) {
	sev, ok := rules.Severity(-1), false
	rc.findings(r, func(i int) {
		f := &rep.Findings[i]
		if (f.Rule == rules.RuleNoKeepalive || f.Rule == rules.RuleKeepaliveTooSlow) && (!ok || f.Severity > sev) {
			sev, ok = f.Severity, true
		}
	})
	return sev, ok
}

// layout picks the columns that fit in width and how wide each is; the
// column the table is sorted by is kept first, so its arrow shows.
func layout(width int, sorted column) (cols []column, widths [numColumns]int) {
	shapes := make([]colShape, numColumns)
	for i := range columns {
		shapes[i] = colShape{width: columns[i].width, flex: columns[i].flex, priority: columns[i].priority}
	}
	shapes[sorted].priority = -1
	idx, w := fitColumns(shapes, width)
	for _, c := range idx {
		cols = append(cols, column(c))
		widths[c] = w[c]
	}
	return cols, widths
}

// colShape is what fitColumns needs of a column: its width, whether it
// grows into spare width, and how important it is to keep (lower keeps
// longer). The connection table and the node table share it.
type colShape struct {
	width    int
	flex     bool
	priority int
}

// fitColumns picks the columns that fit in width, in their own order, and
// how wide each is (widths is indexed like shapes).
func fitColumns(shapes []colShape, width int) (cols []int, widths []int) {
	order := make([]int, len(shapes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(shapes[a].priority, shapes[b].priority) })
	used := 0
	for _, c := range order {
		w := shapes[c].width + 1
		if used+w > width && len(cols) > 0 {
			continue
		}
		used += w
		cols = append(cols, c)
	}
	slices.Sort(cols)
	widths = make([]int, len(shapes))
	for _, c := range cols {
		widths[c] = shapes[c].width
	}
	// Give what is left to the flexible columns (the addresses, which IPv6
	// makes long; a pod's name), the more important first.
	flex := slices.DeleteFunc(slices.Clone(order), func(c int) bool { return !shapes[c].flex || !slices.Contains(cols, c) })
	spare := width - used
	for spare > 0 {
		grew := false
		for _, c := range flex {
			if spare > 0 && widths[c] < 47 {
				widths[c]++
				spare--
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	return cols, widths
}

// urgencyKey is larger the more urgent the row's worst finding: the report
// lists findings most urgent first (what fails now, at its next write,
// soonest), so its index, turned around, is the key; 0 for no finding.
func urgencyKey(r *row) uint32 {
	if r.first < 0 {
		return 0
	}
	return math.MaxUint32 - uint32(r.first)
}

func procKey(s *diag.Socket) string {
	if len(s.Processes) == 0 {
		return ""
	}
	return s.Processes[0].Comm
}

func retrans(s *diag.Socket) uint32 {
	if s.TCPInfo == nil {
		return 0
	}
	return s.TCPInfo.TotalRetrans
}
