package diag

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// TestTakeUsesTheFactsGiven: a sweep reads the machine's facts once and
// hands them to every Take, which must use them rather than read its own.
// Facts that say a cgroup-v1 classifier is mounted (this machine has none
// that tcpvet minds) must stop every socket's options from being read, and
// the hint given must be the one a refusal names.
func TestTakeUsesTheFactsGiven(t *testing.T) {
	ns := testnet.New(t)
	ns.Start(t, testnet.Spec{
		Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}},
		Dial:   []testnet.Dial{{Name: "c", To: "127.0.0.1:7000"}},
	})
	target, err := netns.FromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if own := ReadFacts(); own.Classifiers != "" {
		t.Skipf("this machine mounts %s: the facts given would not differ from its own", own.Classifiers)
	}

	take := func(f *Facts, dup bool) *Snapshot {
		t.Helper()
		snap, err := Take(context.Background(), Options{Target: target, Facts: f, DupSockets: dup})
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Sockets) != 3 {
			t.Fatalf("want a listener and both ends of a connection, got %d sockets", len(snap.Sockets))
		}
		return snap
	}
	waitAccepted(t, target)
	for _, s := range take(nil, false).Sockets {
		if s.Keepalive.Enabled == nil {
			t.Errorf("with the machine's own facts, %s %s -> %s: options unknown: %s", s.State, s.Local, s.Remote, s.Keepalive.Reason)
		}
	}
	given := &Facts{Classifiers: "cgroup v1 net_cls is in use", DeniedHint: "the hint given"}
	for _, s := range take(given, false).Sockets {
		// Not read: the timings unknown (SO_KEEPALIVE itself the kernel's
		// timer may tell).
		if s.Keepalive.IdleS != nil || !strings.Contains(s.Keepalive.Reason, "not read: cgroup v1 net_cls is in use") {
			t.Errorf("with facts naming net_cls, %s %s -> %s: idle %v, reason %q", s.State, s.Local, s.Remote, s.Keepalive.IdleS, s.Keepalive.Reason)
		}
	}
	for _, s := range take(given, true).Sockets {
		if s.Keepalive.Enabled == nil {
			t.Errorf("--dup-sockets overrides the classifiers, but %s %s -> %s: %s", s.State, s.Local, s.Remote, s.Keepalive.Reason)
		}
	}

	// The hint: a socket no inspectable process holds, while some process
	// could not be read, names it.
	var s Socket
	s.Inode = 1
	s.attachOptions(nil, nil, nil, 1, given.DeniedHint)
	if !strings.HasSuffix(s.Keepalive.Reason, "(1 could not be read: the hint given)") {
		t.Errorf("reason %q does not carry the hint given", s.Keepalive.Reason)
	}
}

func TestReadFacts(t *testing.T) {
	f := ReadFacts()
	if f.DeniedHint != netns.DeniedHint() || f.Classifiers != cgroupV1Classifiers() {
		t.Errorf("ReadFacts() = %+v, want the hint %q and classifiers %q", f, netns.DeniedHint(), cgroupV1Classifiers())
	}
}

func TestModulePresent(t *testing.T) {
	// A loaded module is present; one that does not exist is not, unless
	// the kernel loads none (then everything it has is built in).
	loaded, err := os.ReadDir("/sys/module")
	if err != nil || len(loaded) == 0 {
		t.Skip("no /sys/module")
	}
	if name := loaded[0].Name(); !modulePresent(name) {
		t.Errorf("modulePresent(%q) = false, but /sys/module/%s exists", name, name)
	}
	if got, want := modulePresent("tcpvet_no_such_module"), thisKernel().loadsNone; got != want {
		t.Errorf("modulePresent of a module that does not exist = %v, want %v (kernel loads no modules: %v)", got, want, want)
	}

	build := kernelBuild{builtin: "kernel/net/netfilter/nf_tables.ko\nkernel/net/netfilter/nf_conntrack.ko\n"}
	for _, tt := range []struct {
		k    kernelBuild
		name string
		want bool
	}{
		{build, "nf_tables", true},
		{build, "nf_conntrack", true},
		{build, "nf_conntrack_netlink", false},
		{build, "tables", false},
		{kernelBuild{}, "nf_tables", false},
		{kernelBuild{loadsNone: true}, "ip_vs", true},
	} {
		if got := tt.k.builtIn(tt.name); got != tt.want {
			t.Errorf("%+v.builtIn(%q) = %v, want %v", tt.k, tt.name, got, tt.want)
		}
	}
}

// TestMPTCPListenerOptions: Go's listeners are MPTCP sockets (since Go
// 1.24, where the namespace enables MPTCP), which answer SO_KEEPALIVE and
// the keepalive timings but not TCP_USER_TIMEOUT or TCP_SYNCNT. Those two
// are unknown; the keepalive is still read.
func TestMPTCPListenerOptions(t *testing.T) {
	ns, target := listening(t)
	mptcp := strings.Contains(ns.Run(t, "ss", "-HMln"), "127.0.0.1:7000")
	snap, err := Take(context.Background(), Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Sockets) != 1 || snap.Sockets[0].State != Listen {
		t.Fatalf("want the one listener, got %+v", snap.Sockets)
	}
	s := snap.Sockets[0]
	if s.Keepalive.Enabled == nil || s.Keepalive.IdleS == nil {
		t.Fatalf("the listener's keepalive is unknown: %s", s.Keepalive.Reason)
	}
	if got := s.UserTimeoutMS == nil && s.SynRetries == nil; got != mptcp {
		t.Errorf("MPTCP listener %v, but TCP_USER_TIMEOUT and TCP_SYNCNT unknown: %v", mptcp, got)
	}
	t.Logf("MPTCP %v: keepalive %v idle %d, user timeout %v", mptcp, *s.Keepalive.Enabled, *s.Keepalive.IdleS, s.UserTimeoutMS)
}

// TestUnplacedProcessesMayHoldSockets: in a sweep, a socket whose owner
// was not among the namespace's processes is not said to have none when
// processes whose namespace could not be read may hold it.
func TestUnplacedProcessesMayHoldSockets(t *testing.T) {
	_, target := listening(t)
	for _, c := range []struct {
		unplaced int
		want     string
	}{
		{0, "no process in the namespace holds this socket"},
		{3, "no process tcpvet may inspect holds it (3 could not be read"},
	} {
		// No processes listed: the listener's owner is not found.
		snap, err := Take(context.Background(), Options{Target: target, PIDs: []int{}, Unplaced: c.unplaced})
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Sockets) != 1 {
			t.Fatalf("want the listener alone, got %d sockets", len(snap.Sockets))
		}
		if r := snap.Sockets[0].Keepalive.Reason; !strings.Contains(r, c.want) {
			t.Errorf("with %d processes unplaced: reason %q, want it to say %q", c.unplaced, r, c.want)
		}
	}
}

// listening makes a namespace where an agent listens on 127.0.0.1:7000,
// and opens it.
func listening(t *testing.T) (*testnet.NS, *netns.NS) {
	t.Helper()
	ns := testnet.New(t)
	ns.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}}})
	target, err := netns.FromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	return ns, target
}
