package ui

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
)

// causeOrder is the order the header counts causes in: what broke a
// connection first, then what ended it as meant.
var causeOrder = []string{diag.CauseReset, diag.CauseTimeout, diag.CauseClosed, diag.CauseUnknown}

// Cause returns the style of a closed connection's cause: a reset or a
// give-up broke it, as an error does; an ordinary close is dim; a cause
// the evidence cannot tell is a warning.
func (s Styles) Cause(cause string) lipgloss.Style {
	switch cause {
	case diag.CauseReset, diag.CauseTimeout:
		return s.Critical
	case diag.CauseClosed:
		return s.Dim
	}
	return s.Warning
}

// closedList is the list of connections that ended while the view watched
// them, newest first, and the count of them by cause since the view
// started. A snapshot's Closed holds the last of them only (the source
// keeps a bounded window, oldest first), so the list remembers when it
// first saw each one listed, and counts each once.
type closedList struct {
	// followed is false when the snapshot listed no deaths (nil Closed):
	// they cannot be followed here, and the notes say why.
	followed bool
	// entries are the snapshot's Closed, newest first.
	entries []diag.Closed
	// seen is when each entry listed was first listed: the snapshot that
	// first carried it was taken just after it ended.
	seen map[diag.Cookie]time.Time
	// counts are the connections that ended since the view started, by
	// cause. atLeast is set once a refresh found none of the entries seen
	// before: more ended between two refreshes than the source keeps, and
	// those that left its window uncounted are not in the counts.
	counts  map[string]int
	atLeast bool
	now     time.Time // when the snapshot shown was taken

	cursor, offset int
}

// load takes in a snapshot's Closed, counting those not seen before.
func (c *closedList) load(snap *diag.Snapshot) {
	if snap == nil || snap.Closed == nil {
		*c = closedList{}
		return
	}
	// The cursor stays on the connection it was moved to; on the first
	// row, it stays on the newest, following deaths as they come.
	var keepID diag.Cookie
	if c.cursor > 0 && c.cursor < len(c.entries) {
		keepID = c.entries[c.cursor].ID
	}
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.followed, c.now = true, snap.TakenAt
	overlap := false
	for i := range snap.Closed {
		if _, ok := c.seen[snap.Closed[i].ID]; ok {
			overlap = true
			break
		}
	}
	if len(c.seen) > 0 && len(snap.Closed) > 0 && !overlap {
		c.atLeast = true
	}
	seen := make(map[diag.Cookie]time.Time, len(snap.Closed))
	c.entries = c.entries[:0]
	for i := len(snap.Closed) - 1; i >= 0; i-- {
		e := snap.Closed[i]
		at, ok := c.seen[e.ID]
		if !ok {
			at = snap.TakenAt
			c.counts[e.Cause]++
		}
		seen[e.ID] = at
		c.entries = append(c.entries, e)
	}
	c.seen = seen
	c.cursor = 0
	for i := range c.entries {
		if c.entries[i].ID == keepID {
			c.cursor = i
		}
	}
}

// current is the entry under the cursor, nil for none.
func (c *closedList) current() *diag.Closed {
	if c.cursor < 0 || c.cursor >= len(c.entries) {
		return nil
	}
	return &c.entries[c.cursor]
}

// find is the entry listed with id, nil once it has left the list.
func (c *closedList) find(id diag.Cookie) *diag.Closed {
	for i := range c.entries {
		if c.entries[i].ID == id {
			return &c.entries[i]
		}
	}
	return nil
}

// clamp keeps the cursor on an entry and in the h lines drawn.
func (c *closedList) clamp(h int) {
	c.cursor = max(0, min(c.cursor, len(c.entries)-1))
	if c.cursor < c.offset {
		c.offset = c.cursor
	}
	if h > 0 && c.cursor >= c.offset+h {
		c.offset = c.cursor - h + 1
	}
	c.offset = max(0, min(c.offset, len(c.entries)-h))
}

// position is the "row/rows" counter.
func (c *closedList) position() string {
	if !c.followed {
		return ""
	}
	return rowPosition(c.cursor, len(c.entries), len(c.entries))
}

