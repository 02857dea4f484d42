package diag

import (
	"encoding/json"
	"math"
	"net/netip"
	"strconv"
)

// AppendJSON appends s as encoding/json marshals it, byte for byte, without
// reflection: tcpvet --json writes tens of thousands of sockets, and this
// keeps it from holding the whole document to write it. The fields rare
// enough not to matter (conntrack, IPVS, a redirect) go through
// encoding/json itself; TestSocketAppendJSON holds the two together.
func (s *Socket) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendCookie(b, s.ID)
	b = append(b, `,"inode":`...)
	b = strconv.AppendUint(b, uint64(s.Inode), 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(s.UID), 10)
	b = append(b, `,"family":`...)
	b = appendString(b, s.Family)
	b = append(b, `,"state":`...)
	b = appendString(b, s.State.String())
	b = append(b, `,"local":`...)
	b = appendAddrPort(b, s.Local)
	b = append(b, `,"remote":`...)
	b = appendAddrPort(b, s.Remote)
	b = append(b, `,"recv_q":`...)
	b = strconv.AppendUint(b, uint64(s.RecvQ), 10)
	b = append(b, `,"send_q":`...)
	b = strconv.AppendUint(b, uint64(s.SendQ), 10)
	b = append(b, `,"timer":{"kind":`...)
	b = appendString(b, s.Timer.Kind.String())
	b = append(b, `,"expires_ms":`...)
	b = strconv.AppendUint(b, uint64(s.Timer.ExpiresMS), 10)
	b = append(b, `,"retrans":`...)
	b = strconv.AppendUint(b, uint64(s.Timer.Retrans), 10)
	b = append(b, '}')
	if s.Cong != "" {
		b = append(b, `,"congestion":`...)
		b = appendString(b, s.Cong)
	}
	if s.ClassID != 0 {
		b = append(b, `,"class_id":`...)
		b = strconv.AppendUint(b, uint64(s.ClassID), 10)
	}
	b = append(b, `,"tcp_info":`...)
	if s.TCPInfo == nil {
		b = append(b, "null"...)
	} else {
		b = s.TCPInfo.appendJSON(b)
	}
	k := &s.Keepalive
	b = append(b, `,"keepalive":{"enabled":`...)
	if k.Enabled == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendBool(b, *k.Enabled)
	}
	b = append(b, `,"idle_s":`...)
	b = appendIntPtr(b, k.IdleS)
	b = append(b, `,"interval_s":`...)
	b = appendIntPtr(b, k.IntervalS)
	b = append(b, `,"probes":`...)
	b = appendIntPtr(b, k.Probes)
	b = append(b, `,"source":`...)
	b = appendString(b, k.Source)
	if k.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, k.Reason)
	}
	b = append(b, `},"user_timeout_ms":`...)
	b = appendIntPtr(b, s.UserTimeoutMS)
	if s.SynRetries != nil {
		b = append(b, `,"syn_retries":`...)
		b = strconv.AppendInt(b, int64(*s.SynRetries), 10)
	}
	b = append(b, `,"processes":`...)
	if s.Processes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range s.Processes {
			p := &s.Processes[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"pid":`...)
			b = strconv.AppendInt(b, int64(p.PID), 10)
			b = append(b, `,"comm":`...)
			b = appendString(b, p.Comm)
			b = append(b, `,"fd":`...)
			b = strconv.AppendInt(b, int64(p.FD), 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if s.RedirectedTo != nil {
		b = append(b, `,"redirected_to":`...)
		b = appendAddrPort(b, *s.RedirectedTo)
	}
	if s.IPVS != nil {
		b = append(b, `,"ipvs":`...)
		b = appendMarshal(b, s.IPVS)
	}
	if len(s.Conntrack) > 0 {
		b = append(b, `,"conntrack":`...)
		b = appendMarshal(b, s.Conntrack)
	}
	if s.Peer != 0 {
		b = append(b, `,"peer":`...)
		b = appendCookie(b, s.Peer)
	}
	if o := s.Observed; o != nil {
		b = append(b, `,"observed":`...)
		b = o.appendJSON(b)
	}
	return append(b, '}')
}

func (o *Observed) appendJSON(b []byte) []byte {
	b = append(b, `{"watched_s":`...)
	b = appendFloat(b, o.WatchedS)
	b = append(b, `,"samples":`...)
	b = strconv.AppendInt(b, int64(o.Samples), 10)
	b = append(b, `,"longest_quiet_s":`...)
	b = appendFloat(b, o.LongestQuietS)
	b = append(b, `,"longest_quiet_watched_s":`...)
	b = appendFloat(b, o.LongestQuietWatchedS)
	b = append(b, `,"refreshed_by":`...)
	b = appendString(b, o.RefreshedBy)
	if p := o.Pings; p != nil {
		b = append(b, `,"pings":{"period_s":`...)
		b = appendFloat(b, p.PeriodS)
		b = append(b, `,"size_bytes":`...)
		b = strconv.AppendInt(b, int64(p.SizeBytes), 10)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(p.Count), 10)
		b = append(b, '}')
	}
	b = append(b, `,"data_exchanges":`...)
	b = strconv.AppendInt(b, int64(o.DataExchanges), 10)
	b = append(b, `,"keepalive_probes_sent":`...)
	b = strconv.AppendInt(b, int64(o.KeepaliveProbesSent), 10)
	b = append(b, `,"keepalive_probes_answered":`...)
	b = strconv.AppendInt(b, int64(o.KeepaliveProbesAnswered), 10)
	b = append(b, `,"peer_probes":`...)
	b = strconv.AppendInt(b, int64(o.PeerProbes), 10)
	b = append(b, `,"window_probes":`...)
	b = strconv.AppendInt(b, int64(o.WindowProbes), 10)
	if len(o.EntriesSeen) > 0 {
		b = append(b, `,"entries_seen":[`...)
		for i, e := range o.EntriesSeen {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"netns":`...)
			b = appendString(b, string(e.Netns))
			if e.NAT != "" {
				b = append(b, `,"nat":`...)
				b = appendString(b, e.NAT)
			}
			if e.MissingS != nil {
				b = append(b, `,"missing_s":`...)
				b = appendFloat(b, *e.MissingS)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendFloat appends f as encoding/json writes a float64: the shortest
// form that reads back the same, in exponent form only for very large or
// small magnitudes. NaN and infinities, which it refuses, never occur in
// an observation; they are written as null so the document stays valid.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return appendMarshal(b, f)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

// appendMarshal appends what encoding/json makes of v; v is of a type it
// always encodes.
func appendMarshal(b []byte, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

func appendIntPtr(b []byte, p *int) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, int64(*p), 10)
}

// appendString appends s as a JSON string the way encoding/json writes it:
// plain printable ASCII as it is, anything else through encoding/json's
// own escaping (HTML characters, control bytes, invalid UTF-8).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return appendMarshal(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendCookie appends c as its MarshalText makes it, quoted: hex needs
// no escaping.
func appendCookie(b []byte, c Cookie) []byte {
	b, _ = c.AppendText(append(b, '"'))
	return append(b, '"')
}

// appendAddrPort appends p as its MarshalText makes it, quoted.
func appendAddrPort(b []byte, p netip.AddrPort) []byte {
	if p.Addr().Zone() != "" {
		return appendMarshal(b, p)
	}
	b = append(b, '"')
	b = p.AppendTo(b)
	return append(b, '"')
}

func (t *TCPInfo) appendJSON(b []byte) []byte {
	u := func(b []byte, key string, v uint64) []byte {
		b = append(b, key...)
		return strconv.AppendUint(b, v, 10)
	}
	b = append(b, `{"size":`...)
	b = strconv.AppendInt(b, int64(t.Size), 10)
	b = u(b, `,"state":`, uint64(t.State))
	b = u(b, `,"ca_state":`, uint64(t.CAState))
	b = u(b, `,"retransmits":`, uint64(t.Retransmits))
	b = u(b, `,"probes":`, uint64(t.Probes))
	b = u(b, `,"backoff":`, uint64(t.Backoff))
	b = u(b, `,"options":`, uint64(t.Options))
	b = u(b, `,"snd_wscale":`, uint64(t.SndWscale))
	b = u(b, `,"rcv_wscale":`, uint64(t.RcvWscale))
	b = u(b, `,"rto_us":`, uint64(t.RTOUs))
	b = u(b, `,"ato_us":`, uint64(t.ATOUs))
	b = u(b, `,"snd_mss":`, uint64(t.SndMSS))
	b = u(b, `,"rcv_mss":`, uint64(t.RcvMSS))
	b = u(b, `,"unacked":`, uint64(t.Unacked))
	b = u(b, `,"sacked":`, uint64(t.Sacked))
	b = u(b, `,"lost":`, uint64(t.Lost))
	b = u(b, `,"retrans":`, uint64(t.Retrans))
	b = u(b, `,"fackets":`, uint64(t.Fackets))
	b = u(b, `,"last_data_sent_ms":`, uint64(t.LastDataSentMS))
	b = u(b, `,"last_ack_sent_ms":`, uint64(t.LastAckSentMS))
	b = u(b, `,"last_data_recv_ms":`, uint64(t.LastDataRecvMS))
	b = u(b, `,"last_ack_recv_ms":`, uint64(t.LastAckRecvMS))
	b = u(b, `,"pmtu":`, uint64(t.PMTU))
	b = u(b, `,"rcv_ssthresh":`, uint64(t.RcvSsthresh))
	b = u(b, `,"rtt_us":`, uint64(t.RTTUs))
	b = u(b, `,"rttvar_us":`, uint64(t.RTTVarUs))
	b = u(b, `,"snd_ssthresh":`, uint64(t.SndSsthresh))
	b = u(b, `,"snd_cwnd":`, uint64(t.SndCwnd))
	b = u(b, `,"advmss":`, uint64(t.AdvMSS))
	b = u(b, `,"reordering":`, uint64(t.Reordering))
	b = u(b, `,"rcv_rtt_us":`, uint64(t.RcvRTTUs))
	b = u(b, `,"rcv_space":`, uint64(t.RcvSpace))
	b = u(b, `,"total_retrans":`, uint64(t.TotalRetrans))
	b = u(b, `,"pacing_rate":`, t.PacingRate)
	b = u(b, `,"max_pacing_rate":`, t.MaxPacingRate)
	b = u(b, `,"bytes_acked":`, t.BytesAcked)
	b = u(b, `,"bytes_received":`, t.BytesReceived)
	b = u(b, `,"segs_out":`, uint64(t.SegsOut))
	b = u(b, `,"segs_in":`, uint64(t.SegsIn))
	b = u(b, `,"notsent_bytes":`, uint64(t.NotsentBytes))
	b = u(b, `,"min_rtt_us":`, uint64(t.MinRTTUs))
	b = u(b, `,"data_segs_in":`, uint64(t.DataSegsIn))
	b = u(b, `,"data_segs_out":`, uint64(t.DataSegsOut))
	b = u(b, `,"delivery_rate":`, t.DeliveryRate)
	b = u(b, `,"busy_time_us":`, t.BusyTimeUs)
	b = u(b, `,"rwnd_limited_us":`, t.RwndLimitedUs)
	b = u(b, `,"sndbuf_limited_us":`, t.SndbufLimitedUs)
	b = u(b, `,"delivered":`, uint64(t.Delivered))
	b = u(b, `,"delivered_ce":`, uint64(t.DeliveredCE))
	b = u(b, `,"bytes_sent":`, t.BytesSent)
	b = u(b, `,"bytes_retrans":`, t.BytesRetrans)
	b = u(b, `,"dsack_dups":`, uint64(t.DSACKDups))
	b = u(b, `,"reord_seen":`, uint64(t.ReordSeen))
	b = u(b, `,"rcv_ooopack":`, uint64(t.RcvOOOPack))
	b = u(b, `,"snd_wnd":`, uint64(t.SndWnd))
	b = u(b, `,"rcv_wnd":`, uint64(t.RcvWnd))
	b = u(b, `,"rehash":`, uint64(t.Rehash))
	b = u(b, `,"total_rto":`, uint64(t.TotalRTO))
	b = u(b, `,"total_rto_recoveries":`, uint64(t.TotalRTORecoveries))
	b = u(b, `,"total_rto_time_ms":`, uint64(t.TotalRTOTimeMS))
	return append(b, '}')
}
