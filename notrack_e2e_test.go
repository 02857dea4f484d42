package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/rules"
)

// TestNotrackAddedDuringWatch: a watch sees a busy connection's
// conntrack entry on the router; then a notrack rule for it is added (as
// Calico's doNotTrack policies are, live), its packets skip conntrack, its
// entry runs out unrefreshed, and the connection carries on: untracked
// packets are not invalid ones, and ct state invalid drop lets them by.
// The watch, having seen the entry, must not call it critical.
func TestNotrackAddedDuringWatch(t *testing.T) {
	t.Parallel() // it mostly waits for the entry to run out
	p := testnet.NewPath(t, 231, 241)
	r := p.Router
	r.Run(t, "nft", "add table inet fw")
	r.Run(t, "nft", "add chain inet fw forward_filter { type filter hook forward priority 0 ; }")
	r.Run(t, "nft", "add rule inet fw forward_filter ct state new counter")
	r.Run(t, "nft", "add rule inet fw forward_filter ct state invalid drop")
	r.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", "3")
	r.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")
	p.Server.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "svc", Addr: ":7000", Mode: testnet.Echo}, {Name: "other", Addr: ":7002", Mode: testnet.Echo},
	}})
	cli := p.Client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "busy", To: fmt.Sprintf("%s:7000", p.ServerAddr.V4), PingEveryMS: 500, PingBytes: 8},
		// Keeps a tracked flow of the client's address in the table.
		{Name: "other", To: fmt.Sprintf("%s:7002", p.ServerAddr.V4), PingEveryMS: 500, PingBytes: 8},
	}})
	watched := make(chan *result, 1)
	go func() {
		watched <- watchReport(t, 10*time.Second, "--netns", p.Client.Path, "--host-netns", r.Path)
	}()
	time.Sleep(2500 * time.Millisecond)
	r.Run(t, "nft", "add chain inet fw raw { type filter hook prerouting priority -300 ; }")
	r.Run(t, "nft", "add rule inet fw raw tcp dport 7000 notrack")
	r.Run(t, "nft", "add rule inet fw raw tcp sport 7000 notrack")
	res := <-watched

	// The connection carries on: its pings come back.
	deadline := time.After(2 * time.Second)
	echoed := false
	for !echoed {
		select {
		case e := <-cli.Events():
			if e.Name == "busy" && e.Kind == "read-error" {
				t.Fatalf("busy: %+v", e)
			}
			echoed = e.Name == "busy" && e.Kind == "read"
		case <-deadline:
			t.Fatal("the busy connection's pings are no longer answered")
		}
	}
	out := r.Run(t, "conntrack", "-L", "-p", "tcp", "--dport", "7000")
	t.Logf("router's entries to 7000 now: %q", out)

	busy := cli.Local["busy"]
	var sock *diag.Socket
	for i := range res.Sockets {
		if res.Sockets[i].Local.String() == busy {
			sock = &res.Sockets[i]
		}
	}
	if sock == nil || sock.Observed == nil {
		t.Fatalf("busy (%s) not in the watch's report, or not observed", busy)
	}
	t.Logf("busy: observed %+v, conntrack now %v", *sock.Observed, sock.Conntrack)
	for _, f := range res.Findings {
		if f.Socket != nil && *f.Socket == sock.ID {
			t.Logf("finding %s %s: %s", f.Severity, f.Rule, f.Summary)
			if f.Severity == rules.Critical {
				t.Errorf("a live connection, untracked since a notrack rule was added, is critical: %s %s", f.Rule, f.Summary)
			}
		}
	}
}
