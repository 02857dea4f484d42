package ui

import (
	"image/color"

	"charm.land/lipgloss/v2"

	"github.com/tcpvet/tcpvet/rules"
)

// Styles are every style the interface draws with, by meaning. Colours mean
// severity and nothing else: red critical (and errors), amber warning,
// blue info, green a healthy connection. What changed is marked by weight
// or a glyph, never by a severity's colour.
type Styles struct {
	Title    lipgloss.Style
	Label    lipgloss.Style
	Value    lipgloss.Style
	Dim      lipgloss.Style
	Header   lipgloss.Style
	Selected lipgloss.Style
	Section  lipgloss.Style
	Key      lipgloss.Style

	Critical lipgloss.Style
	Warning  lipgloss.Style
	Info     lipgloss.Style
	OK       lipgloss.Style

	// Changed marks a value that grew since the last refresh (a retransmit
	// count, a queue); a new socket is marked "+" in the table's first column.
	Changed lipgloss.Style
	// Drift marks a sysctl that differs between target and host.
	Drift lipgloss.Style

	Flash    lipgloss.Style
	FlashErr lipgloss.Style
}

// NewStyles builds the styles for a dark or light terminal background. With
// noColor (NO_COLOR is set) the selection is shown in reverse video, since
// its background colour will not be drawn.
func NewStyles(isDark, noColor bool) Styles {
	ld := lipgloss.LightDark(isDark)
	c := func(light, dark string) color.Color { return ld(lipgloss.Color(light), lipgloss.Color(dark)) }
	red, amber, blue, green := c("#c0392b", "#ff6b6b"), c("#a06000", "#ffb347"), c("#1f5fbf", "#6cb6ff"), c("#1e7b34", "#7bd88f")
	dim := c("#6b6b6b", "#8a8a8a")
	s := lipgloss.NewStyle()
	st := Styles{
		Title:    s.Bold(true).Foreground(c("#5b2a86", "#c792ea")),
		Label:    s.Foreground(dim),
		Value:    s.Bold(true),
		Dim:      s.Foreground(dim),
		Header:   s.Bold(true).Underline(true),
		Selected: s.Bold(true).Foreground(c("#000000", "#ffffff")).Background(c("#c9c3f0", "#3d3a6b")),
		Section:  s.Bold(true).Foreground(c("#5b2a86", "#c792ea")),
		Key:      s.Bold(true),
		Critical: s.Bold(true).Foreground(red),
		Warning:  s.Foreground(amber),
		Info:     s.Foreground(blue),
		OK:       s.Foreground(green),
		Changed:  s.Bold(true),
		Drift:    s.Bold(true),
		Flash:    s.Bold(true),
		FlashErr: s.Bold(true).Foreground(red),
	}
	if noColor {
		st.Selected = s.Reverse(true)
	}
	return st
}

// Severity returns the style of a finding's severity.
func (s Styles) Severity(sev rules.Severity) lipgloss.Style {
	switch sev {
	case rules.Critical:
		return s.Critical
	case rules.Warning:
		return s.Warning
	}
	return s.Info
}
