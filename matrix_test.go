package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/rules"
)

// The scenario matrix: real namespaces (client, router, server), real
// connections, tcpvet's verdict on each, then time passes and the kernel
// decides. A critical verdict must mean the connection broke, and every
// connection that broke for certain must have had one.

// matrixTimeout is the router's conntrack established timeout: every
// scenario lets its flows sit idle past it.
const matrixTimeout = 3

// row is one connection of a scenario: who writes after the quiet, and
// from whose end tcpvet's verdict is taken.
type row struct {
	name string
	ka   *testnet.KA
	tos  int
	// server: the verdict is the server's, and the server writes first
	// unless clientFirst.
	server, clientFirst bool
	// untracked: the router's rules exempt the flow from conntrack.
	untracked bool
	// direct: the client dials the server's own address, not the
	// service's: a flow no rule translates, between the same two addresses
	// as the translated ones.
	direct bool
	// closes: after the quiet the client closes the connection instead of
	// writing, and the fate is whether the server learns it (EOF). With
	// loose=1 a FIN from no state is invalid, never picked up: tcpvet says
	// so, and the row holds the kernel to it.
	closes bool
	// may: what the kernel does depends on what tcpvet cannot know (a
	// backend picked at random, which end speaks first): tcpvet must say
	// "may" (a warning), and the row counts in neither figure.
	may bool
	// watchKnows: a watch across the quiet knows what one snapshot after
	// it cannot (that the flow had an entry), so the row counts in the
	// watch's figures though it is may for the snapshot's.
	watchKnows bool
}

// matrixCase is a router configuration and the connections through it.
type matrixCase struct {
	name  string
	loose string
	// nat is "dnat1", "dnat2" (balanced over two backends) or "" (routed).
	nat         string
	dropInvalid bool
	// dropOnInput puts the "ct state invalid drop" rule on the input hook,
	// which forwarded flows never meet.
	dropOnInput bool
	// notrack exempts the flows to port 7001 from conntrack.
	notrack bool
	// kubeProxy loads kube-proxy's own iptables rules (through iptables-nft,
	// as kube-proxy does on nodes without iptables-legacy) for a Service
	// whose one endpoint is the server, instead of nft rules.
	kubeProxy    bool
	clientTuning map[string]string
	rows         []row
}

// fate is what the application saw after the quiet.
type fate struct {
	broken bool
	how    string
}

// verdict is tcpvet's word on one connection.
type verdict struct {
	sev   rules.Severity
	rule  string
	meets string
}

func (v verdict) String() string {
	if v.rule == "" {
		return "ok"
	}
	if v.meets == "" || v.meets == "<nil>" {
		return fmt.Sprintf("%s %s", v.sev, v.rule)
	}
	return fmt.Sprintf("%s %s (%s)", v.sev, v.rule, v.meets)
}

type matrixResult struct {
	scenario, row string
	early, late   verdict
	// watched is the verdict of a --watch across the quiet; watchedBy is
	// false where none ran.
	watched             verdict
	watchedBy           bool
	fate                fate
	may, mayForTheWatch bool
}

