package rules

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
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

// Evaluate runs every rule over snap, with the middleboxes the user declared.
func Evaluate(snap *diag.Snapshot, declared []Middlebox) Report {
	r := Report{Middleboxes: PathTimeouts(snap, declared), Findings: []Finding{}}
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		shortest := onPath(r.Middleboxes, s)
		for _, rule := range []func(*diag.Snapshot, *diag.Socket, *hop) *Finding{
			noKeepalive, keepaliveTooSlow, halfOpen, zeroWindow, closeWait, recvBacklog, listenOverflow,
		} {
			if f := rule(snap, s, shortest); f != nil {
				id := s.ID
				f.Socket = &id
				r.Findings = append(r.Findings, *f)
			}
		}
	}
	for _, rule := range []func(*diag.Snapshot) *Finding{
		podSysctlDiffers, slowDeadPeer,
		ipvsNodestDrop(r.Middleboxes, snap.Sysctls.Host, "host"),
		ipvsNodestDrop(r.Middleboxes, snap.Sysctls.Target, "target"),
	} {
		if f := rule(snap); f != nil {
			r.Findings = append(r.Findings, *f)
		}
	}
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		return cmp.Compare(deref(a.Socket), deref(b.Socket))
	})
	return r
}

// secs is a duration in seconds, to the millisecond, for evidence.
func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// crossesNetwork is true for connections a middlebox could sit on:
// established in both directions, and with a peer outside the namespace.
// A peer inside it is a socket of the namespace, one on loopback or on one
// of the namespace's own addresses, or a local proxy the namespace's
// netfilter redirected the connection to, as Istio's and Linkerd's sidecars
// do with every outbound connection of the application: then only the
// proxy's own connections leave the pod.
func crossesNetwork(snap *diag.Snapshot, s *diag.Socket) bool {
	if s.State != diag.Established || s.Peer != "" || inNamespace(snap, s.Remote.Addr()) {
		return false
	}
	return s.RedirectedTo == nil || !inNamespace(snap, s.RedirectedTo.Addr())
}

// inNamespace reports whether a belongs to the target namespace.
func inNamespace(snap *diag.Snapshot, a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || slices.Contains(snap.Target.Addresses, a)
}

