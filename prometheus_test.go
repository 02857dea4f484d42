package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
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

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/rules"
)

// TestPrometheusScrapes runs tcpvet --serve on a namespace with known
// findings and a real Prometheus scraping it every second: /metrics passes
// promtool's lint, and PromQL over what Prometheus stored counts the same
// findings per rule and severity, and the same connections per state, as
// tcpvet --json says of the same namespace. With --all-netns, a
// second exporter sweeps every namespace, and its series of that namespace
// must say the same.
func TestPrometheusScrapes(t *testing.T) {
	prom, promtool := prometheusTools(t)
	bin := binary(t)

	pod, peer := testnet.New(t), testnet.New(t)
	_, peerAddr := testnet.Link(t, pod, peer, 61)
	peer.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "db", Addr: ":7001", Mode: testnet.Hold}}})
	to := peerAddr.V4 + ":7001"
	pod.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "bare-1", To: to},
		{Name: "bare-2", To: to},
		{Name: "bare-3", To: to},
		{Name: "tuned", To: to, Keepalive: &testnet.KA{Idle: 30, Interval: 5, Count: 3}, UserTimeoutMS: 20000},
	}})
	// A firewall that resets flows quiet for five minutes: long enough that
	// no connection reaches it during the test, so the findings hold still.
	middlebox := []string{"--middlebox", "fw=300s,reset"}

	// What --json says: the reference the scraped series must match.
	var out bytes.Buffer
	cmd := exec.Command(bin, append([]string{"--json", "--netns", pod.Path}, middlebox...)...)
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tcpvet --json: %v", err)
	}
	var doc result
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("decode --json: %v", err)
	}
	wantFindings, wantConns := map[string]float64{}, map[string]float64{}
	for _, f := range doc.Findings {
		wantFindings[f.Rule+"/"+f.Severity.String()]++
	}
	for _, s := range doc.Sockets {
		wantConns[s.State.String()]++
	}
	if wantFindings[rules.RuleNoKeepalive+"/critical"] != 3 {
		t.Fatalf("the scenario is not what this test needs: --json finds %v, want 3 no-keepalive/critical", wantFindings)
	}
	inode := fmt.Sprint(doc.Target.NetnsInode)

	targets := [][]string{{"--netns", pod.Path}, {"--all-netns"}}
	type exporter struct {
		name, addr string
		stop       func() int
	}
	var exporters []exporter
	var addrs []string
	for _, target := range targets {
		addr, stop := startServe(t, bin, slices.Concat([]string{"--serve", "127.0.0.1:0", "--interval", "500ms"}, target, middlebox)...)
		exporters = append(exporters, exporter{target[0], addr, stop})
		addrs = append(addrs, addr)

		// The exposition as served once a sweep is in, through promtool's
		// own lint.
		waitHealthy(t, "http://"+addr+"/healthz")
		body := httpGet(t, "http://"+addr+"/metrics")
		lint := exec.Command(promtool, "check", "metrics")
		lint.Stdin = strings.NewReader(body)
		if b, err := lint.CombinedOutput(); err != nil {
			t.Errorf("%s: promtool check metrics: %v\n%s", target[0], err, b)
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "tcpvet_") && strings.Contains(line, peerAddr.V4) {
				t.Errorf("%s: an address in a series: %s", target[0], line)
			}
		}
	}

	promURL := startPrometheus(t, prom, addrs...)

	// Prometheus stores what it scrapes; ask it, not tcpvet.
	query := func(q string) map[string]float64 {
		t.Helper()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Metric map[string]string
					Value  [2]any
				}
			}
		}
		if err := json.Unmarshal([]byte(httpGet(t, promURL+"/api/v1/query?query="+url.QueryEscape(q))), &r); err != nil || r.Status != "success" {
			t.Fatalf("query %s: %v %+v", q, err, r)
		}
		got := map[string]float64{}
		for _, s := range r.Data.Result {
			var v float64
			fmt.Sscan(s.Value[1].(string), &v)
			key := s.Metric["rule"] + "/" + s.Metric["severity"]
			if st, ok := s.Metric["state"]; ok {
				key = st
			}
			got[key] = v
		}
		return got
	}
	for _, e := range exporters {
		sel := fmt.Sprintf(`instance=%q, netns=%q`, e.addr, inode)
		findingsQ := fmt.Sprintf(`sum by (rule, severity) (tcpvet_findings{%s, pod=""})`, sel)
		connsQ := fmt.Sprintf(`sum by (state) (tcpvet_connections{%s})`, sel)
		var gotFindings, gotConns map[string]float64
		deadline := time.Now().Add(20 * time.Second)
		for {
			gotFindings, gotConns = query(findingsQ), query(connsQ)
			if maps.Equal(gotFindings, wantFindings) && maps.Equal(gotConns, wantConns) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Prometheus has\n  findings %v\n  connections %v\ntcpvet --json says\n  findings %v\n  connections %v",
					e.name, gotFindings, gotConns, wantFindings, wantConns)
			}
			time.Sleep(300 * time.Millisecond)
		}
		// The sweep Prometheus holds is fresh: the loop runs.
		if age := query(fmt.Sprintf(`tcpvet_last_sweep_age_seconds{instance=%q}`, e.addr)); age["/"] > 5 {
			t.Errorf("%s: the last sweep Prometheus saw was %v s old", e.name, age["/"])
		}
		if code := e.stop(); code != 0 {
			t.Errorf("%s: tcpvet --serve exited %d on SIGINT, want 0", e.name, code)
		}
	}
	// One namespace that stays put: no sweep of it failed.
	if errs := query(fmt.Sprintf(`tcpvet_sweep_errors_total{instance=%q}`, exporters[0].addr)); errs["/"] != 0 {
		t.Errorf("tcpvet_sweep_errors_total = %v", errs["/"])
	}
}