func TestScenarioMatrix(t *testing.T) {
	fast := &testnet.KA{Idle: 1, Interval: 1, Count: 3}
	slow := &testnet.KA{Idle: 30, Interval: 1, Count: 3}
	cases := []matrixCase{
		{name: "dnat-local-vip-loose0", loose: "0", nat: "dnat1",
			// A pod tuned tighter than its node: nothing may tell it to loosen.
			clientTuning: map[string]string{"net.ipv4.tcp_keepalive_time": "600", "net.ipv4.tcp_keepalive_intvl": "1",
				"net.ipv4.tcp_keepalive_probes": "2", "net.ipv4.tcp_retries2": "10"},
			rows: []row{
				{name: "none"}, {name: "slow-ka", ka: slow}, {name: "fast-ka", ka: fast}, {name: "tos", tos: 0x10},
				// Once its entry is gone, one snapshot cannot tell the
				// server's end of a translated flow from that of one
				// dialed straight to it (srv-direct): a watch saw which.
				{name: "srv-none", server: true, may: true, watchKnows: true}, {name: "srv-peer-ka", ka: fast, server: true},
				{name: "srv-direct", server: true, direct: true, may: true, watchKnows: true},
			}},
		{name: "dnat-one-backend-loose1", loose: "1", nat: "dnat1", rows: []row{
			{name: "none"}, {name: "fast-ka", ka: fast}, {name: "srv-peer-ka", ka: fast, server: true},
			{name: "none-closes", closes: true, may: true}, {name: "fast-ka-closes", ka: fast, closes: true},
			{name: "srv-none", server: true, may: true}, {name: "srv-cli-first", server: true, clientFirst: true, may: true},
		}},
		{name: "dnat-two-backends-loose1", loose: "1", nat: "dnat2", rows: []row{
			{name: "none-a", may: true}, {name: "none-b", may: true}, {name: "fast-ka", ka: fast},
		}},
		{name: "routed-loose1", loose: "1", rows: []row{
			{name: "none"}, {name: "fast-ka", ka: fast}, {name: "srv-none", server: true},
		}},
		{name: "routed-loose0", loose: "0", rows: []row{
			{name: "none"}, {name: "fast-ka", ka: fast}, {name: "srv-none", server: true},
		}},
		{name: "routed-loose0-invalid-drop", loose: "0", dropInvalid: true, rows: []row{
			{name: "none"}, {name: "fast-ka", ka: fast}, {name: "srv-none", server: true}, {name: "srv-peer-ka", ka: fast, server: true},
		}},
		// A NOTRACK rule makes a missing entry prove nothing: the flow may
		// never have had one, as the untracked one here never did.
		{name: "routed-loose0-drop-notrack", loose: "0", dropInvalid: true, notrack: true, rows: []row{
			{name: "untracked", untracked: true}, {name: "none", may: true, watchKnows: true}, {name: "fast-ka", ka: fast},
		}},
		{name: "routed-loose0-input-drop", loose: "0", dropInvalid: true, dropOnInput: true, rows: []row{
			{name: "none"}, {name: "fast-ka", ka: fast}, {name: "srv-none", server: true},
		}},
		// kube-proxy's rules, decoded from iptables-nft's xt matches: its
		// KUBE-FORWARD drops what conntrack marks invalid, so with loose=0
		// a forgotten Service flow's next packet is dropped.
		{name: "kube-proxy-loose0", loose: "0", kubeProxy: true, rows: []row{
			{name: "none"}, {name: "fast-ka", ka: fast}, {name: "srv-none", server: true}, {name: "srv-peer-ka", ka: fast, server: true},
		}},
		// The node's defaults: loose=1 picks the flow up again, and the one
		// endpoint it is balanced to is the one it had.
		{name: "kube-proxy-loose1", loose: "1", kubeProxy: true, rows: []row{
			{name: "none"}, {name: "fast-ka", ka: fast}, {name: "srv-none", server: true, may: true},
		}},
	}
	var mu sync.Mutex
	var results []matrixResult
	// scenario runs one scenario beside the others and keeps its rows.
	scenario := func(t *testing.T, name string, run func(*testing.T) []matrixResult) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rs := run(t)
			mu.Lock()
			results = append(results, rs...)
			mu.Unlock()
		})
	}
	t.Run("path", func(t *testing.T) {
		for i, c := range cases {
			scenario(t, c.name, func(t *testing.T) []matrixResult { return runMatrixCase(t, c, 60+i) })
		}
		scenario(t, "syn-sent", func(t *testing.T) []matrixResult { return runConnectCase(t, 80) })
		scenario(t, "half-open", func(t *testing.T) []matrixResult { return runHalfOpenCase(t, 83) })
	})
	if t.Failed() {
		return
	}
	sort.Slice(results, func(i, j int) bool {
		if results[i].scenario != results[j].scenario {
			return results[i].scenario < results[j].scenario
		}
		return results[i].row < results[j].row
	})
	var tp, fp, fn, counted int
	var wtp, wfp, wfn, wcounted int
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-27s %-18s %-40s %-40s %-40s %s\n", "SCENARIO", "CONNECTION", "VERDICT BEFORE THE QUIET", "VERDICT AFTER IT, BEFORE THE WRITE", "VERDICT OF A WATCH ACROSS IT", "FATE")
	for _, r := range results {
		watched := "-"
		if r.watchedBy {
			watched = r.watched.String()
		}
		fmt.Fprintf(&table, "%-27s %-18s %-40s %-40s %-40s %s\n", r.scenario, r.row, r.early, r.late, watched, r.fate.how)
		if r.watchedBy {
			// The watch's verdict answers to the same standard as the
			// snapshot's, where it knows as much or more.
			crit := r.watched.sev == rules.Critical && r.watched.rule != ""
			switch {
			case r.mayForTheWatch:
				if crit || r.watched.meets != string(rules.MayBreak) {
					t.Errorf("%s/%s: the kernel picks a backend at random, yet the watch said %s", r.scenario, r.row, r.watched)
				}
			case crit && r.fate.broken:
				wcounted++
				wtp++
			case crit:
				wcounted++
				wfp++
				t.Errorf("%s/%s: the watch said critical %s, yet the connection %s", r.scenario, r.row, r.watched, r.fate.how)
			case r.fate.broken:
				wcounted++
				wfn++
				t.Errorf("%s/%s: the watch said %s, yet the connection %s", r.scenario, r.row, r.watched, r.fate.how)
			default:
				wcounted++
			}
		}
		if r.may {
			if r.late.sev == rules.Critical || r.late.meets != string(rules.MayBreak) {
				t.Errorf("%s/%s: the kernel picks a backend at random, yet tcpvet said %s", r.scenario, r.row, r.late)
			}
			continue
		}
		counted++
		crit := r.late.sev == rules.Critical && r.late.rule != ""
		switch {
		case crit && r.fate.broken:
			tp++
		case crit:
			fp++
			t.Errorf("%s/%s: critical %s, yet the connection %s", r.scenario, r.row, r.late, r.fate.how)
		case r.fate.broken:
			fn++
			t.Errorf("%s/%s: %s, yet the connection %s", r.scenario, r.row, r.late, r.fate.how)
		}
		if r.early.sev == rules.Critical && r.early.rule != "" && !r.fate.broken {
			t.Errorf("%s/%s: critical before the quiet (%s), yet the connection %s", r.scenario, r.row, r.early, r.fate.how)
		}
	}
	precision, recall := ratio(tp, tp+fp), ratio(tp, tp+fn)
	t.Logf("%s\n%d connections in %d scenarios, %d counted (the rest are the kernel's coin toss): critical precision %.2f, recall %.2f (tp %d, fp %d, fn %d)\n"+
		"a watch across the quiet, %d connections counted: critical precision %.2f, recall %.2f (tp %d, fp %d, fn %d)",
		table.String(), len(results), len(cases)+2, counted, precision, recall, tp, fp, fn,
		wcounted, ratio(wtp, wtp+wfp), ratio(wtp, wtp+wfn), wtp, wfp, wfn)
	if len(results) < 24 {
		t.Errorf("%d connections, want at least 24", len(results))
	}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// runMatrixCase builds client -> router -> server for c on subnets base
