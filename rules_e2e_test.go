package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/rules"
	"github.com/tcpvet/tcpvet/ui"
)

// result is tcpvet --json with the rules' output. It is a ui.Document,
// which reads both: a struct embedding diag.Snapshot beside rules.Report
// would take the snapshot's UnmarshalJSON, and read the snapshot alone.
type result struct{ ui.Document }

func runReport(t *testing.T, args ...string) *result {
	t.Helper()
	r, err := runReportErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runReportErr is runReport for a goroutine other than the test's, which
// may not end the test.
func runReportErr(args ...string) (*result, error) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"--json"}, args...), &stdout, &stderr); code != 0 && code != 3 {
		return nil, fmt.Errorf("tcpvet %v: exit %d: %s", args, code, stderr.String())
	}
	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("decode tcpvet %v: %v", args, err)
	}
	return &r, nil
}

// findingsFor maps each socket, by local address, to the rules that fired on it.
func findingsFor(r *result) map[string][]rules.Finding {
	byID := map[diag.Cookie]string{}
	for _, s := range r.Sockets {
		byID[s.ID] = s.Local.String()
	}
	out := map[string][]rules.Finding{}
	for _, f := range r.Findings {
		if f.Socket != nil {
			out[byID[*f.Socket]] = append(out[byID[*f.Socket]], f)
		}
	}
	return out
}

func hasRule(fs []rules.Finding, names ...string) bool {
	return slices.ContainsFunc(fs, func(f rules.Finding) bool { return slices.Contains(names, f.Rule) })
}

// TestIdleTimeoutRulesMatchTheKernel builds an IPVS-like node: a router that
// NATs a service address to a backend and forgets idle flows after 4 s,
// answering a forgotten flow with a reset from its own stack. tcpvet, run
// first with the router as host, must flag exactly the connections the
// kernel then resets.
func TestIdleTimeoutRulesMatchTheKernel(t *testing.T) {
	t.Parallel() // it mostly waits for conntrack to forget
	p := testnet.NewPath(t, 2, 3)
	client, router, server, sAddr := p.Client, p.Router, p.Server, p.ServerAddr
	const vip = "198.18.100.1"
	router.Run(t, "ip", "addr", "add", vip+"/32", "dev", "lo")
	router.Run(t, "nft", "add table ip svc")
	router.Run(t, "nft", "add chain ip svc pre { type nat hook prerouting priority -100 ; }")
	router.Run(t, "nft", fmt.Sprintf("add rule ip svc pre ip daddr %s tcp dport 80 dnat to %s:7001", vip, sAddr.V4))
	// Forget idle flows fast, and never pick one up mid-stream again: the
	// next segment of a forgotten flow reaches the router's own stack,
	// which has no such socket and answers with a reset, as an IPVS node does.
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", "4")
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")

	server.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "backend", Addr: ":7001", Mode: testnet.Hold}}})
	svc := vip + ":80"
	agent := client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "none", To: svc},
		{Name: "slow", To: svc, Keepalive: &testnet.KA{Idle: 8, Interval: 1, Count: 3}},
		{Name: "fast", To: svc, Keepalive: &testnet.KA{Idle: 1, Interval: 1, Count: 3}},
	}})

	r := runReport(t, "--netns", client.Path, "--host-netns", router.Path)
	if len(r.Middleboxes) == 0 || r.Middleboxes[0].IdleTimeoutS != 4 || r.Middleboxes[0].Name != "conntrack (host)" {
		t.Fatalf("shortest idle timeout on the path = %+v, want the router's conntrack 4 s", r.Middleboxes)
	}
	// The client has no rule that needs conntrack, so the kernel tracks
	// none of its flows there, whatever its timeout says.
	if n := strings.TrimSpace(client.Run(t, "sysctl", "-n", "net.netfilter.nf_conntrack_count")); n != "0" {
		t.Fatalf("client's nf_conntrack_count = %s, want 0", n)
	}
	for _, m := range r.Middleboxes {
		if m.Name == "conntrack (target)" {
			t.Errorf("the client's conntrack tracks no flow, yet is on the path: %+v", m)
		}
	}
	found := findingsFor(r)
	flagged := map[string]bool{}
	for name, local := range agent.Local {
		flagged[name] = hasRule(found[local], rules.RuleNoKeepalive, rules.RuleKeepaliveTooSlow)
		for _, f := range found[local] {
			t.Logf("%s: %s %s: %s", name, f.Severity, f.Rule, f.Summary)
		}
	}

	// Let every flow sit idle past the router's timeout (and past the slow
	// keepalive's first probe), then write on each.
	time.Sleep(10 * time.Second)
	for name := range agent.Local {
		agent.Write(t, name, 100)
	}
	reset := map[string]bool{}
	deadline := time.After(5 * time.Second)
	for len(reset) < 3 {
		var e testnet.Event
		select {
		case <-deadline:
		default:
			if ev, ok := agent.WaitFor("read-error", "", 200*time.Millisecond); ok {
				e = ev
			} else {
				continue
			}
		}
		if e.Kind == "" {
			break
		}
		if e.Errno == int(syscall.ECONNRESET) {
			reset[e.Name] = true
		} else {
			t.Errorf("%s: read error %q, want a reset", e.Name, e.Err)
		}
	}
	for name := range agent.Local {
		if flagged[name] != reset[name] {
			t.Errorf("%s: flagged %v, reset by the kernel %v", name, flagged[name], reset[name])
		}
	}
	if !reset["none"] || !reset["slow"] || reset["fast"] {
		t.Errorf("scenario did not play out: reset %v, want none and slow only", reset)
	}
}

