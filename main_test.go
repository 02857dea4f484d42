package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.MaybeRunAgent()
	code := m.Run()
	if binPath != "" {
		// The binary tests built is theirs alone: nothing stays in /tmp.
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// runJSON runs tcpvet --json with args and decodes the snapshot.
func runJSON(t *testing.T, args ...string) *diag.Snapshot {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"--json"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("tcpvet %v: exit %d: %s", args, code, stderr.String())
	}
	var snap diag.Snapshot
	if err := json.Unmarshal(stdout.Bytes(), &snap); err != nil {
		t.Fatalf("decode tcpvet --json: %v\n%s", err, stdout.String())
	}
	return &snap
}

// scenario is a target namespace holding one connection in each situation
// tcpvet must describe, and the peer namespace on the other end.
type scenario struct {
	target, peer *testnet.NS
	targetAddr   testnet.Addrs
	peerAddr     testnet.Addrs
	client       *testnet.Agent // in target: dials the peer
	inbound      *testnet.Agent // in peer: dials the target's listener
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	s := &scenario{target: testnet.New(t), peer: testnet.New(t)}
	s.targetAddr, s.peerAddr = testnet.Link(t, s.target, s.peer, 1)
	p4 := func(port int) string { return fmt.Sprintf("%s:%d", s.peerAddr.V4, port) }

	s.peer.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "hold", Addr: ":7001", Mode: testnet.Hold},
		{Name: "noread", Addr: ":7002", Mode: testnet.NoRead, RcvBuf: 4096},
		{Name: "close", Addr: ":7003", Mode: testnet.CloseAtOnce},
		{Name: "noclose", Addr: ":7004", Mode: testnet.NoClose},
		{Name: "drop", Addr: ":7005", Mode: testnet.Hold},
	}})
	s.client = s.target.Start(t, testnet.Spec{
		Listen: []testnet.Listener{{Name: "svc", Addr: ":8001", Mode: testnet.Hold, Keepalive: &testnet.KA{Idle: 300}}},
		Dial: []testnet.Dial{
			{Name: "idle", To: p4(7001)},
			{Name: "ka", To: p4(7001), Keepalive: &testnet.KA{Idle: 60, Interval: 10, Count: 5}},
			{Name: "ka-default", To: p4(7001), Keepalive: &testnet.KA{}},
			{Name: "user-timeout", To: p4(7001), UserTimeoutMS: 5000},
			{Name: "v6", To: fmt.Sprintf("[%s]:7001", s.peerAddr.V6), Keepalive: &testnet.KA{Idle: 30}},
			{Name: "stalled", To: p4(7002), SndBuf: 4096},
			{Name: "close-wait", To: p4(7003), NoReadBack: true},
			{Name: "fin-wait2", To: p4(7004), CloseFirst: true},
			{Name: "time-wait", To: p4(7001), CloseFirst: true},
			{Name: "dead-peer", To: p4(7005)},
		},
	})
	// An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d.
	s.inbound = s.peer.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "in", To: fmt.Sprintf("%s:8001", s.targetAddr.V4)},
	}})

	// The peer now silently drops everything sent to 7005, then the
	// client writes: its retransmit timer runs.
	s.peer.DropInbound(t, 7005)
	s.client.Write(t, "dead-peer", 1000)
	// The stalled reader's window closes once both buffers are full.
	s.client.Write(t, "stalled", 1<<20)
	s.waitFor(t, "the dead peer's retransmit and the stalled reader's persist timers", func(ss map[string]testnet.SSSocket) bool {
		var on, persist bool
		for _, x := range ss {
			on = on || x.Timer == "on" && strings.HasSuffix(x.Remote, ":7005") && x.Count >= 1
			persist = persist || x.Timer == "persist" && strings.HasSuffix(x.Remote, ":7002")
		}
		return on && persist
	})
	return s
}