// and base+10, takes tcpvet's verdicts, lets every flow sit idle past the
// router's conntrack timeout, then writes on each and sees what comes back.
func runMatrixCase(t *testing.T, c matrixCase, base int) []matrixResult {
	p := testnet.NewPath(t, base, base+10)
	client, router, server, sAddr := p.Client, p.Router, p.Server, p.ServerAddr
	for k, v := range c.clientTuning {
		client.Sysctl(t, k, v)
	}
	to := func(port int) string { return fmt.Sprintf("%s:%d", sAddr.V4, port) }
	switch {
	case c.kubeProxy:
		loadKubeProxy(t, router, matrixVIP, sAddr.V4)
		// A cluster IP is on no interface: the node routes it on, as its
		// default route would, and only kube-proxy's DNAT makes it reach
		// a pod.
		router.Run(t, "ip", "route", "add", matrixVIP+"/32", "via", sAddr.V4)
		to = func(port int) string { return fmt.Sprintf("%s:%d", matrixVIP, port) }
	default:
		router.Run(t, "nft", "add table inet fw")
		router.Run(t, "nft", "add chain inet fw forward_filter { type filter hook forward priority 0 ; }")
		// Any ct expression hooks conntrack into the router, as kube-proxy's do.
		router.Run(t, "nft", "add rule inet fw forward_filter ct state new counter")
	}
	switch {
	case c.dropOnInput:
		router.Run(t, "nft", "add chain inet fw input_filter { type filter hook input priority 0 ; }")
		router.Run(t, "nft", "add rule inet fw input_filter ct state invalid drop")
	case c.dropInvalid:
		router.Run(t, "nft", "add rule inet fw forward_filter ct state invalid drop")
	}
	if c.notrack {
		// The flows to port 7001, and their replies.
		router.Run(t, "nft", "add chain inet fw raw { type filter hook prerouting priority -300 ; }")
		router.Run(t, "nft", "add rule inet fw raw tcp dport 7001 notrack")
		router.Run(t, "nft", "add rule inet fw raw tcp sport 7001 notrack")
	}
	if c.nat != "" {
		const vip = matrixVIP
		router.Run(t, "ip", "addr", "add", vip+"/32", "dev", "lo")
		router.Run(t, "nft", "add table ip svc")
		router.Run(t, "nft", "add chain ip svc pre { type nat hook prerouting priority -100 ; }")
		target := sAddr.V4
		if c.nat == "dnat2" {
			second := fmt.Sprintf("198.18.%d.3", base+10)
			server.Run(t, "ip", "addr", "add", second+"/24", "dev", "vb"+server.Name[7:13])
			target = fmt.Sprintf("numgen random mod 2 map { 0 : %s, 1 : %s }", sAddr.V4, second)
		}
		router.Run(t, "nft", fmt.Sprintf("add rule ip svc pre ip daddr %s tcp dport 7000-7099 dnat to %s", vip, target))
		to = func(port int) string { return fmt.Sprintf("%s:%d", vip, port) }
	}
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", fmt.Sprint(matrixTimeout))
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", c.loose)
	// A dropped write must end within the test, not in 15 minutes.
	for _, ns := range []*testnet.NS{client, server} {
		ns.Sysctl(t, "net.ipv4.tcp_retries2", "4")
	}
	if c.clientTuning != nil {
		client.Sysctl(t, "net.ipv4.tcp_retries2", c.clientTuning["net.ipv4.tcp_retries2"])
	}

	// Every connection goes to one service port, as a Service's clients
	// do; the server accepts them in the order they are dialed, so the
	// i-th row's server end is "svc#i".
	var dials []testnet.Dial
	for _, r := range c.rows {
		port := 7000
		if r.untracked {
			port = 7001
		}
		dest := to(port)
		if r.direct {
			dest = fmt.Sprintf("%s:%d", sAddr.V4, port)
		}
		dials = append(dials, testnet.Dial{Name: r.name, To: dest, Keepalive: r.ka, TOS: r.tos})
	}
	srv := server.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "svc", Addr: ":7000", Mode: testnet.Echo}, {Name: "untracked", Addr: ":7001", Mode: testnet.Echo},
	}})
	cli := client.Start(t, testnet.Spec{Dial: dials})

	// sides reads both ends' verdicts from the reports of the client's
	// namespace and the server's.
	sides := func(cr, sr *result) (clientSide, serverSide map[string]verdict) {
		clientSide, serverSide = map[string]verdict{}, map[string]verdict{}
		for _, r := range c.rows {
			local := cli.Local[r.name]
			clientSide[r.name] = verdictOn(cr, func(s diag.Socket) bool { return s.Local.String() == local })
			serverSide[r.name] = verdictOn(sr, func(s diag.Socket) bool { return unmap(s.Remote).String() == local })
		}
		return clientSide, serverSide
	}
	verdicts := func() (clientSide, serverSide map[string]verdict) {
		cr := runReport(t, "--netns", client.Path, "--host-netns", router.Path)
		sr := runReport(t, "--netns", server.Path, "--host-netns", router.Path)
		clientSide, serverSide = sides(cr, sr)
		if c.clientTuning != nil {
			checkNeverLooser(t, cr)
		}
		for _, s := range cr.Sockets {
			if s.Local.String() == cli.Local["tos"] && (s.ClassID == 0 || s.Keepalive.Enabled == nil) {
				t.Errorf("the socket with IP_TOS: class id %#x, keepalive %+v: its options must be read", s.ClassID, s.Keepalive)
			}
		}
		return clientSide, serverSide
	}
	earlyC, earlyS := verdicts()
	// The quiet, watched from both ends as --watch (and the live view)
	// watch: every second, for as long as it lasts.
	quiet := (matrixTimeout + 3) * time.Second
	watch := []string{"--watch", quiet.String(), "--interval", "1s", "--host-netns", router.Path}
	var srvWatch *result
	srvErr := make(chan error, 1)
	go func() {
		var err error
		srvWatch, err = runReportErr(append(watch, "--netns", server.Path)...)
		srvErr <- err
	}()
	cliWatch := runReport(t, append(watch, "--netns", client.Path)...)
	if err := <-srvErr; err != nil {
		t.Fatal(err)
	}
	watchedC, watchedS := sides(cliWatch, srvWatch)
	lateC, lateS := verdicts()

	accepted := map[string]string{}
	n := 0
	for _, r := range c.rows {
		if r.untracked {
			continue // a client-side row, on its own port
		}
		accepted[fmt.Sprintf("svc#%d", n)] = r.name
		switch {
		case r.closes:
			cli.Close(t, r.name)
		case r.server && !r.clientFirst:
			srv.Write(t, fmt.Sprintf("svc#%d", n), 100)
		default:
			cli.Write(t, r.name, 100)
		}
		n++
	}
	for _, r := range c.rows {
		if r.untracked {
			cli.Write(t, r.name, 100)
		}
	}
	fates := collectFates(c.rows, accepted, cli, srv, 6*time.Second)
	var out []matrixResult
	for _, r := range c.rows {
		early, late, watched := earlyC[r.name], lateC[r.name], watchedC[r.name]
		if r.server {
			early, late, watched = earlyS[r.name], lateS[r.name], watchedS[r.name]
		}
		name := r.name
		if r.server {
			name += " (srv)"
		}
		if r.clientFirst {
			name += "←cli"
		}
		if r.closes {
			// What the verdict's text claims of a close after the quiet,
			// held to the kernel: lost when the entry went, not when
			// keepalive kept it.
			if lost := r.ka == nil; fates[r.name].broken != lost {
				t.Errorf("%s/%s: the close after the quiet %s; tcpvet says a close is lost only once the entry is gone", c.name, r.name, fates[r.name].how)
			}
		}
		out = append(out, matrixResult{scenario: c.name, row: name, early: early, late: late, watched: watched, watchedBy: true,
			fate: fates[r.name], may: r.may, mayForTheWatch: r.may && !r.watchKnows})
	}
	return out
}

