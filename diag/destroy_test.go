package diag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// deathMessage builds a destroy notification as the kernel lays it out
// (inet_diag_handler_get_info): the inet_diag_msg, INET_DIAG_PROTOCOL and
// INET_DIAG_INFO.
func deathMessage(t *testing.T, info []byte) netlink.Message {
	t.Helper()
	b := make([]byte, inetDiagMsgLen)
	b[0], b[1] = unix.AF_INET, byte(Close)
	binary.BigEndian.PutUint16(b[4:], 40316)
	binary.BigEndian.PutUint16(b[6:], 7001)
	copy(b[8:], []byte{198, 18, 91, 1})
	copy(b[24:], []byte{198, 18, 91, 2})
	binary.NativeEndian.PutUint32(b[44:], 0x6613b)
	binary.NativeEndian.PutUint32(b[48:], 1)
	binary.NativeEndian.PutUint32(b[60:], 100)
	ae := netlink.NewAttributeEncoder()
	ae.Uint8(10, unix.IPPROTO_TCP) // INET_DIAG_PROTOCOL
	ae.Bytes(attrInfo, info)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{Header: netlink.Header{Type: sockDiagByFamily}, Data: append(b, attrs...)}
}

func TestDecodeDeath(t *testing.T) {
	info := make([]byte, 232)
	info[0], info[2], info[3] = byte(Close), 3, 0
	binary.NativeEndian.PutUint64(info[120:], 1) // bytes_acked
	at := time.Unix(1700000000, 0)
	d, err := decodeDeath(deathMessage(t, info), at)
	if err != nil {
		t.Fatal(err)
	}
	want := Death{
		Cookie: 1<<32 | 0x6613b, State: Close, SendQ: 100, At: at,
		Local:  netip.MustParseAddrPort("198.18.91.1:40316"),
		Remote: netip.MustParseAddrPort("198.18.91.2:7001"),
	}
	got := d
	got.Info = nil
	if got != want {
		t.Errorf("death = %+v\nwant    %+v", got, want)
	}
	if d.Info == nil || d.Info.Size != 232 || d.Info.Retransmits != 3 || d.Info.BytesAcked != 1 {
		t.Errorf("tcp_info = %+v, want 232 bytes, retransmits 3, bytes_acked 1", d.Info)
	}
	if id := d.Cookie.String(); id != "10006613b" {
		t.Errorf("ID = %q, want the cookie in hex as Socket.ID", id)
	}

	m := deathMessage(t, info)
	m.Header.Type = unix.NLMSG_ERROR
	if _, err := decodeDeath(m, at); !errors.Is(err, errDeathMessage) {
		t.Errorf("an NLMSG_ERROR: err = %v, want errDeathMessage", err)
	}
	m = deathMessage(t, info)
	m.Data = m.Data[:40]
	if _, err := decodeDeath(m, at); !errors.Is(err, errShortMessage) {
		t.Errorf("a truncated message: err = %v, want errShortMessage", err)
	}
}

