// Command tcpvet finds the TCP connections of a pod, a process or a network
// namespace that a silent peer, an idle-timeout on the path or untuned
// keepalive will break, and says how to fix them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/netns"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
	"github.com/tcpvet/tcpvet/ui"
	"github.com/tcpvet/tcpvet/watch"
)

// version is stamped at release time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `tcpvet: find the TCP connections that an idle timeout on the path, a dead peer or
untuned keepalive will break, and say how to fix them.

Usage:
  tcpvet [flags]                 the namespace tcpvet runs in (kubectl debug shares the pod's)
  tcpvet --pid N [flags]         the network namespace of process N
  tcpvet --netns PATH [flags]    a namespace file (/run/netns/NAME, /proc/N/ns/net, a bind mount)
  tcpvet --all-netns [flags]     every network namespace of the machine, named by pod

On a terminal it opens a live view; piped, it prints a table and the findings; --json prints
one snapshot for scripts. --watch DURATION samples every --interval for that long first, and
judges each connection by what was seen to keep it alive (data, pings, keepalive probes).
--serve ADDR exports counts of findings and connections to Prometheus.

Examples:
  kubectl debug -it pod/api-7d9 --image=ghcr.io/tcpvet/tcpvet --target=api --profile=general -- tcpvet
  sudo tcpvet --pid "$(pgrep -o grpc-server)" --middlebox aws-nlb
  tcpvet --json --fail-on critical | jq '.findings[] | .summary'
  tcpvet --pid "$(pgrep -o envoy)" --watch 1m --json | jq '.sockets[].observed'
  sudo tcpvet --all-netns --json | jq '.namespaces[] | select(.findings != []) | .pod'

Exit status: 0 fine, 1 could not inspect (with --all-netns --fail-on, any namespace), 2 bad command line,
3 a finding at or above --fail-on.

Flags:
`

// config is the parsed command line.
type config struct {
	pid         int
	netnsPath   string
	hostNetns   string
	hostSet     bool // --host-netns was given, so failing to open it is an error
	json        bool
	interval    time.Duration
	watch       time.Duration
	dupSockets  bool
	version     bool
	middleboxes []rules.Middlebox
	failOn      *rules.Severity
	allNetns    bool
	criSocket   string
	serve       string // --serve: the exporter's address
}

func parseFlags(args []string, stdout io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("tcpvet", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&c.pid, "pid", 0, "inspect the network namespace of process `N`")
	fs.StringVar(&c.netnsPath, "netns", "", "inspect the network namespace file at `PATH`")
	fs.StringVar(&c.hostNetns, "host-netns", "/proc/1/ns/net", "the node's network namespace, for its sysctls, conntrack and IPVS (`PATH`)")
	fs.BoolVar(&c.json, "json", false, "print one snapshot as JSON and exit")
	fs.DurationVar(&c.interval, "interval", time.Second, "refresh the live view, or sample a --watch, every `DURATION`")
	fs.Func("watch", "watch for `DURATION`, sampling every --interval, then print one snapshot with what was seen to keep each connection alive (with --json, or piped)", func(v string) error {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return errors.New("want a duration such as 30s or 5m")
		case d <= 0:
			return errors.New("a watch lasts a positive duration")
		case d > watch.MaxDuration:
			return fmt.Errorf("at most %.0fh: longer is a job for a monitoring system", watch.MaxDuration.Hours())
		}
		c.watch = d
		return nil
	})
	fs.BoolVar(&c.dupSockets, "dup-sockets", false, "read socket options even where duplicating a socket may reset its cgroup-v1 net_cls/net_prio marks")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.BoolVar(&c.allNetns, "all-netns", false, "inspect every network namespace of the machine once, named by pod, the host read once")
	fs.StringVar(&c.serve, "serve", "", "export findings to Prometheus: serve /metrics and /healthz on `ADDR` (host:port), sweeping every --interval")
	fs.StringVar(&c.criSocket, "cri-socket", "", "the container runtime's CRI socket that names pods, for --all-netns (`PATH`; default "+strings.Join(node.CRISockets, ", then ")+")")
	fs.Func("middlebox", "an idle timeout on the path: a preset (aws-nlb, aws-nat-gateway, azure-lb, gcp-vpc-firewall, gcp-cloud-nat, ipvs, ...) or `NAME=DURATION[,reset|,drop]`; repeatable", func(v string) error {
		mb, err := rules.ParseMiddlebox(v)
		if err == nil {
			c.middleboxes = append(c.middleboxes, mb)
		}
		return err
	})
	fs.Func("fail-on", "exit 3 when any finding is at or above `SEVERITY` (info, warning, critical)", func(v string) error {
		sev, err := rules.ParseSeverity(v)
		if err == nil {
			c.failOn = &sev
		}
		return err
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return c, err
		}
		return c, fmt.Errorf("%w (see tcpvet --help)", err)
	}
	pidSet, serveSet := false, false
	fs.Visit(func(f *flag.Flag) {
		c.hostSet = c.hostSet || f.Name == "host-netns"
		pidSet = pidSet || f.Name == "pid"
		serveSet = serveSet || f.Name == "serve"
	})
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see tcpvet --help)", fs.Arg(0))
	}
	if c.pid != 0 && c.netnsPath != "" {
		return c, errors.New("--pid and --netns both name a target: give one")
	}
	if c.allNetns && (c.pid != 0 || c.netnsPath != "") {
		return c, errors.New("--all-netns reads every namespace: it takes no --pid or --netns")
	}
	if c.allNetns && c.watch > 0 {
		return c, errors.New("--watch follows one namespace: it takes no --all-netns (a sweep reads each namespace once)")
	}
	if c.criSocket != "" && !c.allNetns {
		return c, errors.New("--cri-socket names pods for --all-netns: give --all-netns too")
	}
	if c.criSocket != "" {
		// A path typed is a path meant: unlike the defaults tried, its
		// absence is no note but a mistake.
		fi, err := os.Stat(c.criSocket)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return c, fmt.Errorf("--cri-socket %s: no such file", c.criSocket)
		case err != nil:
			return c, fmt.Errorf("--cri-socket %w", err)
		case fi.Mode()&os.ModeSocket == 0:
			return c, fmt.Errorf("--cri-socket %s: not a socket", c.criSocket)
		}
	}
	if c.watch > 0 && c.watch < c.interval {
		return c, fmt.Errorf("--watch %v is shorter than --interval %v: a watch takes two samples at least", c.watch, c.interval)
	}
	if serveSet && c.serve == "" {
		return c, errors.New("--serve takes an address, as in 127.0.0.1:9393 or :9393")
	}
	if c.interval < 100*time.Millisecond {
		return c, fmt.Errorf("--interval %v: too short, 100ms at least", c.interval)
	}
	if pidSet && c.pid <= 0 {
		return c, fmt.Errorf("--pid %d: a PID is a positive number", c.pid)
	}
	return c, checkServe(c)
}

func main() {
	// SIGTERM is how Kubernetes stops the exporter's pod.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is tcpvet without the process around it, so tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpvet: %v\n", err)
		return 2
	}
	if cfg.version {
		fmt.Fprintf(stdout, "tcpvet %s\n", version)
		return 0
	}
	if cfg.watch > 0 && !cfg.json && isTerminal(stdout) {
		// The live view is the terminal's watch; a terminal silent for the
		// whole watch would look hung.
		fmt.Fprintln(stderr, "tcpvet: --watch prints one report when it ends: add --json or pipe the output (on a terminal, the live view already watches)")
		return 2
	}
	if cfg.serve != "" {
		return serve(ctx, cfg, stderr)
	}
	var worst func() (rules.Severity, bool)
	var sw *node.Sweep
	if cfg.allNetns {
		var serr error
		sw, serr = sweepAll(ctx, cfg, stdout)
		worst, err = sw.Worst, serr
	} else {
		rep, ierr := inspect(ctx, cfg, stdout)
		worst, err = rep.Worst, ierr
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpvet: %s\n", oneLine(err))
		return 1
	}
	unread := sw != nil && sw.Errors > 0
	if unread {
		fmt.Fprintf(stderr, "tcpvet: %s\n", sw.Unread())
	}
	if worst, any := worst(); cfg.failOn != nil && any && worst >= *cfg.failOn {
		return 3
	}
	if unread && cfg.failOn != nil {
		// Not inspected is not fine: a gate must not pass over them.
		return 1
	}
	return 0
}

func inspect(ctx context.Context, cfg config, stdout io.Writer) (rules.Report, error) {
	t, err := openTargets(cfg)
	if err != nil {
		return rules.Report{}, err
	}
	closeTargets := t.Close
	defer func() { closeTargets() }()
	target, take := t.target, t.take(cfg)
	source := evaluated(take, cfg.middleboxes)
	path := t.path()
	if cfg.watch > 0 {
		source = func(ctx context.Context) (*diag.Snapshot, rules.Report, error) {
			deaths := watch.StartDeaths(ctx, target, path...)
			defer deaths.Close()
			snap, err := watch.Run(ctx, watchedTake(take, cfg.pid), watch.Options{Duration: cfg.watch, Interval: cfg.interval, Deaths: deaths})
			if err != nil {
				return nil, rules.Report{}, err
			}
			return snap, rules.Evaluate(snap, cfg.middleboxes), nil
		}
	}

	if !cfg.json && isTerminal(stdout) {
		// Deaths, but not the path's conntrack ends: a listener for those
		// gives every new entry of the table the event extension for as
		// long as it listens, which a watch bounds and the view does not.
		deaths := watch.StartDeaths(ctx, target)
		var fetches viewFetches
		m := ui.New(ui.Options{Source: fetches.source(observing(take, cfg.middleboxes, deaths)), Interval: cfg.interval, NoColor: os.Getenv("NO_COLOR") != ""})
		_, err := tea.NewProgram(m, tea.WithContext(ctx), tea.WithOutput(stdout)).Run()
		fetches.closeAfter(deaths.Close, t.Close)
		closeTargets = func() {}
		if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
			return rules.Report{}, fmt.Errorf("terminal: %w", err)
		}
		return rules.Report{}, nil
	}

	if cfg.watch == 0 {
		// A watch bounds each of its samples instead.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	snap, rep, err := source(ctx)
	if err != nil {
		return rules.Report{}, err
	}
	if !cfg.json {
		return rep, ui.WritePlain(stdout, snap, rep)
	}
	if isTerminal(stdout) {
		// People read it; programs (and jq) do not need the extra bytes.
		return rep, ui.Document{Snapshot: snap, Report: rep}.WriteIndentedJSON(stdout)
	}
	return rep, ui.Document{Snapshot: snap, Report: rep}.WriteJSON(stdout)
}

// targets are the namespaces the flags select, opened: the target and the
// host's, with a note when the host could not be.
type targets struct {
	target, host *netns.NS
	hostNote     diag.Note
}

// openTargets opens the target the flags name and the host's namespace.
func openTargets(cfg config) (*targets, error) {
	target, err := openTarget(cfg)
	if err != nil {
		return nil, err
	}
	host, hostNote, err := openHost(cfg)
	if err != nil {
		target.Close()
		return nil, err
	}
	return &targets{target: target, host: host, hostNote: hostNote}, nil
}

// Close closes both namespaces.
func (t *targets) Close() {
	t.target.Close()
	t.host.Close()
}

// take reads one snapshot of the target, the host's note on it.
func (t *targets) take(cfg config) watch.Take {
	return func(ctx context.Context) (*diag.Snapshot, error) {
		snap, err := diag.Take(ctx, diag.Options{Target: t.target, Host: t.host, DupSockets: cfg.dupSockets})
		if err != nil {
			return nil, err
		}
		if t.hostNote.Code != "" {
			snap.Host.Path = cfg.hostNetns
			snap.Notes = append(snap.Notes, t.hostNote)
		}
		return snap, nil
	}
}

// path lists the namespaces whose conntrack a connection of the target
// crosses: its own, and the host's.
func (t *targets) path() []*netns.NS {
	if t.host != nil && !t.host.Same(t.target) {
		return []*netns.NS{t.target, t.host}
	}
	return []*netns.NS{t.target}
}

// evaluated is take with the rules' verdict on each snapshot.
func evaluated(take watch.Take, middleboxes []rules.Middlebox) ui.Source {
	return func(ctx context.Context) (*diag.Snapshot, rules.Report, error) {
		snap, err := take(ctx)
		if err != nil {
			return nil, rules.Report{}, err
		}
		return snap, rules.Evaluate(snap, middleboxes), nil
	}
}

// observing is the live view's source: every refresh is one more sample
// of a watch that lasts as long as the view, so the rules judge each
// connection by what crossed it too, as --watch does, and each snapshot
// lists the last connections that ended, and how.
func observing(take watch.Take, middleboxes []rules.Middlebox, deaths *watch.Deaths) ui.Source {
	var mu sync.Mutex
	var obs watch.Observer
	var closed []diag.Closed
	deaths.Follow(&obs)
	return func(ctx context.Context) (*diag.Snapshot, rules.Report, error) {
		snap, err := take(ctx)
		if err != nil {
			return nil, rules.Report{}, err
		}
		mu.Lock()
		obs.Add(snap)
		obs.Attach(snap)
		if deaths.Watching() {
			closed = append(closed, deaths.Drain(&obs, time.Now(), watch.Settle)...)
			if n := len(closed) - keepClosed; n > 0 {
				closed = slices.Delete(closed, 0, n)
			}
			// Each snapshot its own list: the view holds the last one
			// while this one grows.
			snap.Closed = slices.Clone(closed)
			if snap.Closed == nil {
				snap.Closed = []diag.Closed{}
			}
		}
		snap.Notes = append(snap.Notes, deaths.Notes()...)
		mu.Unlock()
		return snap, rules.Evaluate(snap, middleboxes), nil
	}
}

// exitWatch says whether process pid has exited. A pidfd (Linux 5.3+),
// held for the run, says so of a zombie and of a PID reused since, which
// kill(pid, 0) does not; without one, kill it is.
func exitWatch(pid int) func() bool {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return func() bool { return errors.Is(unix.Kill(pid, 0), unix.ESRCH) }
	}
	return func() bool {
		// Readable once the process has exited.
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n > 0
	}
}

// keepClosed bounds the connections that ended the live view remembers:
// the latest, which are the ones being asked about.
const keepClosed = 1000

// watchedTake is take that ends a watch of process pid (when not 0) once
// the process has exited: its sockets went with it, and the namespace
// tcpvet still holds open shows nothing of it any more.
func watchedTake(take watch.Take, pid int) watch.Take {
	if pid == 0 {
		return take
	}
	exited := exitWatch(pid)
	return func(ctx context.Context) (*diag.Snapshot, error) {
		snap, err := take(ctx)
		if err == nil && exited() {
			// Asked after the sample, so a sample taken as it exited,
			// its sockets half gone, is not kept.
			return nil, fmt.Errorf("%w: pid %d has exited", watch.ErrTargetGone, pid)
		}
		return snap, err
	}
}

// nodeSweep sweeps every namespace of the machine, the host read once
// each time, and the runtime asked only about sandboxes the previous
// sweeps of the live view or the exporter did not see.
func nodeSweep(cfg config, host *netns.NS, hostNote diag.Note) ui.NodeSource {
	sandboxes := &node.SandboxCache{}
	return func(ctx context.Context) (*node.Sweep, error) {
		sw, err := node.Take(ctx, node.Options{Host: host, CRISocket: cfg.criSocket, DupSockets: cfg.dupSockets, Middleboxes: cfg.middleboxes, Sandboxes: sandboxes})
		if err != nil {
			return nil, err
		}
		if hostNote.Code != "" {
			sw.Host.Path = cfg.hostNetns
			sw.Notes = append(sw.Notes, hostNote)
		}
		return sw, nil
	}
}

// openHost opens the node's namespace. Failing to open the default guess
// (a sandboxed PID 1, no CAP_SYS_PTRACE) is a note, not an error: tcpvet
// carries on without the host rather than refuse to look at all.
func openHost(cfg config) (*netns.NS, diag.Note, error) {
	host, err := netns.FromPath(cfg.hostNetns)
	switch {
	case err != nil && cfg.hostSet:
		return nil, diag.Note{}, fmt.Errorf("host namespace (--host-netns): %w", err)
	case err != nil:
		note := diag.Notef(diag.NoteHostNotVisible, "host namespace not visible: %v", err)
		note.Netns = diag.Host
		return nil, note, nil
	}
	return host, diag.Note{}, nil
}

// sweepAll reads every namespace of the machine (--all-netns) and prints
// the sweep: JSON with --json, otherwise one row per namespace.
func sweepAll(ctx context.Context, cfg config, stdout io.Writer) (*node.Sweep, error) {
	host, hostNote, err := openHost(cfg)
	if err != nil {
		return &node.Sweep{}, err
	}
	sweep := nodeSweep(cfg, host, hostNote)
	if !cfg.json && isTerminal(stdout) {
		var fetches viewFetches
		m := ui.New(ui.Options{Sweep: fetches.sweep(sweep), Interval: cfg.interval, NoColor: os.Getenv("NO_COLOR") != ""})
		_, err := tea.NewProgram(m, tea.WithContext(ctx), tea.WithOutput(stdout)).Run()
		fetches.closeAfter(func() { host.Close() })
		if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
			return &node.Sweep{}, fmt.Errorf("terminal: %w", err)
		}
		return &node.Sweep{}, nil
	}
	defer host.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	sw, err := sweep(ctx)
	if err != nil {
		return &node.Sweep{}, err
	}
	if !cfg.json {
		return sw, node.WritePlain(stdout, sw)
	}
	if isTerminal(stdout) {
		// People read it: indented, as the single target's is.
		return sw, node.WriteIndentedJSON(stdout, sw)
	}
	return sw, node.WriteJSON(stdout, sw)
}

// viewFetches lets a view quit at once while a fetch it started is still
// reading: what that fetch reads through (the namespaces, the deaths'
// sockets) is closed when it returns, not under it, where a descriptor
// number closed and reused could point the fetch at another namespace.
type viewFetches struct {
	mu      sync.Mutex
	running int
	quit    bool
	release []func()
}

// enter counts a fetch as running; it reports false once the view quit.
func (f *viewFetches) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quit {
		return false
	}
	f.running++
	return true
}

// leave ends a fetch, releasing what the view left open if it was the
// last one running after the view quit.
func (f *viewFetches) leave() {
	f.mu.Lock()
	f.running--
	var release []func()
	if f.quit && f.running == 0 {
		release, f.release = f.release, nil
	}
	f.mu.Unlock()
	for _, r := range release {
		r()
	}
}

// closeAfter runs release once no fetch is running: now, or when the
// last one returns.
func (f *viewFetches) closeAfter(release ...func()) {
	f.mu.Lock()
	f.quit = true
	f.release = append(f.release, release...)
	var now []func()
	if f.running == 0 {
		now, f.release = f.release, nil
	}
	f.mu.Unlock()
	for _, r := range now {
		r()
	}
}

// errViewQuit is what a fetch asked for after the view quit gets.
var errViewQuit = errors.New("the view has quit")

// source is src counted as the view's fetch.
func (f *viewFetches) source(src ui.Source) ui.Source {
	return func(ctx context.Context) (*diag.Snapshot, rules.Report, error) {
		if !f.enter() {
			return nil, rules.Report{}, errViewQuit
		}
		defer f.leave()
		return src(ctx)
	}
}

// sweep is sweep counted as the view's fetch.
func (f *viewFetches) sweep(sweep ui.NodeSource) ui.NodeSource {
	return func(ctx context.Context) (*node.Sweep, error) {
		if !f.enter() {
			return nil, errViewQuit
		}
		defer f.leave()
		return sweep(ctx)
	}
}

func openTarget(cfg config) (*netns.NS, error) {
	switch {
	case cfg.pid != 0:
		return netns.FromPID(cfg.pid)
	case cfg.netnsPath != "":
		return netns.FromPath(cfg.netnsPath)
	}
	return netns.Self()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// oneLine keeps an error to the single line the user is promised.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