// TestHalfOpenPredictionMatchesKernel holds the predicted give-up time of a
// connection to a silently dropping peer to the moment the kernel reports
// ETIMEDOUT, with tcp_retries2 and with TCP_USER_TIMEOUT.
func TestHalfOpenPredictionMatchesKernel(t *testing.T) {
	client, peer := testnet.New(t), testnet.New(t)
	_, pAddr := testnet.Link(t, client, peer, 4)
	client.Sysctl(t, "net.ipv4.tcp_retries2", "4")
	peer.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: ":7005", Mode: testnet.Hold}}})
	to := pAddr.V4 + ":7005"
	agent := client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "retries2", To: to},
		{Name: "user-timeout", To: to, UserTimeoutMS: 3000},
	}})
	peer.DropInbound(t, 7005)
	for name := range agent.Local {
		agent.Write(t, name, 100)
	}

	// Take snapshots until both are half-open (3 unanswered retransmissions,
	// about 1.4 s in): the user-timeout one dies at 3 s, so poll briskly.
	type prediction struct {
		at  time.Time
		rto time.Duration
		f   rules.Finding
	}
	predicted := map[string]prediction{}
	deadline := time.Now().Add(3 * time.Second)
	for len(predicted) < 2 && time.Now().Before(deadline) {
		r := runReport(t, "--netns", client.Path)
		found := findingsFor(r)
		for name, local := range agent.Local {
			if _, done := predicted[name]; done {
				continue
			}
			for _, f := range found[local] {
				if f.Rule != rules.RuleHalfOpen {
					continue
				}
				in := time.Duration(*f.Evidence.GivesUpInS * float64(time.Second))
				rto := time.Duration(f.Evidence.RTOMS) * time.Millisecond
				predicted[name] = prediction{r.TakenAt.Add(in), rto, f}
				t.Logf("%s: %s", name, f.Summary)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(predicted) < 2 {
		t.Fatalf("half-open not flagged on both connections: %v", predicted)
	}
	for range 2 {
		e := agent.Wait(t, "read-error", "", 15*time.Second)
		p := predicted[e.Name]
		if e.Errno != int(syscall.ETIMEDOUT) {
			t.Errorf("%s: %s, want ETIMEDOUT", e.Name, e.Err)
		}
		off := e.At.Sub(p.at)
		t.Logf("%s: predicted %s, kernel gave up %s: off by %v (one RTO then: %v)", e.Name,
			p.at.Format("15:04:05.000"), e.At.Format("15:04:05.000"), off, p.rto)
		if off.Abs() > p.rto {
			t.Errorf("%s: prediction off by %v, more than one RTO (%v)", e.Name, off, p.rto)
		}
	}
	if got := predicted["user-timeout"].f.Evidence.GivesUpBecause; !strings.Contains(got, "TCP_USER_TIMEOUT=3000") {
		t.Errorf("user-timeout connection gives up because %v", got)
	}
}

// TestSidecarRedirectIsNotOnThePath builds an Istio-like pod: its
// netfilter redirects outbound connections to a local proxy on :15001, so
// the application's connection to the service address ends inside the
// pod, and only the proxy's own connections meet the network. tcpvet must
// see the redirect as the kernel's conntrack records it, and flag only the
// connection that really leaves.
func TestSidecarRedirectIsNotOnThePath(t *testing.T) {
	pod, peer := testnet.New(t), testnet.New(t)
	podAddr, peerAddr := testnet.Link(t, pod, peer, 5)
	pod.Run(t, "ip", "route", "add", "default", "via", peerAddr.V4)
	const vip = "198.18.60.1"
	pod.Run(t, "nft", "add table ip mesh")
	pod.Run(t, "nft", "add chain ip mesh out { type nat hook output priority -100 ; }")
	pod.Run(t, "nft", fmt.Sprintf("add rule ip mesh out ip daddr %s tcp dport 80 redirect to :15001", vip))

	peer.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "server", Addr: ":7001", Mode: testnet.Hold}}})
	pod.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "proxy", Addr: ":15001", Mode: testnet.Hold}}})
	app := pod.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "via-proxy", To: vip + ":80"},
		{Name: "direct", To: peerAddr.V4 + ":7001"},
		{Name: "in-pod", To: podAddr.V4 + ":15001"},
	}})

	// The reference: conntrack's own listing of the redirected flow (which
	// also loads nf_conntrack_netlink where it is a module; tcpvet never does).
	ct := pod.Run(t, "conntrack", "-L", "-p", "tcp", "--dport", "80")
	r := runReport(t, "--netns", pod.Path, "--middlebox", "aws-nlb")
	m := regexp.MustCompile(`dst=` + regexp.QuoteMeta(vip) + ` sport=(\d+) dport=80 src=(\S+) dst=\S+ sport=(\d+)`).FindStringSubmatch(ct)
	if m == nil {
		t.Fatalf("conntrack lists no redirected flow:\n%s", ct)
	}
	want := m[2] + ":" + m[3]

	found := findingsFor(r)
	var redirected, accepted int
	for _, s := range r.Sockets {
		switch {
		case s.Local.String() == app.Local["via-proxy"]:
			redirected++
			if s.RedirectedTo == nil || s.RedirectedTo.String() != want {
				t.Errorf("%s -> %s redirected to %v, conntrack says %s", s.Local, s.Remote, s.RedirectedTo, want)
			}
		case s.Local.Port() == 15001 && s.State == diag.Established:
			accepted++
		}
		if s.State == diag.Established && s.Local.String() != app.Local["direct"] && hasRule(found[s.Local.String()], rules.RuleNoKeepalive) {
			t.Errorf("%s -> %s never leaves the pod, yet: %+v", s.Local, s.Remote, found[s.Local.String()])
		}
	}
	if redirected != 1 || accepted != 2 {
		t.Fatalf("found %d redirected connections and %d accepted by the proxy, want 1 and 2", redirected, accepted)
	}
	// The pod's connection to its own address: both ends are here, and
	// each names the other.
	byID := map[diag.Cookie]diag.Socket{}
	for _, s := range r.Sockets {
		byID[s.ID] = s
	}
	for _, s := range r.Sockets {
		if s.Local.String() != app.Local["in-pod"] {
			continue
		}
		if p, ok := byID[s.Peer]; !ok || p.Peer != s.ID || p.Local.Port() != 15001 {
			t.Errorf("%s -> %s: peer %s (%+v), want the proxy's end naming it back", s.Local, s.Remote, s.Peer, p)
		}
	}
	if !hasRule(found[app.Local["direct"]], rules.RuleNoKeepalive) {
		t.Errorf("the direct connection, which leaves the pod without keepalive, was not flagged: %+v", found[app.Local["direct"]])
	}
}