// idleFor is how long the connection has carried no data either way.
func idleFor(s *diag.Socket) time.Duration {
	return time.Duration(s.IdleMS()) * time.Millisecond
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

func conn(s *diag.Socket) string { return fmt.Sprintf("%s -> %s%s", s.Local, s.Remote, who(s)) }

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

func noKeepalive(snap *diag.Snapshot, s *diag.Socket, shortest *hop) *Finding {
	if !crossesNetwork(snap, s) || s.Keepalive.Enabled == nil || *s.Keepalive.Enabled {
		return nil
	}
	idle := idleFor(s)
	ev := Evidence{"keepalive": false, "idle_s": secs(idle)}
	f := &Finding{Rule: RuleNoKeepalive, Evidence: ev}
	if shortest == nil {
		f.Severity = Warning
		f.Summary = fmt.Sprintf("%s has no keepalive: a NAT, load balancer or IPVS on the path that forgets idle flows will reset or silently drop its next write after a quiet spell, and a dead peer goes unnoticed while it is idle (idle now %s)", conn(s), human(idle))
		f.Fix = keepaliveFixes(proposeKeepalive(350 * time.Second))
		return f
	}
	shortest.describe(ev)
	f.Severity = Warning
	if shortest.IdleTimeout <= nearTimeout {
		f.Severity = Critical
	}
	f.Summary = fmt.Sprintf("%s has no keepalive: once it is idle %s, %s forgets it and %s (idle now %s)", conn(s), human(shortest.IdleTimeout), shortest.Name, nextWrite(shortest, snap, s), human(idle))
	f.Fix = keepaliveFixes(proposeKeepalive(shortest.IdleTimeout))
	return f
}

func keepaliveTooSlow(snap *diag.Snapshot, s *diag.Socket, shortest *hop) *Finding {
	k := s.Keepalive
	if !crossesNetwork(snap, s) || shortest == nil || k.Enabled == nil || !*k.Enabled {
		return nil
	}
	idle := time.Duration(*k.IdleS) * time.Second
	if idle < shortest.IdleTimeout {
		return nil
	}
	detection := idle + time.Duration(*k.IntervalS**k.Probes)*time.Second
	from := "its own TCP_KEEPIDLE"
	if k.Source == "namespace" {
		from = "the namespace's net.ipv4.tcp_keepalive_time"
	}
	ev := Evidence{
		"keepalive_idle_s": *k.IdleS, "keepalive_interval_s": *k.IntervalS, "keepalive_probes": *k.Probes,
		"keepalive_source": k.Source, "detection_s": secs(detection),
		"idle_s": secs(idleFor(s)),
	}
	shortest.describe(ev)
	return &Finding{
		Rule:     RuleKeepaliveTooSlow,
		Severity: Critical,
		Summary: fmt.Sprintf("%s sends its first keepalive probe after %s idle (%s), but %s forgets an idle flow after %s: %s",
			conn(s), human(idle), from, shortest.Name, human(shortest.IdleTimeout), lateProbe(shortest, detection)),
		Evidence: ev,
		Fix:      keepaliveFixes(proposeKeepalive(shortest.IdleTimeout)),
	}
}

// nextWrite says what the next write of s meets once h has forgotten it.
func nextWrite(h *hop, snap *diag.Snapshot, s *diag.Socket) string {
	hang := "hangs until the kernel gives up"
	if rt, ok := NewRetransmission(snap.Sysctls.Target, s.UserTimeoutMS); ok {
		first := rtoMin
		if s.TCPInfo != nil {
			first = max(rtoMin, time.Duration(s.TCPInfo.RTO)*time.Microsecond)
		}
		hang = fmt.Sprintf("hangs %s until the kernel gives up (%s) with \"connection timed out\"", human(rt.AbortAfter(first)), rt.Reason())
	}
	switch h.OnExpiry {
	case ExpiryReset:
		return `the next write gets "connection reset by peer"`
	case ExpiryDrop:
		return "the next write is dropped without a word and " + hang
	}
	return `the next write gets "connection reset by peer", or is dropped and ` + hang
}

// lateProbe says what a keepalive probe sent after h forgot the flow meets;
// detection is when keepalive gives up on a silent peer, from the last data.
func lateProbe(h *hop, detection time.Duration) string {
	dies := fmt.Sprintf("the connection dies with \"connection timed out\" %s after its last data", human(detection))
	switch h.OnExpiry {
	case ExpiryReset:
		return `the probe or the next write gets "connection reset by peer"`
	case ExpiryDrop:
		return "the probe is dropped without a word, the next write hangs, and " + dies
	}
	return `the probe or the next write gets "connection reset by peer", or is dropped and ` + dies
}

func halfOpen(snap *diag.Snapshot, s *diag.Socket, _ *hop) *Finding {
	info := s.TCPInfo
	if s.Timer.Kind != diag.TimerOn || info == nil || info.Unacked == 0 ||
		info.Retransmits < halfOpenRetransmits || time.Duration(info.LastAckRecv)*time.Millisecond < halfOpenSilence {
		return nil
	}
	ev := Evidence{
		"retransmits": info.Retransmits, "backoff": info.Backoff, "unacked": info.Unacked,
		"last_ack_recv_ms": info.LastAckRecv, "rto_ms": info.RTO / 1000, "send_q": s.SendQ,
	}
	when := "the kernel's give-up time is unknown (sysctls unreadable)"
	if rt, ok := NewRetransmission(snap.Sysctls.Target, s.UserTimeoutMS); ok {
		state := retransmitState(s, rt.RTOMax)
		abort := rt.AbortAfter(state.FirstRTO)
		in := max(0, abort-state.Elapsed)
		ev["gives_up_in_s"] = secs(in)
		ev["gives_up_after_s"] = secs(abort)
		ev["retransmitting_for_s"] = secs(state.Elapsed)
		because := rt.Reason()
		ev["gives_up_because"] = because
		when = fmt.Sprintf("the kernel gives up in %s (%s); until then writes hang", human(in), because)
	}
	return &Finding{
		Rule:     RuleHalfOpen,
		Severity: Critical,
		Summary: fmt.Sprintf("%s: the peer has not acknowledged anything for %s (%s, %s unacknowledged): it is probably gone; %s",
			conn(s), human(time.Duration(info.LastAckRecv)*time.Millisecond), plural(int(info.Retransmits), "retransmission"), plural(int(info.Unacked), "segment"), when),
		Evidence: ev,
		Fix:      userTimeoutFixes(suggestedUserTimeout),
	}
}

func zeroWindow(_ *diag.Snapshot, s *diag.Socket, _ *hop) *Finding {
	persist := s.Timer.Kind == diag.TimerPersist
	closed := s.TCPInfo != nil && s.TCPInfo.Size >= 232 && s.TCPInfo.SndWnd == 0 && s.SendQ > 0 && s.State == diag.Established
	if !persist && !closed {
		return nil
	}
	return &Finding{
		Rule:     RuleZeroWindow,
		Severity: Warning,
		Summary: fmt.Sprintf("%s: the peer's receive window is closed, so its application is not reading; %d bytes wait here and writes block (%s so far)",
			conn(s), s.SendQ, plural(int(s.Timer.Retrans), "window probe")),
		Evidence: Evidence{"send_q": s.SendQ, "window_probes": s.Timer.Retrans, "timer": s.Timer.Kind.String()},
		Fix: append([]Fix{{Where: "the peer", Snippet: fmt.Sprintf("find why the process behind %s stopped reading (stuck thread, full downstream, deadlock)", s.Remote)}},
			userTimeoutFixes(suggestedUserTimeout)[:2]...),
	}
}

func closeWait(_ *diag.Snapshot, s *diag.Socket, _ *hop) *Finding {
	if s.State != diag.CloseWait {
		return nil
	}
	return &Finding{
		Rule:     RuleCloseWait,
		Severity: Warning,
		Summary:  fmt.Sprintf("%s: the peer closed this connection and the local application never did; each one leaks a descriptor", conn(s)),
		Evidence: Evidence{"recv_q": s.RecvQ, "processes": s.Processes},
		Fix:      []Fix{{Where: "the application", Snippet: "close the socket when a read returns 0 / io.EOF, and on every error path (defer conn.Close())"}},
	}
}

func recvBacklog(_ *diag.Snapshot, s *diag.Socket, _ *hop) *Finding {
	if s.State == diag.Listen || s.RecvQ == 0 || s.TCPInfo == nil ||
		time.Duration(s.TCPInfo.LastDataRecv)*time.Millisecond < unreadFor {
		return nil
	}
	age := time.Duration(s.TCPInfo.LastDataRecv) * time.Millisecond
	return &Finding{
		Rule:     RuleRecvBacklog,
		Severity: Warning,
		Summary:  fmt.Sprintf("%s: %s have arrived and sat unread for at least %s: the local application is not reading", conn(s), plural(int(s.RecvQ), "byte"), human(age)),
		Evidence: Evidence{"recv_q": s.RecvQ, "last_data_recv_ms": s.TCPInfo.LastDataRecv, "processes": s.Processes},
		Fix:      []Fix{{Where: "the application", Snippet: "find the reader that stopped: a blocked goroutine or thread, a full channel, a lock (kill -QUIT a Go process for its stacks)"}},
	}
}

func listenOverflow(_ *diag.Snapshot, s *diag.Socket, _ *hop) *Finding {
	if s.State != diag.Listen || s.SendQ == 0 || s.RecvQ < s.SendQ {
		return nil
	}
	return &Finding{
		Rule:     RuleListenOverflow,
		Severity: Critical,
		Summary:  fmt.Sprintf("listener %s%s: its accept queue is full (%d of %d): new connections are dropped or time out", s.Local, who(s), s.RecvQ, s.SendQ),
		Evidence: Evidence{"accept_queue": s.RecvQ, "backlog": s.SendQ},
		Fix: []Fix{
			{Where: "the application", Snippet: "accept faster (the accept loop is blocked or too slow), or pass a larger backlog to listen()"},
			{Where: "namespace sysctl", Snippet: "net.core.somaxconn caps the backlog listen() may ask for"},
		},
	}
}

// watchedSysctls drift between host and pod matters for these.
var watchedSysctls = []string{diag.KeepaliveTime, diag.KeepaliveIntvl, diag.KeepaliveProbes, diag.Retries2}

func podSysctlDiffers(snap *diag.Snapshot) *Finding {
	if !snap.Host.Visible || snap.Sysctls.Host == nil {
		return nil
	}
	diff := map[string]map[string]int64{}
	var parts []string
	var yaml strings.Builder
	for _, name := range watchedSysctls {
		t, tok := snap.Sysctls.Target.Get(name)
		h, hok := snap.Sysctls.Host.Get(name)
		if !tok || !hok || t == h {
			continue
		}
		diff[name] = map[string]int64{"target": t, "host": h}
		parts = append(parts, fmt.Sprintf("%s=%d (host %d)", strings.TrimPrefix(name, "net.ipv4."), t, h))
		if name != diag.Retries2 {
			fmt.Fprintf(&yaml, "\n    - {name: %s, value: \"%d\"}", name, h)
		}
	}
	if len(diff) == 0 {
		return nil
	}
	fixes := []Fix{}
	if yaml.Len() > 0 {
		fixes = append(fixes, Fix{Where: "pod sysctls (safe since Kubernetes 1.29)", Snippet: "spec:\n  securityContext:\n    sysctls:" + yaml.String()})
	}
	if _, ok := diff[diag.Retries2]; ok {
		fixes = append(fixes, Fix{Where: "pod sysctls (tcp_retries2 is unsafe: the kubelet must allow it with --allowed-unsafe-sysctls)", Snippet: fmt.Sprintf("- {name: net.ipv4.tcp_retries2, value: \"%d\"}", diff[diag.Retries2]["host"])})
	}
	return &Finding{
		Rule:     RulePodSysctlDiffers,
		Severity: Warning,
		Summary:  fmt.Sprintf("this namespace does not have the host's TCP tuning: %s; these sysctls are per network namespace, so tuning the node never reached it", strings.Join(parts, ", ")),
		Evidence: Evidence{"sysctls": diff},
		Fix:      fixes,
	}
}

// ipvsNodestDrop is the rule for the IPVS of the namespace named where:
// with expire_nodest_conn off, once a rolling update removes a real
// server, IPVS drops its clients' packets without a word, and each client
// hangs until its kernel gives up.
//
// path is the report's, where that IPVS already is, with the connections
// it carries.
func ipvsNodestDrop(path []Middlebox, sysctls diag.Sysctls, where string) func(*diag.Snapshot) *Finding {
	return func(snap *diag.Snapshot) *Finding {
		if on, ok := sysctls.Get(diag.IPVSExpireNodestConn); !ok || on != 0 {
			return nil
		}
		i := slices.IndexFunc(path, func(m Middlebox) bool { return m.Name == ipvsName(where) })
		if i < 0 {
			return nil
		}
		m := path[i]
		var carried []string
		for i := range snap.Sockets {
			s := &snap.Sockets[i]
			if !crossesNetwork(snap, s) {
				continue
			}
			if onPath([]Middlebox{m}, s) != nil {
				carried = append(carried, s.ID)
			}
		}
		if len(carried) == 0 {
			return nil
		}
		hang := "until the kernel gives up"
		if rt, ok := NewRetransmission(snap.Sysctls.Target, nil); ok {
			hang = fmt.Sprintf("up to %s with %s and no TCP_USER_TIMEOUT", human(rt.AbortAfter(rtoMin)), rt.Reason())
		}
		return &Finding{
			Rule:     RuleIPVSNodestDrop,
			Severity: Warning,
			Summary: fmt.Sprintf("the %s's IPVS has %s=0: when a rolling update removes a real server, IPVS silently drops the packets of its open connections, so %s here would hang instead of failing at once: %s",
				where, diag.IPVSExpireNodestConn, plural(len(carried), "connection"), hang),
			Evidence: Evidence{diag.IPVSExpireNodestConn: 0, "ipvs": where, "sockets": carried[:min(len(carried), listExposed)]},
			Fix: []Fix{
				{Where: "the " + where + "'s sysctl (kube-proxy in IPVS mode sets it; 0 means something reset it, or another IPVS manager runs here)", Snippet: "sysctl -w " + diag.IPVSExpireNodestConn + "=1"},
				{Where: "the clients", Snippet: "TCP_USER_TIMEOUT or gRPC keepalive bounds the hang whatever IPVS does"},
			},
		}
	}
}

func slowDeadPeer(snap *diag.Snapshot) *Finding {
	rt, ok := NewRetransmission(snap.Sysctls.Target, nil)
	if !ok {
		return nil
	}
	var exposed []string
	unknown := 0
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if !crossesNetwork(snap, s) {
			continue
		}
		switch {
		case s.UserTimeoutMS == nil:
			unknown++
		case *s.UserTimeoutMS == 0:
			exposed = append(exposed, s.ID)
		}
	}
	if len(exposed) == 0 {
		return nil
	}
	abort := rt.AbortAfter(rtoMin)
	sev := Info
	if abort > slowDetection {
		sev = Warning
	}
	listed := exposed[:min(len(exposed), listExposed)]
	return &Finding{
		Rule:     RuleSlowDeadPeer,
		Severity: sev,
		Summary: fmt.Sprintf("%s without TCP_USER_TIMEOUT: if a peer dies while data is in flight (keepalive does not run then), writes hang about %s (tcp_retries2=%d) before the application hears of it",
			plural(len(exposed), "connection"), human(abort), rt.Retries2),
		Evidence: Evidence{
			"tcp_retries2": rt.Retries2, "model_timeout_s": secs(rt.Budget), "gives_up_after_s": secs(abort),
			"exposed": len(exposed), "sockets": listed, "options_unknown": unknown,
		},
		Fix: userTimeoutFixes(suggestedUserTimeout),
	}
}
