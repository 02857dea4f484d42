// Package ui is tcpvet's terminal interface: a live, keyboard-driven table
// of a namespace's connections with what is wrong with them, and the plain
// text it prints when stdout is not a terminal.
//
// It draws snapshots and findings it is handed through a Source; it never
// talks to the kernel itself. All I/O runs in tea.Cmds.
package ui
