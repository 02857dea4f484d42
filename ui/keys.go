package ui

import (
	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// KeyMap holds the keys of every mode. Each mode's ShortHelp (the footer)
// and FullHelp (the help screen) list exactly the keys that mode handles.
type KeyMap struct {
	Node     NodeKeys
	Table    TableKeys
	Filter   FilterKeys
	Findings FindingsKeys
	Closed   ClosedKeys
	Details  DetailsKeys
	Help     HelpKeys
}

// Moves are the keys that move through a list or scroll a page.
type Moves struct {
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding
}

func (m Moves) list() []key.Binding {
	return []key.Binding{m.Up, m.Down, m.PageUp, m.PageDown, m.Top, m.Bottom}
}

// move applies a move key to a position in a list of last+1 lines seen a
// page at a time; it reports false for any other key.
func (m Moves) move(msg tea.KeyPressMsg, cur, page, last int) (int, bool) {
	switch {
	case key.Matches(msg, m.Up):
		cur--
	case key.Matches(msg, m.Down):
		cur++
	case key.Matches(msg, m.PageUp):
		cur -= page
	case key.Matches(msg, m.PageDown):
		cur += page
	case key.Matches(msg, m.Top):
		cur = 0
	case key.Matches(msg, m.Bottom):
		cur = last
	default:
		return cur, false
	}
	return max(0, min(cur, last)), true
}

// Live are the keys that act on the live snapshot from every screen but
// help and the filter.
type Live struct {
	Pause, Refresh, Export, Help key.Binding
}

func (l Live) list() []key.Binding { return []key.Binding{l.Pause, l.Refresh, l.Export, l.Help} }

// TableKeys are the keys of the connection table.
type TableKeys struct {
	Moves
	Live
	Filter, ClearFilter, Details, Findings, Quit key.Binding
	// Closed lists the connections that ended while the view watched. The
	// footer has no room for it; the header's count of them names it.
	Closed key.Binding
	// Back returns to the node view the table was opened from; it is
	// enabled only when there is one.
	Back key.Binding

	SortState, SortRemote, SortProcess, SortQueue, SortRetrans, SortIdle, SortSeverity key.Binding
}

// ShortHelp is the table's footer. Opened from the node view, the way
// back takes pause's place, which the header shows anyway: 80 columns
// hold no more.
func (k TableKeys) ShortHelp() []key.Binding {
	if k.Back.Enabled() {
		return []key.Binding{k.Back, k.Filter, k.Details, k.Findings, k.Export, k.Help, k.Quit}
	}
	return []key.Binding{k.Filter, k.Details, k.Findings, k.Pause, k.Export, k.Help, k.Quit}
}

// FullHelp is the table's help screen, by column.
func (k TableKeys) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		k.Moves.list(),
		{k.Filter, k.ClearFilter, k.Back, k.Details, k.Findings, k.Closed, k.Quit},
		k.Live.list(),
		{k.SortState, k.SortRemote, k.SortProcess, k.SortQueue, k.SortRetrans, k.SortIdle, k.SortSeverity},
	}
}

// FilterKeys are the keys while the filter is being typed; every other key
// is text.
type FilterKeys struct {
	Apply, Clear, Quit key.Binding
}

// ShortHelp is the filter's footer.
func (k FilterKeys) ShortHelp() []key.Binding { return []key.Binding{k.Apply, k.Clear, k.Quit} }

// FullHelp is the filter's help.
func (k FilterKeys) FullHelp() [][]key.Binding { return [][]key.Binding{k.ShortHelp()} }

// FindingsKeys are the keys of the findings list.
type FindingsKeys struct {
	Moves
	Live
	Details, Back, Quit key.Binding
}

// ShortHelp is the findings list's footer.
func (k FindingsKeys) ShortHelp() []key.Binding {
	return []key.Binding{k.Details, k.Back, k.Pause, k.Export, k.Help, k.Quit}
}

// FullHelp is the findings list's help screen.
func (k FindingsKeys) FullHelp() [][]key.Binding {
	return [][]key.Binding{k.Moves.list(), {k.Details, k.Back, k.Quit}, k.Live.list()}
}

// ClosedKeys are the keys of the list of connections that ended.
type ClosedKeys struct {
	Moves
	Live
	Details, Back, Quit key.Binding
}

// ShortHelp is the closed list's footer.
func (k ClosedKeys) ShortHelp() []key.Binding {
	return []key.Binding{k.Details, k.Back, k.Pause, k.Export, k.Help, k.Quit}
}

// FullHelp is the closed list's help screen.
func (k ClosedKeys) FullHelp() [][]key.Binding {
	return [][]key.Binding{k.Moves.list(), {k.Details, k.Back, k.Quit}, k.Live.list()}
}

// DetailsKeys are the keys of a socket's or a finding's details.
type DetailsKeys struct {
	Moves
	Live
	Back, Quit key.Binding
}

// ShortHelp is the details' footer.
func (k DetailsKeys) ShortHelp() []key.Binding {
	return []key.Binding{k.PageDown, k.Back, k.Pause, k.Export, k.Help, k.Quit}
}

