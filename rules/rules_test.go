package rules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/tcpvet/tcpvet/diag"
)

func ptr[T any](v T) *T { return &v }

// healthy is an established, busy connection with fast keepalive and a
// user timeout: no rule may fire on it.
func healthy() diag.Socket {
	return diag.Socket{
		ID: 0x1a, State: diag.Established, Family: "inet", Inode: 4242,
		Local:         netip.MustParseAddrPort("198.18.1.1:40000"),
		Remote:        netip.MustParseAddrPort("198.18.1.2:443"),
		Timer:         diag.Timer{Kind: diag.TimerKeepalive, ExpiresMS: 50000},
		TCPInfo:       &diag.TCPInfo{Size: 280, RTOUs: 204000, SndWnd: 65535, LastDataRecvMS: 200, LastDataSentMS: 200, LastAckRecvMS: 200},
		Keepalive:     diag.Keepalive{Enabled: ptr(true), IdleS: ptr(60), IntervalS: ptr(10), Probes: ptr(5), Source: "socket"},
		UserTimeoutMS: ptr(30000),
		Processes:     []diag.Process{{PID: 42, Comm: "api", FD: 7}},
	}
}

func snapshot(socks ...diag.Socket) *diag.Snapshot {
	s := &diag.Snapshot{Sockets: socks}
	s.Target.Sysctls = diag.Sysctls{
		diag.KeepaliveTime: 7200, diag.KeepaliveIntvl: 75, diag.KeepaliveProbes: 9, diag.Retries2: 15,
	}
	return s
}

// ipvs900 puts the host's IPVS, with its default 900 s and healthy()'s
// remote as one of its virtual services, on the path.
func ipvs900(s *diag.Snapshot) {
	s.Host = diag.Namespace{Role: diag.Host, Visible: true, Sysctls: s.Host.Sysctls, IPVS: ipvsWith(diag.IPVSService{
		VIP:         netip.MustParseAddrPort("198.18.1.2:443"),
		RealServers: []netip.AddrPort{netip.MustParseAddrPort("10.244.1.5:8080")},
	})}
}

func ipvsWith(services ...diag.IPVSService) *diag.IPVS {
	return &diag.IPVS{Present: true, TCPTimeoutS: 900, ServicesListed: true, Services: services, TCPServices: len(services), RealServers: len(services)}
}

// ipvsIdle is an IPVS module that is loaded and balances nothing.
func ipvsIdle(s *diag.Snapshot) {
	s.Host = diag.Namespace{Role: diag.Host, Visible: true, Sysctls: s.Host.Sysctls, IPVS: ipvsWith()}
}

// ipvsElsewhere balances a service this connection does not use.
func ipvsElsewhere(s *diag.Snapshot) {
	s.Host = diag.Namespace{Role: diag.Host, Visible: true, Sysctls: s.Host.Sysctls, IPVS: ipvsWith(diag.IPVSService{VIP: netip.MustParseAddrPort("10.96.0.1:443")})}
}

// ipvsBlind is an IPVS whose services could not be listed.
func ipvsBlind(s *diag.Snapshot) {
	s.Host = diag.Namespace{Role: diag.Host, Visible: true, Sysctls: s.Host.Sysctls, IPVS: &diag.IPVS{Present: true, TCPTimeoutS: 900}}
}

// ipvsFWMark balances by firewall mark: any flow may be one of its.
func ipvsFWMark(s *diag.Snapshot) {
	ipvsElsewhere(s)
	s.Host.IPVS.FWMarkServices = 1
}

// ipvsInTarget is the target's own IPVS (tcpvet run in a node's namespace).
func ipvsInTarget(s *diag.Snapshot) {
	s.Target.IPVS = ipvsWith(diag.IPVSService{VIP: netip.MustParseAddrPort("198.18.1.2:443")})
}

// backend makes the socket the server side of a connection to a real server.
func backend(s *diag.Socket) {
	s.Local = netip.MustParseAddrPort("10.244.1.5:8080")
	s.Remote = netip.MustParseAddrPort("10.244.7.3:51000")
}

// withOwn gives the target namespace the addresses own, after path.
func withOwn(path func(*diag.Snapshot), own ...string) func(*diag.Snapshot) {
	return func(s *diag.Snapshot) {
		path(s)
		for _, a := range own {
			s.Target.Addresses = append(s.Target.Addresses, netip.MustParseAddr(a))
		}
	}
}

// redirectedTo has the namespace's conntrack send the socket to "to"
// instead of its remote, after mutate.
func redirectedTo(mutate func(*diag.Socket), to string) func(*diag.Socket) {
	return func(s *diag.Socket) {
		mutate(s)
		s.RedirectedTo = ptr(netip.MustParseAddrPort(to))
	}
}

// fired returns the rules that fired for socket id (0 for namespace-wide).
func fired(r Report, id diag.Cookie) map[string]Finding {
	out := map[string]Finding{}
	for _, f := range r.Findings {
		if f.Socket == nil && id == 0 || f.Socket != nil && *f.Socket == id {
			out[f.Rule] = f
		}
	}
	return out
}

