package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
	"github.com/tcpvet/tcpvet/watch"
)

// TestClosedCauses kills three connections three ways through a router,
// as a service's node, and holds watch.Classify to what the applications
// saw: one reset by the path (its conntrack entry times out, the next
// segment meets the router's own stack at the service address), one timed
// out by TCP_USER_TIMEOUT (the peer drops everything), one closed with
// FIN. The causes come from the kernel's death announcements, one sample
// of the open connections and the router's conntrack events.
func TestClosedCauses(t *testing.T) {
	p := testnet.NewPath(t, 95, 105)
	const vip = "198.18.200.1"
	p.ServiceVIP(t, vip)
	p.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", "3")
	p.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")

	open := func(path string) *netns.NS {
		h, err := netns.FromPath(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	cns, rns := open(p.Client.Path), open(p.Router.Path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deaths, err := diag.WatchDestroys(ctx, cns)
	if err != nil {
		t.Fatal(err)
	}
	defer deaths.Close()
	ends, err := diag.WatchFlowEnds(ctx, rns)
	if err != nil {
		t.Fatal(err)
	}
	defer ends.Close()

	srv := p.Server.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "svc", Addr: ":7000", Mode: testnet.Echo},
		{Name: "dropped", Addr: ":7001", Mode: testnet.Hold},
		{Name: "fin", Addr: ":7002", Mode: testnet.Echo},
	}})
	cli := p.Client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "reset", To: vip + ":7000"},
		{Name: "timeout", To: fmt.Sprintf("%s:7001", p.ServerAddr.V4), UserTimeoutMS: 2000},
		{Name: "closed", To: fmt.Sprintf("%s:7002", p.ServerAddr.V4)},
	}})
	snap, err := diag.Take(ctx, diag.Options{Target: cns})
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]*diag.Socket{}
	for name, local := range cli.Local {
		for i := range snap.Sockets {
			if s := &snap.Sockets[i]; s.Local.String() == local {
				last[name] = s
			}
		}
		if last[name] == nil {
			t.Fatalf("the sample has no socket at %s (%s)", local, name)
		}
	}

	p.Server.DropInbound(t, 7001)
	cli.Write(t, "timeout", 100)
	cli.Close(t, "closed")
	// Past the router's established timeout, in silence.
	time.Sleep(4 * time.Second)
	cli.Write(t, "reset", 100)

	// What the applications saw.
	errnos := map[string]syscall.Errno{}
	var peerEOF bool
	deadline := time.After(8 * time.Second)
	for len(errnos) < 2 || !peerEOF {
		select {
		case e := <-cli.Events():
			if e.Kind == "read-error" && (e.Name == "reset" || e.Name == "timeout") {
				errnos[e.Name] = syscall.Errno(e.Errno)
			}
		case e := <-srv.Events():
			// The "closed" connection is the third the server accepts.
			if e.Kind == "eof" && e.Name == "fin#0" {
				peerEOF = true
			}
		case <-deadline:
			t.Fatalf("within 8 s the applications saw %v, peer EOF %v", errnos, peerEOF)
		}
	}
	if errnos["reset"] != syscall.ECONNRESET || errnos["timeout"] != syscall.ETIMEDOUT {
		t.Fatalf("the applications saw %v: want ECONNRESET and ETIMEDOUT", errnos)
	}
	// The kernel announces a connection once its application lets go.
	cli.Close(t, "reset")
	cli.Close(t, "timeout")

	want := map[string]string{"reset": watch.CauseReset, "timeout": watch.CauseTimeout, "closed": watch.CauseClosed}
	byLocal := map[string]string{}
	for name, local := range cli.Local {
		byLocal[local] = name
	}
	died := map[string]diag.Death{}
	deadline = time.After(5 * time.Second)
	for len(died) < len(want) {
		select {
		case d := <-deaths.Deaths():
			if name, ok := byLocal[d.Local.String()]; ok {
				died[name] = d
			}
		case <-deadline:
			t.Fatalf("within 5 s, the deaths of %v only", died)
		}
	}
	// The router's events, read by another socket: any that was on its
	// way when the last death came.
	var flowEnds []diag.FlowEnd
	settle := time.After(300 * time.Millisecond)
collect:
	for {
		select {
		case e := <-ends.Ends():
			flowEnds = append(flowEnds, e)
		case <-settle:
			break collect
		}
	}
	got := map[string]watch.Closed{}
	for name, d := range died {
		s := last[name]
		if !watch.IsConnection(s, d) {
			t.Errorf("%s: not a connection's death", name)
		}
		var mine []diag.FlowEnd
		for _, e := range flowEnds {
			if e.Tracks(s.Local, s.Remote) {
				mine = append(mine, e)
			}
		}
		got[name] = watch.Classify(s, d, watch.History{FirstSeen: snap.TakenAt, LastAt: snap.TakenAt, Forgotten: mine})
	}
	for name, c := range got {
		t.Logf("%s: %s (%s), lived %.1f s", name, c.Cause, c.Why, *c.LivedS)
		if c.Cause != want[name] {
			t.Errorf("%s: cause %q (%s), want %q", name, c.Cause, c.Why, want[name])
		}
	}
	if got["reset"].PathForgotAt == nil {
		t.Errorf("reset: the router's entry was destroyed before, yet the path forgot nothing: %s", got["reset"].Why)
	}
	if got["timeout"].PathForgotAt != nil || got["closed"].PathForgotAt != nil {
		t.Errorf("the path forgot a connection it did not: %+v", got)
	}
	if n := deaths.Lost() + ends.Lost(); n != 0 {
		t.Errorf("%d announcements lost", n)
	}
}
