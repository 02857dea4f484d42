package testnet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// agentEnv tells a test binary started by Start to act as an agent.
const agentEnv = "TCPVET_TESTNET_AGENT"

// Spec is what an agent sets up: listeners and outgoing connections, each
// named so the test can refer to it.
type Spec struct {
	Listen []Listener `json:"listen,omitempty"`
	Dial   []Dial     `json:"dial,omitempty"`
	// Bulk opens this many idle connections per address, for load.
	Bulk map[string]int `json:"bulk,omitempty"`
	// Churn opens and at once resets connections to each address, as fast
	// as one goroutine can, until the agent exits.
	Churn []string `json:"churn,omitempty"`
}

// Listener modes: what the agent does with each accepted connection.
const (
	// Hold reads and discards until EOF, then closes.
	Hold = "hold"
	// NoRead never reads and never closes: the peer's writes pile up.
	NoRead = "noread"
	// CloseAtOnce closes each connection as soon as it is accepted.
	CloseAtOnce = "close"
	// NoClose reads until EOF but never closes, leaving CLOSE_WAIT behind.
	NoClose = "noclose"
	// Echo writes back what it reads, and reports a read error as an event
	// named after the accepted connection ("NAME#0"), so a test sees the
	// fate of the server's end too.
	Echo = "echo"
)

// Listener is a listening socket.
type Listener struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	Mode string `json:"mode"`
	// RcvBuf, when set, is SO_RCVBUF of the listener (inherited by accepted sockets).
	RcvBuf int `json:"rcvbuf,omitempty"`
	// Keepalive, when set, applies to the listener and so to what it accepts.
	Keepalive *KA `json:"keepalive,omitempty"`
}

// Dial is an outgoing connection. It is read from in the background; a
// read error or EOF is reported as an event.
type Dial struct {
	Name string `json:"name"`
	To   string `json:"to"`
	// Keepalive, when set, turns SO_KEEPALIVE on with these timings; when
	// nil keepalive stays off.
	Keepalive     *KA `json:"keepalive,omitempty"`
	UserTimeoutMS int `json:"user_timeout_ms,omitempty"`
	SndBuf        int `json:"sndbuf,omitempty"`
	// TOS, when set, is IP_TOS (and IPV6_TCLASS), which also sets the
	// socket's SO_PRIORITY, as OpenSSH's IPQoS does.
	TOS int `json:"tos,omitempty"`
	// SynCnt, when set, is TCP_SYNCNT: the socket's own SYN retransmissions.
	SynCnt int `json:"syncnt,omitempty"`
	// Async dials in the background: the agent is ready before the
	// connection is, and a failed connect is reported as a dial-error event.
	Async bool `json:"async,omitempty"`
	// CloseFirst closes the connection right after it is established.
	CloseFirst bool `json:"close_first,omitempty"`
	// NoReadBack leaves incoming data unread (and FIN unnoticed).
	NoReadBack bool `json:"no_read_back,omitempty"`
	// PingEveryMS, when set, writes PingBytes on the connection every so
	// many milliseconds, as an application's heartbeat does (an Echo
	// listener answers each with as many bytes, as HTTP/2 answers a PING).
	PingEveryMS int `json:"ping_every_ms,omitempty"`
	PingBytes   int `json:"ping_bytes,omitempty"`
}

// KA are keepalive timings in seconds. A zero field keeps the namespace default.
type KA struct {
	Idle     int `json:"idle,omitempty"`
	Interval int `json:"interval,omitempty"`
	Count    int `json:"count,omitempty"`
}

// Event is a line an agent reports.
type Event struct {
	// Kind is ready, written, write-error, read (N bytes came back on a
	// dialed connection), read-error, eof, or for an Async dial connected
	// or dial-error.
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
	// N counts the bytes of a read event.
	N   int    `json:"n,omitempty"`
	Err string `json:"err,omitempty"`
	// Errno is the error number behind Err, when there is one.
	Errno int `json:"errno,omitempty"`
	// Local maps each dialed connection's name to its local address (ready).
	Local map[string]string `json:"local,omitempty"`
	At    time.Time         `json:"at"`
}

// Agent is a running agent process inside a namespace.
type Agent struct {
	// PID is the agent's process ID.
	PID    int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan Event
	// Local maps dialed connection names to their local "ip:port".
	Local    map[string]string
	stopOnce sync.Once
}

