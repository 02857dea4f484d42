package diag

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// benchSockets is how many sockets BenchmarkTake builds; TCPVET_BENCH_SOCKETS
// overrides it.
func benchSockets() int {
	if n, err := strconv.Atoi(os.Getenv("TCPVET_BENCH_SOCKETS")); err == nil && n > 0 {
		return n
	}
	return 40000
}

// farm fills a new namespace with about n idle loopback sockets, or opens
// the namespace TCPVET_BENCH_NETNS names (a path), already filled: profiling
// one snapshot then needs no farm built around it each time.
func farm(b *testing.B, n int) *netns.NS {
	b.Helper()
	if path := os.Getenv("TCPVET_BENCH_NETNS"); path != "" {
		h, err := netns.FromPath(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		return h
	}
	ns := testnet.New(b)
	for _, spec := range testnet.FarmSpecs(n) {
		ns.Start(b, spec)
	}
	h, err := netns.FromPath(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// BenchmarkTake snapshots a namespace of 40,000 sockets: dump, processes,
// every socket's options and sysctls.
//
// Beside the time, it reports the CPU time (user and system, all threads)
// per snapshot: a snapshot is mostly system calls, and on a machine shared
// with other work the CPU time says more than the wall time does.
func BenchmarkTake(b *testing.B) {
	ns := farm(b, benchSockets())
	var n, runs int
	cpu0 := cpuTime()
	for b.Loop() {
		snap, err := Take(context.Background(), Options{Target: ns})
		if err != nil {
			b.Fatal(err)
		}
		n = len(snap.Sockets)
		runs++
	}
	b.ReportMetric(float64(n), "sockets")
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(runs), "cpu-ms/op")
}

// cpuTime is the CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTakeJSON adds what tcpvet --json does after the snapshot.
func BenchmarkTakeJSON(b *testing.B) {
	ns := farm(b, benchSockets())
	for b.Loop() {
		snap, err := Take(context.Background(), Options{Target: ns})
		if err != nil {
			b.Fatal(err)
		}
		if err := json.NewEncoder(io.Discard).Encode(snap); err != nil {
			b.Fatal(err)
		}
	}
}
