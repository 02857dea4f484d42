package diag

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// TestWatchFlowEnds watches a router's conntrack forget one connection
// (its established timeout, 2 s, passes in silence, and the next packet
// finds the entry expired) and see another close (its entry in TIME_WAIT,
// flushed): both entries' ends come, found by either socket's view of its
// connection, and only the first was forgotten.
func TestWatchFlowEnds(t *testing.T) {
	p := testnet.NewPath(t, 94, 104)
	const vip = "198.18.200.1"
	p.ServiceVIP(t, vip)
	p.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", "2")
	p.Router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")
	// Before the flows: with nf_conntrack_events=2 only entries made
	// while someone listens announce their end.
	h, w := watchFlowEnds(t, p.Router.Path)
	p.Server.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "svc", Addr: ":7000", Mode: testnet.Hold}}})
	cli := p.Client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "idle", To: vip + ":7000"},
		{Name: "closed", To: vip + ":7000", CloseFirst: true},
	}})
	idle := netip.MustParseAddrPort(cli.Local["idle"])
	closed := netip.MustParseAddrPort(cli.Local["closed"])
	svc := netip.MustParseAddrPort(vip + ":7000")

	// An expired entry goes when a packet looks it up, or when the
	// kernel's garbage collector comes by, up to a minute later.
	time.Sleep(3 * time.Second)
	cli.Write(t, "idle", 10)
	cli.Wait(t, "read-error", "idle", 5*time.Second)
	c, err := conntrack.Dial(netlinkConfig(h))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	ends := map[netip.AddrPort]FlowEnd{}
	deadline := time.After(5 * time.Second)
	for len(ends) < 2 {
		select {
		case e, ok := <-w.Ends():
			if !ok {
				t.Fatalf("ends closed: %v", w.Err())
			}
			ends[e.OrigSrc] = e
		case <-deadline:
			t.Fatalf("within 5 s, ends of %v only", ends)
		}
	}
	e := ends[idle]
	server := netip.AddrPortFrom(netip.MustParseAddr(p.ServerAddr.V4), 7000)
	switch {
	case !e.Tracks(idle, svc):
		t.Errorf("the idle flow's end %+v does not track the client's view %s → %s", e, idle, svc)
	case !e.Tracks(server, idle):
		t.Errorf("the idle flow's end %+v does not track the server's view %s → %s", e, server, idle)
	case e.Tracks(closed, svc):
		t.Errorf("the idle flow's end tracks the other connection")
	case !e.Forgotten() || e.TCPState != "ESTABLISHED":
		t.Errorf("the idle flow's entry went in %q: want ESTABLISHED, forgotten", e.TCPState)
	case e.Status&conntrack.StatusDstNAT == 0:
		t.Errorf("status %v: want DST_NAT", e.Status)
	}
	if c := ends[closed]; c.Forgotten() || c.TCPState != "TIME_WAIT" {
		t.Errorf("the closed flow's entry went in %q, forgotten %v: want TIME_WAIT, not forgotten", c.TCPState, c.Forgotten())
	}
	if n := w.Lost(); n != 0 {
		t.Errorf("%d events lost", n)
	}
}

// TestFlowEndsLossCounted flushes 3,000 entries at a watch that is not
// read, with the smallest buffer the kernel allows: every end the kernel
// could not queue is counted, received + lost = destroyed.
func TestFlowEndsLossCounted(t *testing.T) {
	ns := testnet.New(t)
	h, w := watchFlowEnds(t, ns.Path)
	if err := w.rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 0) }); err != nil {
		t.Fatal(err)
	}
	c, err := conntrack.Dial(netlinkConfig(h))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 3000
	src, dst := netip.MustParseAddr("198.18.96.1"), netip.MustParseAddr("198.18.96.2")
	for i := range n {
		if err := c.Create(conntrack.NewFlow(unix.IPPROTO_TCP, 0, src, dst, uint16(10000+i), 80, 60, 0)); err != nil {
			t.Fatalf("create entry %d: %v", i, err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got := 0
	for quiet := false; !quiet; {
		select {
		case <-w.Ends():
			got++
		case <-time.After(time.Second):
			quiet = true
		}
	}
	lost := w.Lost()
	t.Logf("%d entries destroyed: %d ends received, %d lost", n, got, lost)
	if lost == 0 {
		t.Fatalf("nothing lost with a %d-end backlog and a minimal buffer: the test proves nothing", destroyBacklog)
	}
	if uint64(got)+lost != n {
		t.Errorf("%d received + %d lost = %d, want the %d entries destroyed", got, lost, uint64(got)+lost, n)
	}
	if w.Err() != nil {
		t.Errorf("an overflow ended the watch: %v", w.Err())
	}
}

// watchFlowEnds opens the namespace at path and listens to its conntrack
// ends, both until the test ends.
func watchFlowEnds(t *testing.T, path string) (*netns.NS, *CTWatch) {
	t.Helper()
	h, err := netns.FromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	w, err := WatchFlowEnds(ctx, h)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); cancel() })
	return h, w
}
