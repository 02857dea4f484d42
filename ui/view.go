package ui

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// headerLines is how many lines the header block takes.
const headerLines = 4

// View draws the current screen.
func (m Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.WindowTitle = "tcpvet"
	return v
}

// Below minWidth x minHeight the screen says so rather than draw a
// layout that does not fit.
const minWidth, minHeight = 60, 12

func (m Model) render() string {
	if m.width == 0 {
		return "tcpvet: starting…"
	}
	if m.width < minWidth || m.height < minHeight {
		return ansi.Truncate(fmt.Sprintf("tcpvet needs %dx%d, this is %dx%d (q quits)", minWidth, minHeight, m.width, m.height), m.width, "…")
	}
	var body string
	switch m.mode {
	case modeHelp:
		body = m.helpView()
	case modeDetails:
		return m.details.View() + "\n" + m.footer()
	case modeFindings:
		body = m.findingsView()
	default:
		body = m.tableView()
	}
	return m.header() + "\n" + body + "\n" + m.footer()
}

// tableHeight is how many connection rows fit on screen.
func (m Model) tableHeight() int {
	return max(1, m.height-headerLines-2-m.statusHeight()) // column titles, status lines, help line
}

func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	s = ansi.Truncate(s, w, "…")
	return s + strings.Repeat(" ", w-ansi.StringWidth(s))
}

func fitRight(s string, w int) string {
	s = ansi.Truncate(s, w, "…")
	return strings.Repeat(" ", max(0, w-ansi.StringWidth(s))) + s
}

func (m Model) header() string {
	st := m.styles
	lines := make([]string, 0, headerLines)
	if m.snap == nil {
		msg := "taking the first snapshot…"
		if m.lastErr != nil {
			msg = st.FlashErr.Render(m.lastErr.Error())
		}
		for len(lines) < headerLines {
			lines = append(lines, "")
		}
		lines[0] = st.Title.Render("tcpvet") + "  " + msg
		return strings.Join(lines, "\n")
	}
	s := m.snap
	target := fmt.Sprintf("netns %d %s", s.Target.NetnsInode, s.Target.Path)
	if s.Target.PID != 0 {
		target += fmt.Sprintf(" (pid %d)", s.Target.PID)
	}
	host := st.Dim.Render("host not visible")
	if s.Host.Visible {
		host = fmt.Sprintf("host netns %d", s.Host.NetnsInode)
	}
	lines = append(lines, fmt.Sprintf("%s  %s  %s  %s %s", st.Title.Render("tcpvet"), st.Value.Render(target), host,
		st.Label.Render("processes:"), m.procNames))

	kv := func(name, short string) string {
		t, tok := s.Sysctls.Target.Get(name)
		if !tok {
			return st.Label.Render(short+" ") + "?"
		}
		out := st.Label.Render(short+" ") + fmt.Sprint(t)
		if h, ok := s.Sysctls.Host.Get(name); ok && s.Host.Visible {
			if h != t {
				out = st.Label.Render(short+" ") + st.Drift.Render(fmt.Sprintf("%d≠host %d", t, h))
			} else {
				out += st.Dim.Render(" (=host)")
			}
		}
		return out
	}
	lines = append(lines, strings.Join([]string{
		kv(diag.KeepaliveTime, "keepalive_time"), kv(diag.KeepaliveIntvl, "intvl"),
		kv(diag.KeepaliveProbes, "probes"), kv(diag.Retries2, "retries2"),
	}, "  "))

	var path []string
	for _, mb := range m.report.Middleboxes {
		hop := fmt.Sprintf("%s %s", mb.Name, shortDur(mb.IdleTimeout))
		if !mb.Everywhere() {
			hop += st.Dim.Render(" (its services' connections)")
		}
		path = append(path, hop)
	}
	if len(path) == 0 {
		path = []string{st.Dim.Render("none known (declare with --middlebox)")}
	}
	lines = append(lines, st.Label.Render("idle timeouts on the path: ")+strings.Join(path, " · "))

	counts := map[rules.Severity]int{}
	for _, f := range m.report.Findings {
		counts[f.Severity]++
	}
	state := fmt.Sprintf("live %s", m.opts.Interval)
	switch {
	case m.paused:
		state = st.Value.Render("paused (space resumes)")
	case m.loading:
		state += " ⟳"
	}
	notes := ""
	switch n := len(s.Notes); {
	case n == 1:
		notes = st.Warning.Render("1 note (f)") + "  "
	case n > 1:
		notes = st.Warning.Render(fmt.Sprintf("%d notes (f)", n)) + "  "
	}
	crit := fmt.Sprintf("%d critical", counts[rules.Critical])
	warn := fmt.Sprintf("%d warning", counts[rules.Warning])
	info := fmt.Sprintf("%d info", counts[rules.Info])
	taken := "taken " + s.TakenAt.UTC().Format("15:04:05") + " UTC"
	// Longest first; the time of the snapshot is the last thing to go.
	for i, v := range [][]string{
		{st.Label.Render("findings:") + " " + st.Critical.Render(crit), st.Warning.Render(warn), st.Info.Render(info), notes + st.Label.Render(fmt.Sprintf("%d sockets", len(s.Sockets))), st.Dim.Render(taken), state},
		{st.Critical.Render(crit), st.Warning.Render(warn), st.Info.Render(info), notes + st.Label.Render(fmt.Sprintf("%d sockets", len(s.Sockets))), st.Dim.Render(taken), state},
		{st.Critical.Render(crit), st.Warning.Render(warn), st.Info.Render(info), notes + st.Dim.Render(taken), state},
		{st.Critical.Render(crit), st.Warning.Render(warn), st.Info.Render(info), notes + st.Dim.Render(taken)},
	} {
		l := strings.Join(v, "  ")
		if ansi.StringWidth(l) <= m.width || i == 3 {
			lines = append(lines, l)
			break
		}
	}
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, m.width, "…")
	}
	return strings.Join(lines, "\n")
}