func TestSocketRules(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*diag.Socket)
		path     func(*diag.Snapshot)
		declared []Middlebox
		want     string // the rule expected to fire, "" for none
		severity Severity
		also     string // a second rule expected to fire
	}{
		{name: "healthy", mutate: func(*diag.Socket) {}, path: ipvs900},

		// no-keepalive
		{name: "no keepalive, IPVS on the path", mutate: noKA, path: ipvs900, want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, nothing known on the path", mutate: noKA, want: RuleNoKeepalive, severity: Warning},
		{name: "no keepalive, only a 5-day conntrack", mutate: noKA, path: conntrackSysctl(432000), want: RuleNoKeepalive, severity: Warning},
		{name: "no keepalive, an hour exactly is near", mutate: noKA, path: tracked(3600, 0, "dnat"), want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, a 5-day DNAT conntrack", mutate: noKA, path: tracked(432000, 0, "dnat"), want: RuleNoKeepalive, severity: Warning},
		{name: "no keepalive on loopback", mutate: func(s *diag.Socket) { noKA(s); s.Remote = netip.MustParseAddrPort("127.0.0.1:9") }, path: ipvs900},
		{name: "no keepalive on IPv4-mapped loopback", mutate: func(s *diag.Socket) { noKA(s); s.Remote = netip.MustParseAddrPort("[::ffff:127.0.0.1]:9") }, path: ipvs900},
		{name: "no keepalive, listening", mutate: func(s *diag.Socket) { noKA(s); s.State = diag.Listen }, path: ipvs900},
		{name: "no keepalive, IPVS loaded but balancing nothing", mutate: noKA, path: ipvsIdle, want: RuleNoKeepalive, severity: Warning},
		{name: "no keepalive, IPVS balances other services", mutate: noKA, path: ipvsElsewhere, want: RuleNoKeepalive, severity: Warning},
		{name: "no keepalive, to an IPVS service through IPv4-mapped", mutate: func(s *diag.Socket) { noKA(s); s.Remote = netip.MustParseAddrPort("[::ffff:198.18.1.2]:443") }, path: ipvs900, want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, a real server of IPVS", mutate: func(s *diag.Socket) { noKA(s); backend(s) }, path: ipvs900, want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, IPVS services unknown", mutate: noKA, path: ipvsBlind, want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, IPVS with firewall-mark services", mutate: noKA, path: ipvsFWMark, want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, the target's own IPVS", mutate: noKA, path: ipvsInTarget, want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, to the namespace's own address", mutate: noKA, path: withOwn(ipvs900, "198.18.1.2")},
		{name: "no keepalive, redirected to a local proxy", mutate: redirectedTo(noKA, "127.0.0.1:15001"), path: ipvs900},
		{name: "no keepalive, redirected to a proxy on the pod's address", mutate: redirectedTo(noKA, "198.18.1.1:15001"), path: withOwn(ipvs900, "198.18.1.1")},
		{name: "no keepalive, DNATed to another host", mutate: redirectedTo(noKA, "198.18.7.7:443"), path: withOwn(ipvs900, "198.18.1.1"), want: RuleNoKeepalive, severity: Critical},
		{name: "no keepalive, the other end is a socket here (a transparent proxy)", mutate: func(s *diag.Socket) { noKA(s); s.Peer = 0x2b }, path: ipvs900},
		{name: "keepalive unknown is not 'off'", mutate: func(s *diag.Socket) { s.Keepalive = diag.Keepalive{Source: "unknown", Reason: "no ptrace"} }, path: ipvs900},

		// keepalive-too-slow
		{name: "7200 s keepalive against IPVS 900 s", mutate: slowKA(7200), path: ipvs900, want: RuleKeepaliveTooSlow, severity: Critical},
		{name: "keepalive idle equal to the timeout", mutate: slowKA(900), path: ipvs900, want: RuleKeepaliveTooSlow, severity: Critical},
		{name: "keepalive idle one second inside", mutate: slowKA(899), path: ipvs900},
		{name: "slow keepalive, declared NLB", mutate: slowKA(600), declared: []Middlebox{mustPreset("aws-nlb")}, want: RuleKeepaliveTooSlow, severity: Critical},
		{name: "slow keepalive, nothing known", mutate: slowKA(7200)},
		{name: "slow keepalive, IPVS balances other services", mutate: slowKA(7200), path: ipvsElsewhere},
		{name: "slow keepalive, redirected to a local proxy", mutate: redirectedTo(slowKA(7200), "127.0.0.1:15001"), path: ipvs900},
		{name: "slow keepalive, a real server of IPVS", mutate: func(s *diag.Socket) { slowKA(7200)(s); backend(s) }, path: ipvs900, want: RuleKeepaliveTooSlow, severity: Critical},

		// half-open
		{name: "peer gone", mutate: deadPeer(4, 3000), want: RuleHalfOpen, severity: Critical},
		{name: "peer gone, no keepalive, IPVS on the path: retransmitting is not idle", mutate: func(s *diag.Socket) { deadPeer(4, 3000)(s); noKA(s) }, path: ipvs900, want: RuleHalfOpen, severity: Critical},
		{name: "two retransmissions are not yet half-open", mutate: deadPeer(2, 3000)},
		{name: "retransmitting but acked recently", mutate: deadPeer(5, 500)},
		{name: "an orphan: no application hears of it", mutate: func(s *diag.Socket) { deadPeer(5, 3000)(s); s.State, s.Inode = diag.FinWait1, 0 }},
		{name: "nothing unacknowledged", mutate: func(s *diag.Socket) { deadPeer(5, 3000)(s); s.TCPInfo.Unacked = 0 }},

		// zero-window
		{name: "persist timer", mutate: func(s *diag.Socket) { s.Timer = diag.Timer{Kind: diag.TimerPersist, Retrans: 2}; s.SendQ = 9000 }, want: RuleZeroWindow, severity: Warning},
		{name: "persist timer, no keepalive, IPVS on the path: window probes are not idle", mutate: func(s *diag.Socket) {
			noKA(s)
			s.Timer = diag.Timer{Kind: diag.TimerPersist, Retrans: 2}
			s.SendQ = 9000
		}, path: ipvs900, want: RuleZeroWindow, severity: Warning},
		{name: "window closed, data queued", mutate: func(s *diag.Socket) { s.TCPInfo.SndWnd = 0; s.SendQ = 10 }, want: RuleZeroWindow, severity: Warning},
		{name: "window closed, nothing queued", mutate: func(s *diag.Socket) { s.TCPInfo.SndWnd = 0 }},
		{name: "old kernel without snd_wnd", mutate: func(s *diag.Socket) { s.TCPInfo.SndWnd = 0; s.TCPInfo.Size = 104; s.SendQ = 10 }},

		// close-wait
		{name: "close wait", mutate: func(s *diag.Socket) { s.State = diag.CloseWait }, want: RuleCloseWait, severity: Warning},
		{name: "close wait, its FIN unread is no data", mutate: func(s *diag.Socket) { s.State, s.RecvQ = diag.CloseWait, 1; s.TCPInfo.LastDataRecvMS = 5000 }, want: RuleCloseWait, severity: Warning},
		{name: "close wait with data unread", mutate: func(s *diag.Socket) { s.State, s.RecvQ = diag.CloseWait, 2; s.TCPInfo.LastDataRecvMS = 5000 }, want: RuleCloseWait, severity: Warning, also: RuleRecvBacklog},

		// recv-backlog
		{name: "unread for 5 s", mutate: func(s *diag.Socket) { s.RecvQ = 4096; s.TCPInfo.LastDataRecvMS = 5000 }, want: RuleRecvBacklog, severity: Warning},
		{name: "just arrived", mutate: func(s *diag.Socket) { s.RecvQ = 4096; s.TCPInfo.LastDataRecvMS = 999 }},

		// listen-overflow
		{name: "accept queue full", mutate: listener(129, 128), want: RuleListenOverflow, severity: Critical},
		{name: "accept queue at its limit", mutate: listener(128, 128), want: RuleListenOverflow, severity: Critical},
		{name: "accept queue nearly full", mutate: listener(127, 128)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			tt.mutate(&s)
			snap := snapshot(s)
			if tt.path != nil {
				tt.path(snap)
			}
			got := fired(Evaluate(snap, tt.declared), s.ID)
			if tt.want == "" {
				for rule, f := range got {
					t.Errorf("%s fired: %s", rule, f.Summary)
				}
				return
			}
			f, ok := got[tt.want]
			_, also := got[tt.also]
			if want := 1 + btoi(tt.also != ""); !ok || len(got) != want || tt.also != "" && !also {
				t.Fatalf("fired %v, want exactly %s %s", keys(got), tt.want, tt.also)
			}
			if f.Severity != tt.severity {
				t.Errorf("severity %v, want %v", f.Severity, tt.severity)
			}
			if f.Summary == "" || len(f.Fix) == 0 || len(f.Evidence.Fields()) == 0 || strings.Contains(f.Summary, "%!") {
				t.Errorf("finding lacks words, evidence or fix: %+v", f)
			}
		})
	}
}

func keys(m map[string]Finding) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func noKA(s *diag.Socket) { s.Keepalive.Enabled = ptr(false) }

// noKAnoUT has neither keepalive nor TCP_USER_TIMEOUT.
func noKAnoUT(s *diag.Socket) { noKA(s); s.UserTimeoutMS = ptr(0) }

func slowKA(idle int) func(*diag.Socket) {
	return func(s *diag.Socket) { s.Keepalive.IdleS = ptr(idle); s.Keepalive.Source = "namespace" }
}

func conntrackSysctl(secs int64) func(*diag.Snapshot) {
	return func(s *diag.Snapshot) {
		s.Host = diag.Namespace{Role: diag.Host, Visible: true, Sysctls: s.Host.Sysctls}
		s.Host.Sysctls = diag.Sysctls{diag.ConntrackEstablished: secs}
	}
}

// tracked puts the host's conntrack on the path, read, with an established
// timeout of secs, nf_conntrack_tcp_loose=loose, and an entry of the
// socket's flow translated as nat says ("dnat", "snat", ""), or none at
// all (nat "gone"). The entry has the whole timeout left, unless the
// socket has been idle longer.
func tracked(secs, loose int64, nat string, others ...conntrack.Flow) func(*diag.Snapshot) {
	return func(s *diag.Snapshot) {
		// The table tracks the socket's other flows: one of its address to
		// an unrelated peer, and any others given.
		flows := append([]conntrack.Flow{ctFlow("198.18.1.1:39999", "198.18.9.9:1", "198.18.9.9:1", false)}, others...)
		s.Host = diag.Namespace{Role: diag.Host, Visible: true, Sysctls: s.Host.Sysctls, Conntrack: diag.ConntrackFromFlows(flows, "host"),
			Firewall: &diag.Firewall{Read: true, Translates: []string{"ip nat prerouting"}}}
		s.Host.Sysctls = diag.Sysctls{diag.ConntrackEstablished: secs, diag.ConntrackLoose: loose, diag.ConntrackCount: 1}
		if nat == "gone" {
			return
		}
		for i := range s.Sockets {
			sk := &s.Sockets[i]
			sk.Conntrack = []diag.Flow{{Netns: "host", ExpiresInS: uint32(secs), NAT: nat, TCPState: "ESTABLISHED", Side: "original"}}
		}
	}
}

// ctFlow is a conntrack entry of a TCP flow from "from" to "to", answered
// from replyFrom, destination-translated when dnat.
func ctFlow(from, to, replyFrom string, dnat bool) conntrack.Flow {
	f, t2, r := netip.MustParseAddrPort(from), netip.MustParseAddrPort(to), netip.MustParseAddrPort(replyFrom)
	var fl conntrack.Flow
	fl.Timeout = 100
	fl.Status = conntrack.StatusConfirmed
	if dnat {
		fl.Status |= conntrack.StatusDstNAT
	}
	fl.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: 3}
	fl.TupleOrig.IP = conntrack.IPTuple{SourceAddress: f.Addr(), DestinationAddress: t2.Addr()}
	fl.TupleOrig.Proto = conntrack.ProtoTuple{Protocol: 6, SourcePort: f.Port(), DestinationPort: t2.Port()}
	fl.TupleReply.IP = conntrack.IPTuple{SourceAddress: r.Addr(), DestinationAddress: f.Addr()}
	fl.TupleReply.Proto = conntrack.ProtoTuple{Protocol: 6, SourcePort: r.Port(), DestinationPort: f.Port()}
	return fl
}