// prometheusTools finds Debian's prometheus and promtool, or skips saying how
// to install them.
func prometheusTools(t *testing.T) (prom, promtool string) {
	t.Helper()
	testnet.RequireRoot(t)
	for _, name := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("needs %s: `make deps` installs Debian's package prometheus (scripts/deb-packages)", name)
		}
	}
	return "prometheus", "promtool"
}

// startServe runs the built tcpvet with args, which include --serve, and
// returns the address it says it bound and a function that interrupts it
// and returns its exit status.
func startServe(t *testing.T, bin string, args ...string) (string, func() int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	var rest bytes.Buffer
	first := ""
	if lines.Scan() {
		first = lines.Text()
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		io.Copy(&rest, stderr)
	}()
	var once sync.Once
	code := -1
	stop := func() int {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGINT)
			timer := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
			<-drained
			cmd.Wait()
			timer.Stop()
			code = cmd.ProcessState.ExitCode()
			if rest.Len() > 0 {
				t.Logf("tcpvet --serve said:\n%s", rest.String())
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	const prefix = "tcpvet: serving /metrics and /healthz on "
	addr, _, ok := strings.Cut(strings.TrimPrefix(first, prefix), ",")
	if !strings.HasPrefix(first, prefix) || !ok {
		stop()
		t.Fatalf("tcpvet %v: first line %q, then %s", args, first, rest.String())
	}
	return addr, stop
}

// startPrometheus runs Prometheus scraping targets every second, its storage
// in the test's temporary directory, and returns its URL once it is ready.
func startPrometheus(t *testing.T, prom string, targets ...string) string {
	t.Helper()
	dir := t.TempDir()
	var quoted []string
	for _, target := range targets {
		quoted = append(quoted, strconv.Quote(target))
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tcpvet
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	web := freeLoopbackAddr(t)
	var log bytes.Buffer
	cmd := exec.Command(prom,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web,
		"--log.level=warn")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus said:\n%s", log.String())
		}
	})
	base := "http://" + web
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 15s: %s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeLoopbackAddr is a loopback address with a port nothing listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", u, resp.StatusCode, err, b)
	}
	return string(b)
}

