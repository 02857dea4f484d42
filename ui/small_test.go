package ui

import (
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
)

func flat(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestSmallTerminals: below the minimum size a one-line notice; at it, a
// layout that fits; at 80 columns the snapshot's time is whole.
func TestSmallTerminals(t *testing.T) {
	for _, size := range [][2]int{{59, 24}, {80, 11}, {20, 3}} {
		s := screen(drive(t, size[0], size[1], fixture()))
		if strings.Contains(s, "\n") || !strings.Contains(s, "tcpvet needs 60x12") || ansi.StringWidth(s) > size[0] {
			t.Errorf("%dx%d: want a one-line notice, got:\n%s", size[0], size[1], s)
		}
	}
	for _, keys := range [][]tea.Msg{nil, {keyMsg("f")}, {keyMsg("?")}, {keyMsg("enter")}} {
		s := screen(drive(t, minWidth, minHeight, fixture(), keys...))
		lines := strings.Split(s, "\n")
		if len(lines) > minHeight {
			t.Errorf("%v: %d lines on a %d-line terminal:\n%s", keys, len(lines), minHeight, s)
		}
		for _, l := range lines {
			if ansi.StringWidth(l) > minWidth {
				t.Errorf("%v: line wider than %d: %q", keys, minWidth, l)
			}
		}
	}
	for _, w := range []int{80, 60} {
		if l := strings.Split(screen(drive(t, w, 24, fixture())), "\n")[3]; !strings.Contains(l, "taken 03:04:05 UTC") || !strings.Contains(l, "2 critical") {
			t.Errorf("%d columns: the counts line is %q, want the counts and the whole time", w, l)
		}
	}
}

// TestSummariesWrap: each finding's summary is read whole, in the findings
// list and in its details, on 80 columns.
func TestSummariesWrap(t *testing.T) {
	m := drive(t, 80, 24, fixture(), keyMsg("f"))
	if len(m.findItems) < 3 {
		t.Fatalf("%d findings", len(m.findItems))
	}
	for i, fi := range m.findItems {
		f := m.report.Findings[fi]
		m.findCur = i
		if s := flat(screen(m)); !strings.Contains(s, flat(f.Summary)) {
			t.Errorf("findings list, %s selected: the summary is not whole:\n%s", f.Rule, screen(m))
		}
		d, _ := step(m, keyMsg("enter"))
		if all := ansi.Strip(d.details.GetContent()); !strings.Contains(flat(all), flat(f.Summary)) || strings.Contains(all, "…") {
			t.Errorf("details of %s: the summary is cut:\n%s", f.Rule, all)
		}
	}
}

// TestSelectionShowsWithoutColour: with colours gone (TERM=dumb, NO_COLOR)
// the selected row is still marked, by a character.
func TestSelectionShowsWithoutColour(t *testing.T) {
	m := drive(t, 80, 24, fixture(), keyMsg("down"))
	var marked []string
	for _, l := range strings.Split(screen(m), "\n") {
		if strings.HasPrefix(l, "›") {
			marked = append(marked, l)
		}
	}
	if len(marked) != 1 || !strings.Contains(marked[0], "10.0.1.9:5432") {
		t.Errorf("marked rows %q, want the second row alone", marked)
	}
}