func deadPeer(retransmits uint8, sinceAckMS uint32) func(*diag.Socket) {
	return func(s *diag.Socket) {
		s.Timer = diag.Timer{Kind: diag.TimerOn, ExpiresMS: 1000, Retrans: retransmits}
		s.UserTimeoutMS = ptr(0)
		s.TCPInfo.Retransmits, s.TCPInfo.Backoff, s.TCPInfo.Unacked = retransmits, retransmits, 2
		s.TCPInfo.RTOUs = 204000 << retransmits
		s.TCPInfo.LastAckRecvMS = sinceAckMS
	}
}

func listener(queue, backlog uint32) func(*diag.Socket) {
	return func(s *diag.Socket) {
		s.State, s.RecvQ, s.SendQ = diag.Listen, queue, backlog
		s.Remote = netip.MustParseAddrPort("0.0.0.0:0")
	}
}

func mustPreset(name string) Middlebox {
	m, err := ParseMiddlebox(name)
	if err != nil {
		panic(err)
	}
	return m
}

func TestHalfOpenPredictsTheAbort(t *testing.T) {
	s := healthy()
	deadPeer(4, 3000)(&s)
	f := fired(Evaluate(snapshot(s), nil), s.ID)[RuleHalfOpen]
	// tcp_retries2=15 from a 204 ms RTO: aborts at the first expiry past
	// 924.6 s, i.e. 0.204 * (2^10-1) + 120 * 6 = 928.692 s after the send;
	// four expiries (3.06 s) and 2.264 s of the fifth timer have passed.
	g := f.Evidence.GiveUpEvidence
	if g == nil || g.GivesUpInS == nil {
		t.Fatalf("no give-up evidence: %+v", f)
	}
	if got, want := g.GivesUpAfterS, 928.692; !near(got, want) {
		t.Errorf("gives_up_after_s = %v, want %v", got, want)
	}
	if got, want := *g.GivesUpInS, 928.692-3.06-2.264; !near(got, want) {
		t.Errorf("gives_up_in_s = %v, want %v", got, want)
	}
	if g.GivesUpBecause != "tcp_retries2=15" {
		t.Errorf("because = %v", g.GivesUpBecause)
	}
}

// TestHalfOpenWithICMPUnreachables: the path answers each retransmission
// with an ICMP unreachable, which reverts the backoff (RFC 6069): 112
// retransmissions, backoff 4. The kernel still gives up by time, which its
// own clock of the recovery (tcpi_total_rto_time) counts, and the summary
// counts the silence from the retransmissions, not from an ACK long before.
func TestHalfOpenWithICMPUnreachables(t *testing.T) {
	s := healthy()
	deadPeer(112, 600_000)(&s)
	s.TCPInfo.Backoff, s.TCPInfo.RTOUs = 4, 204000<<4
	s.TCPInfo.Size, s.TCPInfo.TotalRTO, s.TCPInfo.TotalRTORecoveries, s.TCPInfo.TotalRTOTimeMS = 248, 112, 1, 340_000
	f := fired(Evaluate(snapshot(s), nil), s.ID)[RuleHalfOpen]
	g := f.Evidence.GiveUpEvidence
	if g == nil || g.GivesUpInS == nil {
		t.Fatalf("no give-up evidence: %+v", f)
	}
	// 0.204 s to the first expiry, 340 s of recovery since: 928.692 -
	// 340.204 s left, where four expiries of the backoff would leave 920 s.
	if got, want := *g.GivesUpInS, 928.692-340.204; !near(got, want) {
		t.Errorf("gives_up_in_s = %v, want %v", got, want)
	}
	if !strings.Contains(f.Summary, "has acknowledged nothing sent for 340 s") {
		t.Errorf("summary: %s", f.Summary)
	}
	// A second recovery: the clock is no longer this one's alone.
	s.TCPInfo.TotalRTO, s.TCPInfo.TotalRTORecoveries = 120, 2
	f = fired(Evaluate(snapshot(s), nil), s.ID)[RuleHalfOpen]
	if got := *f.Evidence.GiveUpEvidence.GivesUpInS; got < 900 {
		t.Errorf("with two recoveries, gives_up_in_s = %v: the first recovery's time was counted as this one's", got)
	}
	// 262 expiries: tcpi_retransmits (a byte) wrapped to 6 and the kernel
	// restarted its clock as a second recovery. How long it has retransmitted
	// is unknown, and the finding says so rather than a time.
	s.TCPInfo.Retransmits, s.TCPInfo.TotalRTO, s.TCPInfo.TotalRTORecoveries, s.TCPInfo.TotalRTOTimeMS = 6, 262, 2, 2100
	f = fired(Evaluate(snapshot(s), nil), s.ID)[RuleHalfOpen]
	if g := f.Evidence.GiveUpEvidence; f.FailsInS != nil || g == nil || g.GivesUpInS != nil || !strings.Contains(f.Summary, "how long it has been retransmitting is unknown") || !strings.Contains(f.Summary, "has not acknowledged anything for 600 s") || !strings.Contains(f.Summary, "262 unanswered retransmissions") {
		t.Errorf("counters run over: fails in %v, evidence %+v: %s", f.FailsInS, g, f.Summary)
	}
}

