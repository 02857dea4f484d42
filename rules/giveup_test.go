package rules

import (
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

func TestModelTimeout(t *testing.T) {
	tests := []struct {
		retries2 int
		rtoMax   time.Duration
		want     time.Duration
	}{
		{15, 120 * time.Second, 924600 * time.Millisecond}, // the kernel's documented ~924.6 s
		{0, 120 * time.Second, 200 * time.Millisecond},
		{4, 120 * time.Second, 6200 * time.Millisecond},
		{8, 120 * time.Second, 102200 * time.Millisecond},
		{9, 120 * time.Second, 204600 * time.Millisecond},  // last exponential step
		{10, 120 * time.Second, 324600 * time.Millisecond}, // first linear step
		{15, 60 * time.Second, 522200 * time.Millisecond},  // tcp_rto_max_ms=60000
	}
	for _, tt := range tests {
		if got := ModelTimeout(tt.retries2, tt.rtoMax); got != tt.want {
			t.Errorf("ModelTimeout(%d, %v) = %v, want %v", tt.retries2, tt.rtoMax, got, tt.want)
		}
	}
}

func TestAbortAfter(t *testing.T) {
	tests := []struct {
		name     string
		sysctls  diag.Sysctls
		userTO   time.Duration
		firstRTO time.Duration
		want     time.Duration
	}{
		// Timers of 204 ms doubling: 0.204 0.612 1.428 3.06 6.324 — the first at or past 6.2 s.
		{"retries2=4", diag.Sysctls{diag.Retries2: 4}, 0, 204 * time.Millisecond, 6324 * time.Millisecond},
		{"retries2=4, exact 200 ms", diag.Sysctls{diag.Retries2: 4}, 0, 200 * time.Millisecond, 6200 * time.Millisecond},
		{"retries2=15 default", diag.Sysctls{diag.Retries2: 15}, 0, 200 * time.Millisecond, 924600 * time.Millisecond},
		{"user timeout wins", diag.Sysctls{diag.Retries2: 15}, 3 * time.Second, 204 * time.Millisecond, 3 * time.Second},
		{"user timeout 0 is unset", diag.Sysctls{diag.Retries2: 4}, 0, 204 * time.Millisecond, 6324 * time.Millisecond},
	}
	for _, tt := range tests {
		rt, ok := NewRetransmission(tt.sysctls, tt.userTO)
		if !ok {
			t.Fatalf("%s: no model", tt.name)
		}
		if got := rt.AbortAfter(tt.firstRTO); got != tt.want {
			t.Errorf("%s: AbortAfter = %v, want %v", tt.name, got, tt.want)
		}
	}
	if _, ok := NewRetransmission(diag.Sysctls{}, 0); ok {
		t.Error("model without tcp_retries2 or a user timeout")
	}
}

func TestRetransmitState(t *testing.T) {
	// Third backoff: timers of 0.204, 0.408, 0.816 s have expired and the
	// 1.632 s one has 1.032 s left, so 2.028 s have passed since the send.
	s := &diag.Socket{
		Timer:   diag.Timer{Kind: diag.TimerOn, ExpiresMS: 1032, Retrans: 3},
		TCPInfo: &diag.TCPInfo{RTOUs: 1632000, Backoff: 3, RTTUs: 50, RTTVarUs: 50000},
	}
	got := retransmitState(s, 120*time.Second)
	if got.FirstRTO != 204*time.Millisecond || got.Elapsed != 2028*time.Millisecond {
		t.Errorf("retransmitState = %+v, want first 204ms, elapsed 2.028s", got)
	}
	// At the cap the base comes from the RTT instead.
	s.TCPInfo = &diag.TCPInfo{RTOUs: 120000000, Backoff: 12, RTTUs: 1000, RTTVarUs: 50000}
	if got := retransmitState(s, 120*time.Second); got.FirstRTO != 201*time.Millisecond {
		t.Errorf("capped: first RTO %v, want 201ms", got.FirstRTO)
	}
}

// TestHandshakeGiveUp: a connect on 6.5+ defaults (tcp_syn_retries=6,
// tcp_syn_linear_timeouts=4) retransmits after 1,1,1,1,1,2,4,8,16,32 s and
// fails at the first timeout past both 10 retransmissions and 127 s
// (tcp_model_timeout of 6 from 1 s): 131 s. With fewer SYN retries the
// time budget comes first. SYN-ACKs double from 1 s and only count: 63 s
// for tcp_synack_retries=5.
func TestHandshakeGiveUp(t *testing.T) {
	tests := []struct {
		h    Handshake
		want time.Duration
	}{
		{Handshake{Retries: 6, Linear: 4, RTOMax: defaultRTOMax, Syn: true}, 131 * time.Second},
		{Handshake{Retries: 6, RTOMax: defaultRTOMax, Syn: true}, 127 * time.Second},
		// Timeouts at 1,2,3,4,5,7 s: 7 s is the budget of 2 retries.
		{Handshake{Retries: 2, Linear: 4, RTOMax: defaultRTOMax, Syn: true}, 7 * time.Second},
		// 1,2,3 s: the 3 s budget of 1 retry before the count of 5.
		{Handshake{Retries: 1, Linear: 4, RTOMax: defaultRTOMax, Syn: true}, 3 * time.Second},
		// 1,2,3,4,5,7,11,19 s: the first timeout past the 15 s budget of 3.
		{Handshake{Retries: 3, Linear: 4, RTOMax: defaultRTOMax, Syn: true}, 19 * time.Second},
		{Handshake{Retries: 5, RTOMax: defaultRTOMax}, 63 * time.Second},
		// A lower tcp_rto_max_ms caps the doubling.
		{Handshake{Retries: 8, RTOMax: 30 * time.Second}, (1 + 2 + 4 + 8 + 16 + 30 + 30 + 30 + 30) * time.Second},
		{Handshake{Retries: 6, Linear: 4, RTOMax: defaultRTOMax, UserTimeout: 5500 * time.Millisecond, Syn: true}, 5500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := tt.h.AbortAfter(); got != tt.want {
			t.Errorf("%+v: AbortAfter = %v, want %v", tt.h, got, tt.want)
		}
	}
	h := Handshake{Retries: 6, Linear: 4, RTOMax: defaultRTOMax}
	// After 6 retransmissions (at 1,2,3,4,5,7 s) the timer is 4 s long;
	// 1.5 s left of it means 9.5 s since the first SYN.
	if got := h.Elapsed(6, 1500*time.Millisecond); got != 9500*time.Millisecond {
		t.Errorf("Elapsed = %v, want 9.5s", got)
	}
}