// watchNS opens the namespace file of n and watches its deaths.
func watchNS(t *testing.T, n *testnet.NS) (*netns.NS, *DestroyWatch) {
	t.Helper()
	h, err := netns.FromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := WatchDestroys(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return h, w
}

// deathsOf collects deaths from w until every one of the local addresses
// in want has died, or timeout, and fails the test then. A socket whose
// peer is at one of them counts too.
func deathsOf(t *testing.T, w *DestroyWatch, timeout time.Duration, want ...string) map[string]Death {
	t.Helper()
	got := map[string]Death{}
	deadline := time.After(timeout)
	for len(got) < len(want) {
		select {
		case d, ok := <-w.Deaths():
			if !ok {
				t.Fatalf("deaths closed: %v", w.Err())
			}
			for _, l := range want {
				ap := netip.MustParseAddrPort(l)
				switch {
				case unmap(d.Local) == ap, unmap(d.Remote) == ap && d.Local.Port() != 0:
					got[l] = d
				case d.Local.Addr().IsUnspecified() && d.Local.Port() == ap.Port() && d.Remote.Port() == 0 &&
					unmap(d.Local).Addr().Is4() == ap.Addr().Is4():
					// tcp_disconnect kept the port alone. Of the same
					// family only: an IPv4 and an IPv6 connection may
					// share a port number, and one's death is not the
					// other's, which had ended the wait before fin6's
					// own death came. Nor over a death matched already.
					if _, matched := got[l]; !matched {
						got[l] = d
					}
				}
			}
		case <-deadline:
			t.Fatalf("within %v, deaths of %d of %v: %v", timeout, len(got), want, got)
		}
	}
	return got
}

// rawOf finds the socket at local (and, when set, remote) in a dump.
func rawOf(t *testing.T, socks []rawSocket, local, remote string) rawSocket {
	t.Helper()
	for _, s := range socks {
		if unmap(s.Local).String() == local && (remote == "" || unmap(s.Remote).String() == remote) {
			return s
		}
	}
	t.Fatalf("no socket %s → %s in the dump", local, remote)
	return rawSocket{}
}

// TestDeathsOnAKernel holds the kernel to the facts watch.Classify reads
// causes by: what each way of dying leaves in the final tcp_info.
func TestDeathsOnAKernel(t *testing.T) {
	cli, srv := testnet.New(t), testnet.New(t)
	_, sAddr := testnet.Link(t, cli, srv, 93)
	cns, cw := watchNS(t, cli)
	_, sw := watchNS(t, srv)
	to := func(p int) string { return fmt.Sprintf("%s:%d", sAddr.V4, p) }
	srv.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "hold", Addr: ":7001", Mode: testnet.Hold},
		{Name: "drop", Addr: ":7003", Mode: testnet.Hold},
		{Name: "echo", Addr: ":7007", Mode: testnet.Echo},
	}})
	unread := srv.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "noread", Addr: ":7006", Mode: testnet.NoRead}}})
	c := cli.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "fin", To: to(7001)},
		{Name: "fin6", To: fmt.Sprintf("[%s]:7001", sAddr.V6)},
		{Name: "ut", To: to(7003), UserTimeoutMS: 1500},
		{Name: "ka", To: to(7003), Keepalive: &testnet.KA{Idle: 2, Interval: 1, Count: 2}},
		{Name: "peerrst", To: to(7006)},
		{Name: "abort", To: to(7007)},
	}})
	c.Write(t, "peerrst", 100)
	c.Wait(t, "written", "peerrst", 5*time.Second)
	time.Sleep(100 * time.Millisecond) // the peer's ACK
	ctx := context.Background()
	before, err := dumpSockets(ctx, cns)
	if err != nil {
		t.Fatal(err)
	}
	dumpedAt := time.Now()
	srv.DropInbound(t, 7003)

	c.Close(t, "fin")
	c.Close(t, "fin6")
	c.Abort(t, "abort")
	c.Write(t, "ut", 100)
	unread.Stop() // its socket holds 100 bytes unread: the kernel resets
	c.Wait(t, "read-error", "peerrst", 5*time.Second)
	c.Wait(t, "read-error", "ut", 5*time.Second)
	c.Wait(t, "read-error", "ka", 6*time.Second)
	for _, n := range []string{"ut", "ka", "peerrst"} {
		c.Close(t, n)
	}

	l := c.Local
	deaths := deathsOf(t, cw, 5*time.Second, l["fin"], l["fin6"], l["ut"], l["ka"], l["peerrst"], l["abort"])
	for _, name := range []string{"fin", "fin6", "ut", "ka", "peerrst"} {
		d := deaths[l[name]]
		raw := rawOf(t, before, l[name], "")
		if d.Cookie != Cookie(raw.Cookie) {
			t.Errorf("%s: death of cookie %x, the dump's socket has %x", name, d.Cookie, raw.Cookie)
		}
		if d.State != Close || d.Info == nil || d.Info.State != uint8(Close) {
			t.Fatalf("%s: died in %v, tcp_info %+v: every connection dies in CLOSE", name, d.State, d.Info)
		}
	}

	// An orderly close from this end: SYN, data and FIN all acknowledged.
	if d := deaths[l["fin"]]; d.SendQ != 0 || int64(d.Info.BytesAcked)-int64(d.Info.BytesSent-d.Info.BytesRetrans) != 2 {
		t.Errorf("fin: SendQ %d, bytes_acked %d, bytes_sent %d: want bytes_acked = data + SYN + FIN", d.SendQ, d.Info.BytesAcked, d.Info.BytesSent)
	}
	// The accepting end's bytes_acked has no SYN: its FIN alone; and the
	// peer's FIN counts in bytes_received.
	sd := deathsOf(t, sw, 5*time.Second, l["fin"])[l["fin"]]
	if sd.Info == nil || sd.Info.BytesAcked != 1 || sd.Info.BytesReceived != 1 || sd.SendQ != 0 {
		t.Errorf("fin, accepted end: %+v: want bytes_acked 1 (its FIN), bytes_received 1 (the peer's)", sd.Info)
	}

	// SO_LINGER 0: tcp_disconnect wipes the socket.
	if d := deaths[l["abort"]]; d.Remote.Port() != 0 || d.Remote.Addr() != netip.MustParseAddr(sAddr.V4) ||
		d.Info == nil || d.Info.SegsIn != 0 || d.Info.SegsOut != 0 || d.Info.BytesAcked != 0 {
		t.Errorf("abort: %s → %s, %+v: want the peer's port and every counter zero", d.Local, d.Remote, d.Info)
	}

	// TCP_USER_TIMEOUT: retransmissions left, the queue purged, the data
	// unacknowledged, nothing received after the dump.
	ut, utRaw := deaths[l["ut"]], rawOf(t, before, l["ut"], "")
	if i := ut.Info; i.Retransmits == 0 || i.Unacked != 0 || i.Backoff != 0 || ut.SendQ != 100 || i.SegsIn != utRaw.Info.SegsIn {
		t.Errorf("ut: SendQ %d, %+v: want retransmits > 0, unacked and backoff 0 (purged), SendQ 100, segs_in %d as before", ut.SendQ, i, utRaw.Info.SegsIn)
	}

	// Keepalive: the probes all spent, no retransmission; the kernel's own
	// reset counts in segs_out.
	ka, kaRaw := deaths[l["ka"]], rawOf(t, before, l["ka"], "")
	if i := ka.Info; i.Probes != 2 || i.Retransmits != 0 || i.SegsIn != kaRaw.Info.SegsIn || i.SegsOut != kaRaw.Info.SegsOut+2+1 {
		t.Errorf("ka: %+v: want probes 2, retransmits 0, segs_in %d as before, segs_out %d + 2 probes + 1 reset", i, kaRaw.Info.SegsIn, kaRaw.Info.SegsOut)
	}

	// A reset: one segment more than the dump saw, and no ACK since.
	pr, prRaw := deaths[l["peerrst"]], rawOf(t, before, l["peerrst"], "")
	sinceDump := pr.At.Sub(dumpedAt)
	if i := pr.Info; i.SegsIn != prRaw.Info.SegsIn+1 || i.SinceAckRecv() < sinceDump || i.Retransmits != 0 || pr.SendQ != 0 {
		t.Errorf("peerrst: %+v: want segs_in %d + 1 (the reset), last_ack_recv ≥ %v (no ACK since the dump)", i, prRaw.Info.SegsIn, sinceDump)
	}
	// The end that closed with data unread: RecvQ holds it.
	sdr := deathsOf(t, sw, 5*time.Second, l["peerrst"])[l["peerrst"]]
	if sdr.RecvQ != 100 {
		t.Errorf("the end closed with 100 bytes unread died with RecvQ %d", sdr.RecvQ)
	}
	if n := cw.Lost() + sw.Lost(); n != 0 {
		t.Errorf("%d deaths lost in a quiet namespace", n)
	}
}

