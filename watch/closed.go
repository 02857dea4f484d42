package watch

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// History is what a watch knew of a socket besides its death.
type History struct {
	// FirstSeen is when a sample first saw the socket; LastAt when the
	// last did (the sample Classify gets as last). Both are zero when no
	// sample saw it. LastAt must be no later than the moment that sample
	// read the socket, as Snapshot.TakenAt is: Classify takes an ACK
	// stamped after it for one the sample did not count.
	FirstSeen, LastAt time.Time
	// Forgotten are the conntrack entries that tracked the connection
	// (FlowEnd.Tracks), as diag.WatchFlowEnds delivered them up to the
	// death; an entry destroyed while established, read no later than
	// 250 ms after the death, counts as the path forgetting it first.
	Forgotten []diag.FlowEnd
	// Entries are the conntrack entries of the last sample that saw any
	// (later samples may have found them gone), read at EntriesAt, when
	// the socket's tcp_info was EntriesInfo.
	Entries     []diag.Flow
	EntriesAt   time.Time
	EntriesInfo *diag.TCPInfo
}

// IsConnection reports whether a death ended a connection, rather than a
// listener or a socket that never had a peer: the only deaths a watch
// reports.
func IsConnection(last *diag.Socket, d diag.Death) bool {
	if last != nil {
		return last.State != diag.Listen && last.Remote.Port() != 0
	}
	// An aborted connection keeps its peer's address but not its port
	// (tcp_disconnect); a socket that never connected has neither. One
	// whose connect failed before its SYN (inet_hash_connect: no
	// ephemeral port left) keeps the peer's address too, but has no
	// local port either, as an aborted connection keeps its own.
	if d.Remote.Port() == 0 && d.Local.Port() == 0 {
		return false
	}
	return d.Remote.Addr().IsValid() && !d.Remote.Addr().IsUnspecified()
}

// Classify says how the connection whose last sample is last (nil if no
// sample saw it) died, from the kernel's announcement d and what the
// watch saw of it before.
//
// The kernel announces a connection's death with its final tcp_info but
// not the error it ended with (sk_err is not in tcp_info), so the cause is
// read from what the death left behind, with these kernel facts, each
// checked against a real kernel (Linux 6.18) by TestDeathsOnAKernel and
// TestClosedCauses:
//
//   - Every announced connection is in CLOSE: tcp_done has run. tcp_reset
//     and tcp_done_with_error (a give-up) purge the write queue, which
//     zeroes unacked and backoff; retransmits (icsk_retransmits), probes
//     (icsk_probes_out), retrans, lost and the byte counters survive, and
//     so does SendQ (write_seq - snd_una): data never acknowledged.
//   - bytes_acked counts every sequence number acknowledged: the data,
//     the FIN, and for the end that connected, its SYN. So all data and
//     the FIN were acknowledged exactly when SendQ is 0 and bytes_acked -
//     (bytes_sent - bytes_retrans) is 1, plus 1 for the connecting end:
//     which end that is, a sample of the open connection tells (the same
//     difference, 1 or 0, while no FIN was sent); without one a
//     difference of 2 still proves it, and 0 disproves it.
//   - An application that closes with SO_LINGER 0 (or disconnects) runs
//     tcp_disconnect: a reset is sent and the socket is wiped, its
//     remote port and every counter (segs_in, segs_out, bytes_acked)
//     zero. One that closes with data unread sends a reset too
//     (tcp_close), and the death keeps RecvQ > 0 (rcv_nxt - copied_seq:
//     a FIN received and never read counts 1 in it too).
//   - A retransmission give-up (TCP_USER_TIMEOUT or tcp_retries2) leaves
//     retransmits > 0; a keepalive give-up leaves probes = the probe count
//     (and sends a reset of its own: segs_out moves, segs_in does not).
//   - Every segment received counts in segs_in; every acceptable ACK
//     stamps last_ack_recv (tcp_ack), a reset does not (tcp_reset runs
//     before tcp_ack). So a segment that arrived after the last sample
//     while no ACK did was a reset.
//
// What the kernel does not leave behind, Classify does not guess: a death
// that fits more than one cause is "unknown", and its Why says what was
// missing. An administrator's ss -K (SOCK_DESTROY) ends a connection as a
// reset received does, and is called one.
func Classify(last *diag.Socket, d diag.Death, h History) diag.Closed {
	c := diag.Closed{ID: d.Cookie, Local: d.Local, Remote: d.Remote, EndedAt: d.At, TCPInfo: d.Info}
	if wiped(d) {
		// Its counters are zero and its last_* count from the boot: the
		// last sample's tcp_info says more of the connection, and none
		// says less than that.
		c.TCPInfo = nil
	}
	if last != nil {
		c.LastState = last.State.String()
		if c.TCPInfo == nil {
			c.TCPInfo = last.TCPInfo
		}
		// A death wiped by tcp_disconnect has lost its addresses.
		if d.Remote.Port() == 0 {
			c.Local, c.Remote = last.Local, last.Remote
		}
	}
	if !h.FirstSeen.IsZero() && !d.At.Before(h.FirstSeen) {
		s := d.At.Sub(h.FirstSeen).Seconds()
		c.LivedS = &s
	}
	c.Cause, c.Why = cause(last, d, h)
	if c.Cause != diag.CauseReset && c.Cause != diag.CauseTimeout && c.Cause != diag.CauseUnknown {
		return c
	}
	if f := forgotten(h.Forgotten, d.At); f != nil {
		at := f.At
		c.PathForgotAt = &at
		c.Why += fmt.Sprintf("; the path had forgotten it: its conntrack entry (%s → %s) was destroyed while established", f.OrigSrc, f.OrigDst)
		if ago := d.At.Sub(f.At); ago >= 0 {
			c.Why += " " + roundDur(ago) + " before the kernel announced its death"
		}
	} else if e, at, ok := expiredBefore(h, d); ok {
		c.PathForgotAt = &at
		c.Why += fmt.Sprintf("; the path had forgotten it: its entry in the %s's conntrack, seen with %d s left, ran out before the data that met this went out", e.Netns, e.ExpiresInS)
	}
	return c
}