// waitHealthy polls an exporter's /healthz until it answers 200.
func waitHealthy(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not healthy after 15s (%v)", u, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeCost measures what tcpvet --serve costs a node: its CPU time and
// resident memory while it sweeps a set of namespaces every --interval and
// is scraped every 10 s. It runs only when TCPVET_SERVE_COST names how long
// to measure (README.md gives the figures of a one-minute run):
//
//	TCPVET_SERVE_COST=60s TCPVET_SERVE_INTERVAL=30s go test -run TestServeCost -v .
//
// TCPVET_SERVE_NS namespaces (default 20) each hold about 200 idle
// loopback sockets and two connections out to a peer namespace of their
// own, without keepalive.
// tcpvet sweeps every namespace of the machine (--all-netns).
func TestServeCost(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("TCPVET_SERVE_COST"))
	if err != nil {
		t.Skip("set TCPVET_SERVE_COST=60s to measure what --serve costs")
	}
	interval := cmp.Or(os.Getenv("TCPVET_SERVE_INTERVAL"), "30s")
	n, _ := strconv.Atoi(cmp.Or(os.Getenv("TCPVET_SERVE_NS"), "20"))
	bin := binary(t)
	first := &testnet.NS{Path: "/proc/self/ns/net"}
	for range n {
		ns, peer := testnet.New(t), testnet.New(t)
		if first.Name == "" {
			first = ns
		}
		_, peerAddr := testnet.Link(t, ns, peer, 1)
		peer.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "db", Addr: ":7001", Mode: testnet.Hold}}})
		for _, spec := range testnet.FarmSpecs(200) {
			spec.Dial = []testnet.Dial{{Name: "a", To: peerAddr.V4 + ":7001"}, {Name: "b", To: peerAddr.V4 + ":7001"}}
			ns.Start(t, spec)
		}
	}
	args := []string{"--serve", "127.0.0.1:0", "--interval", interval, "--middlebox", "fw=350s,reset", "--all-netns"}
	addr, stop := startServe(t, bin, args...)
	pid := servePID(t, addr)
	waitHealthy(t, "http://"+addr+"/healthz")

	cpu0, start := cpuTime(t, pid), time.Now()
	var rssSum, rssMax, samples int
	for time.Since(start) < d {
		rss := statusKB(t, pid, "VmRSS")
		if samples%10 == 0 {
			b := httpGet(t, "http://"+addr+"/metrics")
			if os.Getenv("TCPVET_SERVE_TRACE") != "" {
				t.Logf("%v: RSS %d kB %s %s", time.Since(start).Round(time.Second), rss,
					regexp.MustCompile(`(?m)^go_memstats_heap_inuse_bytes .*$`).FindString(b), regexp.MustCompile(`(?m)^go_goroutines .*$`).FindString(b))
			}
		}
		rssSum, rssMax, samples = rssSum+rss, max(rssMax, rss), samples+1
		time.Sleep(time.Second)
	}
	cpu, wall := cpuTime(t, pid)-cpu0, time.Since(start)
	body := httpGet(t, "http://"+addr+"/metrics")
	series := strings.Count(body, "\ntcpvet_findings{") + strings.Count(body, "\ntcpvet_connections{")
	socks := 0.0
	for _, m := range regexp.MustCompile(`(?m)^tcpvet_connections\{.*\} (\S+)$`).FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		socks += v
	}
	t.Logf("tcpvet %s, over %d namespaces (%d made here, of %d sockets each), %.0f sockets: CPU %.2f s over %v (%.2f%% of a core); RSS mean %.1f MiB, max %.1f MiB (VmHWM %.1f MiB); %d series of findings and connections; last sweep took %s s",
		strings.Join(args, " "), int(metricValue(body, "tcpvet_namespaces")), n, 203, socks,
		cpu.Seconds(), wall.Round(time.Second), 100*cpu.Seconds()/wall.Seconds(),
		float64(rssSum)/float64(samples)/1024, float64(rssMax)/1024, float64(statusKB(t, pid, "VmHWM"))/1024, series,
		strconv.FormatFloat(metricValue(body, "tcpvet_sweep_duration_seconds"), 'f', 2, 64))
	stop()
}

