package ui

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// row is one socket of the table with what the rules said of it and how it
// changed since the last refresh. Cells are formatted only when drawn.
type row struct {
	s *diag.Socket
	// order is the socket's place in the snapshot, which diag sorts by
	// address: the tie-break that keeps sorting stable and cheap.
	order int
	// first is the socket's worst finding, -1 for none; rowCache.chain
	// leads from it to the others.
	first int32
	worst rules.Severity
	isNew bool
	// retransUp and queueUp mark values that grew since the last refresh.
	retransUp, queueUp bool
	haystack           string
}

// sample is what the live view remembers of a socket between refreshes:
// values to mark when they grow, and how the socket behaved while watched.
type sample struct {
	retrans      uint32
	recvQ, sendQ uint32
	// maxIdleMS is the longest quiet seen since sinceMS (Unix ms), when the
	// socket first appeared: traffic of its own (HTTP/2 pings, say) shows
	// as a short one, however long the socket is watched.
	maxIdleMS uint32
	sinceMS   int64
}

func sampleOf(s *diag.Socket, takenAt time.Time) sample {
	var r uint32
	if s.TCPInfo != nil {
		r = s.TCPInfo.TotalRetrans
	}
	return sample{retrans: r, recvQ: s.RecvQ, sendQ: s.SendQ, maxIdleMS: s.IdleMS(), sinceMS: takenAt.UnixMilli()}
}

// rowCache turns snapshots into rows. It remembers the last snapshot's
// samples to mark what changed, and reuses its maps and slices: the live
// view rebuilds 40,000 rows a second and the allocator should not notice.
type rowCache struct {
	prev, next map[uint64]sample
	// head maps a socket to its first finding; chain[i] is the next finding
	// about the same socket as finding i, or -1.
	head  map[uint64]int32
	chain []int32
	rows  []row
	// keys and sorted are scratch space for sortNumeric.
	keys   []uint64
	sorted []row
	// seen is false until the first snapshot: nothing is "new" in it.
	seen bool
}

// watched says for how long, up to now, the socket id has been seen, and
// its longest quiet in that time.
func (c *rowCache) watched(id string, now time.Time) (watched, longestQuiet time.Duration) {
	smp, ok := c.prev[cookie(id)]
	if !ok {
		return 0, 0
	}
	return now.Sub(time.UnixMilli(smp.sinceMS)), time.Duration(smp.maxIdleMS) * time.Millisecond
}

// cookie turns a socket id (its cookie in hex) into a number: numbers hash
// faster than strings.
func cookie(id string) uint64 {
	c, _ := strconv.ParseUint(id, 16, 64)
	return c
}

// build returns the rows of snap. The slice is reused by the next call.
func (c *rowCache) build(snap *diag.Snapshot, rep *rules.Report) []row {
	if c.head == nil {
		c.prev, c.next, c.head = map[uint64]sample{}, map[uint64]sample{}, map[uint64]int32{}
	}
	clear(c.head)
	c.chain = slices.Grow(c.chain[:0], len(rep.Findings))[:len(rep.Findings)]
	// Walk backwards so each chain runs in report order, worst first.
	for i := len(rep.Findings) - 1; i >= 0; i-- {
		c.chain[i] = -1
		if id := rep.Findings[i].Socket; id != nil {
			k := cookie(*id)
			if h, ok := c.head[k]; ok {
				c.chain[i] = h
			}
			c.head[k] = int32(i)
		}
	}
	clear(c.next)
	c.rows = slices.Grow(c.rows[:0], len(snap.Sockets))[:len(snap.Sockets)]
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		k := cookie(s.ID)
		r := row{s: s, order: i, first: -1, worst: -1}
		if h, ok := c.head[k]; ok {
			r.first, r.worst = h, rep.Findings[h].Severity
		}
		cur := sampleOf(s, snap.TakenAt)
		old, had := c.prev[k]
		if had {
			cur.sinceMS, cur.maxIdleMS = old.sinceMS, max(old.maxIdleMS, cur.maxIdleMS)
		}
		c.next[k] = cur
		if c.seen {
			r.isNew = !had
			r.retransUp = had && cur.retrans > old.retrans
			r.queueUp = had && (cur.sendQ > old.sendQ || cur.recvQ > old.recvQ)
		}
		c.rows[i] = r
	}
	c.prev, c.next = c.next, c.prev
	c.seen = true
	return c.rows
}

