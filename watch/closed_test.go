package watch

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// The deaths below are shaped as Linux 6.18 announced them in
// diag.TestDeathsOnAKernel; the samples as diag.Take reads sockets.

var (
	t0     = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	client = netip.MustParseAddrPort("198.18.93.1:40316")
	server = netip.MustParseAddrPort("198.18.93.2:7001")
)

func intp(n int) *int { return &n }

// sample is a socket as a sample at t0 saw it, open with nothing in
// flight.
func sample(state diag.State, info diag.TCPInfo) *diag.Socket {
	return &diag.Socket{ID: 0x6613b, State: state, Local: client, Remote: server, TCPInfo: &info}
}

// death is the socket's death, announced at t0+at.
func death(at time.Duration, rq, sq uint32, info diag.TCPInfo) diag.Death {
	info.State = uint8(diag.Close)
	return diag.Death{Cookie: 0x6613b, Local: client, Remote: server, State: diag.Close,
		RecvQ: rq, SendQ: sq, Info: &info, At: t0.Add(at)}
}

func seen() History { return History{FirstSeen: t0.Add(-10 * time.Second), LastAt: t0} }

func TestClassify(t *testing.T) {
	// The connecting end, open, 100 bytes sent and acknowledged: its
	// bytes_acked counts its SYN.
	open := diag.TCPInfo{BytesAcked: 101, BytesSent: 100, SegsIn: 3, SegsOut: 4, LastAckRecvMS: 500}
	// The accepting end: no SYN in bytes_acked.
	accepted := diag.TCPInfo{BytesAcked: 100, BytesSent: 100, SegsIn: 3, SegsOut: 4}
	// Retransmitting, as TCP_USER_TIMEOUT left it: queue purged, data
	// unacknowledged, nothing received since the sample.
	gaveUp := diag.TCPInfo{Retransmits: 3, CAState: 4, BytesAcked: 1, BytesSent: 500, BytesRetrans: 400,
		SegsIn: 1, SegsOut: 7, LastAckRecvMS: 6828}
	ut := sample(diag.Established, diag.TCPInfo{BytesAcked: 1, SegsIn: 1, SegsOut: 2})
	ut.UserTimeoutMS = intp(2000)
	ka := sample(diag.Established, diag.TCPInfo{BytesAcked: 1, SegsIn: 1, SegsOut: 2})
	ka.Keepalive = diag.Keepalive{Enabled: new(bool), Probes: intp(2)}
	*ka.Keepalive.Enabled = true

	tests := []struct {
		name  string
		last  *diag.Socket
		d     diag.Death
		h     History
		cause string
		why   string // a fragment of Why
	}{
		{name: "fin, connecting end, no sample: SYN + FIN acknowledged",
			d:     death(time.Second, 0, 0, diag.TCPInfo{BytesAcked: 102, BytesSent: 100, SegsIn: 4, SegsOut: 5}),
			cause: diag.CauseClosed, why: "FIN was acknowledged"},
		{name: "fin, accepting end, sampled: FIN acknowledged",
			last: sample(diag.Established, accepted),
			d:    death(time.Second, 0, 0, diag.TCPInfo{BytesAcked: 101, BytesSent: 100, BytesReceived: 101, SegsIn: 5, SegsOut: 5}),
			h:    seen(), cause: diag.CauseClosed, why: "FIN was acknowledged"},
		{name: "fin after the peer's, sampled in CLOSE_WAIT",
			last: sample(diag.CloseWait, open),
			d:    death(time.Second, 0, 0, diag.TCPInfo{BytesAcked: 102, BytesSent: 100, SegsIn: 5, SegsOut: 6}),
			h:    seen(), cause: diag.CauseClosed, why: "CLOSE_WAIT"},
		{name: "no final tcp_info, sampled in LAST_ACK",
			last: sample(diag.LastAck, open),
			d:    diag.Death{Cookie: 0x6613b, Local: client, Remote: server, State: diag.Close, At: t0.Add(time.Second)},
			h:    seen(), cause: diag.CauseClosed, why: "LAST_ACK"},
		{name: "no final tcp_info, no sample",
			d:     diag.Death{Cookie: 0x6613b, Local: client, Remote: server, State: diag.Close, At: t0},
			cause: diag.CauseUnknown, why: "no final tcp_info"},
		{name: "SO_LINGER 0: wiped by tcp_disconnect",
			last: sample(diag.Established, open),
			d: diag.Death{Cookie: 0x6613b, Local: netip.AddrPortFrom(netip.IPv4Unspecified(), client.Port()),
				Remote: netip.AddrPortFrom(server.Addr(), 0), State: diag.Close, SendQ: 65538,
				Info: &diag.TCPInfo{State: uint8(diag.Close), LastDataRecvMS: 7351412}, At: t0.Add(time.Second)},
			h: seen(), cause: diag.CauseClosed, why: "SO_LINGER 0"},
		{name: "SO_LINGER 0, no sample: no tcp_info worth keeping",
			d: diag.Death{Cookie: 0x6613b, Local: netip.AddrPortFrom(netip.IPv4Unspecified(), client.Port()),
				Remote: netip.AddrPortFrom(server.Addr(), 0), State: diag.Close,
				Info: &diag.TCPInfo{State: uint8(diag.Close), LastDataRecvMS: 7351412}, At: t0.Add(time.Second)},
			cause: diag.CauseClosed, why: "SO_LINGER 0"},
		{name: "TCP_USER_TIMEOUT: retransmitting, nothing arrived since the sample",
			last: ut, d: death(3*time.Second, 0, 100, gaveUp), h: seen(),
			cause: diag.CauseTimeout, why: "TCP_USER_TIMEOUT of 2.0 s"},
		{name: "keepalive: probes spent, nothing arrived since the sample",
			last: ka, d: death(5*time.Second, 0, 0, diag.TCPInfo{Probes: 2, BytesAcked: 1, SegsIn: 1, SegsOut: 5, LastAckRecvMS: 5000}),
			h: seen(), cause: diag.CauseTimeout, why: "keepalive's 2 probes spent"},
		{name: "retransmitting, no sample: a reset would look the same",
			d:     death(3*time.Second, 0, 100, gaveUp),
			cause: diag.CauseUnknown, why: "looks the same"},
		{name: "retransmitting, then a segment and no ACK: a reset",
			last: ut, d: death(3*time.Second, 0, 100, func() diag.TCPInfo { i := gaveUp; i.SegsIn = 2; return i }()),
			h: seen(), cause: diag.CauseReset, why: "no ACK did"},
		{name: "retransmitting, then ACKs came: cannot tell",
			last: ut, d: death(3*time.Second, 0, 100, func() diag.TCPInfo { i := gaveUp; i.SegsIn = 4; i.LastAckRecvMS = 1000; return i }()),
			h: seen(), cause: diag.CauseUnknown, why: "ACKs arrived after the last sample"},
		{name: "reset by the path: data never acknowledged, nothing retransmitted, no sample",
			d:     death(time.Second, 0, 100, diag.TCPInfo{BytesAcked: 1, BytesSent: 100, SegsIn: 2, SegsOut: 3, LastAckRecvMS: 6004}),
			cause: diag.CauseReset, why: "SendQ 100, what it sent never acknowledged"},
		{name: "reset by the peer while idle: one segment more, no ACK since the sample",
			last: sample(diag.Established, open),
			d:    death(2*time.Second, 0, 0, diag.TCPInfo{BytesAcked: 101, BytesSent: 100, SegsIn: 4, SegsOut: 4, LastAckRecvMS: 2500}),
			h:    seen(), cause: diag.CauseReset, why: "segs_in 3 → 4"},
		{name: "connecting end, no FIN, no sample: which end is unknown",
			d:     death(2*time.Second, 0, 0, diag.TCPInfo{BytesAcked: 101, BytesSent: 100, SegsIn: 4, SegsOut: 4}),
			cause: diag.CauseUnknown, why: "which end connected"},
		{name: "closed by its application with data unread",
			last: sample(diag.Established, diag.TCPInfo{BytesAcked: 0, BytesReceived: 100, SegsIn: 3, SegsOut: 2}),
			d:    death(time.Second, 100, 0, diag.TCPInfo{BytesReceived: 100, SegsIn: 3, SegsOut: 3}),
			h:    seen(), cause: diag.CauseClosed, why: "100 bytes unread"},
		{name: "data unread, no sample",
			d:     death(time.Second, 100, 0, diag.TCPInfo{BytesReceived: 100, SegsIn: 3, SegsOut: 3}),
			cause: diag.CauseUnknown, why: "100 bytes unread"},
		{name: "connect refused",
			last: sample(diag.SynSent, diag.TCPInfo{SegsOut: 1}),
			d:    death(time.Second, 0, 0, diag.TCPInfo{SegsIn: 1, SegsOut: 1}),
			h:    seen(), cause: diag.CauseReset, why: "refused"},
		{name: "sampled already dead in CLOSE, its application holding it",
			last: sample(diag.Close, open),
			d:    death(time.Second, 0, 0, open),
			h:    seen(), cause: diag.CauseReset, why: "already in CLOSE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Classify(tt.last, tt.d, tt.h)
			if c.Cause != tt.cause || !strings.Contains(c.Why, tt.why) {
				t.Errorf("cause %q, why %q\nwant %q, why containing %q", c.Cause, c.Why, tt.cause, tt.why)
			}
			// The tcp_info kept is the death's, unless it was wiped (or
			// there is none): then the last sample's.
			want := tt.d.Info
			if want == nil || tt.d.Remote.Port() == 0 {
				want = nil
				if tt.last != nil {
					want = tt.last.TCPInfo
				}
			}
			if c.TCPInfo != want {
				t.Errorf("tcp_info %+v, want %+v", c.TCPInfo, want)
			}
			if c.Why == "" || strings.Count(c.Why, ". ") > 0 {
				t.Errorf("why %q: want one sentence", c.Why)
			}
		})
	}
}

