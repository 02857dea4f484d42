package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/rules"
)

// natRouter makes p's router balance vip:80 to the server's port by DNAT,
// forget idle flows after timeout, and never pick a forgotten one up
// mid-stream: the next segment of a forgotten flow reaches the router's
// own stack, which answers with a reset.
func natRouter(t *testing.T, p *testnet.Path, vip string, port int, timeout time.Duration) {
	t.Helper()
	r := p.Router
	r.Run(t, "ip", "addr", "add", vip+"/32", "dev", "lo")
	r.Run(t, "nft", "add table ip svc")
	r.Run(t, "nft", "add chain ip svc pre { type nat hook prerouting priority -100 ; }")
	r.Run(t, "nft", fmt.Sprintf("add rule ip svc pre ip daddr %s tcp dport 80 dnat to %s:%d", vip, p.ServerAddr.V4, port))
	r.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", fmt.Sprint(int(timeout.Seconds())))
	r.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")
}

// watchReport runs tcpvet --json --watch with args, for watch at a 1 s
// interval.
func watchReport(t *testing.T, watch time.Duration, args ...string) *result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--json", "--watch", watch.String(), "--interval", "1s"}, args...)
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 && code != 3 {
		t.Fatalf("tcpvet %v: exit %d: %s", args, code, stderr.String())
	}
	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return &r
}

func socketAt(r *result, local string) *diag.Socket {
	for i := range r.Sockets {
		if r.Sockets[i].Local.String() == local {
			return &r.Sockets[i]
		}
	}
	return nil
}

// TestWatchTellsWhatKeepsFlowsAlive watches three connections through a
// router that forgets a flow after 6 s quiet: one pinged by its
// application with 17 bytes every 2 s (answered with as many, as HTTP/2
// answers a PING) and no keepalive, one with keepalive 2/1/3, one silent.
// The watch must tell what refreshes each and how long it sat quiet, judge
// only the silent one critical, and the kernel must agree: after the
// watch, a write on each resets the silent one alone.
func TestWatchTellsWhatKeepsFlowsAlive(t *testing.T) {
	t.Parallel()
	const (
		timeout = 6 * time.Second
		watch   = 8 * time.Second
		vip     = "198.18.100.1"
	)
	p := testnet.NewPath(t, 2, 3)
	natRouter(t, p, vip, 7001, timeout)
	p.Server.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "backend", Addr: ":7001", Mode: testnet.Echo}}})
	svc := vip + ":80"
	agent := p.Client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "pings", To: svc, PingEveryMS: 2000, PingBytes: 17},
		{Name: "keepalive", To: svc, Keepalive: &testnet.KA{Idle: 2, Interval: 1, Count: 3}},
		{Name: "silent", To: svc},
	}})
	connected := time.Now()

	// The server's end is watched alongside: it sees the client's probes
	// as the peer's.
	serverSide := make(chan *result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		run(context.Background(), []string{"--json", "--watch", watch.String(), "--interval", "1s", "--netns", p.Server.Path, "--host-netns", p.Router.Path}, &stdout, &stderr)
		var r result
		if json.Unmarshal(stdout.Bytes(), &r) != nil {
			serverSide <- nil
			return
		}
		serverSide <- &r
	}()
	r := watchReport(t, watch, "--netns", p.Client.Path, "--host-netns", p.Router.Path)
	if r.Watch == nil || r.Watch.Samples < 8 || math.Abs(r.Watch.DurationS-watch.Seconds()) > 1 {
		t.Fatalf("watch %+v, want %v in about 9 samples", r.Watch, watch)
	}
	found := findingsFor(r)
	want := map[string]struct {
		refreshed string
		quiet     float64
	}{
		"pings":     {diag.RefreshedByAppPings, 2},
		"keepalive": {diag.RefreshedByKeepalive, 2},
		// Nothing crossed it since the handshake.
		"silent": {diag.RefreshedByNone, r.TakenAt.Sub(connected).Seconds()},
	}
	critical := map[string]bool{}
	for name, local := range agent.Local {
		s := socketAt(r, local)
		if s == nil || s.Observed == nil {
			t.Fatalf("%s: socket %v without observation", name, s)
		}
		o := s.Observed
		t.Logf("%s: observed %+v pings %+v; tcp_info segs out/in %d/%d, data segs out/in %d/%d, bytes sent/received %d/%d, probes %d",
			name, *o, o.Pings, s.TCPInfo.SegsOut, s.TCPInfo.SegsIn, s.TCPInfo.DataSegsOut, s.TCPInfo.DataSegsIn, s.TCPInfo.BytesSent, s.TCPInfo.BytesReceived, s.TCPInfo.Probes)
		w := want[name]
		if o.RefreshedBy != w.refreshed {
			t.Errorf("%s: refreshed by %q, want %q", name, o.RefreshedBy, w.refreshed)
		}
		if math.Abs(o.LongestQuietS-w.quiet) > 1 {
			t.Errorf("%s: longest quiet %.3f s, want %.3f ± 1 s (the interval)", name, o.LongestQuietS, w.quiet)
		}
		for _, f := range found[local] {
			t.Logf("%s: %s %s: %s", name, f.Severity, f.Rule, f.Summary)
			critical[name] = critical[name] || f.Severity == rules.Critical
		}
	}
	if p := socketAt(r, agent.Local["pings"]).Observed.Pings; p == nil || p.SizeBytes != 17 || math.Abs(p.PeriodS-2) > 0.2 {
		t.Errorf("pings %+v, want 17 bytes every 2 s", p)
	}
	if o := socketAt(r, agent.Local["keepalive"]).Observed; o.KeepaliveProbesSent < 2 || o.KeepaliveProbesAnswered != o.KeepaliveProbesSent {
		t.Errorf("keepalive: %d probes seen, %d answered: want one every 2 s, all answered", o.KeepaliveProbesSent, o.KeepaliveProbesAnswered)
	}
	if fs := found[agent.Local["pings"]]; !hasRule(fs, rules.RuleNoKeepalive) {
		t.Errorf("pings: no no-keepalive finding saying what keeps it alive: %+v", fs)
	}

	// The silent flow has been quiet past the router's timeout since
	// before the watch ended; the others were kept alive all along.
	if rest := timeout + time.Second - time.Since(connected); rest > 0 {
		time.Sleep(rest)
	}
	for name := range agent.Local {
		agent.Write(t, name, 100)
	}
	reset := map[string]bool{}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		e, ok := agent.WaitFor("read-error", "", time.Until(deadline))
		if !ok {
			break
		}
		if e.Errno != int(syscall.ECONNRESET) {
			t.Errorf("%s: %s, want a reset", e.Name, e.Err)
		}
		reset[e.Name] = true
	}
	for name := range agent.Local {
		if critical[name] != reset[name] {
			t.Errorf("%s: judged critical %v, reset by the kernel %v", name, critical[name], reset[name])
		}
	}
	if !reset["silent"] || len(reset) != 1 {
		t.Errorf("scenario did not play out: reset %v, want silent alone", reset)
	}

	sr := <-serverSide
	if sr == nil {
		t.Fatal("the server-side watch printed no document")
	}
	for _, s := range sr.Sockets {
		if s.State != diag.Established || s.Observed == nil {
			continue
		}
		t.Logf("server %s: observed %+v", s.Remote, *s.Observed)
		if s.Observed.RefreshedBy == diag.RefreshedByKeepalive && s.Observed.PeerProbes == 0 {
			t.Errorf("server %s: keepalive without the peer's probes: %+v", s.Remote, *s.Observed)
		}
	}
	got := map[string]int{}
	for _, s := range sr.Sockets {
		if s.Observed != nil {
			got[s.Observed.RefreshedBy]++
		}
	}
	if got[diag.RefreshedByAppPings] != 1 || got[diag.RefreshedByKeepalive] != 1 || got[diag.RefreshedByNone] != 1 {
		t.Errorf("server side refreshed by %v, want one each of app-pings, keepalive, none", got)
	}
}

