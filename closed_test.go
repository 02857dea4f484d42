package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
)

// TestClosedCauses kills three connections three ways through a router,
// as a service's node, while tcpvet --watch follows the client, and holds
// its closed[] to what the applications saw: one reset by the path (its
// conntrack entry times out, the next segment meets the router's own stack
// at the service address), one timed out by TCP_USER_TIMEOUT (the peer
// drops everything), one closed with FIN. The causes come from the
// kernel's death announcements, the watch's samples of the open
// connections and the router's conntrack events.
func TestClosedCauses(t *testing.T) {
	// Mostly waiting for quiet to pass: beside the others that do.
	t.Parallel()
	p := testnet.NewPath(t, 95, 105)
	const vip = "198.18.200.1"
	p.ServiceVIP(t, vip)
	p.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", "3")
	p.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")

	srv := p.Server.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "svc", Addr: ":7000", Mode: testnet.Echo},
		{Name: "dropped", Addr: ":7001", Mode: testnet.Hold},
		{Name: "fin", Addr: ":7002", Mode: testnet.Echo},
	}})
	// The -held ones die the same way, but their application keeps them
	// open past the watch: the kernel announces nothing, and the watch
	// reads their end from the application's own descriptor.
	cli := p.Client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "reset", To: vip + ":7000"},
		{Name: "timeout", To: fmt.Sprintf("%s:7001", p.ServerAddr.V4), UserTimeoutMS: 2000},
		{Name: "closed", To: fmt.Sprintf("%s:7002", p.ServerAddr.V4)},
		{Name: "reset-held", To: vip + ":7000"},
		{Name: "timeout-held", To: fmt.Sprintf("%s:7001", p.ServerAddr.V4), UserTimeoutMS: 2000},
	}})
	watched := make(chan *result, 1)
	go func() {
		watched <- watchReport(t, 10*time.Second, "--netns", p.Client.Path, "--host-netns", p.Router.Path)
	}()
	// Two samples of the open connections, then the deaths.
	time.Sleep(1500 * time.Millisecond)

	p.Server.DropInbound(t, 7001)
	cli.Write(t, "timeout", 100)
	cli.Write(t, "timeout-held", 100)
	cli.Close(t, "closed")
	// Past the router's established timeout, in silence.
	time.Sleep(4 * time.Second)
	cli.Write(t, "reset", 100)
	cli.Write(t, "reset-held", 100)

	// What the applications saw.
	errnos := map[string]syscall.Errno{}
	var peerEOF bool
	deadline := time.After(4 * time.Second)
	for len(errnos) < 4 || !peerEOF {
		select {
		case e := <-cli.Events():
			if e.Kind == "read-error" && e.Name != "closed" {
				errnos[e.Name] = syscall.Errno(e.Errno)
			}
		case e := <-srv.Events():
			// The "closed" connection is the third the server accepts.
			if e.Kind == "eof" && e.Name == "fin#0" {
				peerEOF = true
			}
		case <-deadline:
			t.Fatalf("within 4 s the applications saw %v, peer EOF %v", errnos, peerEOF)
		}
	}
	if errnos["reset"] != syscall.ECONNRESET || errnos["timeout"] != syscall.ETIMEDOUT || errnos["reset-held"] != syscall.ECONNRESET || errnos["timeout-held"] != syscall.ETIMEDOUT {
		t.Fatalf("the applications saw %v: want ECONNRESET and ETIMEDOUT", errnos)
	}
	// The kernel announces a connection once its application lets go.
	cli.Close(t, "reset")
	cli.Close(t, "timeout")

	r := <-watched
	if r.Closed == nil {
		t.Fatalf("no closed list: notes %q", r.Notes)
	}
	want := map[string]string{"reset": diag.CauseReset, "timeout": diag.CauseTimeout, "closed": diag.CauseClosed,
		"reset-held": diag.CauseReset, "timeout-held": diag.CauseTimeout}
	got := map[string]diag.Closed{}
	for _, c := range r.Closed {
		for name, local := range cli.Local {
			if c.Local.String() == local {
				got[name] = c
			}
		}
	}
	for name, cause := range want {
		c, ok := got[name]
		if !ok {
			t.Errorf("%s: not among the closed connections %+v", name, r.Closed)
			continue
		}
		if c.LivedS == nil || *c.LivedS < 1 {
			t.Errorf("%s: lived_s %v, yet the watch saw it open for more than a second", name, c.LivedS)
		}
		t.Logf("%s: %s (%s), last seen %s", name, c.Cause, c.Why, c.LastState)
		if c.Cause != cause {
			t.Errorf("%s: cause %q (%s), want %q", name, c.Cause, c.Why, cause)
		}
		// The others may be told so too, by a sample between their end
		// and their close.
		if strings.HasSuffix(name, "-held") && !strings.Contains(c.Why, "still holds it") {
			t.Errorf("%s: why %q, want it told from the application's descriptor", name, c.Why)
		}
	}
	if got["reset"].PathForgotAt == nil || got["reset-held"].PathForgotAt == nil {
		t.Errorf("reset: the router's entry was destroyed before, yet the path forgot nothing: %s", got["reset"].Why)
	}
	if got["timeout"].PathForgotAt != nil || got["timeout-held"].PathForgotAt != nil || got["closed"].PathForgotAt != nil {
		t.Errorf("the path forgot a connection it did not: %+v", got)
	}
	for _, n := range r.Notes {
		switch n.Code {
		case diag.NoteDeathsUnwatched, diag.NoteDeathsLost, diag.NoteFlowEndsLost, diag.NoteDeathsOverflow:
			t.Errorf("note: %s", n)
		}
	}
}