// sortNumeric sorts rows by a numeric column. Each row becomes one integer,
// the value in the high half (inverted when descending) and its position in
// the low half, so ties keep address order and sorting is a plain integer
// sort. It returns the sorted rows; the slice passed in becomes scratch.
func (c *rowCache) sortNumeric(rows []row, col column, desc bool) []row {
	c.keys = slices.Grow(c.keys[:0], len(rows))[:len(rows)]
	for i := range rows {
		v, has := numericKey(col, &rows[i])
		if desc {
			v = ^v
		}
		// Rows without the value (a "-") sort last either way: the top bit
		// says so, the value follows, the position fills the low 31 bits.
		var missing uint64
		if !has {
			missing, v = 1, 0
		}
		c.keys[i] = missing<<63 | uint64(v)<<31 | uint64(i)
	}
	slices.Sort(c.keys)
	c.sorted = slices.Grow(c.sorted[:0], len(rows))[:len(rows)]
	for i, k := range c.keys {
		c.sorted[i] = rows[k&(1<<31-1)]
	}
	out := c.sorted
	c.sorted, c.rows = rows, out
	return out
}

// findings calls fn with each finding about r, worst first.
func (c *rowCache) findings(r *row, fn func(int)) {
	for i := r.first; i >= 0; i = c.chain[i] {
		fn(int(i))
	}
}

// matches reports whether every word of the query appears in the row's
// address, port, process, state or rule names.
func (r *row) matches(words []string, rep *rules.Report, c *rowCache) bool {
	if r.haystack == "" {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s %s", strings.ToLower(r.s.State.String()), r.s.Local, r.s.Remote, r.s.ID)
		if to := r.s.RedirectedTo; to != nil {
			fmt.Fprintf(&b, " %s", to)
		}
		for _, p := range r.s.Processes {
			fmt.Fprintf(&b, " %s %d", strings.ToLower(p.Comm), p.PID)
		}
		c.findings(r, func(fi int) { b.WriteString(" " + rep.Findings[fi].Rule) })
		r.haystack = b.String()
	}
	for _, w := range words {
		if !strings.Contains(r.haystack, w) {
			return false
		}
	}
	return true
}

// column is a column of the connection table.
type column int

