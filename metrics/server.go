package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcpvet/tcpvet/node"
)

// SweepFunc takes one sweep of what the exporter watches.
type SweepFunc func(context.Context) (*node.Sweep, error)

// Options configure Run.
type Options struct {
	// Sweep is called once at start and then every Interval after the
	// previous call returned, never two at once.
	Sweep    SweepFunc
	Interval time.Duration
	// Timeout bounds one sweep; zero means a minute.
	Timeout time.Duration
	// Log receives one line per failed sweep; nil discards them.
	Log io.Writer
}

// shutdownGrace is how long Run lets scrapes in flight finish once its
// context ends.
const shutdownGrace = 5 * time.Second

// Run serves /metrics and /healthz on ln and sweeps every o.Interval until
// ctx ends, then shuts the server down and returns nil. It returns an error
// only when serving fails.
func Run(ctx context.Context, ln net.Listener, o Options) error {
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	c := NewCollector()
	srv := &http.Server{
		// A sweep starts Interval after the last one returned and takes
		// Timeout at most: twice that without one is a sweep loop stuck.
		Handler:           handler(c, 2*(o.Interval+o.Timeout)),
		ReadHeaderTimeout: 10 * time.Second,
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		loop(ctx, c, o)
	}()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
		shutCtx, stop := context.WithTimeout(context.Background(), shutdownGrace)
		defer stop()
		err = srv.Shutdown(shutCtx)
	case err = <-served:
	}
	cancel()
	<-loopDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// loop sweeps at once and then every o.Interval after a sweep returns, so
// a sweep that takes longer than the interval delays the next rather than
// piling up behind it.
func loop(ctx context.Context, c *Collector, o Options) {
	unreadable := 0
	for {
		sctx, cancel := context.WithTimeout(ctx, o.Timeout)
		s, err := o.Sweep(sctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			// Shutting down: a sweep cut short is no failure to count.
			return
		case err != nil:
			c.Failed()
			fmt.Fprintf(o.Log, "tcpvet: sweep failed: %v\n", err)
		case s == nil:
			c.Failed()
			fmt.Fprintln(o.Log, "tcpvet: sweep failed: it returned nothing")
		default:
			c.Update(s)
			unreadable = logUnreadable(o.Log, s, unreadable)
		}
		t := time.NewTimer(o.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// logUnreadable says in o.Log how many of s's namespaces could not be read,
// and why the first could not, when that count differs from was's: a line
// when it changes, not one a sweep. It returns the count.
func logUnreadable(log io.Writer, s *node.Sweep, was int) int {
	if s.Errors == was {
		return was
	}
	if s.Errors == 0 {
		fmt.Fprintf(log, "tcpvet: every one of the %d namespaces was read again\n", len(s.Namespaces))
		return 0
	}
	fmt.Fprintf(log, "tcpvet: %s\n", s.Unread())
	return s.Errors
}

// Handler serves c's metrics, with the exporter's own Go runtime and
// process metrics (its CPU and memory: what it costs a node), on /metrics
// and its health on /healthz.
func Handler(c *Collector) http.Handler { return handler(c, 0) }

// handler is Handler whose /healthz fails once the last sweep is older
// than staleAfter (never, for 0).
func handler(c *Collector, staleAfter time.Duration) http.Handler {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A scrape that fails to gather says so with a 500 rather than
		// serving part of the sweep as if it were all of it.
		ErrorHandling: promhttp.HTTPErrorOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { healthz(w, c, staleAfter) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "tcpvet exporter: /metrics for Prometheus, /healthz for probes")
	})
	return mux
}

// healthz answers 200 once a sweep has completed, with its age, and 503
// until then: a pod is ready to scrape when it has something to say. It
// answers 503 again once the last sweep is older than staleAfter (when not
// 0), so that a liveness probe restarts an exporter whose sweeps stopped.
func healthz(w http.ResponseWriter, c *Collector, staleAfter time.Duration) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s, ok := c.Last()
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "no sweep completed yet")
		return
	}
	age := max(c.now().Sub(s.TakenAt), 0).Round(time.Millisecond)
	if staleAfter > 0 && age > staleAfter {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "stale: last sweep %s ago, more than %s: sweeps have stopped\n", age, staleAfter)
		return
	}
	if s.Unreadable > 0 {
		// Degraded, not failed: restarting would read no more.
		fmt.Fprintf(w, "degraded: last sweep %s ago, %d of %d namespaces unreadable (the log says why)\n", age, s.Unreadable, s.Namespaces)
		return
	}
	fmt.Fprintf(w, "ok: last sweep %s ago, %d namespaces\n", age, s.Namespaces)
}