// Start runs an agent inside n that sets up spec, and waits until it is ready.
// The test binary must call MaybeRunAgent from TestMain.
func (n *NS) Start(t testing.TB, spec Spec) *Agent {
	t.Helper()
	return start(t, spec, n.Name, "ip", "netns", "exec", n.Name, os.Args[0])
}

// StartUnshared runs an agent that sets up spec in a network namespace of
// its own, with loopback up, that nothing but its process holds (unshare
// -n, nothing bound under /run/netns), and waits until it is ready. The
// agent's PID names the namespace: /proc/PID/ns/net.
func StartUnshared(t testing.TB, spec Spec) *Agent {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	return start(t, spec, "an unshared namespace", "unshare", "-n", "sh", "-c", `ip link set lo up && exec "$0"`, os.Args[0])
}

// start runs the agent command args, which ends in the test binary, in
// where, and waits until it is ready.
func start(t testing.TB, spec Spec, where string, args ...string) *Agent {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), agentEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent in %s: %v", where, err)
	}
	a := &Agent{PID: cmd.Process.Pid, cmd: cmd, stdin: stdin, events: make(chan Event, 1024)}
	t.Cleanup(a.Stop)
	go func() {
		defer close(a.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				a.events <- e
			}
		}
	}()
	e := a.Wait(t, "ready", "", 10*time.Second)
	a.Local = e.Local
	return a
}

// Wait returns the next event of the given kind (and name, when not empty),
// skipping others, or fails the test after timeout.
func (a *Agent) Wait(t testing.TB, kind, name string, timeout time.Duration) Event {
	t.Helper()
	e, ok := a.WaitFor(kind, name, timeout)
	if !ok {
		t.Fatalf("agent %d: no %q event for %q within %v", a.PID, kind, name, timeout)
	}
	return e
}

// WaitFor is Wait that reports a timeout instead of failing.
func (a *Agent) WaitFor(kind, name string, timeout time.Duration) (Event, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-a.events:
			if !ok {
				return Event{}, false
			}
			if e.Kind == kind && (name == "" || e.Name == name) {
				return e, true
			}
		case <-deadline:
			return Event{}, false
		}
	}
}

// Events is the agent's stream of events, for a test that follows several
// connections at once; Wait and WaitFor read from the same stream.
func (a *Agent) Events() <-chan Event { return a.events }

// Write makes the agent write n bytes on the named dialed connection in the
// background; a failure comes back as a write-error event.
func (a *Agent) Write(t testing.TB, name string, n int) {
	t.Helper()
	a.send(t, fmt.Sprintf("write %s %d", name, n))
}

// Close makes the agent close the named dialed connection.
func (a *Agent) Close(t testing.TB, name string) {
	t.Helper()
	a.send(t, "close "+name)
}

// Abort makes the agent close the named connection with SO_LINGER 0: the
// kernel sends a reset instead of a FIN and keeps no TIME_WAIT.
func (a *Agent) Abort(t testing.TB, name string) {
	t.Helper()
	a.send(t, "abort "+name)
}

func (a *Agent) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(a.stdin, line+"\n"); err != nil {
		t.Fatalf("agent %d: %v", a.PID, err)
	}
}

// Stop kills the agent and waits for it; the connections it held go with it.
func (a *Agent) Stop() {
	a.stopOnce.Do(func() {
		a.stdin.Close()
		a.cmd.Process.Kill()
		a.cmd.Wait()
	})
}

// MaybeRunAgent turns the process into an agent when Start launched it, and
// never returns then. Call it first in TestMain.
func MaybeRunAgent() {
	if spec, ok := os.LookupEnv(agentEnv); ok {
		RunAgent(spec)
	}
}

// RunAgent sets up the JSON spec, reports events on stdout as JSON lines,
// obeys commands on stdin until it closes, and exits.
func RunAgent(spec string) {
	if err := runAgent(spec); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

type agent struct {
	mu    sync.Mutex
	out   *json.Encoder
	conns map[string]net.Conn
}

// hold names an open connection, so that commands can reach it.
func (ag *agent) hold(name string, c net.Conn) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	ag.conns[name] = c
}

// forget drops a closed connection's name.
func (ag *agent) forget(name string) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	delete(ag.conns, name)
}

