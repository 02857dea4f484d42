package diag

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
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

// BenchmarkTakeJSON adds what tcpvet --json does after the snapshot: the
// snapshot less its sockets through its MarshalJSON, then the sockets
// streamed (ui.Document.WriteJSON, less the report).
func BenchmarkTakeJSON(b *testing.B) {
	ns := farm(b, benchSockets())
	for b.Loop() {
		snap, err := Take(context.Background(), Options{Target: ns})
		if err != nil {
			b.Fatal(err)
		}
		rest := *snap
		rest.Sockets = nil
		if _, err := rest.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
		if err := WriteSockets(io.Discard, snap.Sockets); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTakeParts times the three parts of a snapshot that grow with
// the sockets, each alone on the same namespace: the sock_diag dump, the
// scan of the processes' descriptors, and the reading of every socket's
// options. Each reports its cost per socket (or per descriptor), which
// with ss -tan's own time per socket says where the floor of a full
// snapshot is on a machine.
func BenchmarkTakeParts(b *testing.B) {
	ns := farm(b, benchSockets())
	raws, err := dumpSockets(context.Background(), ns)
	if err != nil {
		b.Fatal(err)
	}
	scan := scanProcesses("/proc", ns)
	socks := socketsOf(raws)
	fds := 0
	for _, owners := range scan.owners {
		fds += len(owners)
	}
	// each runs part b.N times and reports the wall and CPU time it took
	// per item.
	each := func(b *testing.B, n int, unit string, part func()) {
		cpu0 := cpuTime()
		for b.Loop() {
			part()
		}
		per := float64(b.N) * float64(n) * 1000
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "µs/"+unit)
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/per, "cpu-µs/"+unit)
	}
	b.Run("dump", func(b *testing.B) {
		each(b, len(raws), "socket", func() {
			if _, err := dumpSockets(context.Background(), ns); err != nil {
				b.Fatal(err)
			}
		})
	})
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("scan-%dthreads", workers), func(b *testing.B) {
			defer func(w int) { fdScanWorkers = w }(fdScanWorkers)
			fdScanWorkers = workers
			each(b, fds, "socket-fd", func() { scanProcesses("/proc", ns) })
		})
		b.Run(fmt.Sprintf("options-%dthreads", workers), func(b *testing.B) {
			defer func(w int) { optionWorkers = w }(optionWorkers)
			optionWorkers = workers
			or := newOptionReader(false, ReadFacts())
			each(b, fds, "socket", func() { readAllOptions(or, socks, scan.owners).wg.Wait() })
		})
	}
}
