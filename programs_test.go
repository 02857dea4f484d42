package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
)

// Keepalive and SYN settings every namespace of TestRealPrograms gets. No
// program here and no kernel default uses these numbers, so a socket that
// reports them took them from its namespace, and one that reports anything
// else set its own.
const (
	nsKeepaliveTime   = 1234
	nsKeepaliveIntvl  = 56
	nsKeepaliveProbes = 7
	nsSynRetries      = 4
)

// TestRealPrograms holds tcpvet's reading of each socket's own options to
// what real programs from Debian's packages document that they set. Each
// program runs in the foreground in a pair of test namespaces, with its
// config in a temporary directory, over IPv4, IPv6 and, where the program
// can listen dual-stack, IPv4-mapped addresses. Expected values come from
// each program's manual or source, cited where they are used; `ss -tanoiep
// --tos` is the second opinion on every socket.
func TestRealPrograms(t *testing.T) {
	testnet.RequireRoot(t)
	t.Run("OpenSSH", func(t *testing.T) { t.Parallel(); testOpenSSH(t) })
	t.Run("socat", func(t *testing.T) { t.Parallel(); testSocat(t) })
	t.Run("redis", func(t *testing.T) { t.Parallel(); testRedis(t) })
	t.Run("curl", func(t *testing.T) { t.Parallel(); testCurl(t) })
}