// processNames lists the distinct commands holding sockets, most sockets first.
func processNames(s *diag.Snapshot, n int) []string {
	count := map[string]int{}
	for _, sk := range s.Sockets {
		for _, p := range sk.Processes {
			count[p.Comm]++
		}
	}
	names := make([]string, 0, len(count))
	for c := range count {
		names = append(names, c)
	}
	slices.SortFunc(names, func(a, b string) int {
		if count[a] != count[b] {
			return count[b] - count[a]
		}
		return strings.Compare(a, b)
	})
	if len(names) > n {
		names = append(names[:n], fmt.Sprintf("+%d", len(names)-n))
	}
	if len(names) == 0 {
		return []string{"-"}
	}
	return names
}

func (m Model) tableView() string {
	return m.table.view(m.width, m.tableHeight(), &m.styles, m.snap != nil)
}

// position is the table's "row/rows" counter, "" on other screens.
func (m Model) position() string {
	if (m.mode != modeTable && m.mode != modeFilter) || m.snap == nil {
		return ""
	}
	return m.table.position()
}

// maxStatusLines bounds how much of the screen a long message takes.
const maxStatusLines = 4

// statusLines is the status above the keys: a message, wrapped so it is
// read whole, or else the filter.
func (m Model) statusLines() []string {
	st := m.styles
	w := max(1, m.width-ansi.StringWidth(m.position())-1)
	if m.flash != "" {
		style := st.Flash
		if m.flashErr {
			style = st.FlashErr
		}
		lines := strings.Split(ansi.Wrap(m.flash, w, " /"), "\n")
		if len(lines) > maxStatusLines {
			lines = lines[:maxStatusLines]
			lines[maxStatusLines-1] = ansi.Truncate(lines[maxStatusLines-1]+"…", w, "…")
		}
		for i, l := range lines {
			lines[i] = style.Render(l)
		}
		return lines
	}
	if m.filter.Focused() || m.filter.Value() != "" {
		return []string{m.filter.View()}
	}
	return []string{""}
}

