package ui

import (
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/lipgloss/v2"

	"github.com/tcpvet/tcpvet/diag"
)

// keyMap is the key map of mode md.
func (m Model) keyMap(md mode) help.KeyMap {
	switch md {
	case modeFilter:
		return m.keys.Filter
	case modeFindings:
		return m.keys.Findings
	case modeClosed:
		return m.keys.Closed
	case modeDetails:
		return m.keys.Details
	case modeHelp:
		return m.keys.Help
	case modeNode:
		return m.keys.Node
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
var modeNames = map[mode]string{modeNode: "the node view", modeTable: "the table", modeFilter: "the filter", modeFindings: "the findings list", modeClosed: "the closed connections", modeDetails: "the details", modeHelp: "help"}

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
	under := m.baseMode()
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
		// Which queue is which, as ss orders them; the column is too
		// narrow for its title to say.
		"QUEUES 12K/0 receive/send bytes (a listener: accept queue/backlog)",
		st.Drift.Render("≠host") + " differs from the host",
	}
	if under == modeClosed {
		legend = append(legend,
			st.Cause(diag.CauseReset).Render("reset")+" the peer or the path reset it",
			st.Cause(diag.CauseTimeout).Render("timeout")+" the kernel gave up on it",
			st.Cause(diag.CauseClosed).Render("closed")+" an application closed it",
			st.Cause(diag.CauseUnknown).Render("unknown")+" the evidence does not tell",
			"≥ lived at least: from the first sample that saw it")
	}
	body := st.Section.Render("Keys in "+modeNames[under]) + "\n\n" + m.fullHelp(m.keyMap(under).FullHelp()) +
		"\n\n" + st.Section.Render("Colours and marks") + "\n\n" + flow(legend, "   ", m.width)
	return body
}
