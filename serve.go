package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/tcpvet/tcpvet/metrics"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/ui"
	"github.com/tcpvet/tcpvet/watch"
)

// checkServe refuses --serve with an address that cannot be one, or with
// flags that mean nothing to an exporter.
func checkServe(c config) error {
	if c.serve == "" {
		return nil
	}
	switch {
	case c.json:
		return errors.New("--serve and --json: the exporter serves metrics, it prints no snapshot; give one")
	case c.failOn != nil:
		return errors.New("--fail-on means nothing to --serve, which runs until stopped: alert on tcpvet_findings instead")
	case c.watch > 0:
		return errors.New("--serve and --watch: the exporter sweeps every --interval until stopped; give one")
	}
	host, port, err := net.SplitHostPort(c.serve)
	if err != nil {
		return fmt.Errorf("--serve %q: want host:port, as in 127.0.0.1:9393 or :9393", c.serve)
	}
	// A service name (":http") is refused: a port is given by number. Port
	// 0 is allowed, and the line serve prints says which one it got.
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("--serve %q: port %q is not a number from 0 to 65535", c.serve, port)
	}
	if host != "" && !validIP(host) {
		// A name could resolve to anywhere; an exporter binds where told.
		return fmt.Errorf("--serve %q: %q is not an IP address (leave it empty for every address)", c.serve, host)
	}
	return nil
}

// serve runs the Prometheus exporter on cfg.serve until ctx ends, sweeping
// what the flags select every cfg.interval.
func serve(ctx context.Context, cfg config, stderr io.Writer) int {
	sweep, closeSweep, err := sweeper(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "tcpvet: %s\n", oneLine(err))
		return 1
	}
	defer closeSweep()
	// A --pid target that has exited leaves nothing to serve: an empty
	// namespace served as healthy would say all is well.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	untilGone := func(ctx context.Context) (*node.Sweep, error) {
		s, err := sweep(ctx)
		if errors.Is(err, watch.ErrTargetGone) {
			stop(err)
		}
		return s, err
	}
	ln, err := net.Listen("tcp", cfg.serve)
	if err != nil {
		// The address is the command line's: one the machine will not
		// give (not its own, in use, privileged) is a bad command line.
		fmt.Fprintf(stderr, "tcpvet: --serve %s: %s\n", cfg.serve, oneLine(err))
		return 2
	}
	fmt.Fprintf(stderr, "tcpvet: serving /metrics and /healthz on %s, sweeping every %v\n", ln.Addr(), cfg.interval)
	err = metrics.Run(ctx, ln, metrics.Options{Sweep: untilGone, Interval: cfg.interval, Log: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "tcpvet: --serve %s: %s\n", cfg.serve, oneLine(err))
		return 1
	}
	if cause := context.Cause(ctx); errors.Is(cause, watch.ErrTargetGone) {
		fmt.Fprintf(stderr, "tcpvet: %s: nothing left to serve\n", oneLine(cause))
		return 1
	}
	return 0
}

// sweeper opens what the flags select, once, and returns what sweeps it and
// what closes it: every namespace with --all-netns, else the one target.
func sweeper(cfg config) (metrics.SweepFunc, func(), error) {
	if cfg.allNetns {
		host, hostNote, err := openHost(cfg)
		if err != nil {
			return nil, nil, err
		}
		return metrics.SweepFunc(nodeSweep(cfg, host, hostNote)), func() { host.Close() }, nil
	}
	t, err := openTargets(cfg)
	if err != nil {
		return nil, nil, err
	}
	return oneNamespace(evaluated(watchedTake(t.take(cfg), cfg.pid), cfg.middleboxes)), t.Close, nil
}

// oneNamespace turns the source of a single target (the default, --pid or
// --netns) into a sweep of that one namespace, which names no pod.
func oneNamespace(source ui.Source) metrics.SweepFunc {
	return func(ctx context.Context) (*node.Sweep, error) {
		start := time.Now()
		snap, rep, err := source(ctx)
		if err != nil {
			return nil, err
		}
		return &node.Sweep{
			TakenAt:  start,
			Duration: time.Since(start),
			Namespaces: []node.Namespace{{
				Inode:    snap.Target.NetnsInode,
				Path:     snap.Target.Path,
				Snapshot: snap,
				Report:   rep,
				// No Notes: those are the sweep's about the namespace,
				// and the snapshot's own are told with the snapshot.
			}},
		}, nil
	}
}

// validIP reports whether host is an IP address, an IPv6 zone allowed.
func validIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}