// expiredBefore finds, for a connection older than the watch (whose
// conntrack entries announce no end: nf_conntrack_events=2, the default,
// gives the events only to entries made while someone listened), an entry
// a sample saw that ran out before the connection's next data: the
// sample read its time left, no data crossed the flow after the sample
// until one write, and that write went out after the entry's end. It
// returns the entry and when it ran out.
func expiredBefore(h History, d diag.Death) (diag.Flow, time.Time, bool) {
	before, after := h.EntriesInfo, d.Info
	if before == nil || after == nil {
		return diag.Flow{}, time.Time{}, false
	}
	// Data went out since the sample, and none came in: last_data_sent
	// dates the last of it; that the entry ran out before even the first
	// is what a single write (one data segment, or a burst sent at once)
	// shows.
	if after.DataSegsOut <= before.DataSegsOut || after.DataSegsIn != before.DataSegsIn {
		return diag.Flow{}, time.Time{}, false
	}
	sent := d.At.Add(-after.SinceDataSent())
	for _, e := range h.Entries {
		end := h.EntriesAt.Add(time.Duration(e.ExpiresInS) * time.Second)
		// A second of slack: the kernel counts the time left in whole
		// seconds. A bare segment either way (a keepalive probe, its
		// answer) would have refreshed the entry unseen: every segment
		// sent since carried data, and at most one came back, the one
		// that ended it.
		bare := after.SegsOut - before.SegsOut - (after.DataSegsOut - before.DataSegsOut)
		if e.TCPState == "ESTABLISHED" && sent.After(end.Add(time.Second)) && bare == 0 && after.SegsIn-before.SegsIn <= 1 {
			return e, end, true
		}
	}
	return diag.Flow{}, time.Time{}, false
}

// forgetSlack is how much later than a death's announcement an entry's
// end may be read and still count as before it. Both times are when
// tcpvet read the kernel's messages, from two sockets, each by its own
// goroutine: their order is only as good as those goroutines' scheduling.
// An entry that outlives its connection does so by its own timeout, which
// is longer.
const forgetSlack = 250 * time.Millisecond