// testOpenSSH runs sshd and ssh with Debian's defaults and with the options
// that touch keepalive, each connection with a pseudo-terminal session so
// that both ends set their interactive IPQoS.
func testOpenSSH(t *testing.T) {
	sshd := need(t, "sshd", "openssh-server")
	ssh := need(t, "ssh", "openssh-client")
	keygen := need(t, "ssh-keygen", "openssh-client")
	needPrivsepDir(t)

	n := newProgramNet(t, 40)
	dir := t.TempDir()
	testnet.Run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_key"))
	testnet.Run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "id"))
	pub, err := os.ReadFile(filepath.Join(dir, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}

	// startSSHD runs one sshd on port with a config of its own. StrictModes
	// is off because the temporary directory lies under the world-writable
	// /tmp, which sshd's ownership checks of authorized_keys reject.
	startSSHD := func(port int, extra ...string) {
		conf := filepath.Join(dir, fmt.Sprintf("sshd_config.%d", port))
		lines := append([]string{
			fmt.Sprintf("ListenAddress %s:%d", n.srvAddr.V4, port),
			fmt.Sprintf("ListenAddress [%s]:%d", n.srvAddr.V6, port),
			"HostKey " + filepath.Join(dir, "host_key"),
			"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
			"PidFile none",
			"StrictModes no",
			"UsePAM no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
		}, extra...)
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// sshd re-executes itself for every connection, so it must be
		// started by its absolute path.
		startProgram(t, n.srv, sshd, "-D", "-e", "-f", conf)
		waitListen(t, n.srv, port)
	}
	startSSHD(22)
	startSSHD(2200, "TCPKeepAlive no")
	startSSHD(2201, "ClientAliveInterval 7")

	// The expectations below rest on Debian's defaults; the programs' own
	// account of their effective configuration must agree with the manuals.
	// sshd_config(5) and ssh_config(5) on Debian 12: "TCPKeepAlive ... The
	// default is yes"; "IPQoS ... The default is lowdelay for interactive
	// sessions and throughput for non-interactive sessions" (a Debian
	// change: upstream's is af21 cs1).
	for port, want := range map[int][]string{
		22:   {"tcpkeepalive yes", "ipqos lowdelay throughput", "clientaliveinterval 0"},
		2200: {"tcpkeepalive no"},
		2201: {"tcpkeepalive yes", "clientaliveinterval 7"},
	} {
		effective := n.srv.Run(t, sshd, "-T", "-f", filepath.Join(dir, fmt.Sprintf("sshd_config.%d", port)))
		for _, line := range want {
			if !slices.Contains(strings.Split(effective, "\n"), line) {
				t.Errorf("sshd -T for port %d does not say %q", port, line)
			}
		}
	}
	effective := testnet.Run(t, ssh, "-G", "-F", "none", n.srvAddr.V4)
	for _, line := range []string{"tcpkeepalive yes", "ipqos lowdelay throughput"} {
		if !slices.Contains(strings.Split(effective, "\n"), line) {
			t.Errorf("ssh -G does not say %q", line)
		}
	}

	// Each client runs a command on a pseudo-terminal, which makes both
	// ends interactive (ssh's clientloop.c client_session2_setup and sshd's
	// session.c do_exec_pty call ssh_packet_set_interactive), and prints
	// "ready" only once the session, and so every option, is set up.
	connect := func(host string, port int, opts ...string) {
		args := []string{ssh, "-F", "none", "-i", filepath.Join(dir, "id"),
			"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"}
		args = append(args, opts...)
		args = append(args, "-tt", "-p", strconv.Itoa(port), "root@"+host, "echo ready; exec sleep 600")
		startProgram(t, n.cli, args...).waitFor(t, "ready", 1)
	}
	start := time.Now()
	connect(n.srvAddr.V4, 22)
	connect(n.srvAddr.V6, 22)
	connect(n.srvAddr.V4, 2200, "-o", "TCPKeepAlive=no")
	connect(n.srvAddr.V4, 2201, "-o", "ServerAliveInterval=7")

	srv, cli := look(t, n.srv, start), look(t, n.cli, start)
	// IPQoS lowdelay is IP_TOS 0x10 (misc.c set_sock_tos), which the
	// kernel turns into sk_priority TC_PRIO_INTERACTIVE (6) through
	// rt_tos2priority; inet_diag reports it as the class id. IPv6 sockets
	// get IPV6_TCLASS instead, which sets no priority: their class id is
	// held to ss's alone.
	const lowdelayPriority = 6
	for _, c := range []struct {
		name     string
		srv, cli netip.AddrPort
		want     want
		priority bool
	}{
		// TCPKeepAlive yes (the default): sshd.c main and sshconnect.c
		// ssh_connect_direct set SO_KEEPALIVE and no timings.
		{"default IPv4", n.srvAP(4, 22), n.cliAP(4, 0), fromNamespace(true), true},
		{"default IPv6", n.srvAP(6, 22), n.cliAP(6, 0), fromNamespace(true), false},
		// TCPKeepAlive no: neither end sets SO_KEEPALIVE.
		{"TCPKeepAlive no", n.srvAP(4, 2200), n.cliAP(4, 0), fromNamespace(false), true},
		// ClientAliveInterval and ServerAliveInterval are messages "through
		// the encrypted channel" (sshd_config(5), ssh_config(5)): they
		// leave the socket as TCPKeepAlive yes made it.
		{"ClientAliveInterval", n.srvAP(4, 2201), n.cliAP(4, 0), fromNamespace(true), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, end := range []struct {
				v          view
				comm       string
				local, rem netip.AddrPort
			}{
				{srv, "sshd", c.srv, c.cli},
				{cli, "ssh", c.cli, c.srv},
			} {
				s := end.v.sock(t, end.comm, end.local, end.rem)
				end.v.check(t, s, c.want)
				if c.priority && s.ClassID != lowdelayPriority {
					t.Errorf("%s %v: class_id %d, want %d: IPQoS lowdelay's priority", end.comm, s.Local, s.ClassID, lowdelayPriority)
				}
			}
		})
	}
}

