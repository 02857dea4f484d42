package diag

import (
	"encoding/binary"
	"time"
)

// TCPInfo is struct tcp_info (include/uapi/linux/tcp.h) as the kernel sent it.
//
// Kernels append fields over time and send only the length they know, so a
// field past Size was not sent and reads as zero. A time field's name ends
// in its unit, as the kernel counts it (Us for microseconds, MS for
// milliseconds); the methods give the times the rest of tcpvet reads as
// durations.
type TCPInfo struct {
	// Size is how many bytes of tcp_info the kernel sent.
	Size int `json:"size"`

	State       uint8 `json:"state"`
	CAState     uint8 `json:"ca_state"`
	Retransmits uint8 `json:"retransmits"`
	Probes      uint8 `json:"probes"`
	Backoff     uint8 `json:"backoff"`
	Options     uint8 `json:"options"`
	SndWscale   uint8 `json:"snd_wscale"`
	RcvWscale   uint8 `json:"rcv_wscale"`

	RTOUs  uint32 `json:"rto_us"`
	ATOUs  uint32 `json:"ato_us"`
	SndMSS uint32 `json:"snd_mss"`
	RcvMSS uint32 `json:"rcv_mss"`

	Unacked uint32 `json:"unacked"`
	Sacked  uint32 `json:"sacked"`
	Lost    uint32 `json:"lost"`
	Retrans uint32 `json:"retrans"`
	Fackets uint32 `json:"fackets"`

	LastDataSentMS uint32 `json:"last_data_sent_ms"`
	// LastAckSentMS is always zero: Linux never fills it in.
	LastAckSentMS  uint32 `json:"last_ack_sent_ms"`
	LastDataRecvMS uint32 `json:"last_data_recv_ms"`
	LastAckRecvMS  uint32 `json:"last_ack_recv_ms"`

	PMTU        uint32 `json:"pmtu"`
	RcvSsthresh uint32 `json:"rcv_ssthresh"`
	RTTUs       uint32 `json:"rtt_us"`
	RTTVarUs    uint32 `json:"rttvar_us"`
	SndSsthresh uint32 `json:"snd_ssthresh"`
	SndCwnd     uint32 `json:"snd_cwnd"`
	AdvMSS      uint32 `json:"advmss"`
	Reordering  uint32 `json:"reordering"`
	RcvRTTUs    uint32 `json:"rcv_rtt_us"`
	RcvSpace    uint32 `json:"rcv_space"`

	TotalRetrans uint32 `json:"total_retrans"`

	PacingRate    uint64 `json:"pacing_rate"`
	MaxPacingRate uint64 `json:"max_pacing_rate"`
	BytesAcked    uint64 `json:"bytes_acked"`
	BytesReceived uint64 `json:"bytes_received"`
	SegsOut       uint32 `json:"segs_out"`
	SegsIn        uint32 `json:"segs_in"`

	NotsentBytes uint32 `json:"notsent_bytes"`
	MinRTTUs     uint32 `json:"min_rtt_us"`
	DataSegsIn   uint32 `json:"data_segs_in"`
	DataSegsOut  uint32 `json:"data_segs_out"`

	DeliveryRate uint64 `json:"delivery_rate"`

	BusyTimeUs      uint64 `json:"busy_time_us"`
	RwndLimitedUs   uint64 `json:"rwnd_limited_us"`
	SndbufLimitedUs uint64 `json:"sndbuf_limited_us"`

	Delivered   uint32 `json:"delivered"`
	DeliveredCE uint32 `json:"delivered_ce"`

	BytesSent    uint64 `json:"bytes_sent"`
	BytesRetrans uint64 `json:"bytes_retrans"`
	DSACKDups    uint32 `json:"dsack_dups"`
	ReordSeen    uint32 `json:"reord_seen"`

	RcvOOOPack uint32 `json:"rcv_ooopack"`

	SndWnd uint32 `json:"snd_wnd"`
	RcvWnd uint32 `json:"rcv_wnd"`

	Rehash uint32 `json:"rehash"`

	TotalRTO           uint16 `json:"total_rto"`
	TotalRTORecoveries uint16 `json:"total_rto_recoveries"`
	TotalRTOTimeMS     uint32 `json:"total_rto_time_ms"`
}

// micros and millis are a kernel count of microseconds or milliseconds as
// a duration.
func micros(us uint32) time.Duration { return time.Duration(us) * time.Microsecond }
func millis(ms uint32) time.Duration { return time.Duration(ms) * time.Millisecond }

// RTO is the retransmission timeout now, backoff included: how long the
// kernel waits for an ACK before it sends the oldest unacknowledged
// segment again.
func (t *TCPInfo) RTO() time.Duration { return micros(t.RTOUs) }

// ATO is the delayed-ACK timeout: how long the kernel may hold an ACK back.
func (t *TCPInfo) ATO() time.Duration { return micros(t.ATOUs) }

