package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/rules"
)

// TestConntrackEntriesJoinAndPolicy builds a DNAT router whose nftables
// give one port's flows an 8 s timeout policy ("ct timeout") while the
// sysctl says two hours. tcpvet must join each socket to its entry, from
// the client by the original direction and from the server by the reply,
// agree with conntrack -L on the time left, take the policy's timeout over
// the sysctl, flag exactly the flows the kernel then resets, and flag an
// entry deleted under a live connection before its next write is reset.
func TestConntrackEntriesJoinAndPolicy(t *testing.T) {
	t.Parallel() // it mostly waits for conntrack to forget
	p := testnet.NewPath(t, 90, 91)
	client, router, server, sAddr := p.Client, p.Router, p.Server, p.ServerAddr
	const vip = "198.18.210.1"
	router.Run(t, "ip", "addr", "add", vip+"/32", "dev", "lo")
	nftFile(t, router, fmt.Sprintf(`table ip svc {
	ct timeout short { protocol tcp; l3proto ip; policy = { established: 8 }; }
	chain timeouts { type filter hook prerouting priority filter; tcp dport 7100 ct timeout set "short"; }
	chain pre { type nat hook prerouting priority -100; ip daddr %s tcp dport { 7100, 7101 } dnat to %s; }
}
`, vip, sAddr.V4))
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", "7200")
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")

	server.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "short", Addr: ":7100", Mode: testnet.Echo}, {Name: "long", Addr: ":7101", Mode: testnet.Echo},
	}})
	cli := client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "policy", To: vip + ":7100"},
		{Name: "default", To: vip + ":7101"},
		{Name: "deleted", To: vip + ":7101"},
	}})

	before := conntrackLeft(t, router)
	cr := runReport(t, "--netns", client.Path, "--host-netns", router.Path)
	after := conntrackLeft(t, router)
	sr := runReport(t, "--netns", server.Path, "--host-netns", router.Path)

	found := findingsFor(cr)
	// The kernel reports whole seconds left, and tcp_info's quiet is read a
	// moment apart: a derived timeout may be a second off.
	near := func(got, want uint32) bool { return got+1 >= want && got <= want+1 }
	for name, wantTimeout := range map[string]uint32{"policy": 8, "default": 7200} {
		local := cli.Local[name]
		e := hostEntry(t, cr, local)
		if !near(e.TimeoutS, wantTimeout) || e.Side != "original" || e.NAT != "dnat" || e.TCPState != "ESTABLISHED" {
			t.Errorf("%s: entry %+v, want the original side of a dnat flow with timeout %d", name, e, wantTimeout)
		}
		lo, hi := after[local], before[local]
		if float64(e.ExpiresInS) < float64(lo)-1.5 || float64(e.ExpiresInS) > float64(hi)+1.5 {
			t.Errorf("%s: expires in %d s, conntrack -L said %d s before and %d s after", name, e.ExpiresInS, hi, lo)
		}
	}
	if f := found[cli.Local["policy"]]; !hasCritical(f, rules.RuleNoKeepalive) || !near(uint32(f[0].Evidence.IdleTimeoutS), 8) {
		t.Errorf("policy flow: %+v, want critical no-keepalive on an 8 s timeout", f)
	}
	if hasCritical(found[cli.Local["default"]], rules.RuleNoKeepalive) {
		t.Errorf("the flow on the two-hour sysctl is critical: %+v", found[cli.Local["default"]])
	}
	// The server's end of the policy flow, through the reply direction.
	var joined bool
	for _, s := range sr.Sockets {
		if s.State == diag.Established && s.Local.Port() == 7100 {
			for _, e := range s.Conntrack {
				joined = joined || e.Netns == "host" && e.Side == "reply" && e.NAT == "dnat" && near(e.TimeoutS, 8)
			}
		}
	}
	if !joined {
		t.Errorf("the server's end of the policy flow is not joined to its entry through the reply direction")
	}

	// An entry deleted under a live connection: forgotten now.
	port := cli.Local["deleted"][strings.LastIndex(cli.Local["deleted"], ":")+1:]
	router.Run(t, "conntrack", "-D", "-p", "tcp", "--orig-port-src", port)
	dr := runReport(t, "--netns", client.Path, "--host-netns", router.Path)
	if f := findingsFor(dr)[cli.Local["deleted"]]; !hasCritical(f, rules.RuleFlowForgotten) {
		t.Errorf("a deleted entry is not flagged flow-forgotten critical: %+v", f)
	}

	// The kernel decides: past 8 s, the policy flow and the deleted one are
	// reset; the flow on the sysctl's timeout goes on.
	time.Sleep(9 * time.Second)
	for _, name := range []string{"policy", "default", "deleted"} {
		cli.Write(t, name, 100)
	}
	got := map[string]string{}
	deadline := time.After(5 * time.Second)
	for len(got) < 3 {
		select {
		case e := <-cli.Events():
			switch {
			case e.Kind == "read":
				got[e.Name] = "echoed"
			case e.Kind == "read-error" && e.Errno == int(syscall.ECONNRESET):
				got[e.Name] = "reset"
			case e.Kind == "read-error":
				got[e.Name] = e.Err
			}
		case <-deadline:
			t.Fatalf("fates after 5 s: %v", got)
		}
	}
	if got["policy"] != "reset" || got["deleted"] != "reset" || got["default"] != "echoed" {
		t.Errorf("fates %v: want policy and deleted reset, default echoed", got)
	}
}