// testSocat sets every keepalive option socat documents, and two it offers
// only through its generic setsockopt-int, on both ends of IPv4, IPv6 and
// IPv4-mapped connections.
func testSocat(t *testing.T) {
	socat := need(t, "socat", "socat")
	n := newProgramNet(t, 41)

	// socat(1), TCP option group: "keepidle=<seconds> Sets the idle time
	// before sending the first keepalive", "keepintvl=<seconds> Sets the
	// interval between two keepalives", "keepcnt=<count> Sets the number
	// of keepalives before shutting down the socket", "syncnt=<count> Sets
	// the maximal number of SYN retransmits during connect"; SOCKET option
	// group: "keepalive Enables sending keepalives on the socket". This
	// version (1.7.4) has no user-timeout option, but documents
	// "setsockopt-int=<level>:<optname>:<optval>", here SOL_TCP (6) and
	// TCP_USER_TIMEOUT (18, linux/tcp.h). "ipv6only=<bool> ... If 0, the
	// TCP stack will also accept connections using IPv4 protocol on the
	// same port": IPv4 clients arrive as IPv4-mapped addresses.
	server := want{true, 61, 11, 4, "socket", 9000, nsSynRetries}
	srvProg := startProgram(t, n.srv, socat, "-d", "-d",
		"TCP6-LISTEN:7000,ipv6only=0,reuseaddr,fork,keepalive,keepidle=61,keepintvl=11,keepcnt=4,setsockopt-int=6:18:9000", "PIPE")
	waitListen(t, n.srv, 7000)

	start := time.Now()
	// "starting data transfer loop" is logged (-d -d) once every address
	// option is applied.
	ready := "starting data transfer loop"
	startProgram(t, n.cli, socat, "-d", "-d", "STDIO",
		fmt.Sprintf("TCP4:%s:7000,keepalive,keepidle=41,keepintvl=7,keepcnt=3,syncnt=2,setsockopt-int=6:18:5000", n.srvAddr.V4)).waitFor(t, ready, 1)
	startProgram(t, n.cli, socat, "-d", "-d", "STDIO",
		fmt.Sprintf("TCP6:[%s]:7000,keepalive", n.srvAddr.V6)).waitFor(t, ready, 1)
	srvProg.waitFor(t, ready, 2)

	srv, cli := look(t, n.srv, start), look(t, n.cli, start)
	mapped := func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	t.Run("IPv4 client", func(t *testing.T) {
		cli.check(t, cli.sock(t, "socat", n.cliAP(4, 0), n.srvAP(4, 7000)), want{true, 41, 7, 3, "socket", 5000, 2})
	})
	t.Run("IPv4-mapped accepted", func(t *testing.T) {
		s := srv.sock(t, "socat", mapped(n.srvAP(4, 7000)), mapped(n.cliAP(4, 0)))
		if s.Family != "inet6" {
			t.Errorf("family %s, want inet6: a dual-stack listener's socket", s.Family)
		}
		srv.check(t, s, server)
	})
	t.Run("IPv6 client", func(t *testing.T) {
		// keepalive alone: SO_KEEPALIVE with the namespace's timings.
		cli.check(t, cli.sock(t, "socat", n.cliAP(6, 0), n.srvAP(6, 7000)), fromNamespace(true))
	})
	t.Run("IPv6 accepted", func(t *testing.T) {
		srv.check(t, srv.sock(t, "socat", n.srvAP(6, 7000), n.cliAP(6, 0)), server)
	})
}

