package watch

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// collectedSoon reports whether ch is closed (a cleanup ran) within 2 s of
// repeated collections.
func collectedSoon(ch chan struct{}) bool {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case <-ch:
			return true
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// sharedSnapshot lays a snapshot out as diag.Take does: the owners share
// one array (diag.ownersOf: procs[i:j:j]) and Keepalive, UserTimeoutMS and
// SynRetries point into one []SockOpts (optionReads.opts, attachOptions).
func sharedSnapshot(at time.Time, n int, info uint32) (*diag.Snapshot, *diag.SockOpts, *diag.Process) {
	opts := make([]diag.SockOpts, n)
	procs := make([]diag.Process, n)
	snap := &diag.Snapshot{TakenAt: at}
	for i := range n {
		o := &opts[i]
		procs[i] = diag.Process{PID: 7, Comm: "app", FD: i + 3}
		snap.Sockets = append(snap.Sockets, diag.Socket{ID: diag.Cookie(i + 1), State: diag.Established,
			Local:         netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+i)),
			Remote:        netip.MustParseAddrPort("10.0.0.2:80"),
			TCPInfo:       &diag.TCPInfo{SegsOut: info, SegsIn: info, BytesAcked: 1},
			Keepalive:     diag.Keepalive{Enabled: &o.Keepalive, IdleS: &o.IdleS, IntervalS: &o.IntervalS, Probes: &o.Probes},
			UserTimeoutMS: &o.UserTimeoutMS, SynRetries: &o.SynRetries,
			Processes: procs[i : i+1 : i+1]})
	}
	return snap, &opts[0], &procs[0]
}

// TestDetachedSampleKeepsNoSnapshotArrays: a connection gone from the
// dump is copied out of its snapshot (detach), its owners and options too,
// which point into arrays the whole snapshot shares: else each snapshot
// that last listed a gone connection would stay partly alive for as long
// as its last sample (keepGone) or a Closed told from it is kept.
func TestDetachedSampleKeepsNoSnapshotArrays(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	o := Observer{keepSeen: true}
	first, opts0, procs0 := sharedSnapshot(at, 1000, 10)
	optsGone, procsGone := make(chan struct{}), make(chan struct{})
	runtime.AddCleanup(opts0, func(ch chan struct{}) { close(ch) }, optsGone)
	runtime.AddCleanup(procs0, func(ch chan struct{}) { close(ch) }, procsGone)
	o.Add(first)
	first, opts0, procs0 = nil, nil, nil
	second := &diag.Snapshot{TakenAt: at.Add(time.Second)} // every connection gone
	o.Add(second)
	if ls := o.seen[1]; ls == nil || !ls.detached {
		t.Fatalf("not detached: %+v", ls)
	}
	opts, procs := collectedSoon(optsGone), collectedSoon(procsGone)
	if !opts || !procs {
		t.Errorf("after every connection was detached, the first snapshot's options array collected: %v, its owners array collected: %v; want both", opts, procs)
	}
	runtime.KeepAlive(&o)
}

// TestWipedClosedKeepsNoSnapshotArrays: the Closed told of a death
// wiped by tcp_disconnect (SO_LINGER 0) takes the last sample's tcp_info,
// a pointer into the detached copy (ownSample), and so keeps the whole
// copy for as long as the Closed is kept (the live view keeps 1000): not
// the snapshot's options and owners arrays through it.
func TestWipedClosedKeepsNoSnapshotArrays(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	o := Observer{keepSeen: true}
	first, opts0, _ := sharedSnapshot(at, 1000, 10)
	optsGone := make(chan struct{})
	runtime.AddCleanup(opts0, func(ch chan struct{}) { close(ch) }, optsGone)
	o.Add(first)
	first, opts0 = nil, nil
	ls := o.seen[1]
	ls.detach()
	wiped := diag.Death{Cookie: 1, Local: netip.MustParseAddrPort("10.0.0.1:40000"),
		Remote: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), 0), State: diag.Close,
		Info: &diag.TCPInfo{State: uint8(diag.Close)}, At: at.Add(time.Second)}
	c := Classify(ls.sock, wiped, History{FirstSeen: ls.first, LastAt: ls.last})
	if c.TCPInfo == nil || c.TCPInfo.SegsOut != 10 {
		t.Fatalf("tcp_info %+v, want the last sample's", c.TCPInfo)
	}
	o, ls = Observer{}, nil
	if !collectedSoon(optsGone) {
		t.Errorf("a Closed of a wiped death keeps its snapshot's options array alive (tcp_info %p)", c.TCPInfo)
	}
	runtime.KeepAlive(c)
}