// TestMasqueradeJoin: a router that masquerades its clients; the client's
// socket is joined by the original direction, the server's, which sees the
// router's address, by the reply.
func TestMasqueradeJoin(t *testing.T) {
	p := testnet.NewPath(t, 92, 93)
	client, router, server, sAddr := p.Client, p.Router, p.Server, p.ServerAddr
	nftFile(t, router, fmt.Sprintf(`table ip nat {
	chain post { type nat hook postrouting priority 100; ip daddr %s masquerade; }
}
`, sAddr.V4))
	server.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: ":7102", Mode: testnet.Echo}}})
	cli := client.Start(t, testnet.Spec{Dial: []testnet.Dial{{Name: "c", To: sAddr.V4 + ":7102"}}})

	cr := runReport(t, "--netns", client.Path, "--host-netns", router.Path)
	if e := hostEntry(t, cr, cli.Local["c"]); e.Side != "original" || e.NAT != "snat" {
		t.Errorf("client's entry %+v, want the original side of an snat flow", e)
	}
	sr := runReport(t, "--netns", server.Path, "--host-netns", router.Path)
	var joined bool
	for _, s := range sr.Sockets {
		if s.State == diag.Established && s.Local.Port() == 7102 {
			for _, e := range s.Conntrack {
				joined = joined || e.Side == "reply" && e.NAT == "snat"
			}
		}
	}
	if !joined {
		t.Errorf("the server's socket is not joined to the masqueraded flow: %+v", sr.Sockets)
	}
}

// nftFile loads an nftables ruleset into ns from a file.
func nftFile(t *testing.T, ns *testnet.NS, ruleset string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "nft", "-f", f)
}

func hasCritical(fs []rules.Finding, rule string) bool {
	for _, f := range fs {
		if f.Rule == rule && f.Severity == rules.Critical {
			return true
		}
	}
	return false
}

// hostEntry is the host's conntrack entry tcpvet joined to the socket at local.
func hostEntry(t *testing.T, r *result, local string) diag.Flow {
	t.Helper()
	for _, s := range r.Sockets {
		if s.Local.String() != local {
			continue
		}
		for _, e := range s.Conntrack {
			if e.Netns == "host" {
				return e
			}
		}
		t.Fatalf("%s has no host conntrack entry: %+v", local, s.Conntrack)
	}
	t.Fatalf("no socket at %s", local)
	return diag.Flow{}
}

// conntrackLeft maps each TCP flow's original source ("ip:port") to the
// seconds conntrack -L says its entry has left.
var conntrackLine = regexp.MustCompile(`^tcp\s+\d+\s+(\d+)\s+\S+\s+src=(\S+) dst=\S+ sport=(\d+)`)

func conntrackLeft(t *testing.T, ns *testnet.NS) map[string]uint32 {
	out := map[string]uint32{}
	for _, l := range strings.Split(ns.Run(t, "conntrack", "-L", "-p", "tcp"), "\n") {
		if m := conntrackLine.FindStringSubmatch(l); m != nil {
			left, _ := strconv.Atoi(m[1])
			out[m[2]+":"+m[3]] = uint32(left)
		}
	}
	return out
}