const (
	colState column = iota
	colLocal
	colRemote
	colProcess
	colRecvQ
	colSendQ
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

// columnSpec says how a column is titled, how wide it is and how important
// it is to keep when the terminal is narrow (lower keeps longer).
type columnSpec struct {
	title    string
	width    int
	flex     bool
	right    bool
	priority int
}

var columns = [numColumns]columnSpec{
	colState:       {"STATE", 11, false, false, 0},
	colLocal:       {"LOCAL", 21, true, false, 5},
	colRemote:      {"REMOTE", 21, true, false, 1},
	colProcess:     {"PROCESS", 14, false, false, 3},
	colRecvQ:       {"RECV-Q", 7, false, true, 8},
	colSendQ:       {"SEND-Q", 7, false, true, 4},
	colTimer:       {"TIMER", 16, false, false, 9},
	colRetrans:     {"RETR", 5, false, true, 10},
	colRTO:         {"RTO", 6, false, true, 12},
	colIdle:        {"IDLE", 6, false, true, 11},
	colKeepalive:   {"KEEPALIVE", 10, false, false, 6},
	colUserTimeout: {"USER-TO", 7, false, true, 13},
	colPath:        {"PATH", 9, false, false, 7},
	colFinding:     {"FINDING", 18, false, false, 2},
}

// layout picks the columns that fit in width and how wide each is; the
// column the table is sorted by is kept first, so its arrow shows.
func layout(width int, sorted column) (cols []column, widths [numColumns]int) {
	order := make([]column, numColumns)
	for i := range order {
		order[i] = column(i)
	}
	prio := func(c column) int {
		if c == sorted {
			return -1
		}
		return columns[c].priority
	}
	slices.SortFunc(order, func(a, b column) int { return cmp.Compare(prio(a), prio(b)) })
	used := 0
	var keep [numColumns]bool
	for _, c := range order {
		w := columns[c].width + 1
		if used+w > width && len(cols) > 0 {
			continue
		}
		keep[c] = true
		used += w
		cols = append(cols, c)
	}
	slices.Sort(cols)
	for _, c := range cols {
		widths[c] = columns[c].width
	}
	// Give what is left to the addresses, which IPv6 makes long.
	spare := width - used
	for spare > 0 {
		grew := false
		for _, c := range []column{colRemote, colLocal} {
			if keep[c] && spare > 0 && widths[c] < 47 {
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

// cell formats one cell of r, uncoloured.
func (r *row) cell(c column, rep *rules.Report, rc *rowCache) string {
	s := r.s
	switch c {
	case colState:
		return s.State.String()
	case colLocal:
		return s.Local.String()
	case colRemote:
		if s.State == diag.Listen {
			// A listener has no peer: say what it listens on, for narrow screens without LOCAL.
			return fmt.Sprintf("(listening :%d)", s.Local.Port())
		}
		if to := s.RedirectedTo; to != nil {
			// Why a sidecar's client shows no finding: it never leaves.
			return fmt.Sprintf("%s⇢:%d", s.Remote, to.Port())
		}
		return s.Remote.String()
	case colProcess:
		if len(s.Processes) == 0 {
			return "-"
		}
		p := s.Processes[0]
		return p.Comm + "/" + strconv.Itoa(p.PID)
	case colRecvQ:
		return strconv.FormatUint(uint64(s.RecvQ), 10)
	case colSendQ:
		return strconv.FormatUint(uint64(s.SendQ), 10)
	case colTimer:
		if s.Timer.Kind == diag.TimerOff {
			return "off"
		}
		return fmt.Sprintf("%s %s/%d", s.Timer.Kind, shortDur(time.Duration(s.Timer.ExpiresMS)*time.Millisecond), s.Timer.Retrans)
	case colRetrans:
		if s.TCPInfo == nil {
			return "-"
		}
		return strconv.FormatUint(uint64(s.TCPInfo.TotalRetrans), 10)
	case colRTO:
		if s.TCPInfo == nil || s.TCPInfo.RTO == 0 {
			return "-"
		}
		return shortDur(time.Duration(s.TCPInfo.RTO) * time.Microsecond)
	case colIdle:
		if s.TCPInfo == nil || s.State != diag.Established {
			return "-"
		}
		return shortDur(time.Duration(s.IdleMS()) * time.Millisecond)
	case colKeepalive:
		k := s.Keepalive
		switch {
		case k.Enabled == nil:
			return "unknown"
		case !*k.Enabled:
			return "off"
		}
		return fmt.Sprintf("%d/%d/%d", *k.IdleS, *k.IntervalS, *k.Probes)
	case colPath:
		forgotten := false
		rc.findings(r, func(i int) { forgotten = forgotten || rep.Findings[i].Rule == rules.RuleFlowForgotten })
		return pathCell(s, forgotten)
	case colUserTimeout:
		switch {
		case s.UserTimeoutMS == nil:
			return "?"
		case *s.UserTimeoutMS == 0:
			return "-"
		}
		return shortDur(time.Duration(*s.UserTimeoutMS) * time.Millisecond)
	case colFinding:
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
	}
	return ""
}

// shortDur writes a duration in at most six characters: 850ms, 3.2s, 15m, 2h.
func shortDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 100*time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 100*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// less orders rows by column c; ties fall back to the snapshot's own
// order, so rows do not jump around from one refresh to the next.
func less(c column, a, b *row) int {
	var r int
	switch c {
	case colState:
		r = cmp.Compare(a.s.State.String(), b.s.State.String())
	case colRemote:
		r = a.s.Remote.Compare(b.s.Remote)
	case colProcess:
		r = cmp.Compare(procKey(a.s), procKey(b.s))
	case colSendQ:
		r = cmp.Compare(a.s.SendQ, b.s.SendQ)
	case colRetrans:
		r = cmp.Compare(retrans(a.s), retrans(b.s))
	case colIdle:
		r = cmp.Compare(a.s.IdleMS(), b.s.IdleMS())
	case colFinding:
		r = cmp.Compare(urgencyKey(a), urgencyKey(b))
	default:
		r = a.s.Local.Compare(b.s.Local)
	}
	if r == 0 {
		r = cmp.Compare(a.order, b.order)
	}
	return r
}

// numericColumn says whether column c sorts by a number.
func numericColumn(c column) bool {
	return c == colSendQ || c == colRetrans || c == colIdle || c == colFinding
}

// numericKey returns the value a numeric column sorts by, and false where
// the row has none (its cell shows "-").
func numericKey(c column, r *row) (uint32, bool) {
	switch c {
	case colSendQ:
		return r.s.SendQ, true
	case colRetrans:
		return retrans(r.s), r.s.TCPInfo != nil
	case colIdle:
		return r.s.IdleMS(), r.s.TCPInfo != nil && r.s.State == diag.Established
	case colFinding:
		return urgencyKey(r), true
	}
	return 0, false
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

// pathCell says what the path remembers of the connection: the soonest a
// conntrack entry of it expires ("ct 41s"), "gone" where a middlebox on its
// path has forgotten it, and "-" where nothing on the path keeps a record
// tcpvet can read (a table it could not read is in the notes).
func pathCell(s *diag.Socket, forgotten bool) string {
	if forgotten {
		return "gone"
	}
	what, left := "", uint32(0)
	for _, e := range s.Conntrack {
		if what == "" || e.ExpiresInS < left {
			what, left = "ct", e.ExpiresInS
		}
	}
	if e := s.IPVS; e != nil && (what == "" || e.ExpiresInS < left) {
		what, left = "ipvs", e.ExpiresInS
	}
	if what == "" {
		return "-"
	}
	return what + " " + wholeSecs(left)
}

// wholeSecs writes a time the kernel counts in whole seconds, saying no
// more than it knows: 0s, 41s, 14m, 5d.
func wholeSecs(s uint32) string {
	if s < 100 {
		return fmt.Sprintf("%ds", s)
	}
	return shortDur(time.Duration(s) * time.Second)
}
