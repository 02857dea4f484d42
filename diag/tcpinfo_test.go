package diag

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestTCPInfoDurations: each duration method reads its own field of
// tcp_info, at its offset, in the kernel's unit for it.
func TestTCPInfoDurations(t *testing.T) {
	b := make([]byte, 248)
	put := func(off int, v uint32) { binary.NativeEndian.PutUint32(b[off:], v) }
	put(8, 3092000)   // rto, µs
	put(12, 40000)    // ato, µs
	put(44, 1500)     // last_data_sent, ms
	put(48, 9)        // last_ack_sent, ms (never filled by Linux)
	put(52, 2500)     // last_data_recv, ms
	put(56, 700)      // last_ack_recv, ms
	put(68, 1029578)  // rtt, µs
	put(72, 514789)   // rttvar, µs
	put(92, 123456)   // rcv_rtt, µs
	put(148, 1000001) // min_rtt, µs
	info := decodeTCPInfo(b)
	for _, tt := range []struct {
		name      string
		got, want time.Duration
	}{
		{"RTO", info.RTO(), 3092 * time.Millisecond},
		{"ATO", info.ATO(), 40 * time.Millisecond},
		{"SinceDataSent", info.SinceDataSent(), 1500 * time.Millisecond},
		{"SinceDataRecv", info.SinceDataRecv(), 2500 * time.Millisecond},
		{"SinceAckRecv", info.SinceAckRecv(), 700 * time.Millisecond},
		{"RTT", info.RTT(), 1029578 * time.Microsecond},
		{"RTTVar", info.RTTVar(), 514789 * time.Microsecond},
		{"RcvRTT", info.RcvRTT(), 123456 * time.Microsecond},
		{"MinRTT", info.MinRTT(), 1000001 * time.Microsecond},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	s := Socket{TCPInfo: &info, Timer: Timer{Kind: TimerKeepalive, ExpiresMS: 600000}}
	if got := s.Idle(); got != 1500*time.Millisecond {
		t.Errorf("Idle = %v, want the shorter quiet, 1.5s (data sent)", got)
	}
	if got := (&Socket{}).Idle(); got != 0 {
		t.Errorf("Idle without tcp_info = %v, want 0", got)
	}
	if got := s.Timer.Expires(); got != 10*time.Minute {
		t.Errorf("Expires = %v, want 10m", got)
	}
	for _, tt := range []struct {
		ms    *int
		want  time.Duration
		known bool
	}{{nil, 0, false}, {new(0), 0, true}, {new(20000), 20 * time.Second, true}} {
		s.UserTimeoutMS = tt.ms
		if got, known := s.UserTimeout(); got != tt.want || known != tt.known {
			t.Errorf("UserTimeout of %v = %v, %v; want %v, %v", tt.ms, got, known, tt.want, tt.known)
		}
	}
}