// churn makes n connections to the listener at addr inside h, at rate a
// second, each closed by the client first; the server end closes at EOF.
// It returns how long it took.
func churn(t *testing.T, h *netns.NS, n, rate int) (port uint16, took time.Duration) {
	t.Helper()
	var ln net.Listener
	if err := h.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	addr := ln.Addr().String()
	start := time.Now()
	// Dialling on a thread inside the namespace makes each socket there.
	err := h.Do(func() error {
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	took = time.Since(start)
	wg.Wait()
	return uint16(ln.Addr().(*net.TCPAddr).Port), took
}

// countDeaths counts deaths on port from w until want have come or none
// has for quiet.
func countDeaths(w *DestroyWatch, port uint16, want int, quiet time.Duration) int {
	n := 0
	for n < want {
		select {
		case d, ok := <-w.Deaths():
			if !ok {
				return n
			}
			if d.Local.Port() == port || d.Remote.Port() == port {
				n++
			}
		case <-time.After(quiet):
			return n
		}
	}
	return n
}

// TestDestroyLoad closes connections over loopback at 1,000 a second and
// holds the watch to every death received or counted lost. $TCPVET_DEATHS
// sets how long (2s here; make bench-deaths runs 10s).
func TestDestroyLoad(t *testing.T) {
	dur := 2 * time.Second
	if v := os.Getenv("TCPVET_DEATHS"); v != "" {
		var err error
		if dur, err = time.ParseDuration(v); err != nil {
			t.Fatalf("TCPVET_DEATHS=%q: %v", v, err)
		}
	}
	const rate = 1000
	n := int(dur.Seconds() * rate)
	h, w := watchNS(t, testnet.New(t))
	var got int
	var port uint16
	done := make(chan struct{})
	// The port is known only once the listener is up: count every death
	// of the namespace and sort them after.
	var mu sync.Mutex
	var deaths []Death
	go func() {
		defer close(done)
		for d := range w.Deaths() {
			mu.Lock()
			deaths = append(deaths, d)
			mu.Unlock()
		}
	}()
	port, took := churn(t, h, n, rate)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got = 0
		for _, d := range deaths {
			if d.Local.Port() == port || d.Remote.Port() == port {
				got++
			}
		}
		mu.Unlock()
		if uint64(got)+w.Lost() >= uint64(2*n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	lost := w.Lost()
	w.Close()
	<-done
	t.Logf("%d connections closed in %v (%.0f/s): %d socket deaths, %d received, %d lost",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), 2*n, got, lost)
	if uint64(got)+lost < uint64(2*n) {
		t.Errorf("%d deaths received + %d lost < %d sockets closed: deaths went missing uncounted", got, lost, 2*n)
	}
	if got > 2*n {
		t.Errorf("%d deaths received of %d sockets", got, 2*n)
	}
}

// TestDestroyLossCounted stops reading until the kernel must drop deaths,
// and holds Lost to every one dropped: received + lost = closed, exactly.
func TestDestroyLossCounted(t *testing.T) {
	// Go probes the IP stack once a process, with sockets of its own
	// (net.ipStackCapabilities): here, not in the watched namespace,
	// where their deaths would count among the lost.
	if ln, err := net.Listen("tcp", ":0"); err == nil {
		ln.Close()
	}
	ns := testnet.New(t)
	h, w := watchNS(t, ns)
	// The smallest buffer the kernel allows, and a consumer that does
	// not read: the backlog channel fills, then the socket.
	rc := w.rc
	if err := rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 0) }); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	port, _ := churn(t, h, n, 20000)
	got := countDeaths(w, port, 2*n, 2*time.Second)
	lost := w.Lost()
	t.Logf("%d socket deaths: %d received, %d lost", 2*n, got, lost)
	if lost == 0 {
		t.Fatalf("nothing lost with a %d-death backlog and a minimal buffer: the test proves nothing", destroyBacklog)
	}
	if uint64(got)+lost != 2*n {
		t.Errorf("%d received + %d lost = %d, want the %d sockets closed", got, lost, uint64(got)+lost, 2*n)
	}
	if w.Err() != nil {
		t.Errorf("an overflow ended the watch: %v", w.Err())
	}
}