// TestWatchBadInput holds every bad --watch to one line on stderr and
// exit 2, as any bad command line.
func TestWatchBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--watch"}, "flag needs an argument: -watch"},
		{[]string{"--watch", "0"}, "a watch lasts a positive duration"},
		{[]string{"--watch", "-5s"}, "a watch lasts a positive duration"},
		{[]string{"--watch", "25h"}, "at most 24h"},
		{[]string{"--watch", "soon"}, "want a duration such as 30s"},
		{[]string{"--watch", "1s", "--interval", "2s"}, "a watch takes two samples at least"},
	} {
		t.Run(fmt.Sprint(tt.args), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"--json"}, tt.args...), &stdout, &stderr)
			if msg := stderr.String(); code != 2 || stdout.Len() != 0 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q: want exit 2 and one line with %q", code, stdout.String(), msg, tt.want)
			}
		})
	}
}

// TestWatchOnATerminal: without --json, a watch on a terminal is refused
// in one line, before anything is read; the live view is the terminal's
// watch.
func TestWatchOnATerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var stderr bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"--watch", "30s"}, tty, &stderr)
	if msg := stderr.String(); code != 2 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "add --json or pipe") || time.Since(start) > 5*time.Second {
		t.Errorf("exit %d after %v, stderr %q: want exit 2 at once and one line saying what to do", code, time.Since(start), msg)
	}
}

