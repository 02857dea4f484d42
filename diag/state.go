package diag

import "fmt"

// State is a TCP state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// The kernel's TCP states.
const (
	Established State = 1 + iota
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
)

var stateNames = [...]string{
	Established: "ESTABLISHED",
	SynSent:     "SYN_SENT",
	SynRecv:     "SYN_RECV",
	FinWait1:    "FIN_WAIT1",
	FinWait2:    "FIN_WAIT2",
	TimeWait:    "TIME_WAIT",
	Close:       "CLOSE",
	CloseWait:   "CLOSE_WAIT",
	LastAck:     "LAST_ACK",
	Listen:      "LISTEN",
	Closing:     "CLOSING",
	// A request socket is a connection in SYN_RECV to everyone but the kernel.
	NewSynRecv: "SYN_RECV",
}

// String returns the kernel's name of the state.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// MarshalText encodes the state by name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state name written by MarshalText.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n != "" && n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown TCP state %q", b)
}

// allStates asks inet_diag for sockets in every state.
const allStates = 0xffffffff

// TimerKind says which of a socket's timers the kernel reports (idiag_timer).
type TimerKind uint8

// The timers inet_diag reports, one per socket.
const (
	TimerOff TimerKind = iota
	// TimerOn is the retransmit timer (also loss probes and reordering timeouts).
	TimerOn
	TimerKeepalive
	TimerTimeWait
	// TimerPersist is the zero-window probe timer.
	TimerPersist
)

var timerNames = [...]string{"off", "on", "keepalive", "timewait", "persist"}

// String returns the name ss uses for the timer.
func (k TimerKind) String() string {
	if int(k) < len(timerNames) {
		return timerNames[k]
	}
	return fmt.Sprintf("timer(%d)", uint8(k))
}

// MarshalText encodes the timer kind by name.
func (k TimerKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a timer name written by MarshalText.
func (k *TimerKind) UnmarshalText(b []byte) error {
	for i, n := range timerNames {
		if n == string(b) {
			*k = TimerKind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown timer %q", b)
}