// TestKeepaliveProbesRunningOut: a connection whose path forgot it and
// whose keepalive probes already go unanswered (4 of 5 sent) fails now,
// not at its next write: the kernel closes it when the probes run out.
func TestKeepaliveProbesRunningOut(t *testing.T) {
	s := healthy()
	slowKA(300)(&s)
	// No TCP_USER_TIMEOUT: with healthy()'s 30 s the kernel would have
	// closed it at the second probe (TestKeepaliveProbesWithUserTimeout).
	s.UserTimeoutMS = ptr(0)
	s.TCPInfo.LastDataRecvMS, s.TCPInfo.LastDataSentMS, s.TCPInfo.LastAckRecvMS = 590_000, 590_000, 590_000
	s.Timer = diag.Timer{Kind: diag.TimerKeepalive, ExpiresMS: 4528, Retrans: 4}
	snap := snapshot(s)
	tracked(30, 0, "gone")(snap)
	snap.Host.Firewall.InvalidDrops = []diag.InvalidDrop{{Chain: "inet filter forward", Family: "inet", Hook: "forward"}}
	f := fired(Evaluate(snap, nil), s.ID)[RuleFlowForgotten]
	if f.Severity != Critical || f.Failing != FailingNow || f.FailsInS == nil {
		t.Fatalf("%s, failing %q, fails in %v: %s", f.Severity, f.Failing, f.FailsInS, f.Summary)
	}
	// The timer fires in 4.528 s with the fifth probe, then once more, 10 s
	// later (healthy's interval), to give up.
	if got, want := *f.FailsInS, 14.528; !near(got, want) {
		t.Errorf("fails_in_s = %v, want %v", got, want)
	}
	if !strings.Contains(f.Summary, "keepalive probes already go unanswered (4 of 5 sent)") {
		t.Errorf("summary: %s", f.Summary)
	}
}

// TestKeepaliveProbesWithUserTimeout: with TCP_USER_TIMEOUT set, the
// kernel's keepalive timer ignores tcp_keepalive_probes and gives up at its
// first firing once the peer has been silent that long with a probe out
// (tcp_keepalive_timer): sooner or later than the probe count says.
func TestKeepaliveProbesWithUserTimeout(t *testing.T) {
	for _, tt := range []struct {
		name string
		utMS int
		want float64
	}{
		// Silent 305 s, one probe out, UT 60 s: the next firing, in 5 s,
		// finds 310 s >= 60 s and a probe out, and closes it; the probe
		// count (4 more probes, 45 s) is not consulted.
		{"short user timeout", 60_000, 5},
		// UT 3600 s: the probes go on every 10 s, past the fifth, until
		// a firing finds 3600 s of silence: 5 + 329 x 10 s from now.
		{"long user timeout", 3_600_000, 3295},
		// No user timeout: the probe count decides, 5 + 4 x 10 s.
		{"no user timeout", 0, 45},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			slowKA(300)(&s)
			s.UserTimeoutMS = ptr(tt.utMS)
			s.TCPInfo.LastDataRecvMS, s.TCPInfo.LastDataSentMS, s.TCPInfo.LastAckRecvMS = 305_000, 305_000, 305_000
			s.Timer = diag.Timer{Kind: diag.TimerKeepalive, ExpiresMS: 5000, Retrans: 1}
			snap := snapshot(s)
			tracked(30, 0, "gone")(snap)
			snap.Host.Firewall.InvalidDrops = []diag.InvalidDrop{{Chain: "inet filter forward", Family: "inet", Hook: "forward"}}
			f, ok := fired(Evaluate(snap, nil), s.ID)[RuleFlowForgotten]
			if !ok || f.FailsInS == nil {
				t.Fatalf("no flow-forgotten with fails_in_s: %+v", f)
			}
			if got := *f.FailsInS; !near(got, tt.want) {
				t.Errorf("TCP_USER_TIMEOUT %d ms: fails_in_s = %v, want %v (%s)", tt.utMS, got, tt.want, f.Summary)
			}
		})
	}
}

func near(got any, want float64) bool {
	g, ok := got.(float64)
	return ok && g > want-0.001 && g < want+0.001
}

func TestNamespaceRules(t *testing.T) {
	t.Run("pod sysctls differ from the host", func(t *testing.T) {
		snap := snapshot(healthy())
		snap.Host.Visible = true
		snap.Host.Sysctls = diag.Sysctls{diag.KeepaliveTime: 600, diag.KeepaliveIntvl: 75, diag.KeepaliveProbes: 9, diag.Retries2: 8}
		f, ok := fired(Evaluate(snap, nil), 0)[RulePodSysctlDiffers]
		if !ok || f.Severity != Warning || !strings.Contains(f.Summary, "tcp_keepalive_time=7200 (host 600)") ||
			!strings.Contains(f.Fix[0].Snippet, `net.ipv4.tcp_keepalive_time, value: "600"`) || len(f.Fix) != 2 {
			t.Errorf("finding %+v", f)
		}
	})
	t.Run("same sysctls", func(t *testing.T) {
		snap := snapshot(healthy())
		snap.Host.Visible = true
		snap.Host.Sysctls = snap.Target.Sysctls
		if f, ok := fired(Evaluate(snap, nil), 0)[RulePodSysctlDiffers]; ok {
			t.Errorf("fired: %s", f.Summary)
		}
	})
	t.Run("host not visible", func(t *testing.T) {
		snap := snapshot(healthy())
		if f, ok := fired(Evaluate(snap, nil), 0)[RulePodSysctlDiffers]; ok {
			t.Errorf("fired: %s", f.Summary)
		}
	})
	t.Run("connections without user timeout", func(t *testing.T) {
		exposed := healthy()
		exposed.ID, exposed.UserTimeoutMS = 0x2b, ptr(0)
		lo := healthy()
		lo.ID, lo.UserTimeoutMS, lo.Remote = 0x3c, ptr(0), netip.MustParseAddrPort("127.0.0.1:1")
		f, ok := fired(Evaluate(snapshot(healthy(), exposed, lo), nil), 0)[RuleSlowDeadPeer]
		if !ok || f.Severity != Warning || f.Evidence.Exposed != 1 || !near(f.Evidence.GivesUpAfterS, 924.6) {
			t.Errorf("finding %+v", f)
		}
	})
	t.Run("short retries2 is only info", func(t *testing.T) {
		exposed := healthy()
		exposed.UserTimeoutMS = ptr(0)
		snap := snapshot(exposed)
		snap.Target.Sysctls[diag.Retries2] = 5
		if f := fired(Evaluate(snap, nil), 0)[RuleSlowDeadPeer]; f.Severity != Info {
			t.Errorf("severity %v, want info", f.Severity)
		}
	})
	t.Run("every connection has a user timeout", func(t *testing.T) {
		if f, ok := fired(Evaluate(snapshot(healthy()), nil), 0)[RuleSlowDeadPeer]; ok {
			t.Errorf("fired: %s", f.Summary)
		}
	})
}

func TestPathTimeoutsShortestFirst(t *testing.T) {
	snap := snapshot()
	ipvs900(snap)
	snap.Host.Sysctls = diag.Sysctls{diag.ConntrackEstablished: 432000}
	got := PathTimeouts(snap, []Middlebox{mustPreset("gcp-cloud-nat"), mustPreset("azure-lb")})
	var names []string
	for _, m := range got {
		names = append(names, m.Name)
	}
	if want := "azure-lb ipvs (host) gcp-cloud-nat conntrack (host)"; strings.Join(names, " ") != want {
		t.Errorf("path = %v, want %s", names, want)
	}
}

// TestConntrackOnlyWhereItTracks: a namespace's conntrack is on the path
// unless it tracks nothing at all; an unreadable count proves nothing.
func TestConntrackOnlyWhereItTracks(t *testing.T) {
	tests := []struct {
		name    string
		sysctls diag.Sysctls
		want    bool
	}{
		{"tracks flows", diag.Sysctls{diag.ConntrackEstablished: 600, diag.ConntrackCount: 12}, true},
		{"count unreadable", diag.Sysctls{diag.ConntrackEstablished: 600}, true},
		{"hooked into no rule", diag.Sysctls{diag.ConntrackEstablished: 600, diag.ConntrackCount: 0}, false},
		{"not loaded", diag.Sysctls{}, false},
	}
	for _, tt := range tests {
		for _, where := range []string{"host", "target"} {
			snap := snapshot()
			if where == "host" {
				snap.Host.Sysctls = tt.sysctls
			} else {
				snap.Target.Sysctls = tt.sysctls
			}
			path := PathTimeouts(snap, nil)
			got := slices.ContainsFunc(path, func(m Middlebox) bool { return m.Name == "conntrack ("+where+")" && m.IdleTimeoutS == 600 })
			if got != tt.want || len(path) > 1 {
				t.Errorf("%s, %s: path = %+v, want conntrack (%s) on it: %v", tt.name, where, path, where, tt.want)
			}
		}
	}
}