// testRedis runs redis-server with tcp-keepalive and redis-cli against it:
// both set their own timings through anetKeepAlive.
func testRedis(t *testing.T) {
	server := need(t, "redis-server", "redis-server")
	client := need(t, "redis-cli", "redis-tools")
	n := newProgramNet(t, 42)
	dir := t.TempDir()

	// redis.conf: "tcp-keepalive 300 ... On Linux, the specified value (in
	// seconds) is the period used to send ACKs"; networking.c createClient
	// calls connKeepAlive(conn, server.tcpkeepalive) on every accepted
	// client. anet.c anetKeepAlive(fd, interval) (7.0.15) sets SO_KEEPALIVE,
	// TCP_KEEPIDLE = interval, TCP_KEEPINTVL = interval/3 and TCP_KEEPCNT = 3.
	fromServer := want{true, 300, 100, 3, "socket", 0, nsSynRetries}
	// redis-cli.c cliConnect: anetKeepAlive(fd, REDIS_CLI_KEEPALIVE_INTERVAL),
	// which is 15 seconds.
	fromCLI := want{true, 15, 5, 3, "socket", 0, nsSynRetries}

	conf := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(conf, []byte(strings.Join([]string{
		fmt.Sprintf("bind %s %s", n.srvAddr.V4, n.srvAddr.V6),
		"port 6379",
		"tcp-keepalive 300",
		"protected-mode no",
		"daemonize no",
		"save \"\"",
		"appendonly no",
		"logfile \"\"",
		"dir " + dir,
	}, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startProgram(t, n.srv, server, conf)
	waitListen(t, n.srv, 6379)

	start := time.Now()
	// A subscriber waits for messages on an idle connection; redis-cli
	// prints (and flushes) the subscription's confirmation.
	for _, host := range []string{n.srvAddr.V4, n.srvAddr.V6} {
		startProgram(t, n.cli, client, "-h", host, "-p", "6379", "SUBSCRIBE", "tcpvet").waitFor(t, "tcpvet", 1)
	}
	srv, cli := look(t, n.srv, start), look(t, n.cli, start)
	for _, v := range []int{4, 6} {
		t.Run(fmt.Sprintf("IPv%d", v), func(t *testing.T) {
			srv.check(t, srv.sock(t, "redis-server", n.srvAP(v, 6379), n.cliAP(v, 0)), fromServer)
			cli.check(t, cli.sock(t, "redis-cli", n.cliAP(v, 0), n.srvAP(v, 6379)), fromCLI)
		})
	}
}

// testCurl runs curl against a server that never answers, so each request
// holds its connection open, with and without curl's keepalive options.
func testCurl(t *testing.T) {
	curl := need(t, "curl", "curl")
	n := newProgramNet(t, 43)
	// The server is the tests' own agent: only curl's end is under test.
	n.srv.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "http", Addr: ":8080", Mode: testnet.Hold},
		{Name: "http-no-keepalive", Addr: ":8081", Mode: testnet.Hold},
	}})

	start := time.Now()
	get := func(url string, opts ...string) {
		args := append([]string{curl, "-sS", "-v"}, opts...)
		// curl -v shows the request once it is sent, long after the
		// socket's options were set (cf-socket.c cf_socket_open, before
		// connect).
		startProgram(t, n.cli, append(args, url)...).waitFor(t, "> GET /", 1)
	}
	get(fmt.Sprintf("http://%s:8080/", n.srvAddr.V4), "--keepalive-time", "17")
	get(fmt.Sprintf("http://[%s]:8080/", n.srvAddr.V6))
	get(fmt.Sprintf("http://%s:8081/", n.srvAddr.V4), "--no-keepalive")
	cli := look(t, n.cli, start)

	// curl(1) 7.88.1: "--keepalive-time <seconds> This option sets the time
	// a connection needs to remain idle before sending keepalive probes and
	// the time between individual keepalive probes ... The number of missed
	// keepalive probes before declaring the connection down is OS dependent
	// ... If unspecified, the option defaults to 60 seconds." (tool_operate.c
	// sets CURLOPT_TCP_KEEPIDLE and CURLOPT_TCP_KEEPINTVL both to it; this
	// version has no --keepalive-cnt.) "--no-keepalive Disables the use of
	// keepalive messages on the TCP connection. curl otherwise enables them
	// by default."
	t.Run("keepalive-time IPv4", func(t *testing.T) {
		cli.check(t, cli.sock(t, "curl", n.cliAP(4, 0), n.srvAP(4, 8080)), want{true, 17, 17, nsKeepaliveProbes, "socket", 0, nsSynRetries})
	})
	t.Run("default IPv6", func(t *testing.T) {
		cli.check(t, cli.sock(t, "curl", n.cliAP(6, 0), n.srvAP(6, 8080)), want{true, 60, 60, nsKeepaliveProbes, "socket", 0, nsSynRetries})
	})
	t.Run("no-keepalive", func(t *testing.T) {
		cli.check(t, cli.sock(t, "curl", n.cliAP(4, 0), n.srvAP(4, 8081)), fromNamespace(false))
	})
}

