package ui

import (
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"
)

// TestTimeAxis pins the picture: events from the last packet on a log
// scale, soonest first in the legend, the legend's times counted from now.
func TestTimeAxis(t *testing.T) {
	st := NewStyles(true, true)
	evs := quietFirst([]timeEvent{
		{glyph: "✕", label: "gives up", in: 925},
		{glyph: "◆", label: "probe", in: 7158},
		{glyph: "▲", label: "ct (host)", in: 20},
		{glyph: "●", label: "quiet", shown: 10},
	}, 10)
	axis, legend := timeAxis(evs, 40, &st)
	got := ansi.Strip(axis)
	if want := "───────────●───▲──────────────✕────────◆ (log scale)"; got != want {
		t.Errorf("axis\n got %q\nwant %q", got, want)
	}
	if got, want := ansi.Strip(legend), "● quiet 10s  ▲ ct (host) 20s  ✕ gives up 15m  ◆ probe 2.0h"; got != want {
		t.Errorf("legend\n got %q\nwant %q", got, want)
	}
}

// TestTimeAxisCollide keeps every event on the axis when two fall in one column.
func TestTimeAxisCollide(t *testing.T) {
	st := NewStyles(true, true)
	evs := quietFirst([]timeEvent{{glyph: "▲", label: "ct (host)", in: 100}, {glyph: "▲", label: "ipvs", in: 100}, {glyph: "◆", label: "probe", in: 100}}, 0)
	axis, _ := timeAxis(evs, 20, &st)
	if n := strings.Count(ansi.Strip(axis), "▲"); n != 2 || !strings.Contains(axis, "◆") {
		t.Errorf("events lost: %q", ansi.Strip(axis))
	}
}

// TestDetailsTimeline shows the time line in the details of a socket with
// a conntrack entry, and of one the kernel will give up on.
func TestDetailsTimeline(t *testing.T) {
	m := drive(t, 100, 40, fixture())
	for id, want := range map[string]string{
		"40001": "● quiet 1.2s  ◆ probe 30s  ▲ ct (host) 5.0d",
		"40003": "● quiet 1.2s  ✕ gives up 15m",
	} {
		for _, r := range m.table.rows {
			if r.s.ID.String() != id {
				continue
			}
			out := ansi.Strip(m.socketText(r.s))
			if !strings.Contains(out, "time line") || !strings.Contains(out, want) {
				t.Errorf("socket %s: no %q in\n%s", id, want, out)
			}
		}
	}
}