// TestIPVSMatchEvidence: a finding says which IPVS service put the
// connection on IPVS's path, and the report says which connections IPVS
// carries.
func TestIPVSMatchEvidence(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*diag.Socket)
		path   func(*diag.Snapshot)
		match  string // "" when the evidence must name no match
		scope  string
	}{
		{name: "client of a virtual service", mutate: noKA, path: ipvs900,
			match: "198.18.1.2:443 is a virtual service of the host's IPVS", scope: "connections to its 1 TCP virtual service, and those accepted by its 1 real server"},
		{name: "real server", mutate: func(s *diag.Socket) { noKA(s); backend(s) }, path: ipvs900,
			match: "10.244.1.5:8080 is a real server of IPVS virtual service 198.18.1.2:443 (host)"},
		{name: "services unknown", mutate: noKA, path: ipvsBlind,
			scope: "every connection that leaves the namespace: IPVS's services could not be listed"},
		{name: "firewall marks", mutate: noKA, path: ipvsFWMark,
			scope: "every connection that leaves the namespace: 1 service selected by firewall mark can carry any flow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			tt.mutate(&s)
			snap := snapshot(s)
			tt.path(snap)
			r := Evaluate(snap, nil)
			f := fired(r, s.ID)[RuleNoKeepalive]
			if f.Evidence.Middlebox != "ipvs (host)" {
				t.Fatalf("middlebox %v, want ipvs (host): %+v", f.Evidence.Middlebox, f)
			}
			if got := f.Evidence.MiddleboxMatch; got != tt.match {
				t.Errorf("middlebox_match %q, want %q", got, tt.match)
			}
			if tt.scope != "" && (len(r.Middleboxes) != 1 || r.Middleboxes[0].Scope != tt.scope) {
				t.Errorf("middleboxes %+v, want one with scope %q", r.Middleboxes, tt.scope)
			}
			// Only a middlebox that carries every connection names no match.
			if everywhere := r.Middleboxes[0].Everywhere(); everywhere != (tt.match == "") {
				t.Errorf("Everywhere() = %v with match %q", everywhere, tt.match)
			}
		})
	}
}

func TestParseMiddlebox(t *testing.T) {
	tests := []struct {
		in       string
		want     time.Duration
		onExpiry Expiry
		wantErr  bool
	}{
		{"aws-nlb", 350 * time.Second, ExpiryReset, false},
		{"azure-lb", 4 * time.Minute, ExpiryDrop, false},
		{"gcp-cloud-nat", 20 * time.Minute, ExpiryResetOrDrop, false},
		{"corp-fw=30m", 30 * time.Minute, ExpiryResetOrDrop, false},
		{"corp-fw=600", 600 * time.Second, ExpiryResetOrDrop, false},
		{"azure-lb-tcp-reset=4m,reset", 4 * time.Minute, ExpiryReset, false},
		{"corp-fw=600,drop", 600 * time.Second, ExpiryDrop, false},
		{"corp-fw=600,", 0, "", true},
		{"corp-fw=600,rst", 0, "", true},
		{"corp-fw=0s", 0, "", true},
		{"corp-fw=-5s", 0, "", true},
		{"=5m", 0, "", true},
		{"corp-fw=soon", 0, "", true},
		{"nonesuch", 0, "", true},
	}
	for _, tt := range tests {
		m, err := ParseMiddlebox(tt.in)
		if (err != nil) != tt.wantErr || m.IdleTimeout != tt.want || m.OnExpiry != tt.onExpiry {
			t.Errorf("ParseMiddlebox(%q) = %v then %q, %v; want %v then %q, error %v", tt.in, m.IdleTimeout, m.OnExpiry, err, tt.want, tt.onExpiry, tt.wantErr)
		}
	}
}

func TestProposedKeepaliveBeatsTheTimeout(t *testing.T) {
	for _, d := range []time.Duration{5 * time.Second, 4 * time.Minute, 350 * time.Second, 900 * time.Second, 20 * time.Minute} {
		k := proposeKeepalive(d)
		if k.Idle >= d || k.Idle <= 0 || k.Interval <= 0 || k.Probes < 1 {
			t.Errorf("proposeKeepalive(%v) = %+v: first probe must come before the timeout", d, k)
		}
	}
}

func TestReportWorst(t *testing.T) {
	if _, any := (Report{}).Worst(); any {
		t.Error("empty report has a worst finding")
	}
	r := Report{Findings: []Finding{{Severity: Info}, {Severity: Critical}, {Severity: Warning}}}
	if w, _ := r.Worst(); w != Critical {
		t.Errorf("worst = %v", w)
	}
}