// statusHeight is how many lines the status takes.
func (m Model) statusHeight() int { return len(m.statusLines()) }

func (m Model) footer() string {
	lines := m.statusLines()
	pos := m.position()
	w := max(0, m.width-ansi.StringWidth(pos)-1)
	for i, l := range lines {
		lines[i] = fit(l, w)
	}
	lines[len(lines)-1] += " " + m.styles.Dim.Render(pos)
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, m.width, "…")
	}
	helpLine := m.help.ShortHelpView(m.keyMap(m.mode).ShortHelp())
	return strings.Join(lines, "\n") + "\n" + ansi.Truncate(helpLine, m.width, "…")
}

// keyMap is the key map of mode md.
func (m Model) keyMap(md mode) help.KeyMap {
	switch md {
	case modeFilter:
		return m.keys.Filter
	case modeFindings:
		return m.keys.Findings
	case modeDetails:
		return m.keys.Details
	case modeHelp:
		return m.keys.Help
	}
	return m.keys.Table
}

// fullHelp lays the groups of keys side by side, in as many rows of
// groups as the width needs: no key is cut off.
func (m Model) fullHelp(groups [][]key.Binding) string {
	h := m.help
	h.SetWidth(0)
	for per := len(groups); per > 0; per-- {
		var rows []string
		for i := 0; i < len(groups); i += per {
			rows = append(rows, h.FullHelpView(groups[i:min(i+per, len(groups))]))
		}
		out := strings.Join(rows, "\n\n")
		if lipgloss.Width(out) <= m.width || per == 1 {
			return out
		}
	}
	return ""
}

// modeNames name the screens in the help's title.
var modeNames = map[mode]string{modeTable: "the table", modeFilter: "the filter", modeFindings: "the findings list", modeDetails: "the details", modeHelp: "help"}

// helpHeight is how many lines of help fit.
func (m Model) helpHeight() int { return m.tableHeight() + 1 }

// helpLast is the last first line help can scroll to.
func (m Model) helpLast() int {
	return max(0, strings.Count(m.helpText(), "\n")+1-m.helpHeight())
}

func (m Model) helpView() string {
	lines := strings.Split(m.helpText(), "\n")
	off := max(0, min(m.helpOffset, len(lines)-1))
	lines = lines[off:min(len(lines), off+m.helpHeight())]
	return lipgloss.NewStyle().Width(m.width).Height(m.helpHeight()).Render(strings.Join(lines, "\n"))
}

func (m Model) helpText() string {
	under := modeTable
	if n := len(m.stack); n > 0 {
		under = m.stack[n-1]
	}
	st := m.styles
	legend := []string{
		st.Critical.Render("critical") + " will break or is broken",
		st.Warning.Render("warning") + " a risk",
		st.Info.Render("info") + " worth knowing",
		st.OK.Render("ESTABLISHED") + " healthy, no finding",
		"› selected row",
		"+ new since the last refresh",
		st.Changed.Render("12") + " grew since the last refresh",
		st.Drift.Render("≠host") + " differs from the host",
	}
	body := st.Section.Render("Keys in "+modeNames[under]) + "\n\n" + m.fullHelp(m.keyMap(under).FullHelp()) +
		"\n\n" + st.Section.Render("Colours and marks") + "\n\n" + flow(legend, "   ", m.width)
	return body
}

// findingOrder lists findings grouped by rule, the worst rule first.
func findingOrder(rep *rules.Report) []int {
	// The report lists findings most urgent first; a rule's group stands
	// where its most urgent finding does, and keeps the report's order.
	idx := make([]int, len(rep.Findings))
	first := map[string]int{}
	for i, f := range rep.Findings {
		idx[i] = i
		if _, ok := first[f.Rule]; !ok {
			first[f.Rule] = i
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(first[rep.Findings[a].Rule], first[rep.Findings[b].Rule])
	})
	return idx
}

