package watch

import (
	"math"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// conn plays a connection's tcp_info as the kernel keeps it (see doc.go):
// what each kind of exchange does to the counters and the last_* stamps.
// The kernel tests (watch_e2e_test.go at the top) hold the same to real
// sockets; this one reaches the corners they cannot time.
type conn struct {
	start        time.Time
	info         diag.TCPInfo
	lastDataSent time.Time
	lastDataRecv time.Time
	lastAckRecv  time.Time
}

const rtt = 2 * time.Millisecond

func newConn(start time.Time) *conn {
	return &conn{start: start, info: diag.TCPInfo{Size: 248, SndWnd: 65535}, lastDataSent: start, lastDataRecv: start, lastAckRecv: start}
}

// ping sends n bytes and gets n back, then ACKs them: an HTTP/2 PING and
// its ACK, from the end that pings.
func (c *conn) ping(at time.Time, n uint64) {
	c.info.SegsOut += 2
	c.info.DataSegsOut++
	c.info.BytesSent += n
	c.info.BytesAcked += n
	c.info.SegsIn++
	c.info.DataSegsIn++
	c.info.BytesReceived += n
	c.lastDataSent, c.lastDataRecv, c.lastAckRecv = at, at.Add(rtt), at.Add(rtt)
}

// pingOut and pingIn are a ping's two halves, when a sample falls
// between them.
func (c *conn) pingOut(at time.Time, n uint64) {
	c.info.SegsOut++
	c.info.DataSegsOut++
	c.info.BytesSent += n
	c.lastDataSent = at
}

func (c *conn) pingIn(at time.Time, n uint64) {
	c.info.BytesAcked += n
	c.info.SegsIn++
	c.info.DataSegsIn++
	c.info.BytesReceived += n
	c.info.SegsOut++
	c.lastDataRecv, c.lastAckRecv = at, at
}

// retransmit sends a segment again, unanswered: of data when n > 0, else
// of a FIN.
func (c *conn) retransmit(n uint64) {
	c.info.SegsOut++
	c.info.TotalRetrans++
	if n > 0 {
		c.info.DataSegsOut++
		c.info.BytesSent += n
		c.info.BytesRetrans += n
	}
}

// send sends n bytes, ACKed by the peer.
func (c *conn) send(at time.Time, n uint64) {
	c.info.SegsOut++
	c.info.DataSegsOut++
	c.info.BytesSent += n
	c.info.BytesAcked += n
	c.info.SegsIn++
	c.lastDataSent, c.lastAckRecv = at, at.Add(rtt)
}

// probe is this end's keepalive probe: no payload; answered, a bare ACK.
func (c *conn) probe(at time.Time, answered bool) {
	c.info.SegsOut++
	if answered {
		c.info.SegsIn++
		c.lastAckRecv = at.Add(rtt)
	}
}

// peerProbe is the other end's probe, answered with a duplicate ACK that
// never reaches tcp_ack.
func (c *conn) peerProbe(at time.Time) {
	c.info.SegsIn++
	c.info.SegsOut++
}

func (c *conn) sample(at time.Time) *diag.TCPInfo {
	i := c.info
	ms := func(t time.Time) uint32 { return uint32(at.Sub(t) / time.Millisecond) }
	i.LastDataSentMS, i.LastDataRecvMS, i.LastAckRecvMS = ms(c.lastDataSent), ms(c.lastDataRecv), ms(c.lastAckRecv)
	return &i
}

// play runs the connection for d, sampling every interval, with act called
// every millisecond of it to make the exchanges.
func play(d, interval time.Duration, act func(c *conn, ms int, at time.Time)) *diag.Observed {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := newConn(start)
	var tr tracker
	for ms := 0; ms <= int(d/time.Millisecond); ms++ {
		at := start.Add(time.Duration(ms) * time.Millisecond)
		act(c, ms, at)
		if time.Duration(ms)*time.Millisecond%interval == 0 {
			tr.update(at.Sub(start), c.sample(at))
		}
	}
	return tr.observed()
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestObserveKinds(t *testing.T) {
	const second = 1000
	tests := []struct {
		name     string
		interval time.Duration
		act      func(c *conn, ms int, at time.Time)
		refresh  string
		quiet    float64 // the true longest quiet, s
		period   float64
		size     int
	}{
		{"h2 pings every 2 s", time.Second, func(c *conn, ms int, at time.Time) {
			if ms%(2*second) == 500 {
				c.ping(at, 17)
			}
		}, diag.RefreshedByAppPings, 2, 2, 17},
		{"TLS pings every 10 s", time.Second, func(c *conn, ms int, at time.Time) {
			if ms%(10*second) == 300 {
				c.ping(at, 39)
			}
		}, diag.RefreshedByAppPings, 10, 10, 39},
		{"TLS pings every 10 s, a sample between one and its answer", time.Second, func(c *conn, ms int, at time.Time) {
			switch ms % (10 * second) {
			case 999:
				if ms < 15*second {
					c.pingOut(at, 39)
				} else {
					c.ping(at, 39)
				}
			case 1001:
				if ms < 15*second {
					c.pingIn(at, 39)
				}
			}
		}, diag.RefreshedByAppPings, 10, 10, 39},
		{"pings faster than the samples", time.Second, func(c *conn, ms int, at time.Time) {
			if ms%300 == 7 {
				c.ping(at, 17)
			}
		}, diag.RefreshedByAppPings, 0.3, 0.3, 17},
		{"keepalive 2/1/3 answered", time.Second, func(c *conn, ms int, at time.Time) {
			if ms%(2*second) == 1200 {
				c.probe(at, true)
			}
		}, diag.RefreshedByKeepalive, 2, 0, 0},
		{"peer's keepalive", time.Second, func(c *conn, ms int, at time.Time) {
			if ms%(3*second) == 2500 {
				c.peerProbe(at)
			}
		}, diag.RefreshedByKeepalive, 3, 0, 0},
		{"silent", time.Second, func(*conn, int, time.Time) {}, diag.RefreshedByNone, 30, 0, 0},
		{"a dead peer's data retransmitted", time.Second, func(c *conn, ms int, at time.Time) {
			if ms > 0 && ms%(3*second) == 0 {
				c.retransmit(100)
			}
		}, diag.RefreshedByNone, 30, 0, 0},
		{"an orphan's FIN retransmitted", time.Second, func(c *conn, ms int, at time.Time) {
			if ms > 0 && ms%(4*second) == 700 {
				c.retransmit(0)
			}
			// Each FIN goes out, so the path sees a segment every 4 s.
		}, diag.RefreshedByNone, 4, 0, 0},
		{"requests of varied size", time.Second, func(c *conn, ms int, at time.Time) {
			if ms%(4*second) == 100 {
				c.send(at, uint64(100+ms/second))
			}
		}, diag.RefreshedByData, 4, 0, 0},
		{"one ping, then quiet", time.Second, func(c *conn, ms int, at time.Time) {
			if ms == 5*second {
				c.ping(at, 17)
			}
		}, diag.RefreshedByData, 25, 0, 0},
		{"heartbeat answered with another size", 500 * time.Millisecond, func(c *conn, ms int, at time.Time) {
			if ms%(5*second) == 10 {
				c.ping(at, 14)
				c.info.BytesReceived -= 7
			}
		}, diag.RefreshedByData, 5, 0, 0},
		{"small writes never answered", 500 * time.Millisecond, func(c *conn, ms int, at time.Time) {
			if ms%(5*second) == 10 {
				c.send(at, 17)
			}
		}, diag.RefreshedByData, 5, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := play(30*time.Second, tt.interval, tt.act)
			t.Logf("%+v pings %+v", *o, o.Pings)
			if o.RefreshedBy != tt.refresh {
				t.Errorf("refreshed_by %q, want %q", o.RefreshedBy, tt.refresh)
			}
			if !near(o.LongestQuietS, tt.quiet, tt.interval.Seconds()) {
				t.Errorf("longest quiet %.3f s, want %.3f ± %v", o.LongestQuietS, tt.quiet, tt.interval)
			}
			if !near(o.LongestQuietWatchedS, min(tt.quiet, 30), tt.interval.Seconds()) {
				t.Errorf("longest quiet within the watch %.3f s, want %.3f ± %v", o.LongestQuietWatchedS, min(tt.quiet, 30), tt.interval)
			}
			if o.WatchedS != 30 || o.Samples != int(30*time.Second/tt.interval)+1 {
				t.Errorf("watched %v s in %d samples, want 30 s", o.WatchedS, o.Samples)
			}
			switch {
			case tt.period == 0 && o.Pings != nil:
				t.Errorf("pings %+v, want none", *o.Pings)
			case tt.period != 0 && o.Pings == nil:
				t.Errorf("no pings, want every %v s", tt.period)
			case tt.period != 0:
				if !near(o.Pings.PeriodS, tt.period, tt.period/10) || o.Pings.SizeBytes != tt.size {
					t.Errorf("pings %+v, want every %v s of %d bytes", *o.Pings, tt.period, tt.size)
				}
			}
			if tt.refresh == diag.RefreshedByKeepalive && o.KeepaliveProbesSent+o.PeerProbes < 10 {
				t.Errorf("%d probes sent, %d of the peer's, want one every few seconds", o.KeepaliveProbesSent, o.PeerProbes)
			}
			if tt.name == "keepalive 2/1/3 answered" && (o.KeepaliveProbesAnswered != o.KeepaliveProbesSent || o.PeerProbes != 0) {
				t.Errorf("%d probes sent, %d answered, %d of the peer's: want all of ours answered", o.KeepaliveProbesSent, o.KeepaliveProbesAnswered, o.PeerProbes)
			}
			if tt.name == "peer's keepalive" && o.KeepaliveProbesSent != 0 {
				t.Errorf("%d probes of ours, want the peer's alone", o.KeepaliveProbesSent)
			}
		})
	}
}

// TestObserveUnansweredProbes: probes that nothing answers still cross
// the path, and are counted unanswered.
func TestObserveUnansweredProbes(t *testing.T) {
	o := play(10*time.Second, time.Second, func(c *conn, ms int, at time.Time) {
		if ms >= 3000 && ms%1000 == 500 {
			c.probe(at, false)
		}
	})
	if o.RefreshedBy != diag.RefreshedByKeepalive || o.KeepaliveProbesSent != 7 || o.KeepaliveProbesAnswered != 0 {
		t.Errorf("%+v, want 7 probes, none answered", *o)
	}
}

// TestObserveWindowProbes: the persist timer's probes, sent while the
// peer's window is closed, are told from keepalive's.
func TestObserveWindowProbes(t *testing.T) {
	o := play(10*time.Second, time.Second, func(c *conn, ms int, at time.Time) {
		c.info.SndWnd = 0
		if ms == 1200 || ms == 1600 || ms == 2400 || ms == 4000 || ms == 7200 {
			c.probe(at, true)
		}
	})
	if o.RefreshedBy != diag.RefreshedByKeepalive || o.WindowProbes != 5 || o.KeepaliveProbesSent != 0 || !near(o.LongestQuietS, 3.2, 1) {
		t.Errorf("%+v, want 5 window probes, no keepalive, quiet 3.2 s between the last two", *o)
	}
}

// TestObserverFollowsCookies: sockets are told apart by cookie, a socket
// seen once has no observation, and a closed one is forgotten.
func TestObserverFollowsCookies(t *testing.T) {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	snap := func(s int, ids ...diag.Cookie) *diag.Snapshot {
		out := &diag.Snapshot{TakenAt: start.Add(time.Duration(s) * time.Second)}
		for _, id := range ids {
			out.Sockets = append(out.Sockets, diag.Socket{ID: id, State: diag.Established, TCPInfo: &diag.TCPInfo{Size: 248}})
		}
		out.Sockets = append(out.Sockets, diag.Socket{ID: 0xf, State: diag.Listen, TCPInfo: &diag.TCPInfo{}})
		return out
	}
	var o Observer
	o.Add(snap(0, 0xa, 0xb))
	o.Add(snap(1, 0xa))
	last := snap(2, 0xa, 0xb)
	o.Add(last)
	o.Attach(last)
	for _, s := range last.Sockets {
		switch {
		case s.ID == 0xa && (s.Observed == nil || s.Observed.Samples != 3 || s.Observed.WatchedS != 2):
			t.Errorf("a: %+v, want 3 samples over 2 s", s.Observed)
		case s.ID != 0xa && s.Observed != nil:
			t.Errorf("%s: %+v, want nothing (a new socket, or a listener)", s.ID, *s.Observed)
		}
	}
}

// TestLastSeenEntries: a connection's last sample keeps the conntrack
// entries of the last sample that had any, with the tcp_info of that
// sample, not of a later one whose entry had gone.
func TestLastSeenEntries(t *testing.T) {
	o := Observer{keepSeen: true}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	flow := []diag.Flow{{Netns: diag.Host, TCPState: "ESTABLISHED", ExpiresInS: 3}}
	sample := func(n int, segsOut uint32, entries []diag.Flow) {
		s := diag.Socket{ID: 9, State: diag.Established,
			Local: netip.MustParseAddrPort("10.0.0.1:40000"), Remote: netip.MustParseAddrPort("10.0.0.2:80"),
			TCPInfo: &diag.TCPInfo{SegsOut: segsOut}, Conntrack: entries}
		o.Add(&diag.Snapshot{TakenAt: at.Add(time.Duration(n) * time.Second), Sockets: []diag.Socket{s}})
	}
	check := func(when string, wantAt time.Time, wantSegs uint32) {
		t.Helper()
		ls := o.seen[9]
		if ls == nil || ls.entries == nil {
			t.Fatalf("%s: no entries kept", when)
		}
		if !ls.entriesAt.Equal(wantAt) || ls.entriesTCPInfo().SegsOut != wantSegs {
			t.Errorf("%s: entries of %v with segs_out %d, want of %v with %d", when, ls.entriesAt, ls.entriesTCPInfo().SegsOut, wantAt, wantSegs)
		}
	}
	sample(0, 10, flow)
	sample(1, 11, flow)
	check("while the entry is there", at.Add(time.Second), 11)
	sample(2, 12, nil)
	check("once it has gone", at.Add(time.Second), 11)
	sample(3, 13, nil)
	check("a sample later", at.Add(time.Second), 11)
	sample(4, 14, flow)
	check("back again", at.Add(4*time.Second), 14)
}

// TestLastSeenKeepsNoOldSnapshot: a connection's last sample points into
// the last snapshot added while the dump lists it, and is copied out once
// it is gone, so that an older snapshot is collected as soon as nobody
// else holds it.
func TestLastSeenKeepsNoOldSnapshot(t *testing.T) {
	o := Observer{keepSeen: true}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	socket := func(id diag.Cookie, port uint16, segsOut uint32) diag.Socket {
		return diag.Socket{ID: id, State: diag.Established, Processes: []diag.Process{{PID: 7, Comm: "app", FD: int(port)}},
			Local:   netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port),
			Remote:  netip.MustParseAddrPort("10.0.0.2:80"),
			TCPInfo: &diag.TCPInfo{SegsOut: segsOut}, Observed: &diag.Observed{Samples: 1}}
	}
	first := &diag.Snapshot{TakenAt: at, Sockets: []diag.Socket{socket(1, 40001, 10), socket(2, 40002, 20)}}
	o.Add(first)
	collected := make(chan struct{})
	runtime.AddCleanup(&first.Sockets[0], func(ch chan struct{}) { close(ch) }, collected)
	second := &diag.Snapshot{TakenAt: at.Add(time.Second), Sockets: []diag.Socket{socket(1, 40001, 11)}}
	o.Add(second)
	first = nil

	if got := o.seen[1].sock; got != &second.Sockets[0] {
		t.Errorf("the listed connection's last sample is %p, want its socket in the last snapshot, %p", got, &second.Sockets[0])
	}
	gone := o.seen[2]
	if gone == nil || !gone.detached {
		t.Fatalf("the connection gone from the dump was not copied out: %+v", gone)
	}
	if s := gone.sock; s.Local.Port() != 40002 || s.TCPInfo.SegsOut != 20 || len(s.Processes) != 1 || s.Observed != nil {
		t.Errorf("the copy says %v, segs_out %d, %d owners, observed %v; want 10.0.0.1:40002, 20, 1 owner, none", s.Local, s.TCPInfo.SegsOut, len(s.Processes), s.Observed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		select {
		case <-collected:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the first snapshot's sockets are still alive after the second snapshot was added")
		}
	}
}

// TestObservedEntriesSeen: a connection whose entry a sample saw keeps
// that table's entry, and how it translated the flow, once the entry is
// gone; one never seen with an entry has none.
func TestObservedEntriesSeen(t *testing.T) {
	var o Observer
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	entry := []diag.Flow{{Netns: diag.Host, TCPState: "ESTABLISHED", ExpiresInS: 3, NAT: "dnat"}, {Netns: diag.Target, TCPState: "ESTABLISHED"}}
	sample := func(n int, entries []diag.Flow) *diag.Snapshot {
		snap := &diag.Snapshot{TakenAt: at.Add(time.Duration(n) * time.Second)}
		for id, c := range [][]diag.Flow{entries, nil} {
			snap.Sockets = append(snap.Sockets, diag.Socket{ID: diag.Cookie(id + 1), State: diag.Established,
				Local:   netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+id)),
				Remote:  netip.MustParseAddrPort("10.0.0.2:80"),
				TCPInfo: &diag.TCPInfo{SegsOut: 10}, Conntrack: c})
		}
		o.Add(snap)
		o.Attach(snap)
		return snap
	}
	sample(0, entry)
	sample(1, entry)
	sample(2, nil)
	last := sample(5, nil)
	got := last.Sockets[0].Observed.EntriesSeen
	if len(got) != 2 || got[0].Netns != diag.Target || got[0].NAT != "" || got[1].Netns != diag.Host || got[1].NAT != "dnat" {
		t.Errorf("the connection whose entries went: seen %+v, want the target's and the host's (dnat)", got)
	}
	for _, e := range got {
		if e.MissingS == nil || *e.MissingS != 3 {
			t.Errorf("%s's entry: missing for %v, want 3 s (from the first sample without it)", e.Netns, e.MissingS)
		}
	}
	// A table that holds the entry again: not missing.
	again := sample(6, entry[:1])
	if e, ok := again.Sockets[0].Observed.EntrySeen(diag.Host); !ok || e.MissingS != nil {
		t.Errorf("the host's entry back: %+v", e)
	}
	if e, _ := again.Sockets[0].Observed.EntrySeen(diag.Target); e.MissingS == nil || *e.MissingS != 4 {
		t.Errorf("the target's entry still gone: %+v", e)
	}
	if e, ok := last.Sockets[0].Observed.EntrySeen(diag.Host); !ok || e.NAT != "dnat" {
		t.Errorf("the host's entry seen: %+v, %v", e, ok)
	}
	if got := last.Sockets[1].Observed; got.EntriesSeen != nil {
		t.Errorf("the connection never seen with an entry: seen %v, want none", got.EntriesSeen)
	}
}
