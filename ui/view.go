package ui

import (
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
)

// headerLines is how many lines the header block takes.
const headerLines = 4

// View draws the current screen. Each screen's parts live in a file of
// their own: header.go, table.go, findings.go, closed.go, details.go,
// help.go, footer.go, and node.go for the node view.
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
	case modeClosed:
		body = m.closed.view(m.width, m.tableHeight(), &m.styles, m.notes())
	case modeNode:
		body = m.nodeView()
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

func (m Model) tableView() string {
	return m.table.view(m.width, m.tableHeight(), &m.styles, m.snap != nil)
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