// programNet is two namespaces joined by a veth: servers run in srv,
// clients in cli.
type programNet struct {
	srv, cli         *testnet.NS
	srvAddr, cliAddr testnet.Addrs
}

// newProgramNet links two new namespaces on subnet and gives both the
// tests' keepalive and SYN settings. Whatever runs in them is killed
// before they are removed.
func newProgramNet(t *testing.T, subnet int) *programNet {
	t.Helper()
	n := &programNet{srv: testnet.New(t), cli: testnet.New(t)}
	for _, ns := range []*testnet.NS{n.srv, n.cli} {
		killAllIn(t, ns)
		ns.Sysctl(t, diag.KeepaliveTime, strconv.Itoa(nsKeepaliveTime))
		ns.Sysctl(t, diag.KeepaliveIntvl, strconv.Itoa(nsKeepaliveIntvl))
		ns.Sysctl(t, diag.KeepaliveProbes, strconv.Itoa(nsKeepaliveProbes))
		ns.Sysctl(t, diag.SynRetries, strconv.Itoa(nsSynRetries))
	}
	n.srvAddr, n.cliAddr = testnet.Link(t, n.srv, n.cli, subnet)
	return n
}

// srvAP is the server's IPv4 or IPv6 address (version 4 or 6) with port;
// port 0 stands for any port.
func (n *programNet) srvAP(version, port int) netip.AddrPort { return ap(n.srvAddr, version, port) }

// cliAP is the client's address, as srvAP.
func (n *programNet) cliAP(version, port int) netip.AddrPort { return ap(n.cliAddr, version, port) }

func ap(a testnet.Addrs, version, port int) netip.AddrPort {
	s := a.V4
	if version == 6 {
		s = a.V6
	}
	return netip.AddrPortFrom(netip.MustParseAddr(s), uint16(port))
}

// killAllIn kills, when the test ends, every process left in ns: only
// this test starts processes there, and some (sshd's sessions) leave the
// process group of the program that was started.
func killAllIn(t *testing.T, ns *testnet.NS) {
	t.Cleanup(func() {
		out, _ := exec.Command("ip", "netns", "pids", ns.Name).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// need returns the absolute path of a program, or skips the test naming
// the Debian package that ships it (CI installs it).
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Skipf("needs %s (Debian package %s)", name, pkg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// needPrivsepDir makes /run/sshd, without which sshd refuses to start; the
// Debian service that would create it is never started here. It is removed
// again only if this test made it.
func needPrivsepDir(t *testing.T) {
	const dir = "/run/sshd"
	if _, err := os.Stat(dir); err == nil {
		return
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
}

// program is a real program running inside a test namespace.
type program struct {
	cmd    *exec.Cmd
	out    *progOutput
	exited chan struct{}
}

// startProgram runs args inside ns until the test ends. Its standard input
// is a pipe held open, so a program that copies standard input to the
// network (socat STDIO, ssh) sits idle instead of meeting end-of-file.
func startProgram(t *testing.T, ns *testnet.NS, args ...string) *program {
	t.Helper()
	p := &program{out: &progOutput{}, exited: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		stdin.Close()
		if t.Failed() {
			t.Logf("%s said:\n%s", strings.Join(args, " "), p.out)
		}
	})
	return p
}

// waitFor waits until the program has printed s n times.
func (p *program) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.out.String(), s) < n {
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before printing %q %d times:\n%s", filepath.Base(p.cmd.Args[4]), p.cmd.ProcessState, s, n, p.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q %d times within 10 s:\n%s", filepath.Base(p.cmd.Args[4]), s, n, p.out)
		}
	}
}