// summary is the header's count of the connections that ended since the
// view started, by cause, "" when they are not followed.
func (c *closedList) summary(st *Styles) string {
	if !c.followed {
		return ""
	}
	var parts []string
	for _, cause := range causeOrder {
		if n := c.counts[cause]; n > 0 {
			parts = append(parts, st.Cause(cause).Render(fmt.Sprintf("%d %s", n, cause)))
		}
	}
	for _, cause := range slices.Sorted(maps.Keys(c.counts)) {
		// A cause this view does not know of still counts.
		if n := c.counts[cause]; n > 0 && !slices.Contains(causeOrder, cause) {
			parts = append(parts, st.Cause(cause).Render(fmt.Sprintf("%d %s", n, cause)))
		}
	}
	lead := st.Label.Render("closed:") + " "
	if c.atLeast {
		lead += st.Label.Render("at least") + " "
	}
	if len(parts) == 0 {
		parts = []string{st.Dim.Render("none yet")}
	}
	return lead + strings.Join(parts, ", ") + " " + st.Label.Render("(c)")
}

// ago is how long before the snapshot shown the connection ended: when
// its death was announced, else when a refresh first listed it.
func (c *closedList) ago(e *diag.Closed) string {
	at, ok := c.seen[e.ID]
	if !e.EndedAt.IsZero() {
		at, ok = e.EndedAt, true
	}
	if !ok {
		return "?"
	}
	d := c.now.Sub(at)
	if d < time.Second {
		return "just now"
	}
	return shortDur(d) + " ago"
}

// livedText is how long a closed connection was known to live.
func livedText(e *diag.Closed) string {
	if e.LivedS == nil {
		return "?"
	}
	return "≥" + shortDur(secDur(*e.LivedS))
}

// closedCol is a column of the closed list: its title, width (0 for the
// why, which takes what is left) and priority (lower stays longer).
type closedCol struct {
	title    string
	width    int
	priority int
	text     func(c *closedList, e *diag.Closed) string
}

