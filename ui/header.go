package ui

import (
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

func (m Model) header() string {
	if m.inNode() {
		return m.nodeHeader()
	}
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
	title := st.Title.Render("tcpvet")
	if m.podName != "" {
		title += "  " + st.Value.Render("pod "+m.podName)
	}
	lines = append(lines, fmt.Sprintf("%s  %s  %s  %s %s", title, st.Value.Render(target), host,
		st.Label.Render("processes:"), m.procNames))

	kv := func(name, short string) string {
		t, tok := s.Target.Sysctls.Get(name)
		if !tok {
			return st.Label.Render(short+" ") + "?"
		}
		out := st.Label.Render(short+" ") + fmt.Sprint(t)
		if h, ok := s.Host.Sysctls.Get(name); ok && s.Host.Visible {
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
	pathLine := st.Label.Render("idle timeouts on the path: ") + strings.Join(path, " · ")
	if sum := m.closed.summary(&st); sum != "" {
		// The deaths seen so far are news; the path's timeouts stay the
		// same, and give way first.
		room := m.width - ansi.StringWidth(sum) - 2
		if ansi.StringWidth(pathLine) > room {
			pathLine = st.Label.Render("path: ") + strings.Join(path, " · ")
		}
		pathLine = fit(pathLine, max(0, room)) + "  " + sum
	}
	lines = append(lines, pathLine)

	counts := map[rules.Severity]int{}
	for _, f := range m.report.Findings {
		counts[f.Severity]++
	}
	state := fmt.Sprintf("every %s", m.opts.Interval)
	switch {
	case m.paused:
		state = st.Value.Render("paused (space resumes)")
	case m.loading:
		state += " ⟳"
	}
	notes := ""
	switch n := len(m.notes()); {
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