// waitFor polls ss in the target until cond holds.
func (s *scenario) waitFor(t *testing.T, what string, cond func(map[string]testnet.SSSocket) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond(s.target.SS(t)) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, s.target.Run(t, "ss", "-tanoie"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// byRemotePort finds the one socket of snap in state whose remote port is port.
func byRemotePort(t *testing.T, snap *diag.Snapshot, state diag.State, port uint16) diag.Socket {
	t.Helper()
	var found []diag.Socket
	for _, s := range snap.Sockets {
		if s.State == state && s.Remote.Port() == port {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %v socket to port %d, found %d", state, port, len(found))
	}
	return found[0]
}

func byLocal(t *testing.T, snap *diag.Snapshot, local string) diag.Socket {
	t.Helper()
	for _, s := range snap.Sockets {
		if s.Local.String() == local {
			return s
		}
	}
	t.Fatalf("no socket with local address %s", local)
	return diag.Socket{}
}

// TestSnapshotAgreesWithSS holds every socket of a busy namespace to what
// ss, run just before and just after, says about it.
func TestSnapshotAgreesWithSS(t *testing.T) {
	s := newScenario(t)
	before := s.target.SS(t)
	snap := runJSON(t, "--netns", s.target.Path)
	after := s.target.SS(t)

	if snap.Target.Path != s.target.Path || snap.Target.NetnsInode == 0 {
		t.Errorf("target = %+v, want path %s and its inode", snap.Target, s.target.Path)
	}
	got := make(map[string]diag.Socket)
	for _, x := range snap.Sockets {
		if _, dup := got[x.ID.String()]; dup {
			t.Errorf("socket %s reported twice", x.ID)
		}
		got[x.ID.String()] = x
	}
	for id, x := range got {
		b, inBefore := before[id]
		a, inAfter := after[id]
		if !inBefore && !inAfter {
			t.Errorf("tcpvet reports socket %s (%v %v -> %v) that ss never saw", id, x.State, x.Local, x.Remote)
			continue
		}
		refs := []testnet.SSSocket{b, a}
		if !inBefore {
			refs = refs[1:]
		} else if !inAfter {
			refs = refs[:1]
		}
		check := func(field string, got any, want func(testnet.SSSocket) any) {
			var wants []any
			for _, r := range refs {
				if w := want(r); w == got {
					return
				} else {
					wants = append(wants, w)
				}
			}
			t.Errorf("socket %s (%v -> %v): %s = %v, ss says %v", id, x.Local, x.Remote, field, got, wants)
		}
		check("state", x.State.String(), func(r testnet.SSSocket) any { return r.State })
		check("local", x.Local.String(), func(r testnet.SSSocket) any { return r.Local })
		check("remote", x.Remote.String(), func(r testnet.SSSocket) any { return r.Remote })
		check("recv_q", x.RecvQ, func(r testnet.SSSocket) any { return r.RecvQ })
		check("send_q", x.SendQ, func(r testnet.SSSocket) any { return r.SendQ })
		check("timer", x.Timer.Kind.String(), func(r testnet.SSSocket) any { return r.Timer })
		check("timer count", int(x.Timer.Retrans), func(r testnet.SSSocket) any { return r.Count })
		check("inode", x.Inode, func(r testnet.SSSocket) any { return r.Inode })
	}
	for id, r := range before {
		if _, ok := after[id]; ok {
			if _, seen := got[id]; !seen {
				t.Errorf("ss saw socket %s (%s %s -> %s) before and after, tcpvet did not", id, r.State, r.Local, r.Remote)
			}
		}
	}

	// Every situation the scenario built is there, as the kernel has it.
	wantStates := map[uint16]diag.State{7002: diag.Established, 7003: diag.CloseWait, 7004: diag.FinWait2, 7005: diag.Established}
	for port, st := range wantStates {
		byRemotePort(t, snap, st, port)
	}
	if x := byRemotePort(t, snap, diag.Established, 7005); x.Timer.Kind != diag.TimerOn || x.TCPInfo == nil || x.TCPInfo.Unacked == 0 {
		t.Errorf("dead peer: timer %v, tcp_info %+v; want retransmit timer with unacked data", x.Timer, x.TCPInfo)
	}
	if x := byRemotePort(t, snap, diag.Established, 7002); x.Timer.Kind != diag.TimerPersist || x.SendQ == 0 {
		t.Errorf("stalled reader: timer %v send_q %d; want persist timer and a full send queue", x.Timer, x.SendQ)
	}
	var timeWait, listen, mapped bool
	for _, x := range snap.Sockets {
		timeWait = timeWait || x.State == diag.TimeWait && x.Remote.Port() == 7001
		listen = listen || x.State == diag.Listen && x.Local.Port() == 8001
		mapped = mapped || x.Family == "inet6" && x.Remote.Addr().Is4In6() && x.Local.Port() == 8001
	}
	if !timeWait || !listen || !mapped {
		t.Errorf("time-wait %v, listen %v, IPv4-mapped accepted %v: want all", timeWait, listen, mapped)
	}
}

// TestSnapshotReadsEachSocketsOwnOptions checks that the options tcpvet
// reads from each socket are exactly those the test set on it.
func TestSnapshotReadsEachSocketsOwnOptions(t *testing.T) {
	s := newScenario(t)
	snap := runJSON(t, "--netns", s.target.Path)
	ns := snap.Target.Sysctls
	def := func(name string) int { return int(ns[name]) }
	type want struct {
		enabled             bool
		idle, intvl, probes int
		userTimeoutMS       int
		source              string
	}
	defaults := want{false, def(diag.KeepaliveTime), def(diag.KeepaliveIntvl), def(diag.KeepaliveProbes), 0, "namespace"}
	cases := map[string]want{
		"idle":         defaults,
		"ka":           {true, 60, 10, 5, 0, "socket"},
		"ka-default":   {true, defaults.idle, defaults.intvl, defaults.probes, 0, "namespace"},
		"user-timeout": {false, defaults.idle, defaults.intvl, defaults.probes, 5000, "namespace"},
		"v6":           {true, 30, defaults.intvl, defaults.probes, 0, "socket"},
		"stalled":      defaults,
		"close-wait":   defaults,
		"dead-peer":    defaults,
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			x := byLocal(t, snap, s.client.Local[name])
			k := x.Keepalive
			if k.Enabled == nil || x.UserTimeoutMS == nil {
				t.Fatalf("options unknown: %s", k.Reason)
			}
			got := want{*k.Enabled, *k.IdleS, *k.IntervalS, *k.Probes, *x.UserTimeoutMS, k.Source}
			if got != w {
				t.Errorf("options = %+v, want %+v", got, w)
			}
			if !slices.ContainsFunc(x.Processes, func(p diag.Process) bool { return p.PID == s.client.PID }) {
				t.Errorf("processes = %+v, want the agent (pid %d)", x.Processes, s.client.PID)
			}
		})
	}
	// Accepted sockets inherit the listener's keepalive.
	for _, x := range snap.Sockets {
		if x.State == diag.Established && x.Local.Port() == 8001 {
			if k := x.Keepalive; k.Enabled == nil || !*k.Enabled || *k.IdleS != 300 {
				t.Errorf("accepted socket %s: keepalive %+v, want on with idle 300 s from its listener", x.ID, k)
			}
		}
	}
	// Kernel-only sockets have no options to read, and say so.
	x := byRemotePort(t, snap, diag.FinWait2, 7004)
	if x.Keepalive.Enabled != nil || x.Keepalive.Reason == "" {
		t.Errorf("orphaned FIN_WAIT2: keepalive %+v, want unknown with a reason", x.Keepalive)
	}
}
