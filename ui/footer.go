package ui

import (
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// position is the table's "row/rows" counter, "" on other screens.
func (m Model) position() string {
	if m.mode == modeNode {
		if m.sweep == nil {
			return ""
		}
		return m.nodes.position()
	}
	if m.mode == modeClosed {
		return m.closed.position()
	}
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
	if in := m.filterInput(); in.Focused() || in.Value() != "" {
		return []string{in.View()}
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