// TestWhatTheNextWriteMeets: the summary tells a reset from a silent drop,
// with the hang the kernel's give-up model predicts for a drop.
func TestWhatTheNextWriteMeets(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*diag.Socket)
		declared string
		rule     string
		want     []string
		wantNot  []string
		onExpiry Expiry
	}{
		{name: "NLB resets", mutate: noKA, declared: "aws-nlb", rule: RuleNoKeepalive, onExpiry: ExpiryReset,
			want: []string{`aws-nlb forgets it after 350 s`, `it answers a forgotten flow with a reset, so the next write gets "connection reset by peer"`}, wantNot: []string{"dropped"}},
		// tcp_retries2=15 from a 200 ms RTO: 924.6 s, the figure every finding uses.
		{name: "Azure LB drops", mutate: noKAnoUT, declared: "azure-lb", rule: RuleNoKeepalive, onExpiry: ExpiryDrop,
			want:    []string{"the next write is dropped without a word and hangs about 925 s (15m25s) until the kernel gives up (tcp_retries2=15) with \"connection timed out\""},
			wantNot: []string{"reset by peer"}},
		{name: "user timeout shortens the hang", mutate: func(s *diag.Socket) { noKA(s); s.UserTimeoutMS = ptr(20000) }, declared: "azure-lb", rule: RuleNoKeepalive, onExpiry: ExpiryDrop,
			want: []string{"hangs about 20.0 s until the kernel gives up (TCP_USER_TIMEOUT=20000 ms)"}},
		{name: "declared: either", mutate: noKAnoUT, declared: "corp-fw=5m", rule: RuleNoKeepalive, onExpiry: ExpiryResetOrDrop,
			want: []string{`"connection reset by peer", or is dropped and hangs about 925 s`}},
		{name: "slow keepalive, NLB", mutate: slowKA(600), declared: "aws-nlb", rule: RuleKeepaliveTooSlow, onExpiry: ExpiryReset,
			want: []string{`the probe or the next write gets "connection reset by peer"`}, wantNot: []string{"dropped"}},
		// 600 s idle, then 5 probes 10 s apart: 650 s; but with a 30 s
		// TCP_USER_TIMEOUT (healthy's) the kernel gives up at the first
		// probe timer past it with a probe out, 10 s after the first probe.
		{name: "slow keepalive, Azure LB", mutate: slowKA(600), declared: "azure-lb", rule: RuleKeepaliveTooSlow, onExpiry: ExpiryDrop,
			want: []string{`the probe is dropped without a word, the next write hangs, and the connection dies with "connection timed out" 610 s (10m10s) after its last data`}},
		{name: "slow keepalive, Azure LB, no TCP_USER_TIMEOUT", mutate: func(s *diag.Socket) { slowKA(600)(s); s.UserTimeoutMS = ptr(0) }, declared: "azure-lb", rule: RuleKeepaliveTooSlow, onExpiry: ExpiryDrop,
			want: []string{`the connection dies with "connection timed out" 650 s (10m50s) after its last data`}},
		// The trial's: 30 s idle, 5 s apart, TCP_USER_TIMEOUT 32 s: the
		// kernel gave up 35.3 s after the last data.
		{name: "keepalive and TCP_USER_TIMEOUT", mutate: func(s *diag.Socket) {
			s.Keepalive.IdleS, s.Keepalive.IntervalS, s.Keepalive.Probes, s.UserTimeoutMS = ptr(300), ptr(5), ptr(9), ptr(302_000)
		}, declared: "azure-lb", rule: RuleKeepaliveTooSlow, onExpiry: ExpiryDrop,
			want: []string{`the connection dies with "connection timed out" 305 s (5m5s) after its last data`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			tt.mutate(&s)
			f, ok := fired(Evaluate(snapshot(s), []Middlebox{mustPreset(tt.declared)}), s.ID)[tt.rule]
			if !ok {
				t.Fatalf("%s did not fire", tt.rule)
			}
			for _, w := range tt.want {
				if !strings.Contains(f.Summary, w) {
					t.Errorf("summary %q\nlacks %q", f.Summary, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(f.Summary, w) {
					t.Errorf("summary %q\nhas %q", f.Summary, w)
				}
			}
			if f.Evidence.OnExpiry != tt.onExpiry {
				t.Errorf("on_expiry %v, want %s", f.Evidence.OnExpiry, tt.onExpiry)
			}
			if want, _ := declaredFate(tt.onExpiry); f.Evidence.Meets != want {
				t.Errorf("meets %v, want %s", f.Evidence.Meets, want)
			}
		})
	}
}

// TestIPVSExpireNodestOff: an IPVS that silently drops the connections of
// a removed real server is worth a warning only where it carries some.
func TestIPVSExpireNodestOff(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*diag.Snapshot)
		want  string // "" when the rule must not fire, else the namespace it names
	}{
		{"host IPVS carries the connection, drops", func(s *diag.Snapshot) {
			ipvs900(s)
			s.Host.Sysctls = diag.Sysctls{diag.IPVSExpireNodestConn: 0}
		}, "host"},
		{"host IPVS expires", func(s *diag.Snapshot) {
			ipvs900(s)
			s.Host.Sysctls = diag.Sysctls{diag.IPVSExpireNodestConn: 1}
		}, ""},
		{"setting unreadable", ipvs900, ""},
		{"host IPVS balances other services", func(s *diag.Snapshot) {
			ipvsElsewhere(s)
			s.Host.Sysctls = diag.Sysctls{diag.IPVSExpireNodestConn: 0}
		}, ""},
		{"the target's own IPVS", func(s *diag.Snapshot) {
			ipvsInTarget(s)
			s.Target.Sysctls[diag.IPVSExpireNodestConn] = 0
		}, "target"},
		{"IPVS carries only a loopback connection", func(s *diag.Snapshot) {
			ipvs900(s)
			s.Host.Sysctls = diag.Sysctls{diag.IPVSExpireNodestConn: 0}
			s.Sockets[0].Remote = netip.MustParseAddrPort("127.0.0.1:443")
		}, ""},
	}
	for _, tt := range tests {
		snap := snapshot(healthy())
		tt.setup(snap)
		f, ok := fired(Evaluate(snap, nil), 0)[RuleIPVSNodestDrop]
		switch {
		case tt.want == "" && ok:
			t.Errorf("%s: fired: %s", tt.name, f.Summary)
		case tt.want != "" && !ok:
			t.Errorf("%s: did not fire", tt.name)
		case ok && (f.Severity != Warning || f.Evidence.IPVS != tt.want ||
			!strings.Contains(f.Summary, "1 connection here would hang instead of failing at once: up to 925 s (15m25s) with tcp_retries2=15 and no TCP_USER_TIMEOUT")):
			t.Errorf("%s: %s %+v: %s", tt.name, f.Severity, f.Evidence, f.Summary)
		}
	}
}