// matrixVIP is the Service address clients of the NAT scenarios dial.
const matrixVIP = "198.18.200.1"

// loadKubeProxy loads, through iptables-nft-restore, the filter and nat
// rules kube-proxy's iptables mode writes for one ClusterIP Service
// (vip:7000 to endpoint:7000), in its own chain layout and matches:
// comments, conntrack states, statistic, marks, DNAT and MASQUERADE.
func loadKubeProxy(t *testing.T, ns *testnet.NS, vip, endpoint string) {
	t.Helper()
	rules := fmt.Sprintf(`*filter
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d %[1]s/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 7000 -j KUBE-SVC-WEB
-A KUBE-SVC-WEB ! -s 198.18.0.0/16 -d %[1]s/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 7000 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB -m comment --comment "default/web -> %[2]s:7000" -j KUBE-SEP-WEB
-A KUBE-SEP-WEB -s %[2]s/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination %[2]s:7000
COMMIT
`, vip, endpoint)
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "iptables-nft-restore")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-nft-restore: %v: %s", err, out)
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }

// verdictOn is the worst finding tcpvet made on the socket match picks.
func verdictOn(r *result, match func(diag.Socket) bool) verdict {
	ids := map[diag.Cookie]bool{}
	for _, s := range r.Sockets {
		if match(s) {
			ids[s.ID] = true
		}
	}
	var v verdict
	for _, f := range r.Findings {
		if f.Socket == nil || !ids[*f.Socket] || f.Rule == rules.RuleSlowDeadPeer {
			continue
		}
		if v.rule == "" || f.Severity > v.sev {
			v = verdict{sev: f.Severity, rule: f.Rule}
			if p := f.Evidence.PathEvidence; p != nil {
				v.meets = string(p.Meets)
			}
		}
	}
	return v
}