func (m Model) findingsView() string {
	st := m.styles
	h := m.tableHeight() + 1
	// One line per finding, with a title line where a rule's group starts,
	// after what tcpvet could not read, which bounds what it can find.
	type line struct {
		text string
		item int // -1 for a title or a note
	}
	var lines []line
	if m.snap != nil && len(m.snap.Notes) > 0 {
		notes := m.snap.Notes
		lines = append(lines, line{st.Section.Render(fmt.Sprintf("notes (%d): what tcpvet could not see", len(notes))), -1})
		for _, n := range notes {
			for _, l := range strings.Split(ansi.Wrap(n, max(20, m.width-4), " "), "\n") {
				lines = append(lines, line{"  " + st.Warning.Render(l), -1})
			}
		}
	}
	if len(m.findItems) == 0 {
		lines = append(lines, line{st.OK.Render("no findings: every connection looks healthy"), -1})
	}
	cur := 0
	for i, fi := range m.findItems {
		f := m.report.Findings[fi]
		if i == 0 || m.report.Findings[m.findItems[i-1]].Rule != f.Rule {
			n := 0
			for _, fj := range m.findItems[i:] {
				if m.report.Findings[fj].Rule == f.Rule {
					n++
				}
			}
			lines = append(lines, line{st.Section.Render(fmt.Sprintf("%s (%d)", f.Rule, n)), -1})
		}
		if i == m.findCur {
			cur = len(lines)
		}
		// The summary wraps under itself: it is read whole.
		const indent = 11
		for j, l := range strings.Split(ansi.Wrap(f.Summary, max(20, m.width-indent), " "), "\n") {
			lead := strings.Repeat(" ", indent)
			if j == 0 {
				lead = "  " + st.Severity(f.Severity).Render(fmt.Sprintf("%-8s", f.Severity)) + " "
			}
			lines = append(lines, line{lead + l, i})
		}
	}
	start := max(0, min(cur-h/2, len(lines)-h))
	var b strings.Builder
	for i := start; i < start+h; i++ {
		if i > start {
			b.WriteString("\n")
		}
		if i >= len(lines) {
			continue
		}
		text := ansi.Truncate(lines[i].text, m.width, "…")
		if lines[i].item == m.findCur {
			text = st.Selected.Render(ansi.Strip(text))
		}
		b.WriteString(text)
	}
	return b.String()
}

// redirectText says where the namespace's netfilter sent a connection, and
// who listens there when that is in the namespace: a sidecar proxy, whose
// own connections are the ones that meet the network.
func redirectText(snap *diag.Snapshot, to netip.AddrPort) string {
	for i := range snap.Sockets {
		l := &snap.Sockets[i]
		if l.State != diag.Listen || l.Local.Port() != to.Port() || len(l.Processes) == 0 {
			continue
		}
		if a := l.Local.Addr().Unmap(); a.IsUnspecified() || a == to.Addr().Unmap() {
			p := l.Processes[0]
			return fmt.Sprintf("%s, where %s (pid %d) listens: the connection ends in this namespace, and %s's own connections are the ones that leave it", to, p.Comm, p.PID, p.Comm)
		}
	}
	return fmt.Sprintf("%s by this namespace's netfilter (its conntrack says so)", to)
}

// peerText names the socket at the other end of a connection that stays
// in the namespace.
func peerText(snap *diag.Snapshot, id string) string {
	for i := range snap.Sockets {
		if p := &snap.Sockets[i]; p.ID == id {
			owner := ""
			if len(p.Processes) > 0 {
				owner = fmt.Sprintf(", %s pid %d", p.Processes[0].Comm, p.Processes[0].PID)
			}
			return fmt.Sprintf("socket %s (%s%s) in this namespace: the connection never leaves it", id, p.Local, owner)
		}
	}
	return "socket " + id + " in this namespace"
}

