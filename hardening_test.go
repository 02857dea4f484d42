package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// nstat reads one kernel TCP counter of ns.
func nstat(t *testing.T, ns *testnet.NS, counter string) int {
	t.Helper()
	// -s: no history file, which nstat would otherwise leave in /tmp.
	out := ns.Run(t, "nstat", "-asz", counter)
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == counter {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("nstat: no %s in %q", counter, out)
	return 0
}

// TestChurn snapshots a namespace while thousands of connections a second
// open and reset and processes holding sockets start and die. Every
// snapshot must succeed in time, report each socket once, and name only a
// process that really owns the socket.
func TestChurn(t *testing.T) {
	ns := testnet.New(t)
	pidByPort := map[uint16]int{}
	agentPIDs := map[int]bool{}
	for i := range 2 {
		port := uint16(9200 + i)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		a := ns.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: addr, Mode: testnet.Hold}}, Churn: []string{addr, addr}})
		pidByPort[port] = a.PID
		agentPIDs[a.PID] = true
	}
	target, err := netns.FromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()

	opensBefore := nstat(t, ns, "TcpActiveOpens")
	start := time.Now()
	done := make(chan struct{})
	type result struct {
		snap *diag.Snapshot
		err  error
		took time.Duration
	}
	results := make(chan result, 1000)
	go func() {
		defer close(results)
		for {
			select {
			case <-done:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t0 := time.Now()
			snap, err := diag.Take(ctx, diag.Options{Target: target})
			cancel()
			results <- result{snap, err, time.Since(t0)}
		}
	}()

	// Processes come and go: each owns its own port, so any socket on that
	// port can only be its.
	var agents []*testnet.Agent
	for k := range 40 {
		port := uint16(9300 + k)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		a := ns.Start(t, testnet.Spec{
			Listen: []testnet.Listener{{Name: "l", Addr: addr, Mode: testnet.Hold}},
			Dial:   []testnet.Dial{{Name: "c", To: addr}},
		})
		pidByPort[port] = a.PID
		agentPIDs[a.PID] = true
		agents = append(agents, a)
		if k >= 3 {
			agents[k-3].Stop()
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	elapsed := time.Since(start)
	opens := nstat(t, ns, "TcpActiveOpens") - opensBefore

	n, sockets := 0, 0
	var slowest time.Duration
	for r := range results {
		if r.err != nil {
			t.Errorf("snapshot %d failed: %v", n, r.err)
			continue
		}
		n++
		sockets += len(r.snap.Sockets)
		slowest = max(slowest, r.took)
		ids, inodes := map[diag.Cookie]bool{}, map[uint32]bool{}
		for _, s := range r.snap.Sockets {
			if ids[s.ID] {
				t.Errorf("snapshot %d reports socket %s twice", n, s.ID)
			}
			ids[s.ID] = true
			if s.Inode != 0 && inodes[s.Inode] {
				t.Errorf("snapshot %d reports inode %d twice", n, s.Inode)
			}
			inodes[s.Inode] = true
			port := s.Local.Port()
			if _, ok := pidByPort[port]; !ok {
				port = s.Remote.Port()
			}
			owner, ok := pidByPort[port]
			for _, p := range s.Processes {
				switch {
				case ok && p.PID != owner:
					t.Errorf("snapshot %d: socket %s %v -> %v attributed to pid %d, but only pid %d holds sockets on port %d",
						n, s.ID, s.Local, s.Remote, p.PID, owner, port)
				case !ok && !agentPIDs[p.PID]:
					// A port the test did not choose: Go's start-up probe
					// binds an IPv6 socket to [::1]:0 and closes it. Only
					// the test's own processes live in this namespace.
					t.Errorf("snapshot %d: socket %s %v -> %v attributed to pid %d, which the test never started",
						n, s.ID, s.Local, s.Remote, p.PID)
				}
			}
		}
	}
	rate := float64(opens) / elapsed.Seconds()
	t.Logf("%d snapshots in %v (slowest %v, %d sockets on average) while %d connections opened (%.0f/s) and 40 processes came and went",
		n, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond), sockets/max(n, 1), opens, rate)
	if n < 5 {
		t.Errorf("only %d snapshots", n)
	}
	if rate < 1000 {
		t.Errorf("churn too slow to mean anything: %.0f connections/s", rate)
	}
}

// The only netfilter messages tcpvet may send: a conntrack dump, or a GET
// of one entry (the same type without NLM_F_DUMP), and the nftables
// listings of tables, chains, rules and the ruleset's generation.
var (
	ctDump     = regexp.MustCompile(`nlmsg_type=(NFNL_SUBSYS_CTNETLINK<<8\|IPCTNL_MSG_CT_GET|0x101)[, ]`)
	nftListing = regexp.MustCompile(`nlmsg_type=(NFNL_SUBSYS_NFTABLES<<8\|NFT_MSG_GET(TABLE|CHAIN|RULE|GEN)|0xa0[147]|0xa10)[, ]`)
)

// TestReadOnlyUnderStrace runs a tcpvet --watch under strace against a busy
// namespace and holds it to its promise: no write under /proc, no SOCK_DESTROY, nothing
// but getsockopt and close on a duplicated socket, and every connection it
// looked at still open, unchanged and working afterwards.
func TestReadOnlyUnderStrace(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("needs strace")
	}
	s := newScenario(t)
	// A rule that needs conntrack makes tcpvet dump the target's table,
	// which must be a dump and nothing else.
	s.target.Run(t, "nft", "add table ip watch")
	s.target.Run(t, "nft", "add chain ip watch out { type filter hook output priority 0 ; }")
	s.target.Run(t, "nft", "add rule ip watch out ct state established counter accept")
	s.client.Write(t, "ka", 100) // conntrack picks the flow up mid-stream
	s.client.Wait(t, "written", "ka", 5*time.Second)
	before := s.target.SS(t)
	optsBefore := runJSON(t, "--netns", s.target.Path)

	trace := filepath.Join(t.TempDir(), "strace.txt")
	cmd := exec.Command("strace", "-f", "-qq", "-s", "256", "-o", trace,
		"-e", "trace=socket,openat,open,setsockopt,shutdown,pidfd_getfd,close,dup,dup2,dup3,fcntl,ioctl,sendto,sendmsg,write,pwrite64",
		// A watch: three snapshots, and the subscriptions to deaths and
		// conntrack ends, which must only listen.
		binary(t), "--json", "--watch", "2s", "--netns", s.target.Path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tcpvet under strace: %v\n%s", err, out)
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	dups := map[string]bool{}      // live duplicates, by fd (threads share the fd table)
	netfilter := map[string]bool{} // open NETLINK_NETFILTER sockets, by fd
	var dupCount, ctDumps, nftReads int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		call := f[1]
		name, args, _ := strings.Cut(call, "(")
		fd, _, _ := strings.Cut(args, ",")
		fd = strings.TrimSuffix(fd, ")")
		switch {
		case strings.Contains(line, "/proc/") && (name == "openat" || name == "open") &&
			(strings.Contains(line, "O_WRONLY") || strings.Contains(line, "O_RDWR") || strings.Contains(line, "O_CREAT")):
			t.Errorf("opened /proc for writing: %s", line)
		case strings.Contains(line, "SOCK_DESTROY") || strings.Contains(line, "nlmsg_type=0x15"):
			t.Errorf("sent SOCK_DESTROY: %s", line)
		case name == "socket" && strings.Contains(line, "NETLINK_NETFILTER"):
			if _, ret, ok := strings.Cut(line, " = "); ok && !strings.HasPrefix(ret, "-") {
				netfilter[strings.Fields(ret)[0]] = true
			}
		case netfilter[fd] && (name == "sendmsg" || name == "sendto"):
			// Only a plain conntrack dump or GET, (1<<8)|IPCTNL_MSG_CT_GET:
			// not CT_GET_CTRZERO, which zeroes counters, nor a delete;
			// and to nftables only the listings of chains and rules,
			// never a batch that changes them. strace names the type or
			// prints it. One sendmsg can carry several messages (tcpvet
			// sends its GETs in batches): each must be one of these.
			msgs := strings.Split(line, "nlmsg_type=")[1:]
			if len(msgs) == 0 {
				t.Errorf("sent netfilter something strace does not decode: %s", line)
			}
			for _, m := range msgs {
				switch m = "nlmsg_type=" + m; {
				case ctDump.MatchString(m):
					ctDumps++
				case nftListing.MatchString(m):
					nftReads++
				default:
					t.Errorf("sent netfilter a message other than a conntrack dump or GET or an nftables listing: %s", line)
				}
			}
		case name == "pidfd_getfd":
			if _, ret, ok := strings.Cut(line, " = "); ok && !strings.HasPrefix(ret, "-") {
				dups[strings.Fields(ret)[0]] = true
				dupCount++
			}
		case name == "close":
			delete(dups, fd)
			delete(netfilter, fd)
		case dups[fd]:
			t.Errorf("touched a duplicated socket with %s: %s", name, line)
		}
	}
	if dupCount == 0 || ctDumps == 0 {
		t.Fatalf("%d pidfd_getfd and %d conntrack dumps traced: the test proves nothing", dupCount, ctDumps)
	}
	if len(dups) != 0 {
		t.Errorf("duplicates never closed: %v", dups)
	}
	t.Logf("%d sockets duplicated, each only read with getsockopt and closed; sent to netfilter only %d conntrack dumps and %d nftables listings", dupCount, ctDumps, nftReads)

	// Every connection is still there, in the same state, with the same options.
	after := s.target.SS(t)
	for id, x := range before {
		if x.State != "ESTABLISHED" && x.State != "LISTEN" {
			continue
		}
		if y, ok := after[id]; !ok || y.State != x.State {
			t.Errorf("socket %s (%s %s -> %s) changed to %+v after tcpvet", id, x.State, x.Local, x.Remote, y)
		}
	}
	optsAfter := runJSON(t, "--netns", s.target.Path)
	was := map[diag.Cookie]diag.Keepalive{}
	for _, x := range optsBefore.Sockets {
		was[x.ID] = x.Keepalive
	}
	for _, x := range optsAfter.Sockets {
		if k, ok := was[x.ID]; ok && kaString(k) != kaString(x.Keepalive) {
			t.Errorf("socket %s keepalive changed from %s to %s", x.ID, kaString(k), kaString(x.Keepalive))
		}
	}
	// And the idle connections still carry data.
	for _, name := range []string{"idle", "ka", "v6", "user-timeout"} {
		s.client.Write(t, name, 100)
		s.client.Wait(t, "written", name, 5*time.Second)
	}
	if e, bad := s.client.WaitFor("read-error", "", time.Second); bad {
		t.Errorf("%s broke after tcpvet looked at it: %s", e.Name, e.Err)
	}
}

