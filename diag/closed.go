package diag

import (
	"net/netip"
	"time"
)

// The causes of a connection's death.
const (
	// CauseReset: a reset from the peer or the path ended it.
	CauseReset = "reset"
	// CauseTimeout: the kernel gave up on it, its retransmissions or
	// probes unanswered.
	CauseTimeout = "timeout"
	// CauseClosed: it was closed by an application: a FIN exchange, or
	// its own application aborting it.
	CauseClosed = "closed"
	// CauseUnknown: the evidence does not tell.
	CauseUnknown = "unknown"
)

// Closed is a connection that ended during a watch, and how.
type Closed struct {
	// ID is the socket's cookie, as diag.Socket.ID.
	ID     Cookie         `json:"id"`
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	// Cause is one of the causes watch.Classify tells apart: reset,
	// timeout, closed or unknown.
	Cause string `json:"cause"`
	// EndedAt is when tcpvet read the kernel's announcement of its death,
	// a moment after the application let go of the socket.
	EndedAt time.Time `json:"ended_at"`
	// Why says in one sentence how tcpvet knows the cause.
	Why string `json:"why"`
	// LivedS is how long the connection was known to live: from the
	// first sample that saw it to the kernel's announcement of its death.
	// It is a lower bound of its age (the kernel does not say when a
	// connection was born); nil when no sample saw it.
	LivedS *float64 `json:"lived_s"`
	// LastState is the state the last sample saw it in; empty when no
	// sample saw it.
	LastState string `json:"last_state,omitempty"`
	// PathForgotAt is when the path's conntrack destroyed the
	// connection's entry while it was established, before the socket
	// died; nil when no such event was seen.
	PathForgotAt *time.Time `json:"path_forgot_at,omitempty"`
	// TCPInfo is the final tcp_info the kernel sent with the death, else
	// the last one sampled; the last one sampled, or none, when the socket
	// was wiped before its death (SO_LINGER 0: its counters zero, its
	// last_* counted from the boot).
	TCPInfo *TCPInfo `json:"tcp_info"`
}