// TestForgottenFlowFates walks the table of what the next packet of a flow
// the host's conntrack forgot meets, as the kernel decides it: picked up
// again (nf_conntrack_tcp_loose=1) and translated anew from the client's
// side but never from the server's; invalid (loose=0), untranslated, and
// dropped only where a rule drops invalid packets.
func TestForgottenFlowFates(t *testing.T) {
	const vip = "198.18.1.2:443"
	server := func(s *diag.Socket) { noKA(s); backend(s) }
	// Another client's flow to the service, translated to the backend.
	service := ctFlow("10.0.9.9:50000", vip, "10.244.1.5:8080", true)
	// This client's earlier flow to the service, and the server's flow
	// from the same client through it.
	sameClient := ctFlow("198.18.1.1:39000", vip, "10.244.1.5:8080", true)
	fromClient := ctFlow("10.244.7.3:50001", vip, "10.244.1.5:8080", true)
	localVIP := func(path func(*diag.Snapshot)) func(*diag.Snapshot) {
		return func(s *diag.Snapshot) { path(s); s.Host.Addresses = []netip.Addr{netip.MustParseAddr("198.18.1.2")} }
	}
	dropsInvalid := func(path func(*diag.Snapshot)) func(*diag.Snapshot) {
		return func(s *diag.Snapshot) {
			path(s)
			s.Host.Firewall.InvalidDrops = []diag.InvalidDrop{{Chain: "inet filter forward", Family: "inet", Hook: "forward"}}
		}
	}
	dropsOnInput := func(path func(*diag.Snapshot)) func(*diag.Snapshot) {
		return func(s *diag.Snapshot) {
			path(s)
			s.Host.Firewall.InvalidDrops = []diag.InvalidDrop{{Chain: "inet filter input", Family: "inet", Hook: "input"}}
		}
	}
	opaque := func(path func(*diag.Snapshot)) func(*diag.Snapshot) {
		return func(s *diag.Snapshot) { path(s); s.Host.Firewall.Opaque = []string{"ip filter KUBE-FORWARD"} }
	}
	// untracks adds a notrack rule: a flow without an entry may never
	// have had one.
	untracks := func(path func(*diag.Snapshot)) func(*diag.Snapshot) {
		return func(s *diag.Snapshot) { path(s); s.Host.Firewall.Untracks = []string{"inet raw prerouting"} }
	}
	unreadRules := func(path func(*diag.Snapshot)) func(*diag.Snapshot) {
		return func(s *diag.Snapshot) { path(s); s.Host.Firewall = &diag.Firewall{Reason: "no CAP_NET_ADMIN"} }
	}
	idle := func(mutate func(*diag.Socket), ms uint32) func(*diag.Socket) {
		return func(s *diag.Socket) { mutate(s); s.TCPInfo.LastDataRecvMS, s.TCPInfo.LastDataSentMS = ms, ms }
	}
	// watched is mutate seen by a watch across its quiet, whose samples
	// saw the entries seen of it.
	watched := func(mutate func(*diag.Socket), seen ...diag.SeenEntry) func(*diag.Socket) {
		return func(s *diag.Socket) {
			mutate(s)
			s.Observed = &diag.Observed{WatchedS: 45, Samples: 45, LongestQuietS: 45, LongestQuietWatchedS: 45,
				RefreshedBy: diag.RefreshedByNone, EntriesSeen: seen}
		}
	}
	// hostSaw is the host's entry a watch saw, gone for the last 20 s.
	hostSaw := func(nat string) diag.SeenEntry {
		missing := 20.0
		return diag.SeenEntry{Netns: diag.Host, NAT: nat, MissingS: &missing}
	}
	// silent is idle with nothing received either, not even an ACK.
	silent := func(mutate func(*diag.Socket), ms uint32) func(*diag.Socket) {
		return func(s *diag.Socket) { idle(mutate, ms)(s); s.TCPInfo.LastAckRecvMS = ms }
	}
	tests := []struct {
		name   string
		mutate func(*diag.Socket)
		path   func(*diag.Snapshot)
		rule   string
		sev    Severity
		meets  Outcome
	}{
		{"loose=1, untranslated: picked up again", noKA, tracked(30, 1, ""), RuleNoKeepalive, Info, Survives},
		{"loose=1, untranslated, keepalive slower than the path: picked up again", slowKA(7200), tracked(30, 1, ""), RuleKeepaliveTooSlow, Info, Survives},
		// The entry is fresher than the quiet, but this end's keepalive is
		// too slow to have kept it: its probe made it anew (the trial's).
		{"loose=1, DNAT, an entry a slow keepalive's probe made anew", idle(slowKA(40), 50000), tracked(20, 1, "dnat"), RuleKeepaliveTooSlow, Warning, MayBreak},
		{"loose=1, DNAT, client: balanced again", noKA, tracked(30, 1, "dnat"), RuleNoKeepalive, Warning, MayBreak},
		{"loose=1, SNAT, client: masqueraded again", noKA, tracked(30, 1, "snat"), RuleNoKeepalive, Warning, MayBreak},
		{"loose=1, DNAT, server: who speaks first decides", server, tracked(30, 1, "dnat"), RuleNoKeepalive, Warning, MayBreak},
		{"loose=1, DNAT, server, forgotten: who speaks first decides", idle(server, 45000), tracked(30, 1, "gone", fromClient), RuleFlowForgotten, Warning, MayBreak},
		{"loose=0, DNAT, server, not yet forgotten: its client may keep it", server, tracked(30, 0, "dnat"), RuleNoKeepalive, Warning, Breaks},
		// The client's other flow reached this backend through the
		// service; this one may have come straight to its address.
		{"loose=0, DNAT, server, forgotten: the client's other flows prove nothing", idle(server, 45000), tracked(30, 0, "gone", fromClient), RuleFlowForgotten, Warning, MayBreak},
		{"loose=0, DNAT, server, forgotten, a watch saw it translated: its reply goes untranslated", watched(idle(server, 45000), hostSaw("dnat")), tracked(30, 0, "gone", fromClient), RuleFlowForgotten, Critical, Breaks},
		{"loose=0, server, forgotten, a watch saw it untranslated: it goes on", watched(idle(server, 45000), hostSaw("")), tracked(30, 0, "gone", fromClient), RuleNoKeepalive, Info, Survives},
		{"loose=0, server, forgotten, other clients' flows prove nothing", idle(server, 45000), tracked(30, 0, "gone", service), RuleFlowForgotten, Warning, MayBreak},
		{"loose=1, forgotten, nothing tells whether it was translated", idle(noKA, 45000), tracked(30, 1, "gone"), RuleFlowForgotten, Warning, MayBreak},
		{"loose=1, forgotten, no rule here translates anything", idle(noKA, 45000), func(s *diag.Snapshot) { tracked(30, 1, "gone")(s); s.Host.Firewall.Translates = nil }, RuleNoKeepalive, Info, Survives},
		{"loose=0, DNAT to a VIP of the host: its stack resets", noKA, localVIP(tracked(30, 0, "dnat")), RuleNoKeepalive, Critical, Resets},
		{"loose=0, DNAT elsewhere: reset or dropped", noKA, tracked(30, 0, "dnat"), RuleNoKeepalive, Critical, Breaks},
		{"loose=0, DNAT, rules unread: reset or dropped", noKA, unreadRules(localVIP(tracked(30, 0, "dnat"))), RuleNoKeepalive, Critical, Breaks},
		{"loose=0, untranslated, no rule drops invalid: goes on", noKA, tracked(30, 0, ""), RuleNoKeepalive, Info, Survives},
		{"loose=0, untranslated, a rule drops invalid", noKA, dropsInvalid(tracked(30, 0, "")), RuleNoKeepalive, Critical, Drops},
		{"loose=0, untranslated, rules unread", noKA, unreadRules(tracked(30, 0, "")), RuleNoKeepalive, Warning, MayBreak},
		{"loose=0, untranslated, the drop rule is on input: forwarded flows never meet it", noKA, dropsOnInput(tracked(30, 0, "")), RuleNoKeepalive, Info, Survives},
		{"loose=0, untranslated, iptables-nft rules tcpvet cannot decode", noKA, opaque(tracked(30, 0, "")), RuleNoKeepalive, Warning, MayBreak},
		{"loose=0, already forgotten, translation unknown", idle(noKA, 45000), tracked(30, 0, "gone"), RuleFlowForgotten, Warning, MayBreak},
		{"loose=0, already forgotten, the service seen on other flows", idle(noKA, 45000), localVIP(tracked(30, 0, "gone", service)), RuleFlowForgotten, Critical, Resets},
		{"loose=0, already forgotten, this client's own flows to it", idle(noKA, 45000), localVIP(tracked(30, 0, "gone", sameClient)), RuleFlowForgotten, Critical, Resets},
		{"fast keepalive, yet the entry is gone", func(s *diag.Socket) {}, dropsInvalid(tracked(30, 0, "gone")), RuleFlowForgotten, Critical, Drops},
		{"loose=0, forgotten, a rule exempts flows from tracking: it may never have had an entry", idle(noKA, 45000), untracks(dropsInvalid(tracked(30, 0, "gone"))), RuleFlowForgotten, Warning, MayBreak},
		{"loose=0, forgotten, a rule exempts flows, but a watch saw its entry go, nothing answered since", watched(silent(noKA, 45000), hostSaw("")), untracks(dropsInvalid(tracked(30, 0, "gone"))), RuleFlowForgotten, Critical, Drops},
		// ACKs while the table held no entry: the flow is let by untracked
		// (a notrack rule added since), not dropped.
		{"loose=0, forgotten, a rule exempts flows, a watch saw its entry go, answered since", watched(idle(noKA, 45000), hostSaw("")), untracks(dropsInvalid(tracked(30, 0, "gone"))), RuleFlowForgotten, Warning, MayBreak},
		{"loose=0, forgotten, a rule exempts flows, a watch saw its entry but not go", watched(silent(noKA, 45000), diag.SeenEntry{Netns: diag.Host}), untracks(dropsInvalid(tracked(30, 0, "gone"))), RuleFlowForgotten, Warning, MayBreak},
		{"loose=0, forgotten, a rule exempts flows, a watch saw an entry in another table", watched(idle(noKA, 45000), diag.SeenEntry{Netns: diag.Target}), untracks(dropsInvalid(tracked(30, 0, "gone"))), RuleFlowForgotten, Warning, MayBreak},
		{"loose=0, forgotten, a watch saw nothing of an entry", watched(idle(noKA, 45000)), untracks(dropsInvalid(tracked(30, 0, "gone"))), RuleFlowForgotten, Warning, MayBreak},
		{"options unknown, yet the entry is gone", func(s *diag.Socket) { s.Keepalive = diag.Keepalive{Source: "unknown"} }, dropsInvalid(tracked(30, 0, "gone")), RuleFlowForgotten, Critical, Drops},
		{"slow keepalive, loose=0, DNAT", slowKA(60), tracked(30, 0, "dnat"), RuleKeepaliveTooSlow, Critical, Breaks},
		{"loose unknown", noKA, func(s *diag.Snapshot) { tracked(30, 1, "dnat")(s); delete(s.Host.Sysctls, diag.ConntrackLoose) }, RuleNoKeepalive, Warning, MayBreak},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			tt.mutate(&s)
			ln := healthy()
			ln.ID, ln.State, ln.Local, ln.Remote = 0x11, diag.Listen, netip.MustParseAddrPort("0.0.0.0:8080"), netip.MustParseAddrPort("0.0.0.0:0")
			snap := snapshot(s, ln)
			tt.path(snap)
			got := fired(Evaluate(snap, nil), s.ID)
			f, ok := got[tt.rule]
			if !ok {
				t.Fatalf("fired %v, want %s", keys(got), tt.rule)
			}
			if f.Severity != tt.sev || f.Evidence.PathEvidence == nil || f.Evidence.Meets != tt.meets {
				t.Errorf("%s, evidence %+v; want %s, %s: %s", f.Severity, f.Evidence.PathEvidence, tt.sev, tt.meets, f.Summary)
			}
		})
	}

	// An entry that outlived the flow's quiet is kept alive by someone:
	// probes from the other end.
	s := healthy()
	idle(server, 45000)(&s)
	snap := snapshot(s)
	tracked(30, 1, "dnat")(snap)
	snap.Sockets[0].Conntrack[0].ExpiresInS = 28
	if got := fired(Evaluate(snap, nil), s.ID); len(got) != 0 {
		t.Errorf("a flow whose entry stays fresh fired %v", keys(got))
	}
}