// progOutput collects what a program prints, for waitFor and for failures.
type progOutput struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (o *progOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *progOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitListen waits until something in ns listens on TCP port.
func waitListen(t *testing.T, ns *testnet.NS, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.TrimSpace(ns.Run(t, "ss", "-Htln", fmt.Sprintf("sport = :%d", port))) == "" {
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on port %d within 10 s", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// view is a namespace as tcpvet saw it and, right after, as ss did.
type view struct {
	snap *diag.Snapshot
	// ss maps each socket's cookie to its line of `ss -tanoiep --tos`.
	ss map[string]string
	// start is when the first connection of the test was opened: no
	// keepalive timer can have run for longer.
	start time.Time
}

func look(t *testing.T, ns *testnet.NS, start time.Time) view {
	t.Helper()
	v := view{snap: runJSON(t, "--netns", ns.Path), ss: map[string]string{}, start: start}
	// The namespace's own settings are what "namespace" means below.
	for name, want := range map[string]int64{
		diag.KeepaliveTime: nsKeepaliveTime, diag.KeepaliveIntvl: nsKeepaliveIntvl,
		diag.KeepaliveProbes: nsKeepaliveProbes, diag.SynRetries: nsSynRetries,
	} {
		if got := v.snap.Target.Sysctls[name]; got != want {
			t.Errorf("%s: tcpvet read %s = %d, the test set %d", ns.Name, name, got, want)
		}
	}
	for _, line := range strings.Split(ns.Run(t, "ss", "-tanoiep", "--tos"), "\n") {
		if m := ssCookie.FindStringSubmatch(line); m != nil {
			v.ss[m[1]] = line
		}
	}
	return v
}

var (
	ssCookie  = regexp.MustCompile(`\bsk:([0-9a-f]+)\b`)
	ssTimer   = regexp.MustCompile(`\btimer:\((\w+),([^,]*),\d+\)`)
	ssClassID = regexp.MustCompile(`\bclass_id:(0x[0-9a-f]+|\d+)\b`)
	ssUser    = regexp.MustCompile(`\("([^"]*)",pid=(\d+),fd=(\d+)\)`)
	// ssDuration is a timer's expiry as ss prints it: 20min, 4min59sec,
	// 40sec, 9.501ms (or 9.501sec), 476ms.
	ssDuration = regexp.MustCompile(`^(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)(?:ms|sec))?$`)
)

// sock returns the one established socket of v held by a process named
// comm between local and remote; a zero port matches any port.
func (v view) sock(t *testing.T, comm string, local, remote netip.AddrPort) diag.Socket {
	t.Helper()
	match := func(got, want netip.AddrPort) bool {
		return got.Addr() == want.Addr() && (want.Port() == 0 || got.Port() == want.Port())
	}
	var found []diag.Socket
	for _, s := range v.snap.Sockets {
		if s.State == diag.Established && match(s.Local, local) && match(s.Remote, remote) &&
			slices.ContainsFunc(s.Processes, func(p diag.Process) bool { return p.Comm == comm }) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one established socket of %s from %v to %v, found %d", comm, local, remote, len(found))
	}
	return found[0]
}

// want is what tcpvet must read from one socket.
type want struct {
	keepalive           bool
	idle, intvl, probes int
	source              string
	userTimeoutMS       int
	synRetries          int
}

// fromNamespace is a socket that set none of its timings: keepalive is
// only SO_KEEPALIVE, on or off.
func fromNamespace(keepalive bool) want {
	return want{keepalive, nsKeepaliveTime, nsKeepaliveIntvl, nsKeepaliveProbes, "namespace", 0, nsSynRetries}
}

// check holds s to w, and to what ss says of the same socket: a keepalive
// timer exactly when SO_KEEPALIVE is on, never set further out than the
// idle time, the same class id, and the same processes holding it. ss runs
// after tcpvet, so the same class id also shows that duplicating the
// socket to read its options left its priority alone.
func (v view) check(t *testing.T, s diag.Socket, w want) {
	t.Helper()
	k := s.Keepalive
	if k.Enabled == nil || k.IdleS == nil || k.IntervalS == nil || k.Probes == nil || s.UserTimeoutMS == nil || s.SynRetries == nil {
		t.Errorf("%v -> %v: options not read: %s", s.Local, s.Remote, k.Reason)
		return
	}
	got := want{*k.Enabled, *k.IdleS, *k.IntervalS, *k.Probes, k.Source, *s.UserTimeoutMS, *s.SynRetries}
	if got != w {
		t.Errorf("%v -> %v: options %+v, want %+v", s.Local, s.Remote, got, w)
	}

	line, ok := v.ss[s.ID.String()]
	if !ok {
		t.Errorf("%v -> %v: ss does not show socket sk:%s", s.Local, s.Remote, s.ID)
		return
	}
	m := ssTimer.FindStringSubmatch(line)
	switch {
	case w.keepalive && (m == nil || m[1] != "keepalive"):
		t.Errorf("%v -> %v: ss shows no keepalive timer, though SO_KEEPALIVE should be on:\n%s", s.Local, s.Remote, line)
	case !w.keepalive && m != nil && m[1] == "keepalive":
		t.Errorf("%v -> %v: ss shows a keepalive timer, though SO_KEEPALIVE should be off:\n%s", s.Local, s.Remote, line)
	case w.keepalive:
		shown, dropped := ssExpiry(t, m[2])
		// The timer was armed for the idle time, at most since start; once
		// it has fired, probes rearm it for the (shorter) interval.
		idle := time.Duration(w.idle) * time.Second
		lo := idle - time.Since(v.start) - time.Second
		if shown > idle || lo > 0 && shown+dropped < lo {
			t.Errorf("%v -> %v: ss's keepalive timer expires in %s, want within [%v, %v]:\n%s", s.Local, s.Remote, m[2], lo, idle, line)
		}
	}
	if m := ssClassID.FindStringSubmatch(line); m == nil {
		t.Errorf("%v -> %v: ss shows no class_id:\n%s", s.Local, s.Remote, line)
	} else if id, err := strconv.ParseUint(m[1], 0, 32); err != nil || uint32(id) != s.ClassID {
		t.Errorf("%v -> %v: class_id %d, ss says %s", s.Local, s.Remote, s.ClassID, m[1])
	}
	var owners, ssOwners []string
	for _, p := range s.Processes {
		owners = append(owners, fmt.Sprintf("%s/%d/%d", p.Comm, p.PID, p.FD))
	}
	for _, u := range ssUser.FindAllStringSubmatch(line, -1) {
		ssOwners = append(ssOwners, u[1]+"/"+u[2]+"/"+u[3])
	}
	slices.Sort(owners)
	slices.Sort(ssOwners)
	if len(owners) == 0 || !slices.Equal(owners, ssOwners) {
		t.Errorf("%v -> %v: held by %v, ss says %v", s.Local, s.Remote, owners, ssOwners)
	}
}

// ssExpiry parses a timer's expiry as ss prints it (iproute2's
// print_ms_timer): the time shown, which is never more than the true time
// left, and how much ss left out. Past 9 minutes it drops the seconds, past
// 9 seconds the milliseconds; "9.501ms" (newer versions print "9.501sec")
// is 9.501 s.
func ssExpiry(t *testing.T, s string) (shown, dropped time.Duration) {
	t.Helper()
	m := ssDuration.FindStringSubmatch(s)
	if m == nil || s == "" {
		t.Fatalf("ss: unreadable timer expiry %q", s)
	}
	n := func(i int) time.Duration { v, _ := strconv.Atoi(m[i]); return time.Duration(v) }
	mins, secs, ms := n(1), n(2), n(3)
	shown = mins*time.Minute + secs*time.Second + ms*time.Millisecond
	switch {
	case mins > 9:
		return shown, time.Minute
	case mins > 0 || secs > 9:
		return shown, time.Second
	}
	return shown, time.Millisecond
}