func TestClassifyFields(t *testing.T) {
	last := sample(diag.Established, diag.TCPInfo{BytesAcked: 1, SegsIn: 1, SegsOut: 2, RTTUs: 42})
	d := death(4*time.Second, 0, 100, diag.TCPInfo{BytesAcked: 1, BytesSent: 100, SegsIn: 2, SegsOut: 3, LastAckRecvMS: 6004})
	forgot := diag.FlowEnd{OrigSrc: client, OrigDst: server, ReplySrc: netip.MustParseAddrPort("198.18.103.2:7000"), ReplyDst: client,
		TCPState: "ESTABLISHED", At: t0.Add(3800 * time.Millisecond)}
	h := History{FirstSeen: t0.Add(-6 * time.Second), LastAt: t0, Forgotten: []diag.FlowEnd{forgot}}
	c := Classify(last, d, h)
	if c.ID != 0x6613b || c.Local != client || c.Remote != server || c.LastState != "ESTABLISHED" || c.TCPInfo != d.Info {
		t.Errorf("closed = %+v: want the death's id, addresses and final tcp_info, the sample's state", c)
	}
	if c.LivedS == nil || *c.LivedS != 10 {
		t.Errorf("lived_s = %v, want 10 (first seen 6 s before the sample, died 4 s after)", c.LivedS)
	}
	if c.Cause != diag.CauseReset || c.PathForgotAt == nil || !c.PathForgotAt.Equal(forgot.At) || !strings.Contains(c.Why, "the path had forgotten it") {
		t.Errorf("cause %q, path forgot at %v, why %q: want a reset, the path's entry gone 200 ms before", c.Cause, c.PathForgotAt, c.Why)
	}
	// An entry that went after the death, or in TIME_WAIT, forgot nothing;
	// one read just after the death's announcement did.
	near := forgot
	near.At = d.At.Add(100 * time.Millisecond)
	h.Forgotten = []diag.FlowEnd{near}
	if c := Classify(last, d, h); c.PathForgotAt == nil {
		t.Errorf("an entry read 100 ms after the death: the path forgot nothing")
	}
	late, closed := forgot, forgot
	late.At = d.At.Add(time.Second)
	closed.TCPState = "TIME_WAIT"
	for _, e := range []diag.FlowEnd{late, closed} {
		h.Forgotten = []diag.FlowEnd{e}
		if c := Classify(last, d, h); c.PathForgotAt != nil {
			t.Errorf("an entry %+v: path forgot at %v, want nil", e, c.PathForgotAt)
		}
	}

	// Never sampled: no age, no last state, the death's own tcp_info.
	c = Classify(nil, d, History{})
	if c.LivedS != nil || c.LastState != "" || c.TCPInfo != d.Info {
		t.Errorf("never sampled: %+v", c)
	}
	// No final tcp_info: the last one sampled.
	d.Info = nil
	if c := Classify(last, d, h); c.TCPInfo != last.TCPInfo {
		t.Errorf("tcp_info %+v, want the sample's", c.TCPInfo)
	}

	b, err := json.Marshal(Classify(last, death(time.Second, 0, 0, diag.TCPInfo{}), seen()))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"cause", "ended_at", "id", "last_state", "lived_s", "local", "remote", "tcp_info", "why"}; !slices.Equal(keys, want) {
		t.Errorf("JSON keys %v, want %v", keys, want)
	}
}

