package ui

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

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

// findingsShown are the findings the findings view lists, in its order:
// with a filter on the table, only those about the connections it keeps.
func (m *Model) findingsShown() []int {
	order := findingOrder(&m.report)
	if len(m.table.words) == 0 {
		return order
	}
	kept := make(map[diag.Cookie]bool, len(m.table.visible))
	for _, i := range m.table.visible {
		kept[m.table.rows[i].s.ID] = true
	}
	return slices.DeleteFunc(order, func(fi int) bool {
		id := m.report.Findings[fi].Socket
		return id == nil || !kept[*id]
	})
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
	if notes := m.notes(); len(notes) > 0 {
		lines = append(lines, line{st.Section.Render(fmt.Sprintf("notes (%d): what tcpvet could not see", len(notes))), -1})
		for _, n := range notes {
			for _, l := range strings.Split(ansi.Wrap(n.Text, max(20, m.width-4), " "), "\n") {
				lines = append(lines, line{"  " + st.Warning.Render(l), -1})
			}
		}
	}
	filtered := len(m.table.words) > 0
	switch {
	case filtered && len(m.findItems) == 0:
		lines = append(lines, line{st.OK.Render("no findings about the connections the filter /" + m.filter.Value() + " keeps"), -1})
	case filtered:
		lines = append(lines, line{st.Dim.Render("only the findings about the connections the filter /" + m.filter.Value() + " keeps"), -1})
	case len(m.findItems) == 0:
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