// TestNoThreadLeftInTheTarget takes snapshots of a foreign namespace (with
// a host namespace to enter for its sysctls) and then checks that every
// thread of the process, and many new goroutines, are in our own.
func TestNoThreadLeftInTheTarget(t *testing.T) {
	s := newScenario(t)
	target, err := netns.FromPath(s.target.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	host, err := netns.FromPath(s.peer.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	self, err := netns.Self()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := diag.Take(context.Background(), diag.Options{Target: target, Host: host}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		if fi, err := os.Stat(task); err == nil && fi.Sys().(*syscall.Stat_t).Ino != self.Inode {
			t.Errorf("%s is in netns %d after snapshots, want our own %d", task, fi.Sys().(*syscall.Stat_t).Ino, self.Inode)
		}
	}
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if fi, err := os.Stat("/proc/thread-self/ns/net"); err == nil && fi.Sys().(*syscall.Stat_t).Ino != self.Inode {
				t.Errorf("a goroutine runs in netns %d", fi.Sys().(*syscall.Stat_t).Ino)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d threads checked", len(tasks))
}

func kaString(k diag.Keepalive) string {
	if k.Enabled == nil {
		return "unknown"
	}
	return fmt.Sprintf("%v %d/%d/%d", *k.Enabled, *k.IdleS, *k.IntervalS, *k.Probes)
}

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("tcpvet (pid %d) is gone: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

// TestSoakLiveView runs the live view, refreshing ten times a second,
// against a namespace that churns thousands of connections a second, for
// $TCPVET_SOAK (20s by default; make soak runs an hour), and checks that its
// memory levels off instead of growing with time.
func TestSoakLiveView(t *testing.T) {
	t.Parallel() // it watches a view for a while
	d := 20 * time.Second
	if v := os.Getenv("TCPVET_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("TCPVET_SOAK=%q: %v", v, err)
		}
	}
	s := newScenario(t)
	s.target.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:9400", Mode: testnet.Hold}},
		Churn: []string{"127.0.0.1:9400"}})
	tm := testnet.NewTmux(t, 160, 40, []string{"TERM=xterm-256color"}, binary(t), "--netns", s.target.Path, "--interval", "100ms")
	tm.WaitFor(10*time.Second, "STATE")
	pid := tm.CommandPID()
	if pid == 0 {
		t.Fatal("cannot find tcpvet's pid")
	}
	start := time.Now()
	var warm, peak, last int
	samples := []string{}
	for time.Since(start) < d {
		time.Sleep(d / 20)
		last = rssKiB(t, pid)
		peak = max(peak, last)
		if warm == 0 && time.Since(start) >= d/4 {
			warm = last
		}
		samples = append(samples, fmt.Sprintf("%s:%dM", time.Since(start).Round(time.Second), last/1024))
	}
	if exited, status := tm.Exited(); exited {
		t.Fatalf("tcpvet exited (%s) during the soak:\n%s", status, tm.Screen(false))
	}
	// A view that stopped refreshing would also stop growing: make sure it
	// still takes snapshots at the end.
	taken := regexp.MustCompile(`taken (\d\d:\d\d:\d\d)`)
	before := taken.FindString(tm.Screen(false))
	time.Sleep(1500 * time.Millisecond)
	if after := taken.FindString(tm.Screen(false)); before == "" || after == before {
		t.Errorf("the live view stopped refreshing: %q, then %q", before, after)
	}
	t.Logf("RSS over %v at 10 refreshes/s: warm %d KiB, peak %d KiB, end %d KiB; %s", d, warm, peak, last, strings.Join(samples, " "))
	if last > warm*3/2+16*1024 {
		t.Errorf("RSS grew from %d KiB to %d KiB", warm, last)
	}
	tm.Keys("q")
}
