// Package netns resolves the network namespaces tcpvet inspects (its own, a
// process's, or a namespace file) and runs short pieces of work inside them.
//
// Work done inside a foreign namespace runs on a dedicated, locked OS thread
// that is switched back before it is released; if it cannot be switched back
// the thread is never unlocked, so the Go runtime discards it. No goroutine of
// tcpvet ever continues in a namespace it did not start in.
package netns
