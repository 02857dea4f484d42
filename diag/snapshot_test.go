package diag

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// TestNoteWhenTheTargetProcessExits: tcpvet's handle keeps a namespace
// alive after the process it was taken from exits; the snapshot must say
// the process is gone rather than show the namespace as if it were there.
func TestNoteWhenTheTargetProcessExits(t *testing.T) {
	ns := testnet.New(t)
	agent := ns.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}}})
	target, err := netns.FromPID(agent.PID)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	exited := func(snap *Snapshot) bool {
		return slices.ContainsFunc(snap.Notes, func(n Note) bool {
			return n.Code == NotePIDGone && strings.Contains(n.Text, "has exited or left this namespace")
		})
	}

	snap, err := Take(context.Background(), Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if exited(snap) || len(snap.Sockets) != 1 {
		t.Fatalf("while pid %d runs: %d sockets, notes %q", agent.PID, len(snap.Sockets), snap.Notes)
	}
	agent.Stop()
	snap, err = Take(context.Background(), Options{Target: target})
	if err != nil {
		t.Fatalf("the namespace outlives the process, so must the snapshot: %v", err)
	}
	if !exited(snap) || len(snap.Sockets) != 0 {
		t.Errorf("after pid %d exited: %d sockets, notes %q", agent.PID, len(snap.Sockets), snap.Notes)
	}
}

func TestPairPeers(t *testing.T) {
	sock := func(id Cookie, state State, local, remote string) Socket {
		return Socket{ID: id, State: state, Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
	}
	socks := []Socket{
		sock(1, Listen, "0.0.0.0:8080", "0.0.0.0:0"),
		sock(2, Established, "10.244.1.5:40000", "10.244.1.5:8080"),                   // to the pod's own address
		sock(3, Established, "[::ffff:10.244.1.5]:8080", "[::ffff:10.244.1.5]:40000"), // its accepted end, dual-stack
		sock(4, Established, "10.244.1.5:40002", "10.96.0.10:80"),                     // leaves the pod
		sock(5, Listen, "0.0.0.0:0", "0.0.0.0:0"),
		sock(6, Listen, "0.0.0.0:0", "0.0.0.0:0"), // two listeners must not pair with each other
		sock(7, Close, "0.0.0.0:0", "0.0.0.0:0"),  // nor unconnected sockets,
		sock(8, Close, "0.0.0.0:0", "0.0.0.0:0"),  // with each other
		sock(9, Close, "[::1]:7", "[::1]:7"),      // or with themselves
	}
	pairPeers(socks)
	want := map[Cookie]Cookie{2: 3, 3: 2}
	for _, s := range socks {
		if s.Peer != want[s.ID] {
			t.Errorf("socket %s (%s -> %s): peer %s, want %s", s.ID, s.Local, s.Remote, s.Peer, want[s.ID])
		}
	}
}

// TestOrdered: a dump racing with the socket table can report a socket
// twice, with the same ends or, connected meanwhile, new ones; it is kept
// once, and listeners sharing a port come in cookie order whatever order
// the kernel gave.
func TestOrdered(t *testing.T) {
	ap := netip.MustParseAddrPort
	listen := func(cookie uint64) rawSocket {
		return rawSocket{Cookie: cookie, State: Listen, Local: ap("0.0.0.0:80"), Remote: ap("0.0.0.0:0")}
	}
	conn := func(cookie uint64, local string) rawSocket {
		return rawSocket{Cookie: cookie, State: Established, Local: ap(local), Remote: ap("10.0.0.2:5000")}
	}
	got := ordered([]rawSocket{conn(7, "10.0.0.1:80"), listen(9), listen(3), conn(5, "10.0.0.1:81"), conn(7, "10.0.0.1:80"), listen(9)})
	var cookies []uint64
	for _, r := range got {
		cookies = append(cookies, r.Cookie)
	}
	if want := []uint64{3, 9, 7, 5}; !slices.Equal(cookies, want) {
		t.Errorf("ordered gave cookies %v, want %v", cookies, want)
	}

	// A socket bound when the kernel walked its bound sockets and
	// connected by the time it walked the established ones: seen with
	// both ends, another socket sorting between, kept once, connected.
	bound := rawSocket{Cookie: 5, State: Close, Local: ap("0.0.0.0:5555"), Remote: ap("0.0.0.0:0")}
	got = ordered([]rawSocket{bound, conn(5, "10.0.0.1:5555"), listen(3), conn(8, "10.0.0.1:81")})
	cookies = cookies[:0]
	for _, r := range got {
		cookies = append(cookies, r.Cookie)
		if r.Cookie == 5 && r.State != Established {
			t.Errorf("socket 5 kept as %v, want its established sighting", r.State)
		}
	}
	if want := []uint64{3, 8, 5}; !slices.Equal(cookies, want) {
		t.Errorf("a socket seen bound then connected: cookies %v, want %v", cookies, want)
	}
}

// TestKeepaliveFromTimer: where the options are unread, SO_KEEPALIVE is
// told by the kernel's timer of a socket an application holds, established
// or closed by its peer, unless a retransmission or a window probe hides
// the timer; the timings stay unknown.
func TestKeepaliveFromTimer(t *testing.T) {
	for _, c := range []struct {
		state State
		inode uint32
		timer TimerKind
		want  string
	}{
		{Established, 7, TimerKeepalive, "on"},
		{Established, 7, TimerOff, "off"},
		{CloseWait, 7, TimerKeepalive, "on"},
		{CloseWait, 7, TimerOff, "off"},
		{Established, 7, TimerOn, "unknown"},      // a retransmission hides it
		{Established, 7, TimerPersist, "unknown"}, // so does a window probe
		{Established, 0, TimerOff, "unknown"},     // not accepted yet: no file
		{Listen, 7, TimerOff, "unknown"},
		{FinWait2, 7, TimerKeepalive, "unknown"}, // sk_timer is FIN_WAIT2's too
	} {
		s := Socket{State: c.state, Inode: c.inode, Timer: Timer{Kind: c.timer}}
		k := s.keepaliveFromTimer("no ptrace right")
		got := "unknown"
		if k.Enabled != nil {
			got = map[bool]string{true: "on", false: "off"}[*k.Enabled]
		}
		if got != c.want || k.IdleS != nil || k.Source != "unknown" || !strings.HasPrefix(k.Reason, "no ptrace right") {
			t.Errorf("%v, inode %d, timer %v: keepalive %s (%+v), want %s with no timings", c.state, c.inode, c.timer, got, k, c.want)
		}
	}
}