var closedCols = []closedCol{
	{"ENDED", 9, 0, func(c *closedList, e *diag.Closed) string { return c.ago(e) }},
	{"LOCAL", 21, 3, func(_ *closedList, e *diag.Closed) string { return e.Local.String() }},
	{"REMOTE", 21, 1, func(_ *closedList, e *diag.Closed) string { return e.Remote.String() }},
	{"CAUSE", 7, 0, func(_ *closedList, e *diag.Closed) string { return e.Cause }},
	{"LIVED", 6, 2, func(_ *closedList, e *diag.Closed) string { return livedText(e) }},
	{"LAST STATE", 11, 4, func(_ *closedList, e *diag.Closed) string { return orDash(e.LastState) }},
	{"WHY", 0, 0, func(_ *closedList, e *diag.Closed) string { return e.Why }},
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// minWhy is the narrowest the why column gets before a column of lower
// priority gives way to it.
const minWhy = 24

// closedLayout picks the columns that fit width, and the why's width.
func closedLayout(width int) (cols []int, why int) {
	for keep := 4; ; keep-- {
		cols, used := []int(nil), 0
		for i, c := range closedCols {
			if c.priority > keep {
				continue
			}
			cols = append(cols, i)
			if c.width > 0 {
				used += c.width + 1
			}
		}
		if why = width - used; why >= minWhy || keep == 0 {
			return cols, max(1, why)
		}
	}
}

// view draws the column titles and h entries, width wide; with deaths not
// followed, why not (the notes about it) instead.
func (c *closedList) view(width, h int, st *Styles, notes []diag.Note) string {
	if !c.followed {
		return c.unfollowed(width, h, st, notes)
	}
	cols, why := closedLayout(width - markWidth)
	var titles []string
	for _, i := range cols {
		titles = append(titles, fit(closedCols[i].title, colWidth(i, why)))
	}
	var b strings.Builder
	b.WriteString(strings.Repeat(" ", markWidth) + st.Header.Render(strings.Join(titles, " ")))
	for i := c.offset; i < c.offset+h; i++ {
		b.WriteString("\n")
		if i >= len(c.entries) {
			continue
		}
		e := &c.entries[i]
		sel := i == c.cursor
		cells := make([]string, 0, len(cols))
		for _, ci := range cols {
			text := fit(closedCols[ci].text(c, e), colWidth(ci, why))
			if !sel && closedCols[ci].title == "CAUSE" {
				text = st.Cause(e.Cause).Render(text)
			}
			cells = append(cells, text)
		}
		line := strings.Join(cells, " ")
		mark := "  "
		if sel {
			mark, line = "› ", st.Selected.Render(line)
		}
		b.WriteString(mark + line)
	}
	if len(c.entries) == 0 {
		b.WriteString("\n" + st.Dim.Render("  no connection has ended since the view started"))
	}
	return b.String()
}

func colWidth(i, why int) int {
	if w := closedCols[i].width; w > 0 {
		return w
	}
	return why
}

// unfollowed says why no connection that ended is listed: the notes that
// say so, or, in a namespace from a sweep of the node, that deaths are
// followed only when one namespace is watched.
func (c *closedList) unfollowed(width, h int, st *Styles, notes []diag.Note) string {
	lines := []string{st.Section.Render("Connections that ended are not listed here")}
	var why []string
	for _, n := range notes {
		switch n.Code {
		case diag.NoteDeathsUnwatched, diag.NoteDeathsLost, diag.NoteDeathsStopped, diag.NoteDeathsOverflow,
			diag.NoteFlowEndsUnwatched, diag.NoteFlowEndsStopped, diag.NoteFlowEndsLost:
			why = append(why, n.Text)
		}
	}
	if len(why) == 0 {
		why = []string{"this view does not follow the kernel's announcements of connections that end"}
	}
	for _, n := range why {
		for _, l := range strings.Split(ansi.Wrap(n, max(20, width-4), " "), "\n") {
			lines = append(lines, "  "+st.Warning.Render(l))
		}
	}
	// As many lines as the list would take: the footer stays at the bottom.
	for len(lines) < h+1 {
		lines = append(lines, "")
	}
	return strings.Join(lines[:h+1], "\n")
}

// closedText is the details of a connection that ended: every field, and
// the final tcp_info as a socket's details show theirs.
func (m *Model) closedText(e *diag.Closed) string {
	st := m.styles
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "  %s %v\n", st.Label.Render(fmt.Sprintf("%-18s", k)), v) }
	fmt.Fprintf(&b, "%s  %s -> %s  %s\n\n", st.Title.Render("closed "+e.ID.String()), e.Local, e.Remote, st.Cause(e.Cause).Render(strings.ToUpper(e.Cause)))
	kv("cause", st.Cause(e.Cause).Render(e.Cause))
	for i, l := range strings.Split(ansi.Wrap(e.Why, max(20, m.width-21), " "), "\n") {
		k := ""
		if i == 0 {
			k = "why"
		}
		kv(k, l)
	}
	switch at, ok := m.closed.seen[e.ID]; {
	case !e.EndedAt.IsZero():
		kv("ended", fmt.Sprintf("%s (at %s UTC)", m.closed.ago(e), e.EndedAt.UTC().Format("15:04:05")))
	case ok:
		kv("ended", fmt.Sprintf("%s (first listed at %s UTC)", m.closed.ago(e), at.UTC().Format("15:04:05")))
	}
	if e.LivedS == nil {
		kv("lived", st.Dim.Render("unknown: no sample saw it open"))
	} else {
		kv("lived", fmt.Sprintf("at least %s (from the first sample that saw it)", shortDur(secDur(*e.LivedS))))
	}
	if e.LastState == "" {
		kv("last state", st.Dim.Render("unknown: no sample saw it open"))
	} else {
		kv("last state", e.LastState+" (the last sample's)")
	}
	if e.PathForgotAt != nil {
		kv("path forgot it", fmt.Sprintf("at %s UTC: its conntrack entry ended while it was established", e.PathForgotAt.UTC().Format("15:04:05.000")))
	}
	if e.TCPInfo == nil {
		b.WriteString("\n" + st.Section.Render("tcp_info") + "\n")
		b.WriteString("  " + st.Dim.Render("none: the kernel sent none with its death (or a wiped one: the application aborted it) and no sample saw it") + "\n")
	} else {
		b.WriteString("\n" + st.Section.Render(fmt.Sprintf("tcp_info, the last (%d bytes from the kernel)", e.TCPInfo.Size)) + "\n")
		for _, f := range tcpInfoFields(e.TCPInfo) {
			kv(f.name, f.value)
		}
	}
	return wrap(b.String(), m.width)
}