// forgotten is the first entry in ends destroyed while established
// before the death at at.
func forgotten(ends []diag.FlowEnd, at time.Time) *diag.FlowEnd {
	for i := range ends {
		if ends[i].Forgotten() && !ends[i].At.After(at.Add(forgetSlack)) {
			return &ends[i]
		}
	}
	return nil
}

// closingStates are the states a connection is in once a FIN went one way
// and was acknowledged, or came the other: only a FIN exchange leads there.
var closingStates = map[diag.State]string{
	diag.FinWait2:  "its FIN was acknowledged",
	diag.TimeWait:  "FINs went both ways",
	diag.CloseWait: "the peer had sent its FIN",
	diag.LastAck:   "the peer had sent its FIN and it answered with its own",
	diag.Closing:   "FINs crossed",
}

// wiped reports whether tcp_disconnect wiped the socket before its death
// (SO_LINGER 0, or a disconnect): its peer's port and every counter zero.
func wiped(d diag.Death) bool {
	i := d.Info
	return i != nil && d.Remote.Port() == 0 && i.SegsIn == 0 && i.SegsOut == 0 && i.BytesAcked == 0
}

func cause(last *diag.Socket, d diag.Death, h History) (string, string) {
	info := d.Info
	if info == nil {
		if last != nil {
			if why, ok := closingStates[last.State]; ok {
				return diag.CauseClosed, fmt.Sprintf("the last sample saw it in %s (%s); the kernel sent no final tcp_info", last.State, why)
			}
		}
		return diag.CauseUnknown, "the kernel sent no final tcp_info with its death"
	}
	var lastInfo *diag.TCPInfo
	if last != nil {
		lastInfo = last.TCPInfo
	}

	// tcp_disconnect: the application aborted it.
	if wiped(d) {
		return diag.CauseClosed, "its application aborted it (SO_LINGER 0): the kernel sent a reset and wiped the socket, its remote port and counters zero"
	}

	if fin, known := finAcked(lastInfo, last, d); known && fin {
		why := "its FIN was acknowledged: bytes_acked counts the FIN's sequence number past every byte sent"
		if last != nil {
			if w, ok := closingStates[last.State]; ok {
				why = fmt.Sprintf("its FIN was acknowledged, and the last sample saw it in %s (%s)", last.State, w)
			}
		}
		return diag.CauseClosed, why
	}
	if last != nil {
		if why, ok := closingStates[last.State]; ok {
			return diag.CauseClosed, fmt.Sprintf("the last sample saw it in %s: %s", last.State, why)
		}
	}

	// What arrived since the last sample that saw it alive.
	arrived, resetSince := false, false
	if lastInfo != nil && last.State != diag.Close && !h.LastAt.IsZero() {
		arrived = info.SegsIn != lastInfo.SegsIn
		sinceSample := d.At.Sub(h.LastAt)
		noACK := info.SinceAckRecv() >= sinceSample
		resetSince = arrived && noACK
	}

	if info.Retransmits > 0 || info.Probes > 0 {
		switch {
		case resetSince:
			return diag.CauseReset, fmt.Sprintf("a segment arrived after the last sample (segs_in %d → %d) but no ACK did (last ACK %s before its death): a reset, while it was %s",
				lastInfo.SegsIn, info.SegsIn, roundDur(info.SinceAckRecv()), retrying(info))
		case lastInfo != nil && last.State != diag.Close && !h.LastAt.IsZero() && !arrived:
			return diag.CauseTimeout, fmt.Sprintf("the kernel gave up: it died %s, and nothing arrived after the last sample (segs_in %d)%s",
				retrying(info), info.SegsIn, budget(last, info))
		case arrived:
			return diag.CauseUnknown, fmt.Sprintf("it died %s, but ACKs arrived after the last sample (segs_in %d → %d), so a reset among them looks the same as a give-up",
				retrying(info), lastInfo.SegsIn, info.SegsIn)
		}
		return diag.CauseUnknown, fmt.Sprintf("it died %s, but no sample of it open shows that nothing arrived after: a reset then looks the same as a give-up", retrying(info))
	}

	if d.RecvQ > 0 {
		switch {
		case resetSince:
			return diag.CauseReset, fmt.Sprintf("a segment arrived after the last sample (segs_in %d → %d) but no ACK did: a reset, with %d bytes left unread", lastInfo.SegsIn, info.SegsIn, d.RecvQ)
		case lastInfo != nil && last.State != diag.Close && !h.LastAt.IsZero() && !arrived:
			return diag.CauseClosed, fmt.Sprintf("its application closed it with %d bytes unread and nothing arrived after the last sample: the kernel sent a reset (tcp_close)", d.RecvQ)
		}
		return diag.CauseUnknown, fmt.Sprintf("it died with %d bytes unread: its application closing it so (the kernel then sends a reset) and a reset from the peer look the same without a sample", d.RecvQ)
	}

	if last != nil && last.State == diag.Close {
		return diag.CauseReset, "the last sample saw it already in CLOSE with its application still holding it, with no retransmission or probe unanswered: a reset ended it"
	}
	// No FIN acknowledged, nothing retransmitted or probed, nothing
	// unread, not aborted: only a reset takes an open connection to
	// CLOSE so (or an administrator's ss -K, which looks the same).
	if fin, known := finAcked(lastInfo, last, d); known && !fin {
		if last != nil && last.State == diag.SynSent {
			return diag.CauseReset, "its connect was refused: it died in SYN_SENT without a retransmission, a reset answering its SYN"
		}
		what := "it died with no FIN of its own acknowledged (bytes_acked counts none)"
		if d.SendQ > 0 {
			what = fmt.Sprintf("it died with SendQ %d, what it sent never acknowledged", d.SendQ)
		}
		if resetSince {
			what += fmt.Sprintf(", a segment after the last sample (segs_in %d → %d) and no ACK", lastInfo.SegsIn, info.SegsIn)
		}
		return diag.CauseReset, what + ", nothing retransmitted or probed, nothing unread: only a reset ends a connection so"
	}
	return diag.CauseUnknown, "no sample of the open connection tells which end connected, so its final counters cannot tell a FIN from a reset"
}

