package rules

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// Rule names, as findings carry them.
const (
	RuleNoKeepalive      = "no-keepalive"
	RuleKeepaliveTooSlow = "keepalive-too-slow"
	RuleHalfOpen         = "half-open"
	RuleSlowDeadPeer     = "slow-dead-peer-detection"
	RulePodSysctlDiffers = "pod-sysctl-differs"
	RuleZeroWindow       = "zero-window"
	RuleCloseWait        = "close-wait"
	RuleRecvBacklog      = "recv-backlog"
	RuleListenOverflow   = "listen-overflow"
	RuleIPVSNodestDrop   = "ipvs-expire-nodest-off"
	// RuleFlowForgotten: a middlebox on the path has already forgotten the
	// connection, and its next packet meets what that means.
	RuleFlowForgotten = "flow-forgotten"
	// RuleConnectUnanswered: a connect whose SYNs go unanswered, which the
	// kernel will fail with "connection timed out".
	RuleConnectUnanswered = "connect-unanswered"
	// RuleHandshakeUnanswered: an accepted connection whose SYN-ACKs go
	// unanswered, which the kernel will drop.
	RuleHandshakeUnanswered = "handshake-unanswered"
)

// Thresholds that separate a healthy socket from a finding.
const (
	// nearTimeout: an idle timeout this short will be hit by any quiet spell.
	nearTimeout = time.Hour
	// halfOpenRetransmits unanswered retransmissions, and no ACK for
	// halfOpenSilence, make a peer "probably gone".
	halfOpenRetransmits = 3
	halfOpenSilence     = time.Second
	// unreadFor is how long received data may sit before the reader is stuck.
	unreadFor = time.Second
	// slowDetection is a give-up time long enough to call detection slow.
	slowDetection = 5 * time.Minute
	// suggestedUserTimeout is the TCP_USER_TIMEOUT the fixes propose.
	suggestedUserTimeout = 30 * time.Second
	// listExposed caps the socket ids listed in a namespace-wide finding.
	listExposed = 20
)

// conn is one socket as the socket rules see it: with the snapshot it is
// in, which end of its connection it is, and what its path will do to it.
type conn struct {
	snap *diag.Snapshot
	*diag.Socket
	side side
	// path lists the middleboxes that carry the connection, soonest to
	// forget it first; empty for a connection that stays in the namespace.
	path []forgetting
}

// Evaluate runs every rule over snap, with the middleboxes the user declared.
func Evaluate(snap *diag.Snapshot, declared []Middlebox) Report {
	r := Report{Middleboxes: PathTimeouts(snap, declared), Findings: []Finding{}}
	ls := listenersOf(snap)
	for i := range snap.Sockets {
		c := conn{snap: snap, Socket: &snap.Sockets[i]}
		c.side = ls.sideOf(c.Socket)
		if crossesNetwork(snap, c.Socket) {
			c.path = forgettings(r.Middleboxes, c.Socket, c.side)
		}
		for _, rule := range []func(conn) *Finding{
			idleRule, keepaliveNotSeen, halfOpen, connectUnanswered, handshakeUnanswered, zeroWindow, closeWait, recvBacklog, listenOverflow,
		} {
			if f := rule(c); f != nil {
				id := c.ID
				f.Socket = &id
				r.Findings = append(r.Findings, *f)
			}
		}
	}
	for _, rule := range []func(*diag.Snapshot) *Finding{
		podSysctlDiffers, slowDeadPeer,
		ipvsNodestDrop(r.Middleboxes, &snap.Host, diag.Host),
		ipvsNodestDrop(r.Middleboxes, &snap.Target, diag.Target),
	} {
		if f := rule(snap); f != nil {
			r.Findings = append(r.Findings, *f)
		}
	}
	slices.SortStableFunc(r.Findings, urgency)
	return r
}

// secs is a duration in seconds, to the millisecond, for evidence.
func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// crossesNetwork is true for connections a middlebox could sit on:
// established in both directions, and with a peer outside the namespace.
// A peer inside it is a socket of the namespace, one on loopback or on one
// of the namespace's own addresses, or a local proxy the namespace's
// netfilter redirected the connection to, as Istio's and Linkerd's sidecars
// do with every outbound connection of the application: then only the
// proxy's own connections leave the pod.
func crossesNetwork(snap *diag.Snapshot, s *diag.Socket) bool {
	if s.State != diag.Established || s.Peer != 0 || inNamespace(snap, s.Remote.Addr()) {
		return false
	}
	return s.RedirectedTo == nil || !inNamespace(snap, s.RedirectedTo.Addr())
}

// inNamespace reports whether a belongs to the target namespace.
func inNamespace(snap *diag.Snapshot, a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || slices.Contains(snap.Target.Addresses, a)
}

// who names the processes holding s, for summaries.
func who(s *diag.Socket) string {
	if len(s.Processes) == 0 {
		return ""
	}
	p := s.Processes[0]
	return fmt.Sprintf(" (%s, pid %d)", p.Comm, p.PID)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func ends(s *diag.Socket) string { return fmt.Sprintf("%s -> %s%s", s.Local, s.Remote, who(s)) }

// human writes a duration the way a person reads it at a glance.
func human(d time.Duration) string {
	switch {
	case d < 100*time.Second:
		return fmt.Sprintf("%.1f s", secs(d))
	case d < 2*time.Hour:
		return fmt.Sprintf("%.0f s (%s)", secs(d), d.Round(time.Second))
	}
	return fmt.Sprintf("%.0f s (%.1f h)", secs(d), d.Hours())
}
