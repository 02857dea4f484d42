// Package rules turns a snapshot into findings: which connections an idle
// timeout on the path, a dead peer or untuned keepalive will break, the
// numbers that say so, and the change that prevents it.
//
// Everything here is a pure function of its input: no I/O, no clock but the
// snapshot's own.
package rules
