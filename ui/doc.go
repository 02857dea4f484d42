// Package ui is tcpvet's terminal interface: a live, keyboard-driven table
// of a namespace's connections with what is wrong with them and, as it
// watches, the connections that ended and how; the plain text it prints
// when stdout is not a terminal; and, over a sweep of a
// whole node, a view of every namespace by pod, most urgent first, each of
// which opens into its connection table.
//
// It draws snapshots, sweeps and findings it is handed through a Source or
// a NodeSource; it never talks to the kernel itself. All I/O runs in
// tea.Cmds.
package ui