func (ag *agent) emit(e Event) {
	e.At = time.Now()
	ag.mu.Lock()
	defer ag.mu.Unlock()
	ag.out.Encode(e)
}

func runAgent(specJSON string) error {
	var spec Spec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	ag := &agent{out: json.NewEncoder(os.Stdout), conns: make(map[string]net.Conn)}
	for _, l := range spec.Listen {
		if err := ag.listen(l); err != nil {
			return fmt.Errorf("listen %s: %w", l.Name, err)
		}
	}
	local := make(map[string]string)
	for _, d := range spec.Dial {
		c, err := ag.dial(d)
		if err != nil {
			return fmt.Errorf("dial %s: %w", d.Name, err)
		}
		local[d.Name] = c.LocalAddr().String()
	}
	for to, n := range spec.Bulk {
		for i := range n {
			c, err := net.Dial("tcp", to)
			if err != nil {
				return fmt.Errorf("bulk dial %d of %d to %s: %w", i+1, n, to, err)
			}
			ag.hold(fmt.Sprintf("bulk#%s#%d", to, i), c)
		}
	}
	for _, to := range spec.Churn {
		go churn(to)
	}
	ag.emit(Event{Kind: "ready", Local: local})

	// Commands come on stdin; EOF means the test is done with us.
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		ag.mu.Lock()
		c := ag.conns[f[1]]
		ag.mu.Unlock()
		if c == nil {
			return fmt.Errorf("no connection named %q", f[1])
		}
		switch f[0] {
		case "write":
			n, _ := strconv.Atoi(f[2])
			go ag.write(f[1], c, n)
		case "close":
			c.Close()
		case "abort":
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
		}
	}
	return nil
}

func (ag *agent) write(name string, c net.Conn, n int) {
	if _, err := c.Write(make([]byte, n)); err != nil {
		ag.emit(errEvent("write-error", name, err))
		return
	}
	ag.emit(Event{Kind: "written", Name: name})
}

func errEvent(kind, name string, err error) Event {
	e := Event{Kind: kind, Name: name, Err: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		e.Errno = int(errno)
	}
	return e
}

func (ag *agent) listen(l Listener) error {
	lc := net.ListenConfig{
		KeepAlive: -1,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = setOpts(int(fd), sockOpts{ka: l.Keepalive, rcvbuf: l.RcvBuf}) }); cerr != nil {
				return cerr
			}
			return err
		},
	}
	ln, err := lc.Listen(context.Background(), "tcp", l.Addr)
	if err != nil {
		return err
	}
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			name := fmt.Sprintf("%s#%d", l.Name, i)
			switch l.Mode {
			case CloseAtOnce:
				c.Close()
			case Hold:
				ag.hold(name, c)
				go func() {
					io.Copy(io.Discard, c)
					c.Close()
					// A churned listener accepts thousands a second: an
					// hour's worth must not pile up in memory.
					ag.forget(name)
				}()
			case NoClose:
				ag.hold(name, c)
				go io.Copy(io.Discard, c)
			case Echo:
				ag.hold(name, c)
				go func() {
					if _, err := io.Copy(c, c); err != nil {
						ag.emit(errEvent("read-error", name, err))
					} else {
						ag.emit(Event{Kind: "eof", Name: name})
					}
				}()
			}
		}
	}()
	return nil
}

func (ag *agent) dial(d Dial) (net.Conn, error) {
	opts := sockOpts{ka: d.Keepalive, userTimeoutMS: d.UserTimeoutMS, sndbuf: d.SndBuf, tos: d.TOS, syncnt: d.SynCnt}
	if d.Async {
		return ag.dialAsync(d.Name, d.To, opts)
	}
	dl := net.Dialer{
		KeepAlive: -1,
		Timeout:   5 * time.Second,
		Control: func(network, _ string, rc syscall.RawConn) error {
			var err error
			opts.v6 = network == "tcp6"
			if cerr := rc.Control(func(fd uintptr) { err = setOpts(int(fd), opts) }); cerr != nil {
				return cerr
			}
			return err
		},
	}
	c, err := dl.Dial("tcp", d.To)
	if err != nil {
		return nil, err
	}
	ag.hold(d.Name, c)
	if d.CloseFirst {
		local := c.LocalAddr()
		c.Close()
		return closedConn{c, local}, nil
	}
	if !d.NoReadBack {
		go ag.readBack(d.Name, c)
	}
	if d.PingEveryMS > 0 {
		go ag.ping(d.Name, c, time.Duration(d.PingEveryMS)*time.Millisecond, max(1, d.PingBytes))
	}
	return c, nil
}