func TestIsConnection(t *testing.T) {
	d := diag.Death{Local: client, Remote: server}
	unconnected := diag.Death{Local: netip.MustParseAddrPort("0.0.0.0:0"), Remote: netip.MustParseAddrPort("0.0.0.0:0")}
	aborted := diag.Death{Local: netip.MustParseAddrPort("0.0.0.0:40316"), Remote: netip.AddrPortFrom(server.Addr(), 0)}
	listener := &diag.Socket{State: diag.Listen, Local: server, Remote: netip.MustParseAddrPort("0.0.0.0:0")}
	for _, tt := range []struct {
		name string
		last *diag.Socket
		d    diag.Death
		want bool
	}{
		{"connection", nil, d, true},
		{"sampled connection", sample(diag.Established, diag.TCPInfo{}), d, true},
		{"aborted", nil, aborted, true},
		{"never connected", nil, unconnected, false},
		{"listener", listener, unconnected, false},
	} {
		if got := IsConnection(tt.last, tt.d); got != tt.want {
			t.Errorf("%s: IsConnection = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestExpiredBefore: a connection older than the watch announces no
// conntrack end, so the path's forgetting is read from its entry's time
// left in a sample and the one write that followed, and only where no
// bare segment (a probe, its answer) could have refreshed the entry.
func TestExpiredBefore(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	sampled := &diag.TCPInfo{SegsOut: 10, SegsIn: 9, DataSegsOut: 5, DataSegsIn: 5}
	h := History{Entries: []diag.Flow{{Netns: "host", ExpiresInS: 3, TCPState: "ESTABLISHED"}}, EntriesAt: at, EntriesInfo: sampled}
	// Written 6 s after the sample (the death is read 10 ms later), and
	// answered by one segment: the reset.
	death := func(segsOut, dataOut, segsIn uint32) diag.Death {
		return diag.Death{At: at.Add(6010 * time.Millisecond), Info: &diag.TCPInfo{SegsOut: segsOut, SegsIn: segsIn, DataSegsOut: dataOut, DataSegsIn: 5, LastDataSentMS: 10}}
	}
	if e, end, ok := expiredBefore(h, death(11, 6, 10)); !ok || e.Netns != "host" || !end.Equal(at.Add(3*time.Second)) {
		t.Errorf("a write 6 s after a sample that saw 3 s left: %v %v %v", e, end, ok)
	}
	if _, _, ok := expiredBefore(h, death(12, 6, 11)); ok {
		t.Error("a keepalive probe and its answer refresh the entry: nothing proves it ran out")
	}
	early := death(11, 6, 10)
	early.Info.LastDataSentMS = 4000
	if _, _, ok := expiredBefore(h, early); ok {
		t.Error("a write 2 s after the sample went out with the entry still there")
	}
	if _, _, ok := expiredBefore(History{}, death(11, 6, 10)); ok {
		t.Error("no entry seen, nothing to say")
	}
}