// checkNeverLooser: a namespace tuned tighter than its host (and than
// what tcpvet would propose: probes 2 and 1 s apart, against 4 and a
// quarter of the idle) is told nothing about its sysctls, and its pod
// sysctl fixes keep its interval and probe count.
func checkNeverLooser(t *testing.T, r *result) {
	proposals := 0
	for _, f := range r.Findings {
		if f.Rule == rules.RulePodSysctlDiffers {
			t.Errorf("a namespace tighter than its host was told: %s", f.Summary)
		}
		for _, fx := range f.Fix {
			if strings.HasPrefix(fx.Where, "pod sysctls") && strings.Contains(fx.Snippet, "tcp_keepalive_probes") {
				proposals++
				if !strings.Contains(fx.Snippet, `tcp_keepalive_probes, value: "2"`) || !strings.Contains(fx.Snippet, `tcp_keepalive_intvl, value: "1"`) {
					t.Errorf("%s proposes looser keepalive than the namespace has: %s", f.Rule, fx.Snippet)
				}
			}
			if strings.Contains(fx.Snippet, "tcp_retries2 = 8") && !strings.Contains(fx.Snippet, "instead of ~325 s (tcp_retries2=10)") {
				t.Errorf("the tcp_retries2 fix misstates what the namespace has: %s", fx.Snippet)
			}
		}
	}
	if proposals == 0 {
		t.Error("no pod sysctl fix was proposed: nothing checked")
	}
}