// RTT is the smoothed round-trip time.
func (t *TCPInfo) RTT() time.Duration { return micros(t.RTTUs) }

// RTTVar is the round-trip time's mean deviation.
func (t *TCPInfo) RTTVar() time.Duration { return micros(t.RTTVarUs) }

// MinRTT is the smallest round-trip time seen lately (the kernel's
// windowed minimum).
func (t *TCPInfo) MinRTT() time.Duration { return micros(t.MinRTTUs) }

// RcvRTT is the receiver's estimate of the round-trip time.
func (t *TCPInfo) RcvRTT() time.Duration { return micros(t.RcvRTTUs) }

// SinceDataSent is how long ago the socket last sent data.
func (t *TCPInfo) SinceDataSent() time.Duration { return millis(t.LastDataSentMS) }

// SinceDataRecv is how long ago the socket last received data.
func (t *TCPInfo) SinceDataRecv() time.Duration { return millis(t.LastDataRecvMS) }

// SinceAckRecv is how long ago the socket last received an ACK (the
// kernel's rcv_tstamp): how long a peer that stopped answering has been
// silent.
func (t *TCPInfo) SinceAckRecv() time.Duration { return millis(t.LastAckRecvMS) }

// tcpInfoReader reads fields at fixed offsets, yielding zero for any field
// the kernel's tcp_info was too short to hold.
type tcpInfoReader []byte

func (r tcpInfoReader) u8(off int) uint8 {
	if off+1 > len(r) {
		return 0
	}
	return r[off]
}

func (r tcpInfoReader) u16(off int) uint16 {
	if off+2 > len(r) {
		return 0
	}
	return binary.NativeEndian.Uint16(r[off:])
}

func (r tcpInfoReader) u32(off int) uint32 {
	if off+4 > len(r) {
		return 0
	}
	return binary.NativeEndian.Uint32(r[off:])
}

func (r tcpInfoReader) u64(off int) uint64 {
	if off+8 > len(r) {
		return 0
	}
	return binary.NativeEndian.Uint64(r[off:])
}

// decodeTCPInfo decodes tcp_info of any length: fields the kernel did not
// send stay zero and fields newer than this decoder are ignored.
func decodeTCPInfo(b []byte) TCPInfo {
	r := tcpInfoReader(b)
	return TCPInfo{
		Size:        len(b),
		State:       r.u8(0),
		CAState:     r.u8(1),
		Retransmits: r.u8(2),
		Probes:      r.u8(3),
		Backoff:     r.u8(4),
		Options:     r.u8(5),
		SndWscale:   r.u8(6) & 0x0f,
		RcvWscale:   r.u8(6) >> 4,

		RTOUs:  r.u32(8),
		ATOUs:  r.u32(12),
		SndMSS: r.u32(16),
		RcvMSS: r.u32(20),

		Unacked: r.u32(24),
		Sacked:  r.u32(28),
		Lost:    r.u32(32),
		Retrans: r.u32(36),
		Fackets: r.u32(40),

		LastDataSentMS: r.u32(44),
		LastAckSentMS:  r.u32(48),
		LastDataRecvMS: r.u32(52),
		LastAckRecvMS:  r.u32(56),

		PMTU:        r.u32(60),
		RcvSsthresh: r.u32(64),
		RTTUs:       r.u32(68),
		RTTVarUs:    r.u32(72),
		SndSsthresh: r.u32(76),
		SndCwnd:     r.u32(80),
		AdvMSS:      r.u32(84),
		Reordering:  r.u32(88),
		RcvRTTUs:    r.u32(92),
		RcvSpace:    r.u32(96),

		TotalRetrans: r.u32(100),

		PacingRate:    r.u64(104),
		MaxPacingRate: r.u64(112),
		BytesAcked:    r.u64(120),
		BytesReceived: r.u64(128),
		SegsOut:       r.u32(136),
		SegsIn:        r.u32(140),

		NotsentBytes: r.u32(144),
		MinRTTUs:     r.u32(148),
		DataSegsIn:   r.u32(152),
		DataSegsOut:  r.u32(156),

		DeliveryRate: r.u64(160),

		BusyTimeUs:      r.u64(168),
		RwndLimitedUs:   r.u64(176),
		SndbufLimitedUs: r.u64(184),

		Delivered:   r.u32(192),
		DeliveredCE: r.u32(196),

		BytesSent:    r.u64(200),
		BytesRetrans: r.u64(208),
		DSACKDups:    r.u32(216),
		ReordSeen:    r.u32(220),

		RcvOOOPack: r.u32(224),

		SndWnd: r.u32(228),
		RcvWnd: r.u32(232),

		Rehash: r.u32(236),

		TotalRTO:           r.u16(240),
		TotalRTORecoveries: r.u16(242),
		TotalRTOTimeMS:     r.u32(244),
	}
}
