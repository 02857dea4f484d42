package ui

import (
	"fmt"
	"slices"
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
	// retransUp, recvUp and sendUp mark values that grew since the last
	// refresh.
	retransUp, recvUp, sendUp bool
	haystack                  string
}

// sample is what the live view remembers of a socket between refreshes:
// values to mark when they grow. (How it behaved while watched is the
// snapshot's own: Socket.Observed.)
type sample struct {
	retrans      uint32
	recvQ, sendQ uint32
}

func sampleOf(s *diag.Socket) sample {
	var r uint32
	if s.TCPInfo != nil {
		r = s.TCPInfo.TotalRetrans
	}
	return sample{retrans: r, recvQ: s.RecvQ, sendQ: s.SendQ}
}

// rowCache turns snapshots into rows. It remembers the last snapshot's
// samples to mark what changed, and reuses its maps and slices: the live
// view rebuilds 40,000 rows a second and the allocator should not notice.
type rowCache struct {
	prev, next map[diag.Cookie]sample
	// head maps a socket to its first finding; chain[i] is the next finding
	// about the same socket as finding i, or -1.
	head  map[diag.Cookie]int32
	chain []int32
	rows  []row
	// keys and sorted are scratch space for sortNumeric.
	keys   []uint64
	sorted []row
	// seen is false until the first snapshot: nothing is "new" in it.
	seen bool
}

// build returns the rows of snap. The slice is reused by the next call.
func (c *rowCache) build(snap *diag.Snapshot, rep *rules.Report) []row {
	if c.head == nil {
		c.prev, c.next, c.head = map[diag.Cookie]sample{}, map[diag.Cookie]sample{}, map[diag.Cookie]int32{}
	}
	clear(c.head)
	c.chain = slices.Grow(c.chain[:0], len(rep.Findings))[:len(rep.Findings)]
	// Walk backwards so each chain runs in report order, worst first.
	for i := len(rep.Findings) - 1; i >= 0; i-- {
		c.chain[i] = -1
		if id := rep.Findings[i].Socket; id != nil {
			k := *id
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
		k := s.ID
		r := row{s: s, order: i, first: -1, worst: -1}
		if h, ok := c.head[k]; ok {
			r.first, r.worst = h, rep.Findings[h].Severity
		}
		cur := sampleOf(s)
		old, had := c.prev[k]
		c.next[k] = cur
		if c.seen {
			r.isNew = !had
			r.retransUp = had && cur.retrans > old.retrans
			r.recvUp = had && cur.recvQ > old.recvQ
			r.sendUp = had && cur.sendQ > old.sendQ
		}
		c.rows[i] = r
	}
	c.prev, c.next = c.next, c.prev
	c.seen = true
	return c.rows
}

// sortNumeric sorts rows by a numeric key (a column's num). Each row becomes one integer,
// the value in the high half (inverted when descending) and its position in
// the low half, so ties keep address order and sorting is a plain integer
// sort. It returns the sorted rows; the slice passed in becomes scratch.
func (c *rowCache) sortNumeric(rows []row, key func(*row) (uint32, bool), desc bool) []row {
	c.keys = slices.Grow(c.keys[:0], len(rows))[:len(rows)]
	for i := range rows {
		v, has := key(&rows[i])
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

// shortDur writes a duration in at most six characters: 850ms, 3.2s,
// 45s, 2m59s, 15m, 1h59m, 15h, 5d. Below ten minutes and ten hours it keeps
// the smaller unit too: 119 minutes is not "1h", nor 2m59s "2m".
func shortDur(d time.Duration) string {
	switch {
	case d >= 100*time.Second && d < 10*time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d >= 100*time.Minute && d < 10*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return coarseDur(d)
}

// coarseDur writes a duration in one unit, in at most five characters:
// 850ms, 3.2s, 45s, 4m, 15m, 1h, 15h, 5d.
func coarseDur(d time.Duration) string {
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

// pathWidth is the PATH column's: "ct 2m59s", "ipvs 14m".
const pathWidth = 8

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
	if cell := what + " " + wholeSecs(left); len(cell) <= pathWidth {
		return cell
	}
	// "ipvs 4m59s" is wider than the column: its whole minutes or hours.
	return what + " " + coarseDur(time.Duration(left)*time.Second)
}

// wholeSecs writes a time the kernel counts in whole seconds, saying no
// more than it knows: 0s, 41s, 14m, 5d.
func wholeSecs(s uint32) string {
	if s < 100 {
		return fmt.Sprintf("%ds", s)
	}
	return shortDur(time.Duration(s) * time.Second)
}