// collectFates follows both agents for a while: an echo back on the client
// means the write went through; an error on either end means it broke; and
// silence means it hangs.
func collectFates(rows []row, accepted map[string]string, cli, srv *testnet.Agent, wait time.Duration) map[string]fate {
	out := map[string]fate{}
	closes := map[string]bool{}
	for _, r := range rows {
		closes[r.name] = r.closes
	}
	deadline := time.After(wait)
	for len(out) < len(rows) {
		var e testnet.Event
		var ok bool
		select {
		case e, ok = <-cli.Events():
		case e, ok = <-srv.Events():
		case <-deadline:
			ok = false
		}
		if !ok {
			break
		}
		name := e.Name
		n, server := accepted[name]
		if server {
			name = n
		}
		if _, done := out[name]; done || name == "" {
			continue
		}
		if closes[name] {
			// Only the server's end says whether the close reached it.
			if server && e.Kind == "eof" {
				out[name] = fate{how: "went on: the close reached the server"}
			}
			continue
		}
		switch e.Kind {
		case "read":
			out[name] = fate{how: "went on: the write came back"}
		case "read-error", "write-error":
			out[name] = fate{broken: true, how: fmt.Sprintf("broke: %s", errnoName(e.Errno, e.Err))}
		case "eof":
			out[name] = fate{broken: true, how: "broke: closed by the peer"}
		}
	}
	for _, r := range rows {
		switch _, ok := out[r.name]; {
		case ok:
		case r.closes:
			out[r.name] = fate{broken: true, how: fmt.Sprintf("broke: the close never reached the server (no EOF in %v)", wait)}
		default:
			out[r.name] = fate{broken: true, how: fmt.Sprintf("broke: the write hangs (%v without an answer)", wait)}
		}
	}
	return out
}

