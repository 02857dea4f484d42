package rules

import (
	"fmt"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// Kernel constants of the retransmission timer (include/net/tcp.h).
const (
	// rtoMin is TCP_RTO_MIN: the base of the kernel's give-up model for
	// established connections, whatever the connection's own RTO.
	rtoMin = 200 * time.Millisecond
	// defaultRTOMax is TCP_RTO_MAX, used where net.ipv4.tcp_rto_max_ms (6.15+)
	// is absent.
	defaultRTOMax = 120 * time.Second
)

// Retransmission is the kernel's give-up budget for a connection whose data
// goes unacknowledged, from the namespace's sysctls and the socket's
// TCP_USER_TIMEOUT.
type Retransmission struct {
	// Budget is how long after the oldest unacknowledged segment was first
	// sent the kernel may abort the connection.
	Budget time.Duration
	// UserTimeout is true when TCP_USER_TIMEOUT sets the budget. It also
	// clamps the retransmit timer, so the abort comes exactly at Budget;
	// otherwise the kernel only checks when the timer next fires.
	UserTimeout bool
	// Retries2 is net.ipv4.tcp_retries2 behind Budget, when UserTimeout is false.
	Retries2 int
	RTOMax   time.Duration
}

// ModelTimeout is tcp_model_timeout(): the time "retries2" retransmissions
// take when the first waits rtoMin and each later one twice as long, up to
// rtoMax. For tcp_retries2=15 and the default 120 s it is 924.6 s.
func ModelTimeout(retries2 int, rtoMax time.Duration) time.Duration {
	return modelTimeout(retries2, rtoMin, rtoMax)
}

// modelTimeout is tcp_model_timeout() from any base RTO: rtoMin for an
// established connection, the initial RTO for a handshake.
func modelTimeout(boundary int, base, rtoMax time.Duration) time.Duration {
	thresh := 0
	for base<<(thresh+1) <= rtoMax { // ilog2(rtoMax / base)
		thresh++
	}
	if boundary <= thresh {
		return time.Duration((2<<boundary)-1) * base
	}
	return time.Duration((2<<thresh)-1)*base + time.Duration(boundary-thresh)*rtoMax
}

// NewRetransmission builds the give-up budget for a socket: its
// TCP_USER_TIMEOUT when it has one (userTimeout above 0; 0 when unset or
// unknown), else tcp_retries2. It reports false when the sysctls needed are
// unknown.
func NewRetransmission(ns diag.Sysctls, userTimeout time.Duration) (Retransmission, bool) {
	rtoMax := rtoMaxOf(ns)
	if userTimeout > 0 {
		return Retransmission{Budget: userTimeout, UserTimeout: true, RTOMax: rtoMax}, true
	}
	r2, ok := ns.Get(diag.Retries2)
	if !ok {
		return Retransmission{}, false
	}
	return Retransmission{Budget: ModelTimeout(int(r2), rtoMax), Retries2: int(r2), RTOMax: rtoMax}, true
}

// Reason names what sets the budget, as a person would set it.
func (r Retransmission) Reason() string {
	if r.UserTimeout {
		return fmt.Sprintf("TCP_USER_TIMEOUT=%d ms", r.Budget.Milliseconds())
	}
	return fmt.Sprintf("tcp_retries2=%d", r.Retries2)
}

// AbortAfter is when, counted from the first transmission of the oldest
// unacknowledged segment, the kernel aborts the connection with ETIMEDOUT
// if no ACK comes: the first retransmit timer expiry at or after the budget,
// with timers of firstRTO, doubling up to RTOMax.
func (r Retransmission) AbortAfter(firstRTO time.Duration) time.Duration {
	if r.UserTimeout || firstRTO <= 0 {
		return r.Budget
	}
	var t time.Duration
	for rto := firstRTO; t < r.Budget; rto = min(2*rto, r.RTOMax) {
		t += rto
	}
	return t
}

// retransmitting describes where a socket's retransmit timer is now.
type retransmitting struct {
	// Elapsed estimates the time since the oldest unacknowledged segment
	// was first sent.
	Elapsed  time.Duration
	FirstRTO time.Duration
	// Unknown is set when Elapsed is a floor only: the kernel's counters
	// of this recovery ran over (retransmitState).
	Unknown bool
}

// retransmitState reconstructs the retransmission so far from what the
// kernel reports: icsk_backoff expiries of a timer that started at the
// connection's RTO and doubled each time, and the current timer's time left.
func retransmitState(s *diag.Socket, rtoMax time.Duration) retransmitting {
	info := s.TCPInfo
	rto := info.RTO()
	backoff := int(info.Backoff)
	first := rto >> backoff
	if rto >= rtoMax || first < rtoMin {
		// Capped, or shifted below the floor: rebuild the base RTO from the
		// smoothed RTT as the kernel does (srtt + 4 rttvar, at least rtoMin).
		first = max(rtoMin, info.RTT()+4*info.RTTVar())
	}
	var elapsed time.Duration
	step := first
	for range backoff {
		elapsed += step
		step = min(2*step, rtoMax)
	}
	if left := s.Timer.Expires(); left < rto {
		elapsed += rto - left
	}
	// ICMP unreachables from the path revert the backoff (RFC 6069,
	// tcp_ld_RTO_revert), so the expiries it counts fall short of the time
	// that passed, while the kernel gives up by that time. Its own clock of
	// the recovery (tcpi_total_rto_time, Linux 6.7+) runs from the first
	// expiry: it is this recovery's alone while it is the connection's
	// first, when every expiry (tcpi_total_rto) is this recovery's
	// (tcpi_retransmits). tcpi_retransmits is a byte: after 255 expiries
	// (some 50 s of retransmissions answered with ICMP) it wraps, the
	// kernel counts a new recovery and restarts its clock, and how long
	// the connection has retransmitted is no longer known.
	unknown := false
	if n := int(info.Retransmits); info.Size >= 248 && n > 0 {
		switch recoveries, total := int(info.TotalRTORecoveries), int(info.TotalRTO); {
		case recoveries == 1 && total == n:
			elapsed = max(elapsed, first+time.Duration(info.TotalRTOTimeMS)*time.Millisecond)
		case recoveries > 1 && total-n == 256*(recoveries-1):
			unknown = true
		}
	}
	return retransmitting{Elapsed: elapsed, FirstRTO: first, Unknown: unknown}
}

// initialRTO is TCP_TIMEOUT_INIT: the first retransmission timeout of a
// SYN or SYN-ACK, before any round trip was measured.
const initialRTO = time.Second

// Handshake is the kernel's give-up budget for a connection still in its
// handshake: a connect whose SYNs go unanswered (SYN_SENT), or an accepted
// request whose SYN-ACKs do (SYN_RECV). The kernel counts retransmissions
// here, not time (tcp_write_timeout, reqsk_timer_handler).
type Handshake struct {
	// Retries is TCP_SYNCNT or tcp_syn_retries (SYN_SENT), or
	// tcp_synack_retries (SYN_RECV).
	Retries int
	// Linear is tcp_syn_linear_timeouts for SYN_SENT: that many timeouts
	// more, at the initial RTO, before it doubles (Linux 6.5+; 0 before).
	Linear int
	RTOMax time.Duration
	// UserTimeout, when not zero, is TCP_USER_TIMEOUT, which also ends a
	// connect that takes longer.
	UserTimeout time.Duration
	// Syn is true for a connect (SYN_SENT), which the kernel also ends
	// by time: once tcp_model_timeout of Retries from the initial RTO has
	// passed, or TCP_USER_TIMEOUT instead. A request socket counts only.
	Syn bool
}

// rto is the k-th retransmission timeout, from 1: the initial RTO for the
// first Linear+1, then doubling up to RTOMax.
func (h Handshake) rto(k int) time.Duration {
	if k <= h.Linear+1 {
		return initialRTO
	}
	d := initialRTO
	for range k - h.Linear - 1 {
		if d = 2 * d; d >= h.RTOMax {
			return h.RTOMax
		}
	}
	return d
}

// AbortAfter is how long after the first SYN (or SYN-ACK) the kernel gives
// up: at the first timeout that comes after Retries+Linear retransmissions
// or, for a connect, at or past its time budget (tcp_write_timeout). With
// TCP_USER_TIMEOUT the timer is cut to fire right at it.
func (h Handshake) AbortAfter() time.Duration {
	budget := h.UserTimeout
	if budget == 0 && h.Syn {
		budget = modelTimeout(h.Retries, initialRTO, h.RTOMax)
	}
	var t time.Duration
	for k := 1; ; k++ {
		next := t + h.rto(k)
		if h.UserTimeout > 0 && next > h.UserTimeout {
			return max(t, h.UserTimeout)
		}
		t = next
		if k-1 >= h.Retries+h.Linear || h.Syn && t >= budget {
			return t
		}
	}
}

// Elapsed is the time since the first SYN of a handshake that has
// retransmitted retrans times and whose timer fires in left.
func (h Handshake) Elapsed(retrans int, left time.Duration) time.Duration {
	var t time.Duration
	for k := 1; k <= retrans; k++ {
		t += h.rto(k)
	}
	return t + max(0, h.rto(retrans+1)-left)
}

// Reason names what sets the budget, as a person would set it.
func (h Handshake) Reason(syn bool) string {
	if !syn {
		return fmt.Sprintf("tcp_synack_retries=%d", h.Retries)
	}
	if h.UserTimeout > 0 {
		return fmt.Sprintf("TCP_USER_TIMEOUT=%d ms, or %d SYN retransmissions (TCP_SYNCNT/tcp_syn_retries=%d + tcp_syn_linear_timeouts=%d) if sooner",
			h.UserTimeout.Milliseconds(), h.Retries+h.Linear, h.Retries, h.Linear)
	}
	return fmt.Sprintf("TCP_SYNCNT/tcp_syn_retries=%d: %s, or %d retransmissions with tcp_syn_linear_timeouts=%d if sooner",
		h.Retries, human(modelTimeout(h.Retries, initialRTO, h.RTOMax)), h.Retries+h.Linear, h.Linear)
}

// rtoMaxOf is the namespace's TCP_RTO_MAX: tcp_rto_max_ms where the kernel
// has it (6.15+), else the constant.
func rtoMaxOf(ns diag.Sysctls) time.Duration {
	if v, ok := ns.Get(diag.RTOMaxMS); ok && v > 0 {
		return time.Duration(v) * time.Millisecond
	}
	return defaultRTOMax
}

// NewHandshake builds the budget of a socket in SYN_SENT or SYN_RECV; it
// reports false when the state is neither or the sysctls are unknown.
func NewHandshake(ns diag.Sysctls, s *diag.Socket) (Handshake, bool) {
	h := Handshake{RTOMax: rtoMaxOf(ns)}
	switch s.State {
	case diag.SynSent:
		v, ok := ns.Get(diag.SynRetries)
		if s.SynRetries != nil {
			v, ok = int64(*s.SynRetries), true
		}
		if !ok {
			return h, false
		}
		lin, _ := ns.Get(diag.SynLinearTimeouts)
		h.Retries, h.Linear, h.Syn = int(v), int(lin), true
		h.UserTimeout, _ = s.UserTimeout()
	case diag.SynRecv, diag.NewSynRecv:
		// At most: the listener's own TCP_SYNCNT, which tcpvet does not
		// read, comes first, and a listener whose queue is half full prunes
		// its oldest requests sooner.
		v, ok := ns.Get(diag.SynackRetries)
		if !ok {
			return h, false
		}
		h.Retries = int(v)
	default:
		return h, false
	}
	return h, true
}
