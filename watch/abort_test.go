package watch

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// TestFailedConnectIsNoAbort: a connect that fails in the kernel
// after the peer's address is set (inet_hash_connect: EADDRNOTAVAIL, the
// ephemeral ports used up) leaves the socket with the peer's address, port
// 0 (tcp_v4_connect's failure path) and every counter zero, as
// tcp_disconnect leaves an aborted one. Its death is no connection's, and
// must not be told as one its application aborted with SO_LINGER 0.
func TestFailedConnectIsNoAbort(t *testing.T) {
	tn := testnet.New(t)
	tn.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40001")
	ns, err := netns.FromPath(tn.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := StartDeaths(ctx, ns)
	defer d.Close()
	if !d.Watching() {
		t.Skipf("deaths not followed: %v", d.Notes())
	}
	var o Observer
	d.Follow(&o)

	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	var failed bool
	err = ns.Do(func() error {
		l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		fds = append(fds, l)
		addr := &unix.SockaddrInet4{Port: 7000, Addr: [4]byte{127, 0, 0, 1}}
		if err := unix.Bind(l, addr); err != nil {
			return err
		}
		if err := unix.Listen(l, 16); err != nil {
			return err
		}
		// A real abort, for contrast: connected, then closed with
		// SO_LINGER 0 (tcp_disconnect). It must still be told.
		l2, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		fds = append(fds, l2)
		addr2 := &unix.SockaddrInet4{Port: 7001, Addr: [4]byte{127, 0, 0, 1}}
		if err := unix.Bind(l2, addr2); err != nil {
			return err
		}
		if err := unix.Listen(l2, 16); err != nil {
			return err
		}
		a, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(a, addr2); err != nil {
			unix.Close(a)
			return err
		}
		if err := unix.SetsockoptLinger(a, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			unix.Close(a)
			return err
		}
		unix.Close(a)
		for range 8 {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			err = unix.Connect(c, addr)
			if errors.Is(err, unix.EADDRNOTAVAIL) {
				failed = true
				return unix.Close(c) // the death
			}
			fds = append(fds, c)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Fatal("no connect failed with EADDRNOTAVAIL")
	}
	time.Sleep(500 * time.Millisecond)
	aborted := 0
	for _, c := range d.Drain(&o, time.Now(), 0) {
		t.Logf("closed: %s → %s %s: %s (tcp_info %v)", c.Local, c.Remote, c.Cause, c.Why, c.TCPInfo != nil)
		switch {
		case c.Remote.Addr().IsLoopback() && c.Local.Port() == 0:
			t.Errorf("a connect that failed with EADDRNOTAVAIL, which never sent a segment, is told as a connection that closed: %s", c.Why)
		case c.Cause == diag.CauseClosed:
			aborted++
		}
	}
	if aborted != 1 {
		t.Errorf("%d connections aborted with SO_LINGER 0 told, want 1", aborted)
	}
}