func errnoName(errno int, err string) string {
	switch syscall.Errno(errno) {
	case syscall.ECONNRESET:
		return "ECONNRESET"
	case syscall.ETIMEDOUT:
		return "ETIMEDOUT"
	}
	return err
}

// runConnectCase connects to peers that drop every SYN: one stays silent,
// with the namespace's tcp_syn_retries and with the socket's own
// TCP_SYNCNT; the other starts answering 4 s in. A connect is critical
// only once the linear retransmissions (tcp_syn_linear_timeouts, a second
// apart) are spent, and then the kernel's ETIMEDOUT must come within
// 10% + 1 s of the predicted give-up; the late answer must never have been
// critical.
func runConnectCase(t *testing.T, subnet int) []matrixResult {
	client, peer, late := testnet.New(t), testnet.New(t), testnet.New(t)
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_syn_linear_timeouts"); err != nil {
		t.Skip("this kernel has no tcp_syn_linear_timeouts (Linux 6.5+): the timings here assume it")
	}
	_, pAddr := testnet.Link(t, client, peer, subnet)
	lAddr, _ := testnet.Link(t, late, client, subnet+1)
	// Kernel defaults but for fewer SYN retries, so the test ends in
	// seconds: 7 s for 2, and 19 s for the socket's own TCP_SYNCNT of 3.
	client.Sysctl(t, "net.ipv4.tcp_syn_retries", "2")
	peer.DropInbound(t, 7009)
	late.DropInbound(t, 7012)
	late.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: ":7012", Mode: testnet.Echo}}})
	agent := client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "syn-default", To: pAddr.V4 + ":7009", Async: true},
		{Name: "syn-syncnt3", To: pAddr.V4 + ":7009", Async: true, SynCnt: 3},
		{Name: "syn-late-answer", To: lAddr.V4 + ":7012", Async: true},
	}})
	start := time.Now()
	verdicts := func() (map[string]verdict, map[string]time.Time) {
		r := runReport(t, "--netns", client.Path)
		vs, predicted := map[string]verdict{}, map[string]time.Time{}
		for name, local := range agent.Local {
			vs[name] = verdictOn(r, func(s diag.Socket) bool { return s.Local.String() == local })
			for _, f := range r.Findings {
				for _, s := range r.Sockets {
					if f.Socket != nil && *f.Socket == s.ID && s.Local.String() == local && f.Rule == rules.RuleConnectUnanswered {
						predicted[name] = r.TakenAt.Add(time.Duration(*f.Evidence.GivesUpInS * float64(time.Second)))
						t.Logf("%s: %s", name, f.Summary)
					}
				}
			}
		}
		return vs, predicted
	}
	time.Sleep(3500 * time.Millisecond)
	early, _ := verdicts()
	time.Sleep(time.Until(start.Add(4 * time.Second)))
	late.Run(t, "nft", "delete", "table", "inet", "tcpvet")
	time.Sleep(time.Until(start.Add(5500 * time.Millisecond)))
	lateV, predicted := verdicts()
	var out []matrixResult
	for range agent.Local {
		var e testnet.Event
		select {
		case e = <-agent.Events():
		case <-time.After(20 * time.Second):
			t.Fatalf("no connect outcome within 20 s")
		}
		if e.Kind != "dial-error" && e.Kind != "connected" {
			continue
		}
		took := e.At.Sub(start)
		fa := fate{how: fmt.Sprintf("went on: connected after %.1f s", took.Seconds())}
		if e.Kind == "dial-error" {
			fa = fate{broken: true, how: fmt.Sprintf("broke: connect %s after %.1f s", errnoName(e.Errno, e.Err), took.Seconds())}
			if e.Errno != int(syscall.ETIMEDOUT) {
				t.Errorf("%s: connect failed with %s, want ETIMEDOUT", e.Name, e.Err)
			}
		}
		if p, ok := predicted[e.Name]; ok && fa.broken {
			off := e.At.Sub(p).Abs()
			t.Logf("%s: predicted the kernel gives up at %s, it did at %s (%.1f s in): off by %v", e.Name, p.Format("15:04:05.000"), e.At.Format("15:04:05.000"), took.Seconds(), off)
			if off > took/10+time.Second {
				t.Errorf("%s: give-up predicted %v off, more than 10%% + 1 s", e.Name, off)
			}
		}
		out = append(out, matrixResult{scenario: "syn-sent-silent-peer", row: e.Name, early: early[e.Name], late: lateV[e.Name], fate: fa})
	}
	return out
}