// FullHelp is the details' help screen.
func (k DetailsKeys) FullHelp() [][]key.Binding {
	return [][]key.Binding{k.Moves.list(), {k.Back, k.Quit}, k.Live.list()}
}

// HelpKeys are the keys of the help screen, which scrolls when it is
// longer than the screen.
type HelpKeys struct {
	Moves
	Back, Quit key.Binding
}

// ShortHelp is the help screen's footer.
func (k HelpKeys) ShortHelp() []key.Binding { return []key.Binding{k.Down, k.Back, k.Quit} }

// FullHelp lists the help screen's keys.
func (k HelpKeys) FullHelp() [][]key.Binding {
	return [][]key.Binding{k.Moves.list(), {k.Back, k.Quit}}
}

var (
	_ help.KeyMap = NodeKeys{}
	_ help.KeyMap = TableKeys{}
	_ help.KeyMap = FilterKeys{}
	_ help.KeyMap = FindingsKeys{}
	_ help.KeyMap = ClosedKeys{}
	_ help.KeyMap = DetailsKeys{}
	_ help.KeyMap = HelpKeys{}
)

func binding(help, desc string, keys ...string) key.Binding {
	return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
}

// DefaultKeyMap follows k9s: / filter, esc back, enter details (or a
// namespace from the node view), ? help, Shift+letter sorts, a letter
// opens a list (f findings, c closed connections) and closes it again. q quits from
// the node view and the table and closes anything opened over them;
// ctrl+c quits from everywhere. The table's Back is disabled: New enables
// it when the table is opened from the node view.
func DefaultKeyMap() KeyMap {
	moves := Moves{
		Up:       binding("↑/k", "up", "up", "k"),
		Down:     binding("↓/j", "down", "down", "j"),
		PageUp:   binding("pgup", "page up", "pgup", "ctrl+b"),
		PageDown: binding("pgdn", "page down", "pgdown", "ctrl+f"),
		Top:      binding("g", "top", "g", "home"),
		Bottom:   binding("G", "bottom", "G", "end"),
	}
	live := Live{
		Pause:   binding("space", "pause", "space"),
		Refresh: binding("ctrl+r", "refresh", "ctrl+r"),
		Export:  binding("e", "export", "e"),
		Help:    binding("?", "help", "?"),
	}
	quitOnly := binding("ctrl+c", "quit", "ctrl+c")
	return KeyMap{
		Node: NodeKeys{
			Moves: moves, Live: live,
			Open:        binding("enter", "open namespace", "enter"),
			Filter:      binding("/", "filter", "/"),
			ClearFilter: binding("esc", "clear filter", "esc"),
			Quit:        binding("q", "quit", "q", "ctrl+c"),
		},
		Table: TableKeys{
			Moves: moves, Live: live,
			Filter:      binding("/", "filter", "/"),
			ClearFilter: binding("esc", "clear filter", "esc"),
			Details:     binding("enter", "details", "enter"),
			Findings:    binding("f", "findings", "f"),
			Closed:      binding("c", "closed connections", "c"),
			Quit:        binding("q", "quit", "q", "ctrl+c"),
			Back:        key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"), key.WithDisabled()),

			SortState:    binding("S", "sort by state", "S", "shift+s"),
			SortRemote:   binding("R", "sort by remote", "R", "shift+r"),
			SortProcess:  binding("P", "sort by process", "P", "shift+p"),
			SortQueue:    binding("Q", "sort by queue", "Q", "shift+q"),
			SortRetrans:  binding("T", "sort by retransmits", "T", "shift+t"),
			SortIdle:     binding("I", "sort by idle", "I", "shift+i"),
			SortSeverity: binding("F", "sort by finding", "F", "shift+f"),
		},
		Filter: FilterKeys{
			Apply: binding("enter", "apply filter", "enter"),
			Clear: binding("esc", "clear filter", "esc"),
			Quit:  quitOnly,
		},
		Findings: FindingsKeys{
			Moves: moves, Live: live,
			Details: binding("enter", "details", "enter"),
			Back:    binding("esc/q", "back", "esc", "q", "f"),
			Quit:    quitOnly,
		},
		Closed: ClosedKeys{
			Moves: moves, Live: live,
			Details: binding("enter", "details", "enter"),
			Back:    binding("esc/q", "back", "esc", "q", "c"),
			Quit:    quitOnly,
		},
		Details: DetailsKeys{
			Moves: moves, Live: live,
			Back: binding("esc/q", "back", "esc", "q"),
			Quit: quitOnly,
		},
		Help: HelpKeys{
			Moves: moves,
			Back:  binding("esc/q/?", "close help", "esc", "q", "?"),
			Quit:  quitOnly,
		},
	}
}

// setPaused makes every pause key say what it does now.
func (k *KeyMap) setPaused(paused bool) {
	desc := "pause"
	if paused {
		desc = "resume"
	}
	for _, b := range []*key.Binding{&k.Node.Pause, &k.Table.Pause, &k.Findings.Pause, &k.Closed.Pause, &k.Details.Pause} {
		b.SetHelp("space", desc)
	}
}