// unprivEnv makes the test binary probe what an unprivileged user gets.
const unprivEnv = "TCPVET_DIAG_UNPRIV_PROBE"

// TestWatchUnprivileged runs the probe below as nobody in a namespace of
// its own: the kernel announces deaths to anyone in their namespace
// (sock_diag's groups are NL_CFG_F_NONROOT_RECV), and refuses conntrack's
// events without CAP_NET_ADMIN, which WatchFlowEnds says with
// ErrCTEventsDenied.
func TestWatchUnprivileged(t *testing.T) {
	if os.Getenv(unprivEnv) != "" {
		unprivilegedProbe()
		return
	}
	ns := testnet.New(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	// The test binary, where nobody may run it.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "diag.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		bin, "-test.run=^TestWatchUnprivileged$")
	cmd.Env = append(os.Environ(), unprivEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the probe as nobody: %v\n%s", err, out)
	}
	for _, want := range []string{"deaths: 2 received", "conntrack: denied"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the probe as nobody said:\n%s\nwant %q", out, want)
		}
	}
}

// unprivilegedProbe watches its own namespace's deaths and conntrack, and
// prints what it got.
func unprivilegedProbe() {
	self, err := netns.Self()
	if err != nil {
		fmt.Println("netns:", err)
		return
	}
	ctx := context.Background()
	w, err := WatchDestroys(ctx, self)
	if err != nil {
		fmt.Println("deaths:", err)
	} else {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			fmt.Println("listen:", err)
			return
		}
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			fmt.Println("dial:", err)
			return
		}
		a, _ := ln.Accept()
		c.Close()
		a.Close()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		fmt.Printf("deaths: %d received\n", countDeaths(w, port, 2, 2*time.Second))
		w.Close()
	}
	if _, err := WatchFlowEnds(ctx, self); errors.Is(err, ErrCTEventsDenied) {
		fmt.Println("conntrack: denied:", err)
	} else {
		fmt.Println("conntrack:", err)
	}
}