// renderDetails fills the details viewport with the socket (or namespace
// finding) being looked at.
func (m *Model) renderDetails() {
	if m.detailsID == "" {
		if m.finding < len(m.report.Findings) {
			m.details.SetContent(m.findingText(&m.report.Findings[m.finding]))
		}
		return
	}
	var s *diag.Socket
	for i := range m.snap.Sockets {
		if m.snap.Sockets[i].ID == m.detailsID {
			s = &m.snap.Sockets[i]
		}
	}
	if s == nil {
		m.details.SetContent(m.styles.Value.Render("socket "+m.detailsID+" is gone: it closed since it was selected") + "\n\n(esc to go back)")
		return
	}
	m.details.SetContent(m.socketText(s))
}

func (m *Model) socketText(s *diag.Socket) string {
	st := m.styles
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "  %s %v\n", st.Label.Render(fmt.Sprintf("%-18s", k)), v) }
	fmt.Fprintf(&b, "%s  %s -> %s  %s\n\n", st.Title.Render("socket "+s.ID), s.Local, s.Remote, st.Value.Render(s.State.String()))
	kv("family", s.Family)
	kv("inode", s.Inode)
	kv("uid", s.UID)
	kv("recv-q / send-q", fmt.Sprintf("%d / %d", s.RecvQ, s.SendQ))
	if s.Timer.Kind == diag.TimerOff {
		kv("timer", "off")
	} else {
		kv("timer", fmt.Sprintf("%s, expires in %s, count %d", s.Timer.Kind, time.Duration(s.Timer.ExpiresMS)*time.Millisecond, s.Timer.Retrans))
	}
	if s.Cong != "" {
		kv("congestion", s.Cong)
	}
	for _, p := range s.Processes {
		kv("process", fmt.Sprintf("%s pid %d fd %d", p.Comm, p.PID, p.FD))
	}
	if len(s.Processes) == 0 {
		kv("process", st.Dim.Render("none visible"))
	}
	if to := s.RedirectedTo; to != nil {
		kv("redirected to", redirectText(m.snap, *to))
	}
	if s.Peer != "" {
		kv("peer", peerText(m.snap, s.Peer))
	}
	if watched, quiet := m.table.cache.watched(s.ID, m.snap.TakenAt); watched > 0 && s.State == diag.Established {
		// Whether something keeps the connection busy shows only over time:
		// application pings keep every quiet spell short.
		kv("watched", fmt.Sprintf("%s, longest quiet seen %s", shortDur(watched), shortDur(quiet)))
	}

	if len(s.Conntrack) > 0 || s.IPVS != nil {
		b.WriteString("\n" + st.Section.Render("What the path remembers") + "\n")
		for _, e := range s.Conntrack {
			what := e.TCPState
			if e.NAT != "" {
				what += ", " + e.NAT
			}
			of := ""
			if e.TimeoutS > 0 {
				of = " of " + wholeSecs(e.TimeoutS)
			}
			kv("conntrack ("+e.Netns+")", fmt.Sprintf("%s, forgets it in %s%s unless a packet comes", what, wholeSecs(e.ExpiresInS), of))
			kv("  original", e.Original)
			kv("  reply", e.Reply)
		}
		if e := s.IPVS; e != nil {
			kv("ipvs", fmt.Sprintf("%s, forgets it in %s unless a packet comes; client %s, virtual %s, real server %s", e.State, wholeSecs(e.ExpiresInS), e.Client, e.Virtual, e.Dest))
		}
	}
	if evs := m.timeEvents(s); len(evs) > 0 {
		// One axis, so what comes first is seen rather than worked out.
		axis, legend := timeAxis(evs, max(20, min(60, m.width-21-14)), &st)
		kv("time line", axis)
		kv("", legend)
	}

	b.WriteString("\n" + st.Section.Render("Own options") + "\n")
	k := s.Keepalive
	if k.Enabled == nil {
		kv("keepalive", st.Dim.Render("unknown: "+k.Reason))
	} else {
		kv("SO_KEEPALIVE", *k.Enabled)
		kv("TCP_KEEPIDLE", fmt.Sprintf("%d s", *k.IdleS))
		kv("TCP_KEEPINTVL", fmt.Sprintf("%d s", *k.IntervalS))
		kv("TCP_KEEPCNT", *k.Probes)
		kv("timings from", map[string]string{"socket": "the socket's own setsockopt", "namespace": "the namespace's tcp_keepalive_* sysctls"}[k.Source])
	}
	if s.UserTimeoutMS != nil {
		if *s.UserTimeoutMS == 0 {
			kv("TCP_USER_TIMEOUT", "unset (tcp_retries2 decides)")
		} else {
			kv("TCP_USER_TIMEOUT", fmt.Sprintf("%d ms", *s.UserTimeoutMS))
		}
	}

	fs := []int{}
	for i, f := range m.report.Findings {
		if f.Socket != nil && *f.Socket == s.ID {
			fs = append(fs, i)
		}
	}
	b.WriteString("\n" + st.Section.Render(fmt.Sprintf("Findings (%d)", len(fs))) + "\n")
	if len(fs) == 0 {
		b.WriteString("  " + st.OK.Render("none") + "\n")
	}
	for _, i := range fs {
		b.WriteString(m.findingText(&m.report.Findings[i]))
	}

	if s.TCPInfo != nil {
		b.WriteString("\n" + st.Section.Render(fmt.Sprintf("tcp_info (%d bytes from the kernel)", s.TCPInfo.Size)) + "\n")
		for _, f := range tcpInfoFields(s.TCPInfo) {
			kv(f.name, f.value)
		}
	}
	return wrap(b.String(), m.width)
}