// runHalfOpenCase writes to a peer that then drops everything: the verdict
// is taken once the retransmissions start, and the application's
// ETIMEDOUT must come within 10% + 1 s of the predicted give-up, with
// tcp_retries2 and with TCP_USER_TIMEOUT.
func runHalfOpenCase(t *testing.T, subnet int) []matrixResult {
	client, peer := testnet.New(t), testnet.New(t)
	_, pAddr := testnet.Link(t, client, peer, subnet)
	client.Sysctl(t, "net.ipv4.tcp_retries2", "4")
	peer.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: ":7010", Mode: testnet.Hold}}})
	to := pAddr.V4 + ":7010"
	agent := client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "retries2", To: to},
		{Name: "user-timeout", To: to, UserTimeoutMS: 3000},
	}})
	start := time.Now()
	peer.DropInbound(t, 7010)
	for name := range agent.Local {
		agent.Write(t, name, 100)
	}
	predicted, verdicts := map[string]time.Time{}, map[string]verdict{}
	for deadline := time.Now().Add(2500 * time.Millisecond); len(predicted) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r := runReport(t, "--netns", client.Path)
		for name, local := range agent.Local {
			if _, done := predicted[name]; done {
				continue
			}
			v := verdictOn(r, func(s diag.Socket) bool { return s.Local.String() == local })
			for _, f := range r.Findings {
				if f.Rule != rules.RuleHalfOpen {
					continue
				}
				for _, s := range r.Sockets {
					if *f.Socket == s.ID && s.Local.String() == local {
						predicted[name], verdicts[name] = r.TakenAt.Add(time.Duration(*f.Evidence.GivesUpInS*float64(time.Second))), v
					}
				}
			}
		}
	}
	var out []matrixResult
	for range agent.Local {
		e := agent.Wait(t, "read-error", "", 15*time.Second)
		took := e.At.Sub(start)
		fa := fate{broken: true, how: fmt.Sprintf("broke: %s after %.1f s", errnoName(e.Errno, e.Err), took.Seconds())}
		if p, ok := predicted[e.Name]; ok {
			off := e.At.Sub(p).Abs()
			t.Logf("%s: predicted the kernel gives up at %s, it did at %s: off by %v", e.Name, p.Format("15:04:05.000"), e.At.Format("15:04:05.000"), off)
			if off > took/10+time.Second {
				t.Errorf("%s: give-up predicted %v off, more than 10%% + 1 s", e.Name, off)
			}
		}
		if e.Errno != int(syscall.ETIMEDOUT) {
			t.Errorf("%s: %s, want ETIMEDOUT", e.Name, e.Err)
		}
		out = append(out, matrixResult{scenario: "half-open-dropping-peer", row: e.Name, early: verdicts[e.Name], late: verdicts[e.Name], fate: fa})
	}
	return out
}
