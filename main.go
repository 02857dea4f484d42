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
	"strings"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/netns"
	"github.com/tcpvet/tcpvet/rules"
	"github.com/tcpvet/tcpvet/ui"
)

// version is stamped at release time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `tcpvet: find the TCP connections that an idle timeout on the path, a dead peer or
untuned keepalive will break, and say how to fix them.

Usage:
  tcpvet [flags]                 the namespace tcpvet runs in (kubectl debug shares the pod's)
  tcpvet --pid N [flags]         the network namespace of process N
  tcpvet --netns PATH [flags]    a namespace file (/run/netns/NAME, /proc/N/ns/net, a bind mount)

On a terminal it opens a live view; piped, it prints a table and the findings; --json prints
one snapshot for scripts; --serve ADDR exports counts of findings and connections to Prometheus.

Examples:
  kubectl debug -it pod/api-7d9 --image=ghcr.io/tcpvet/tcpvet --target=api --profile=general -- tcpvet
  sudo tcpvet --pid "$(pgrep -o grpc-server)" --middlebox aws-nlb
  tcpvet --json --fail-on critical | jq '.findings[] | .summary'

Exit status: 0 fine, 1 could not inspect, 2 bad command line, 3 a finding at or above --fail-on.

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
	dupSockets  bool
	version     bool
	middleboxes []rules.Middlebox
	failOn      *rules.Severity
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
	fs.DurationVar(&c.interval, "interval", time.Second, "refresh the live view every `DURATION`")
	fs.BoolVar(&c.dupSockets, "dup-sockets", false, "read socket options even where duplicating a socket may reset its cgroup-v1 net_cls/net_prio marks")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.StringVar(&c.serve, "serve", "", "export findings to Prometheus: serve /metrics and /healthz on `ADDR` (host:port), sweeping every --interval")
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
	pidSet := false
	fs.Visit(func(f *flag.Flag) {
		c.hostSet = c.hostSet || f.Name == "host-netns"
		pidSet = pidSet || f.Name == "pid"
	})
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see tcpvet --help)", fs.Arg(0))
	}
	if c.pid != 0 && c.netnsPath != "" {
		return c, errors.New("--pid and --netns both name a target: give one")
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
	if cfg.serve != "" {
		return serve(ctx, cfg, stderr)
	}
	rep, err := inspect(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tcpvet: %s\n", oneLine(err))
		return 1
	}
	if worst, any := rep.Worst(); cfg.failOn != nil && any && worst >= *cfg.failOn {
		return 3
	}
	return 0
}

// output is what --json prints: ui.Document, the one document type the
// live view's export writes too, defined here so its literals stay short.
type output ui.Document

func inspect(ctx context.Context, cfg config, stdout io.Writer) (rules.Report, error) {
	source, closeSource, err := openSource(cfg)
	if err != nil {
		return rules.Report{}, err
	}
	defer closeSource()

	if !cfg.json && isTerminal(stdout) {
		m := ui.New(ui.Options{Source: source, Interval: cfg.interval, NoColor: os.Getenv("NO_COLOR") != ""})
		_, err := tea.NewProgram(m, tea.WithContext(ctx), tea.WithOutput(stdout)).Run()
		if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
			return rules.Report{}, fmt.Errorf("terminal: %w", err)
		}
		return rules.Report{}, nil
	}

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
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
	return rep, writeJSON(stdout, output{snap, rep})
}

// openSource opens the namespaces the flags select and returns what takes
// and evaluates one snapshot of them, for the live view, --json and --serve
// alike, and what closes them.
func openSource(cfg config) (ui.Source, func(), error) {
	target, err := openTarget(cfg)
	if err != nil {
		return nil, nil, err
	}
	host, err := netns.FromPath(cfg.hostNetns)
	var hostNote string
	switch {
	case err != nil && cfg.hostSet:
		target.Close()
		return nil, nil, fmt.Errorf("host namespace (--host-netns): %w", err)
	case err != nil:
		// The default guess failed (a sandboxed PID 1, no CAP_SYS_PTRACE):
		// carry on without the host rather than refuse to look at all.
		hostNote = fmt.Sprintf("host namespace not visible: %v", err)
	}
	closeAll := func() {
		target.Close()
		if host != nil {
			host.Close()
		}
	}

	source := func(ctx context.Context) (*diag.Snapshot, rules.Report, error) {
		snap, err := diag.Take(ctx, diag.Options{Target: target, Host: host, DupSockets: cfg.dupSockets})
		if err != nil {
			return nil, rules.Report{}, err
		}
		if hostNote != "" {
			snap.Host.Path = cfg.hostNetns
			snap.Notes = append(snap.Notes, hostNote)
		}
		return snap, rules.Evaluate(snap, cfg.middleboxes), nil
	}
	return source, closeAll, nil
}

// writeJSON writes out as json.Encoder does, byte for byte, streaming the
// sockets (ui.Document.WriteJSON).
func writeJSON(w io.Writer, out output) error { return ui.Document(out).WriteJSON(w) }

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
