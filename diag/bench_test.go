package diag

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"testing"

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
func BenchmarkTake(b *testing.B) {
	ns := farm(b, benchSockets())
	var n int
	for b.Loop() {
		snap, err := Take(context.Background(), Options{Target: ns})
		if err != nil {
			b.Fatal(err)
		}
		n = len(snap.Sockets)
	}
	b.ReportMetric(float64(n), "sockets")
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
