package ui

import "charm.land/bubbles/v2/key"

// NodeKeys are the keys of the node view: one row per namespace of the
// last sweep.
type NodeKeys struct {
	Moves
	Live
	Filter, ClearFilter, Open, Quit key.Binding
}

// ShortHelp is the node view's footer.
func (k NodeKeys) ShortHelp() []key.Binding {
	return []key.Binding{k.Open, k.Filter, k.Pause, k.Export, k.Help, k.Quit}
}

// FullHelp is the node view's help screen.
func (k NodeKeys) FullHelp() [][]key.Binding {
	return [][]key.Binding{k.Moves.list(), {k.Open, k.Filter, k.ClearFilter, k.Quit}, k.Live.list()}
}