// finAcked reports whether all the data and a FIN the socket sent were
// acknowledged at its death, and whether that is known (see Classify).
func finAcked(lastInfo *diag.TCPInfo, last *diag.Socket, d diag.Death) (fin, known bool) {
	info := d.Info
	if d.SendQ > 0 {
		return false, true
	}
	diff := int64(info.BytesAcked) - int64(info.BytesSent-info.BytesRetrans)
	// The connecting end's bytes_acked counts its SYN too: a sample of
	// the open connection with nothing in flight and no FIN sent says
	// whether this is that end.
	if lastInfo != nil && (last.State == diag.Established || last.State == diag.CloseWait) && last.SendQ == 0 && lastInfo.Unacked == 0 {
		syn := int64(lastInfo.BytesAcked) - int64(lastInfo.BytesSent-lastInfo.BytesRetrans)
		if syn == 0 || syn == 1 {
			return diff == syn+1, true
		}
	}
	switch diff {
	case 2:
		return true, true
	case 0:
		return false, true
	}
	return false, false
}

// retrying says what the socket was doing when it died.
func retrying(info *diag.TCPInfo) string {
	switch {
	case info.Retransmits > 0 && info.Probes > 0:
		return fmt.Sprintf("retransmitting (%d times) and probing (%d probes)", info.Retransmits, info.Probes)
	case info.Retransmits > 0:
		return fmt.Sprintf("retransmitting, %d times unanswered", info.Retransmits)
	}
	if info.Probes == 1 {
		return "probing, 1 probe unanswered"
	}
	return fmt.Sprintf("probing, %d probes unanswered", info.Probes)
}

// budget names the limit the kernel gave up at, when the last sample
// knew it.
func budget(last *diag.Socket, info *diag.TCPInfo) string {
	ut, _ := last.UserTimeout()
	switch {
	case info.Retransmits > 0 && ut > 0:
		return fmt.Sprintf(", past its TCP_USER_TIMEOUT of %s (no ACK for %s)", roundDur(ut), roundDur(info.SinceAckRecv()))
	case info.Retransmits == 0 && last.Keepalive.Probes != nil && int(info.Probes) >= *last.Keepalive.Probes:
		return fmt.Sprintf(", its keepalive's %d probes spent", *last.Keepalive.Probes)
	}
	return ""
}

// roundDur writes d in seconds to a tenth, or in milliseconds under one.
func roundDur(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}