func (m *Model) findingText(f *rules.Finding) string {
	st := m.styles
	var b strings.Builder
	fmt.Fprintf(&b, "\n  %s %s\n", st.Severity(f.Severity).Render(strings.ToUpper(f.Severity.String())), st.Value.Render(f.Rule))
	// Wrap the summary inside the indent rather than let it spill to column 0.
	for _, l := range strings.Split(ansi.Wrap(f.Summary, max(20, m.width-4), " "), "\n") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	b.WriteString("  " + st.Label.Render("evidence") + "\n")
	for _, fd := range f.Evidence.Fields() {
		fmt.Fprintf(&b, "    %s = %s\n", fd.Name, fd.Value)
	}
	b.WriteString("  " + st.Label.Render("fix") + "\n")
	for _, fx := range f.Fix {
		fmt.Fprintf(&b, "    %s\n", st.Key.Render(fx.Where))
		for _, l := range strings.Split(fx.Snippet, "\n") {
			b.WriteString("      " + l + "\n")
		}
	}
	return wrap(b.String(), m.width)
}

// wrap soft-wraps long lines to the screen width.
func wrap(s string, w int) string {
	if w <= 0 {
		return s
	}
	return ansi.Wrap(s, w, " ")
}

// flow lays items out in lines no wider than w, sep between them; an item
// is never split.
func flow(items []string, sep string, w int) string {
	var lines []string
	cur := ""
	for _, it := range items {
		switch {
		case cur == "":
			cur = it
		case ansi.StringWidth(cur+sep+it) <= w:
			cur += sep + it
		default:
			lines = append(lines, cur)
			cur = it
		}
	}
	return strings.Join(append(lines, cur), "\n")
}

// timeEvent is one moment on a socket's time line: the quiet so far (in 0,
// now) or something that happens in so many seconds.
type timeEvent struct {
	glyph, label string
	in           float64 // seconds from now
	shown        float64 // the figure in the legend: the quiet for "quiet", else in
	style        *lipgloss.Style
}

