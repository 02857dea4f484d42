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

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

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
func peerText(snap *diag.Snapshot, id diag.Cookie) string {
	for i := range snap.Sockets {
		if p := &snap.Sockets[i]; p.ID == id {
			owner := ""
			if len(p.Processes) > 0 {
				owner = fmt.Sprintf(", %s pid %d", p.Processes[0].Comm, p.Processes[0].PID)
			}
			return fmt.Sprintf("socket %s (%s%s) in this namespace: the connection never leaves it", id, p.Local, owner)
		}
	}
	return "socket " + id.String() + " in this namespace"
}

// renderDetails fills the details viewport with the socket (or namespace
// finding) being looked at.
func (m *Model) renderDetails() {
	if m.detailsClosed != 0 {
		if e := m.closed.find(m.detailsClosed); e != nil {
			m.details.SetContent(m.closedText(e))
		} else {
			m.details.SetContent(m.styles.Value.Render("closed connection "+m.detailsClosed.String()+" is no longer listed: newer ones took its place") + "\n\n(esc to go back)")
		}
		return
	}
	if m.detailsID == 0 {
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
		m.details.SetContent(m.styles.Value.Render("socket "+m.detailsID.String()+" is gone: it closed since it was selected") + "\n\n(esc to go back)")
		return
	}
	m.details.SetContent(m.socketText(s))
}

func (m *Model) socketText(s *diag.Socket) string {
	st := m.styles
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "  %s %v\n", st.Label.Render(fmt.Sprintf("%-18s", k)), v) }
	fmt.Fprintf(&b, "%s  %s -> %s  %s\n\n", st.Title.Render("socket "+s.ID.String()), s.Local, s.Remote, st.Value.Render(s.State.String()))
	kv("family", s.Family)
	kv("inode", s.Inode)
	kv("uid", s.UID)
	kv("recv-q / send-q", fmt.Sprintf("%d / %d", s.RecvQ, s.SendQ))
	if s.Timer.Kind == diag.TimerOff {
		kv("timer", "off")
	} else {
		kv("timer", fmt.Sprintf("%s, expires in %s, count %d", s.Timer.Kind, s.Timer.Expires(), s.Timer.Retrans))
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
	if s.Peer != 0 {
		kv("peer", peerText(m.snap, s.Peer))
	}
	if o := s.Observed; o != nil {
		// Whether something keeps the connection busy shows only over time:
		// application pings keep every quiet spell short.
		kv("watched", fmt.Sprintf("%s in %d samples, longest quiet seen %s", shortDur(secDur(o.WatchedS)), o.Samples, shortDur(secDur(o.LongestQuietS))))
		kv("kept alive by", refreshedText(o))
	}

	// The tables a watch saw an entry of it in that hold none now: they
	// forgot the flow.
	var seen []diag.SeenEntry
	var forgotBy []diag.Role
	if s.Observed != nil {
		seen = s.Observed.EntriesSeen
	}
	for _, e := range seen {
		// A table this snapshot could not read (a Reason, no entries)
		// says nothing of what it holds; an absent one is empty.
		table := m.snap.Target.Conntrack
		if e.Netns == diag.Host {
			table = m.snap.Host.Conntrack
		}
		if (table == nil || table.Read) && !slices.ContainsFunc(s.Conntrack, func(f diag.Flow) bool { return f.Netns == e.Netns }) {
			forgotBy = append(forgotBy, e.Netns)
		}
	}
	if len(s.Conntrack) > 0 || s.IPVS != nil || len(forgotBy) > 0 {
		b.WriteString("\n" + st.Section.Render("What the path remembers") + "\n")
		for _, r := range forgotBy {
			kv("conntrack ("+r.String()+")", "nothing any more: an earlier sample of the watch saw its entry, which is gone")
		}
		for _, e := range s.Conntrack {
			what := e.TCPState
			if e.NAT != "" {
				what += ", " + e.NAT
			}
			of := ""
			if e.TimeoutS > 0 {
				of = " of " + wholeSecs(e.TimeoutS)
			}
			kv("conntrack ("+e.Netns.String()+")", fmt.Sprintf("%s, forgets it in %s%s unless a packet comes", what, wholeSecs(e.ExpiresInS), of))
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
	switch {
	case k.Enabled == nil:
		kv("keepalive", st.Dim.Render("unknown: "+k.Reason))
	case k.IdleS == nil:
		kv("SO_KEEPALIVE", *k.Enabled)
		kv("timings", st.Dim.Render("unknown: "+k.Reason))
	default:
		kv("SO_KEEPALIVE", *k.Enabled)
		kv("TCP_KEEPIDLE", fmt.Sprintf("%d s", *k.IdleS))
		kv("TCP_KEEPINTVL", fmt.Sprintf("%d s", *k.IntervalS))
		kv("TCP_KEEPCNT", *k.Probes)
		kv("timings from", map[string]string{"socket": "the socket's own setsockopt", "namespace": "the namespace's tcp_keepalive_* sysctls"}[k.Source])
	}
	if u, known := s.UserTimeout(); known {
		if u == 0 {
			kv("TCP_USER_TIMEOUT", "unset (tcp_retries2 decides)")
		} else {
			kv("TCP_USER_TIMEOUT", fmt.Sprintf("%d ms", u.Milliseconds()))
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
		evs = append(evs, timeEvent{glyph: "◆", label: "probe", in: secsOf(s.Timer.Expires())})
	}
	for _, e := range s.Conntrack {
		evs = append(evs, timeEvent{glyph: "▲", label: "ct (" + e.Netns.String() + ")", in: float64(e.ExpiresInS), style: &st.Warning})
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
		q := secsOf(s.Idle())
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

// secsOf is d in seconds for the time line: its whole milliseconds over
// 1000, as the legend has always rounded them (d.Seconds() can differ in
// the last bit, and legendSecs's rounding with it).
func secsOf(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// secDur turns seconds, as JSON carries them, into a duration.
func secDur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// refreshedText says what a watch saw cross the connection, the traffic
// that refreshes the flow on every middlebox of its path.
func refreshedText(o *diag.Observed) string {
	switch o.RefreshedBy {
	case diag.RefreshedByAppPings:
		if p := o.Pings; p != nil {
			return fmt.Sprintf("application pings: %d of %d bytes, one every %s", p.Count, p.SizeBytes, shortDur(secDur(p.PeriodS)))
		}
		return "application pings"
	case diag.RefreshedByKeepalive:
		switch {
		case o.WindowProbes > 0:
			return fmt.Sprintf("window probes (%d): the peer's receive window is closed", o.WindowProbes)
		case o.KeepaliveProbesSent > 0:
			return fmt.Sprintf("keepalive: %d probes sent, %d answered", o.KeepaliveProbesSent, o.KeepaliveProbesAnswered)
		case o.PeerProbes > 0:
			return fmt.Sprintf("the peer's keepalive: %d probes", o.PeerProbes)
		}
		return "keepalive"
	case diag.RefreshedByData:
		return fmt.Sprintf("data (in %d of %d samples)", o.DataExchanges, o.Samples)
	}
	return "nothing crossed it while watched"
}