// servePID finds the process listening on addr, a tcpvet --serve.
func servePID(t *testing.T, addr string) int {
	t.Helper()
	out := testnet.Run(t, "ss", "-Htlnp", "src", addr)
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no process listens on %s: %q", addr, out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// cpuTime is the user and system time pid has used (proc(5), fields 14, 15).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	const clkTck = 100 // USER_HZ on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / clkTck
}

// statusKB reads a kB field of /proc/PID/status.
func statusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return kb
}

// metricValue is the value of the one series name in an exposition.
func metricValue(body, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestServeBadInput holds --serve to one line on stderr and exit 2 for an
// address it will not or cannot bind, and for flags an exporter cannot
// honour.
func TestServeBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--serve", "9393"}, "want host:port"},
		{[]string{"--serve", "localhost:9393"}, `"localhost" is not an IP address`},
		{[]string{"--serve", ":http"}, `port "http" is not a number`},
		{[]string{"--serve", ":65536"}, `port "65536" is not a number from 0 to 65535`},
		{[]string{"--serve", "127.0.0.1:9393", "--json"}, "--serve and --json"},
		{[]string{"--serve", "127.0.0.1:9393", "--fail-on", "critical"}, "--fail-on means nothing to --serve"},
		{[]string{"--serve", "127.0.0.1:9393", "--watch", "1m"}, "--serve and --watch"},
		{[]string{"--serve", ""}, "--serve takes an address"},
		// 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind
		// fails, and nothing is sent anywhere.
		{[]string{"--serve", "192.0.2.1:9393"}, "cannot assign requested address"},
		{[]string{"--serve", busy.Addr().String()}, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			msg := stderr.String()
			if stdout.Len() != 0 || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tcpvet: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("stdout %q, stderr %q; want one line with %q", stdout.String(), msg, tt.want)
			}
		})
	}
}

// TestServeStops: run with --serve returns 0 once its context ends, and
// leaves nothing listening.
func TestServeStops(t *testing.T) {
	addr := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr progOutput
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"--serve", addr, "--interval", "200ms"}, io.Discard, &stderr) }()
	waitHealthy(t, "http://"+addr+"/healthz")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after the context ended: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--serve still running 10 s after its context ended")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("something still listens on %s", addr)
	}
}

// TestServePIDGone: an exporter of one process's namespace exits, with one
// line saying why, once the process has exited, rather than serve its
// empty namespace as healthy; until then it serves.
func TestServePIDGone(t *testing.T) {
	t.Parallel()
	proc := exec.Command("unshare", "-n", "sleep", "60")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	defer proc.Process.Kill()
	addr := freeLoopbackAddr(t)
	var stderr progOutput
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"--serve", addr, "--pid", strconv.Itoa(proc.Process.Pid), "--interval", "200ms"}, io.Discard, &stderr)
	}()
	waitHealthy(t, "http://"+addr+"/healthz")
	// Killed, not reaped: a zombie still answers kill(pid, 0).
	proc.Process.Kill()
	defer proc.Wait()
	select {
	case code := <-done:
		want := fmt.Sprintf("pid %d has exited: nothing left to serve", proc.Process.Pid)
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("exit %d, stderr %q; want 1 and a line saying %q", code, stderr.String(), want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("--serve --pid still running 10 s after its process exited: %s", stderr.String())
	}
}