// timeEvents lists what will happen to s, and when: the next keepalive
// probe, each entry on the path forgetting it, and the kernel giving up
// where a finding says so.
func (m *Model) timeEvents(s *diag.Socket) []timeEvent {
	st := &m.styles
	var evs []timeEvent
	if s.Timer.Kind == diag.TimerKeepalive {
		evs = append(evs, timeEvent{glyph: "◆", label: "probe", in: float64(s.Timer.ExpiresMS) / 1000})
	}
	for _, e := range s.Conntrack {
		evs = append(evs, timeEvent{glyph: "▲", label: "ct (" + e.Netns + ")", in: float64(e.ExpiresInS), style: &st.Warning})
	}
	if e := s.IPVS; e != nil {
		evs = append(evs, timeEvent{glyph: "▲", label: "ipvs", in: float64(e.ExpiresInS), style: &st.Warning})
	}
	giveUp, label, has := 0.0, "", false
	for i := range m.report.Findings {
		f := &m.report.Findings[i]
		if f.Socket == nil || *f.Socket != s.ID {
			continue
		}
		in, l := 0.0, ""
		switch {
		case f.Evidence.GiveUpEvidence != nil && f.Evidence.GivesUpInS != nil:
			in, l = *f.Evidence.GivesUpInS, "gives up"
		case f.FailsInS != nil:
			in, l = *f.FailsInS, "fails"
		default:
			continue
		}
		if !has || in < giveUp {
			giveUp, label, has = in, l, true
		}
	}
	if has {
		evs = append(evs, timeEvent{glyph: "✕", label: label, in: giveUp, style: &st.Critical})
	}
	if len(evs) == 0 {
		return nil
	}
	if s.TCPInfo != nil && s.State == diag.Established {
		q := float64(s.IdleMS()) / 1000
		evs = append([]timeEvent{{glyph: "●", label: "quiet", shown: q, style: &st.Value}}, evs...)
		return quietFirst(evs, q)
	}
	return quietFirst(evs, 0)
}

// quietFirst fills in each event's legend figure and its place on the axis
// counted from the last packet (quiet seconds ago), soonest first.
func quietFirst(evs []timeEvent, quiet float64) []timeEvent {
	for i := range evs {
		if evs[i].label != "quiet" {
			evs[i].shown = evs[i].in
		}
		evs[i].in += quiet
	}
	slices.SortStableFunc(evs, func(a, b timeEvent) int { return cmp.Compare(a.in, b.in) })
	return evs
}

// timeAxis draws events on one axis w columns wide, from the last packet
// (or now) to the farthest event, on a log scale so that seconds and hours
// both show; the legend under it names each glyph, soonest first.
func timeAxis(evs []timeEvent, w int, st *Styles) (axis, legend string) {
	far := 0.0
	for _, e := range evs {
		far = max(far, e.in)
	}
	cells := make([]string, w)
	for i := range cells {
		cells[i] = st.Dim.Render("─")
	}
	taken := make([]bool, w)
	var items []string
	for _, e := range evs {
		pos := 0
		if far > 0 {
			pos = int(math.Round(math.Log1p(max(0, e.in)) / math.Log1p(far) * float64(w-1)))
		}
		// Two events in one column: the later moves right (or, at the end, left).
		for p := pos; p < w && taken[pos]; p++ {
			if !taken[p] {
				pos = p
			}
		}
		for p := pos; p >= 0 && taken[pos]; p-- {
			if !taken[p] {
				pos = p
			}
		}
		g := e.glyph
		if e.style != nil {
			g = e.style.Render(g)
		}
		if !taken[pos] {
			taken[pos], cells[pos] = true, g
		}
		items = append(items, g+" "+e.label+" "+legendSecs(e.shown))
	}
	return strings.Join(cells, "") + " " + st.Dim.Render("(log scale)"), strings.Join(items, "  ")
}

// legendSecs writes seconds as the legend says them, close enough to
// compare: 1.2s, 20s, 15m, 2.0h, 5.0d.
func legendSecs(s float64) string {
	switch {
	case s < 10:
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	case s < 100:
		return strconv.FormatFloat(math.Round(s), 'f', 0, 64) + "s"
	case s < 100*60:
		return strconv.FormatFloat(math.Round(s/60), 'f', 0, 64) + "m"
	case s < 48*3600:
		return strconv.FormatFloat(s/3600, 'f', 1, 64) + "h"
	}
	return strconv.FormatFloat(s/86400, 'f', 1, 64) + "d"
}
