package ui

import "charm.land/bubbles/v2/key"

// KeyMap holds every key binding; help is generated from it.
type KeyMap struct {
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding

	Filter, Back, Enter, Findings, Export, Refresh, Pause, Help, Quit key.Binding

	SortState, SortRemote, SortProcess, SortQueue, SortRetrans, SortIdle, SortSeverity key.Binding
}

// DefaultKeyMap follows k9s: / filter, esc back, enter details, ? help,
// Shift+letter sorts.
func DefaultKeyMap() KeyMap {
	b := func(help, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return KeyMap{
		Up:       b("↑/k", "up", "up", "k"),
		Down:     b("↓/j", "down", "down", "j"),
		PageUp:   b("pgup", "page up", "pgup", "ctrl+b"),
		PageDown: b("pgdn", "page down", "pgdown", "ctrl+f"),
		Top:      b("g", "top", "g", "home"),
		Bottom:   b("G", "bottom", "G", "end"),

		Filter:   b("/", "filter", "/"),
		Back:     b("esc", "back / clear", "esc"),
		Enter:    b("enter", "details", "enter"),
		Findings: b("f", "findings", "f"),
		Export:   b("e", "export JSON", "e"),
		Refresh:  b("ctrl+r", "refresh", "ctrl+r"),
		Pause:    b("space", "pause", "space"),
		Help:     b("?", "help", "?"),
		Quit:     b("q", "quit", "q", "ctrl+c"),

		SortState:    b("S", "sort by state", "S", "shift+s"),
		SortRemote:   b("R", "sort by remote", "R", "shift+r"),
		SortProcess:  b("P", "sort by process", "P", "shift+p"),
		SortQueue:    b("Q", "sort by send queue", "Q", "shift+q"),
		SortRetrans:  b("T", "sort by retransmits", "T", "shift+t"),
		SortIdle:     b("I", "sort by idle", "I", "shift+i"),
		SortSeverity: b("F", "sort by finding", "F", "shift+f"),
	}
}

// ShortHelp is the one-line help of the footer.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Filter, k.Enter, k.Findings, k.Pause, k.Export, k.Help, k.Quit}
}

// FullHelp is the help screen, by column.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom},
		{k.Filter, k.Back, k.Enter, k.Findings, k.Export, k.Refresh, k.Pause, k.Help, k.Quit},
		{k.SortState, k.SortRemote, k.SortProcess, k.SortQueue, k.SortRetrans, k.SortIdle, k.SortSeverity},
	}
}
