package rules

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/tcpvet/tcpvet/diag"
)

// Evidence is what a finding rests on: the figures the rule read and the
// ones it derived, each named for the counter or setting it is. Each family
// of rules fills its own part; in JSON they are one flat object, and a part
// a rule does not use is left out.
type Evidence struct {
	*PathEvidence
	*GiveUpEvidence
	*RetransEvidence
	*QueueEvidence
	*NamespaceEvidence
	*ObservedEvidence
}

// PathEvidence is what the keepalive rules read of a connection and of the
// middlebox on its path that decides its fate.
type PathEvidence struct {
	// IdleS is how long no data went either way.
	IdleS float64 `json:"idle_s"`
	// Side is "client" or "server": which end of the connection this is.
	Side string `json:"side"`
	// Keepalive is SO_KEEPALIVE; nil when unknown.
	Keepalive *bool `json:"keepalive"`
	// The socket's keepalive timings, when keepalive is on.
	KeepaliveIdleS     int    `json:"keepalive_idle_s,omitempty"`
	KeepaliveIntervalS int    `json:"keepalive_interval_s,omitempty"`
	KeepaliveProbes    int    `json:"keepalive_probes,omitempty"`
	KeepaliveSource    string `json:"keepalive_source,omitempty"`
	// DetectionS is how long keepalive takes to declare a silent peer dead.
	DetectionS float64 `json:"detection_s,omitempty"`

	// The middlebox: its name, its idle timeout for this flow, where the
	// figure comes from, what it does with a forgotten flow in general,
	// and why this connection passes through it.
	Middlebox       string  `json:"middlebox,omitempty"`
	IdleTimeoutS    float64 `json:"idle_timeout_s,omitempty"`
	MiddleboxSource string  `json:"middlebox_source,omitempty"`
	OnExpiry        Expiry  `json:"on_expiry,omitempty"`
	MiddleboxMatch  string  `json:"middlebox_match,omitempty"`
	// ForgetsInS is how long until it forgets the flow, 0 when it has
	// (AlreadyForgotten) or when no middlebox is known (Middlebox empty).
	ForgetsInS       float64 `json:"forgets_in_s"`
	AlreadyForgotten bool    `json:"already_forgotten"`
	// Meets is what the flow's next packet meets then, and MeetsBecause
	// how tcpvet knows.
	Meets        Outcome `json:"meets,omitempty"`
	MeetsBecause string  `json:"meets_because,omitempty"`

	// The middlebox's own record of the flow, where tcpvet read one.
	EntryExpiresInS uint32 `json:"entry_expires_in_s,omitempty"`
	EntryTimeoutS   uint32 `json:"entry_timeout_s,omitempty"`
	EntryNAT        string `json:"entry_nat,omitempty"`
	EntryOriginal   string `json:"entry_original,omitempty"`
	IPVSExpiresInS  uint32 `json:"ipvs_expires_in_s,omitempty"`
	IPVSState       string `json:"ipvs_state,omitempty"`
}

// GiveUpEvidence is when the kernel gives up on a connection nothing
// answers, and what sets that.
type GiveUpEvidence struct {
	GivesUpInS     *float64 `json:"gives_up_in_s,omitempty"`
	GivesUpAfterS  float64  `json:"gives_up_after_s,omitempty"`
	GivesUpBecause string   `json:"gives_up_because,omitempty"`
}

// RetransEvidence is a connection's retransmission so far, each figure
// named for the kernel's counter.
type RetransEvidence struct {
	State string `json:"state,omitempty"`
	// TCPIRetransmits is tcpi_retransmits: unanswered retransmissions in
	// a row; TotalRetrans is tcpi_total_retrans, in the connection's life.
	TCPIRetransmits uint8  `json:"tcpi_retransmits,omitempty"`
	TotalRetrans    uint32 `json:"total_retrans,omitempty"`
	Backoff         uint8  `json:"backoff,omitempty"`
	Unacked         uint32 `json:"unacked,omitempty"`
	LastAckRecvMS   uint32 `json:"last_ack_recv_ms,omitempty"`
	RTOMS           uint32 `json:"rto_ms,omitempty"`
	// TimerRetransmits is the count the retransmit timer reports
	// (idiag_retrans): SYNs or SYN-ACKs sent again.
	TimerRetransmits   int     `json:"timer_retransmits,omitempty"`
	RetransmittingForS float64 `json:"retransmitting_for_s,omitempty"`
	UnansweredForS     float64 `json:"unanswered_for_s,omitempty"`
}

// QueueEvidence is what sits in a socket's queues and who holds it.
type QueueEvidence struct {
	SendQ          uint32         `json:"send_q,omitempty"`
	RecvQ          uint32         `json:"recv_q,omitempty"`
	WindowProbes   uint8          `json:"window_probes,omitempty"`
	Timer          string         `json:"timer,omitempty"`
	LastDataRecvMS uint32         `json:"last_data_recv_ms,omitempty"`
	AcceptQueue    uint32         `json:"accept_queue,omitempty"`
	Backlog        uint32         `json:"backlog,omitempty"`
	Processes      []diag.Process `json:"processes,omitempty"`
}

// NamespaceEvidence is what a namespace-wide finding rests on.
type NamespaceEvidence struct {
	// Sysctls maps each sysctl that differs to its value here ("target")
	// and on the host.
	Sysctls map[string]map[string]int64 `json:"sysctls,omitempty"`
	// IPVS names the IPVS concerned, ExpireNodestConn its setting.
	IPVS             string  `json:"ipvs,omitempty"`
	ExpireNodestConn *int64  `json:"net.ipv4.vs.expire_nodest_conn,omitempty"`
	TCPRetries2      int     `json:"tcp_retries2,omitempty"`
	ModelTimeoutS    float64 `json:"model_timeout_s,omitempty"`
	// Exposed counts the connections concerned; Sockets lists the first
	// of them; OptionsUnknown counts those whose options are unknown.
	Exposed        int           `json:"exposed,omitempty"`
	Sockets        []diag.Cookie `json:"sockets,omitempty"`
	OptionsUnknown int           `json:"options_unknown,omitempty"`
}

// Field is one named figure of evidence, its value as JSON writes it, but
// a string bare.
type Field struct{ Name, Value string }

// Fields lists the evidence's figures in name order, as JSON names and
// writes them, for a person to read.
func (e Evidence) Fields() []Field {
	b, err := json.Marshal(e)
	if err != nil {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	out := make([]Field, 0, len(m))
	for k, v := range m {
		var str string
		if json.Unmarshal(v, &str) == nil {
			out = append(out, Field{k, str})
			continue
		}
		out = append(out, Field{k, string(v)})
	}
	slices.SortFunc(out, func(a, b Field) int { return strings.Compare(a.Name, b.Name) })
	return out
}
