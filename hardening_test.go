package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// nstat reads one kernel TCP counter of ns.
func nstat(t *testing.T, ns *testnet.NS, counter string) int {
	t.Helper()
	out := ns.Run(t, "nstat", "-az", counter)
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
	var mu sync.Mutex
	pidByPort := map[uint16]int{}
	for i := range 2 {
		port := uint16(9200 + i)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		a := ns.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: addr, Mode: testnet.Hold}}, Churn: []string{addr, addr}})
		pidByPort[port] = a.PID
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
		mu.Lock()
		pidByPort[port] = a.PID
		mu.Unlock()
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
		ids, inodes := map[string]bool{}, map[uint32]bool{}
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
				if !ok || p.PID != owner {
					t.Errorf("snapshot %d: socket %s %v -> %v attributed to pid %d, but only pid %d holds sockets on port %d",
						n, s.ID, s.Local, s.Remote, p.PID, owner, port)
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