// TestIPVSEntry: IPVS's own entry of a connection says when it forgets it,
// and an entry that outlived the connection's quiet is kept fresh by
// someone's probes.
func TestIPVSEntry(t *testing.T) {
	s := healthy()
	noKA(&s)
	s.IPVS = &diag.IPVSConn{State: "ESTABLISHED", ExpiresInS: 812}
	snap := snapshot(s)
	ipvs900(snap)
	f, ok := fired(Evaluate(snap, nil), s.ID)[RuleNoKeepalive]
	if !ok || f.Severity != Critical || f.Evidence.ForgetsInS != 812 || f.Evidence.IPVSExpiresInS != 812 {
		t.Errorf("%v %+v, want critical, forgetting in IPVS's own 812 s", ok, f.Evidence.PathEvidence)
	}
	snap.Sockets[0].TCPInfo.LastDataRecvMS, snap.Sockets[0].TCPInfo.LastDataSentMS = 1000000, 1000000
	if got := fired(Evaluate(snap, nil), s.ID); len(got) != 0 {
		t.Errorf("an IPVS entry fresh after 1000 s of quiet fired %v", keys(got))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestServerQuietPastADeclaredTimeout: a server's end quiet past an NLB's
// timeout may have been kept alive by its client's probes, which nothing
// tcpvet reads can show: a warning, not critical.
func TestServerQuietPastADeclaredTimeout(t *testing.T) {
	s := healthy()
	noKA(&s)
	backend(&s)
	s.TCPInfo.LastDataRecvMS, s.TCPInfo.LastDataSentMS = 400000, 400000
	ln := healthy()
	ln.ID, ln.State, ln.Local, ln.Remote = 0x11, diag.Listen, netip.MustParseAddrPort("0.0.0.0:8080"), netip.MustParseAddrPort("0.0.0.0:0")
	f, ok := fired(Evaluate(snapshot(s, ln), []Middlebox{mustPreset("aws-nlb")}), s.ID)[RuleFlowForgotten]
	if !ok || f.Severity != Warning {
		t.Errorf("%v %s: %s", ok, f.Severity, f.Summary)
	}
}

// TestUrgencyOrder: what fails now comes first, then what fails at its
// next write, then the soonest to be forgotten; warnings after.
func TestUrgencyOrder(t *testing.T) {
	mk := func(id diag.Cookie, mutate func(*diag.Socket)) diag.Socket {
		s := healthy()
		s.ID = id
		s.Local = netip.AddrPortFrom(netip.MustParseAddr("198.18.1.1"), 40000+uint16(id))
		mutate(&s)
		return s
	}
	soon := mk(1, noKA)
	later := mk(2, noKA)
	later.Conntrack = []diag.Flow{{Netns: "host", ExpiresInS: 25, NAT: "dnat", TCPState: "ESTABLISHED", Side: "original"}}
	soon.Conntrack = []diag.Flow{{Netns: "host", ExpiresInS: 5, NAT: "dnat", TCPState: "ESTABLISHED", Side: "original"}}
	dead := mk(3, deadPeer(5, 3000))
	gone := mk(4, noKA)
	snap := snapshot(later, gone, soon, dead)
	// The client's other flow to the same address was translated, so the
	// forgotten one was too: with loose=0 its next packet is lost.
	tracked(30, 0, "gone", ctFlow("198.18.1.1:39000", "198.18.1.2:443", "10.244.1.5:8080", true))(snap)
	snap.Sockets[0].Conntrack, snap.Sockets[2].Conntrack = later.Conntrack, soon.Conntrack
	var order []string
	for _, f := range Evaluate(snap, nil).Findings {
		if f.Socket != nil {
			order = append(order, f.Socket.String()+" "+f.Rule)
		}
	}
	want := []string{"3 half-open", "4 flow-forgotten", "1 no-keepalive", "2 no-keepalive"}
	if len(order) < len(want) || !slices.Equal(order[:len(want)], want) {
		t.Errorf("order %v, want %v first", order, want)
	}
}

// TestUrgencyTieBreak: findings otherwise alike are listed by socket id as
// text sorts it, hex "10" before "f", the namespace's own first; and the
// comparison costs no allocation.
func TestUrgencyTieBreak(t *testing.T) {
	mk := func(id *diag.Cookie) Finding { return Finding{Rule: RuleNoKeepalive, Severity: Warning, Socket: id} }
	got := []Finding{mk(ptr[diag.Cookie](0xf)), mk(ptr[diag.Cookie](0x10)), mk(nil), mk(ptr[diag.Cookie](0xe)), mk(ptr[diag.Cookie](0x100))}
	slices.SortStableFunc(got, urgency)
	var order []string
	for _, f := range got {
		if f.Socket == nil {
			order = append(order, "-")
			continue
		}
		order = append(order, f.Socket.String())
	}
	if want := []string{"-", "10", "100", "e", "f"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	a, b := got[1], got[4]
	if n := testing.AllocsPerRun(100, func() { urgency(a, b) }); n != 0 {
		t.Errorf("comparing two findings allocates %v times", n)
	}
}

// TestKeepaliveFromTheTimer: without the socket's options, the kernel's
// timer may still say SO_KEEPALIVE is on or off. Off is as good as read:
// no-keepalive fires. On with its timings unknown is no evidence against
// the path: neither no-keepalive nor keepalive-too-slow fires, as for a
// keepalive unknown altogether.
func TestKeepaliveFromTheTimer(t *testing.T) {
	for _, c := range []struct {
		name string
		on   *bool
		want bool
	}{
		{"off, from the timer", ptrTo(false), true},
		{"on, timings unknown", ptrTo(true), false},
		{"unknown", nil, false},
	} {
		s := healthy()
		noKA(&s)
		s.Keepalive = diag.Keepalive{Enabled: c.on, Source: "unknown", Reason: "no ptrace right"}
		s.IPVS = &diag.IPVSConn{State: "ESTABLISHED", ExpiresInS: 812}
		snap := snapshot(s)
		ipvs900(snap)
		got := fired(Evaluate(snap, nil), s.ID)
		_, none := got[RuleNoKeepalive]
		_, slow := got[RuleKeepaliveTooSlow]
		if none != c.want || slow {
			t.Errorf("%s: fired %v, want no-keepalive %v and no keepalive-too-slow", c.name, keys(got), c.want)
		}
		if f, ok := got[RuleNoKeepalive]; ok && (f.Evidence.Keepalive == nil || *f.Evidence.Keepalive || f.Evidence.KeepaliveIdleS != 0) {
			t.Errorf("%s: evidence keepalive %v, idle %d: want off, no timings", c.name, f.Evidence.Keepalive, f.Evidence.KeepaliveIdleS)
		}
	}
}