// ping writes n bytes on c every period until a write fails, which it
// reports as a write-error event.
func (ag *agent) ping(name string, c net.Conn, period time.Duration, n int) {
	for range time.Tick(period) {
		if _, err := c.Write(make([]byte, n)); err != nil {
			ag.emit(errEvent("write-error", name, err))
			return
		}
	}
}

// readBack reads a dialed connection until it fails, reporting each read:
// only an Echo listener sends anything back, so the events are few.
func (ag *agent) readBack(name string, c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			ag.emit(Event{Kind: "read", Name: name, N: n})
		}
		switch {
		case errors.Is(err, io.EOF):
			ag.emit(Event{Kind: "eof", Name: name})
			return
		case err != nil:
			ag.emit(errEvent("read-error", name, err))
			return
		}
	}
}

// dialAsync starts a non-blocking connect and returns at once with the
// local address the kernel bound, so a test can watch the socket in
// SYN_SENT. The outcome comes later: a dial-error event with the errno
// connect failed with, or the connection read from like any other.
func (ag *agent) dialAsync(name, to string, opts sockOpts) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		return nil, err
	}
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
		opts.v6 = true
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := setOpts(fd, opts); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return nil, err
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f) // a duplicate: f is closed below, c keeps the socket
	f.Close()
	if err != nil {
		return nil, err
	}
	ag.hold(name, c)
	go func() {
		rc, _ := c.(*net.TCPConn).SyscallConn()
		var soErr int
		// The poller reports the socket writable once connect has ended:
		// with an error, or connected (it has a peer).
		rc.Write(func(fd uintptr) bool {
			soErr, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			if soErr != 0 {
				return true
			}
			_, err := unix.Getpeername(int(fd))
			return err == nil
		})
		if soErr != 0 {
			ag.emit(errEvent("dial-error", name, syscall.Errno(soErr)))
			return
		}
		ag.emit(Event{Kind: "connected", Name: name})
		ag.readBack(name, c)
	}()
	return asyncConn{c, sockaddrString(local)}, nil
}

// asyncConn names the local address bound before connect ended.
type asyncConn struct {
	net.Conn
	local string
}

func (c asyncConn) LocalAddr() net.Addr { return addrString(c.local) }

type addrString string

func (addrString) Network() string  { return "tcp" }
func (a addrString) String() string { return string(a) }

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return "?"
}

// churn connects to and resets connections to addr in a loop. Closing with
// linger 0 sends a reset and leaves no TIME_WAIT behind, so the loop never
// runs out of ports.
func churn(addr string) {
	d := net.Dialer{KeepAlive: -1, Timeout: time.Second}
	for {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
}

// closedConn remembers the local address of a connection closed at once.
type closedConn struct {
	net.Conn
	local net.Addr
}

func (c closedConn) LocalAddr() net.Addr { return c.local }

// sockOpts are the options a test asks of a socket.
type sockOpts struct {
	ka                                         *KA
	userTimeoutMS, rcvbuf, sndbuf, tos, syncnt int
	v6                                         bool
}

// setOpts sets socket options with raw setsockopt, before connect or listen,
// so the kernel sees exactly what the test asked for.
func setOpts(fd int, o sockOpts) error {
	var serr error
	set := func(level, opt, v int) {
		if serr == nil && v != 0 {
			serr = unix.SetsockoptInt(fd, level, opt, v)
		}
	}
	if o.ka != nil {
		set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		set(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, o.ka.Idle)
		set(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, o.ka.Interval)
		set(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, o.ka.Count)
	}
	set(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, o.userTimeoutMS)
	set(unix.IPPROTO_TCP, unix.TCP_SYNCNT, o.syncnt)
	set(unix.SOL_SOCKET, unix.SO_RCVBUF, o.rcvbuf)
	set(unix.SOL_SOCKET, unix.SO_SNDBUF, o.sndbuf)
	if o.v6 {
		set(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, o.tos)
	} else {
		set(unix.IPPROTO_IP, unix.IP_TOS, o.tos)
	}
	return serr
}
