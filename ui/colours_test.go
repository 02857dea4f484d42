package ui

import (
	"image/color"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/rules"
)

// sgr is the escape sequence a style opens with, "" for none.
func sgr(st lipgloss.Style) string {
	out := st.Render("x")
	return out[:strings.Index(out, "x")]
}

var sgrRun = regexp.MustCompile(`(\x1b\[[0-9;:]*m)*$`)

// styleBefore is the escape sequences right before the first text on the
// line holding marker, "" where text is drawn plain; with text
// starting "last:", before its last one.
func styleBefore(t *testing.T, screen, marker, text string) string {
	find := strings.Index
	if rest, ok := strings.CutPrefix(text, "last:"); ok {
		text, find = rest, strings.LastIndex
	}
	t.Helper()
	for _, l := range strings.Split(screen, "\n") {
		if !strings.Contains(ansi.Strip(l), marker) {
			continue
		}
		i := find(l, text)
		if i < 0 {
			t.Fatalf("no %q on the line of %q: %q", text, marker, l)
		}
		run := sgrRun.FindString(l[:i])
		if run == "\x1b[m" || strings.HasSuffix(run, "\x1b[m") && strings.Count(run, "\x1b[") == 1 {
			return ""
		}
		return strings.TrimPrefix(run, "\x1b[m")
	}
	t.Fatalf("no line with %q:\n%s", marker, ansi.Strip(screen))
	return ""
}

// TestColoursMeanSeverityAlone: red, amber, blue and green say severity and
// health; what is new or changed is marked by a glyph or weight.
func TestColoursMeanSeverityAlone(t *testing.T) {
	for _, dark := range []bool{true, false} {
		st := NewStyles(dark, false)
		sev := map[string]color.Color{"critical": st.Critical.GetForeground(), "warning": st.Warning.GetForeground(),
			"info": st.Info.GetForeground(), "ok": st.OK.GetForeground()}
		for name, s := range map[string]lipgloss.Style{"changed": st.Changed, "drift": st.Drift, "flash": st.Flash, "key": st.Key} {
			fg := s.GetForeground()
			for sn, c := range sev {
				if fg == c {
					t.Errorf("dark %v: %s is drawn in %s's colour", dark, name, sn)
				}
			}
		}
		seen := map[color.Color]string{}
		for sn, c := range sev {
			if other, ok := seen[c]; ok {
				t.Errorf("dark %v: %s and %s share a colour", dark, sn, other)
			}
			seen[c] = sn
		}
	}

	// A refresh brings a new connection as dead as the half-open one.
	snap := fixture()
	m := drive(t, 160, 40, snap)
	next := fixture()
	twin := next.Sockets[2]
	twin.ID, twin.Local = 0x50000, netip.MustParseAddrPort("10.0.0.5:50000")
	next.Sockets = append(next.Sockets, twin)
	m, _ = step(m, snapshotMsg{snap: next, rep: rules.Evaluate(next, nil)})
	m, _ = step(m, keyMsg("G")) // select the last row: the ones checked are drawn unselected
	out := m.View().Content
	st := m.styles
	if s := styleBefore(t, out, "10.0.0.5:50000", "ESTABLISHED"); s == sgr(st.OK) {
		t.Errorf("a new critical connection's state is drawn healthy green (%q)", s)
	}
	if s := styleBefore(t, out, "10.0.0.5:50000", "half-open"); s != sgr(st.Critical) {
		t.Errorf("its finding is drawn %q, want critical %q", s, sgr(st.Critical))
	}
	for _, l := range strings.Split(ansi.Strip(out), "\n") {
		if strings.Contains(l, "10.0.0.5:50000") != strings.HasPrefix(l, " +") {
			t.Errorf("only the new row is marked +: %q", l)
		}
	}
	if s := styleBefore(t, out, "10.0.1.9:443 ", "ESTABLISHED"); s != sgr(st.OK) {
		t.Errorf("a healthy connection's state is drawn %q, want %q", s, sgr(st.OK))
	}
	// keepalive off: coloured where a finding is about it, plain elsewhere.
	if s := styleBefore(t, out, "10.0.1.9:5432", "last:off"); s != sgr(st.Critical) {
		t.Errorf("no-keepalive's off is drawn %q, want its finding's %q", s, sgr(st.Critical))
	}
	if s := styleBefore(t, out, "(listening :8080)", "last:off"); s != "" {
		t.Errorf("a listener without finding has its off drawn %q, want plain", s)
	}
	// The legend shows each style as the table draws it.
	help := drive(t, 160, 40, fixture(), keyMsg("?")).View().Content
	for _, s := range []lipgloss.Style{st.Critical, st.Warning, st.Info, st.OK, st.Changed, st.Drift} {
		if !strings.Contains(help, sgr(s)) {
			t.Errorf("the legend lacks the style %q", sgr(s))
		}
	}
	for _, mark := range []string{"› selected", "+ new"} {
		if !strings.Contains(ansi.Strip(help), mark) {
			t.Errorf("the legend lacks %q", mark)
		}
	}
}