// TestWatchTargetGone watches a process that exits mid-watch: the document
// is what was seen until then, with a note saying so.
func TestWatchTargetGone(t *testing.T) {
	ns := testnet.New(t)
	a := ns.Start(t, testnet.Spec{
		Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:9002", Mode: testnet.Echo}},
		Dial:   []testnet.Dial{{Name: "c", To: "127.0.0.1:9002", PingEveryMS: 500, PingBytes: 17}},
	})
	time.AfterFunc(2500*time.Millisecond, a.Stop)
	start := time.Now()
	r := watchReport(t, 20*time.Second, "--pid", fmt.Sprint(a.PID))
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the watch went on %v after its target exited", took)
	}
	if r.Watch == nil || r.Watch.Samples < 2 || r.Watch.Samples > 4 {
		t.Fatalf("watch %+v, want the 2 to 4 samples before the exit", r.Watch)
	}
	if !slices.ContainsFunc(r.Notes, func(n diag.Note) bool {
		return n.Code == diag.NoteWatchTargetGone && strings.Contains(n.Text, fmt.Sprintf("pid %d has exited", a.PID)) && strings.Contains(n.Text, "until then")
	}) {
		t.Errorf("notes %q, want one saying the process exited and the document is what was seen until then", r.Notes)
	}
	s := socketAt(r, a.Local["c"])
	if s == nil || s.Observed == nil || s.Observed.RefreshedBy != diag.RefreshedByAppPings {
		t.Errorf("the pinging connection, as last seen: %+v, want it observed with its pings", s)
	}
}

// TestWatchKeepaliveNotSeen: a connection with keepalive 2/1/3 whose peer
// stops reading. With data waiting, Linux sends no keepalive probe, only
// window probes that back off (0.2, 0.4, 0.8 ... s apart), so the flow sits
// quiet past its first probe time; a watch must say keepalive is not what
// keeps it. The router forgets flows after 6 s quiet, and the kernel
// agrees: once a gap between window probes outlasts it, the next probe is
// answered with a reset.
func TestWatchKeepaliveNotSeen(t *testing.T) {
	t.Parallel()
	const vip = "198.18.100.1"
	p := testnet.NewPath(t, 2, 3)
	natRouter(t, p, vip, 7001, 8*time.Second)
	p.Server.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "stalled", Addr: ":7001", Mode: testnet.NoRead}}})
	agent := p.Client.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "stuck", To: vip + ":80", Keepalive: &testnet.KA{Idle: 2, Interval: 1, Count: 3}},
	}})
	agent.Write(t, "stuck", 64<<20)
	// The watch starts once the peer's window has closed (the persist
	// timer runs): its window probes, 0.2 s apart and doubling, then leave
	// a 6.4 s gap within the watch, longer than the keepalive's first probe
	// time, however slowly a loaded machine filled the buffers.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Client.Run(t, "ss", "-tnoH", "dport", "80"), "persist"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer's window never closed")
		}
	}
	r := watchReport(t, 14*time.Second, "--netns", p.Client.Path, "--host-netns", p.Router.Path)
	s := socketAt(r, agent.Local["stuck"])
	if s == nil || s.Observed == nil {
		t.Fatalf("socket %v, want it observed", s)
	}
	t.Logf("observed %+v; timer %+v; tcp_info segs out/in %d/%d, data segs out/in %d/%d, probes %d, backoff %d, snd_wnd %d",
		*s.Observed, s.Timer, s.TCPInfo.SegsOut, s.TCPInfo.SegsIn, s.TCPInfo.DataSegsOut, s.TCPInfo.DataSegsIn, s.TCPInfo.Probes, s.TCPInfo.Backoff, s.TCPInfo.SndWnd)
	var seen *rules.Finding
	for _, f := range findingsFor(r)[agent.Local["stuck"]] {
		t.Logf("%s %s: %s", f.Severity, f.Rule, f.Summary)
		if f.Rule == rules.RuleKeepaliveNotSeen {
			seen = &f
		}
	}
	if seen == nil || seen.Severity < rules.Warning || seen.Evidence.ObservedEvidence == nil || seen.Evidence.KeepaliveProbesSeen != 0 || seen.Evidence.PathEvidence == nil {
		t.Fatalf("finding %+v, want keepalive-not-seen, a warning at least, with what was seen and the path", seen)
	}
	if q := seen.Evidence.LongestQuietWatchedS; q < 4 {
		t.Errorf("quiet %v s in the watch, want past the first probe time (2 s) by more than a sample", q)
	}
	// The window probes' gap doubles past the router's 8 s (to 12.8 s): the
	// probe after it meets the router's own stack.
	e, ok := agent.WaitFor("write-error", "stuck", 20*time.Second)
	if !ok {
		t.Fatal("the kernel never reset the connection: the path did not forget it")
	}
	// A write blocked when the reset comes gets ECONNRESET; one made after
	// it, EPIPE (tcp_sendmsg finds sk_err set): a reset either way.
	if e.Errno != int(syscall.ECONNRESET) && e.Errno != int(syscall.EPIPE) {
		t.Errorf("write: %s, want a reset", e.Err)
	}
}
