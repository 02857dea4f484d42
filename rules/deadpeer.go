package rules

import (
	"fmt"

	"github.com/tcpvet/tcpvet/diag"
)

// synchronized reports whether the state is past the handshake: where the
// kernel's give-up counts tcp_retries2 or TCP_USER_TIMEOUT.
func synchronized(st diag.State) bool {
	switch st {
	case diag.Established, diag.FinWait1, diag.CloseWait, diag.Closing, diag.LastAck:
		return true
	}
	return false
}

// halfOpen fires on a connection whose peer stopped acknowledging data:
// the retransmit timer runs, several retransmissions in a row went
// unanswered, and nothing was acknowledged for a while.
func halfOpen(c conn) *Finding {
	snap, s := c.snap, c.Socket
	info := s.TCPInfo
	// An orphan (no file: the application closed it) gives up by
	// tcp_orphan_retries, and no application hears of it.
	if !synchronized(s.State) || s.Inode == 0 || s.Timer.Kind != diag.TimerOn || info == nil || info.Unacked == 0 ||
		info.Retransmits < halfOpenRetransmits || info.SinceAckRecv() < halfOpenSilence {
		return nil
	}
	re := &RetransEvidence{
		State: s.State.String(), TCPIRetransmits: info.Retransmits, TotalRetrans: info.TotalRetrans, Backoff: info.Backoff,
		Unacked: info.Unacked, LastAckRecvMS: info.LastAckRecvMS, RTOMS: uint32(info.RTO().Milliseconds()),
	}
	ev := Evidence{RetransEvidence: re, QueueEvidence: &QueueEvidence{SendQ: s.SendQ}}
	when := "the kernel's give-up time is unknown (sysctls unreadable)"
	var failsIn *float64
	// Silent since its last ACK, which may be long before the data now
	// retransmitted was sent: the retransmissions' own time, when known.
	silent := fmt.Sprintf("has not acknowledged anything for %s", human(info.SinceAckRecv()))
	inARow, counter := int(info.Retransmits), "tcpi_retransmits"
	ut, _ := s.UserTimeout()
	if rt, ok := NewRetransmission(snap.Target.Sysctls, ut); ok {
		state := retransmitState(s, rt.RTOMax)
		abort := rt.AbortAfter(state.FirstRTO)
		if state.Unknown {
			inARow, counter = int(info.TotalRTO), "tcpi_total_rto" // every expiry is this recovery's
			ev.GiveUpEvidence = &GiveUpEvidence{GivesUpAfterS: secs(abort), GivesUpBecause: rt.Reason()}
			when = fmt.Sprintf("the kernel gives up %s after the first unanswered transmission (%s), but how long it has been retransmitting is unknown: over 255 retransmissions answered by ICMP unreachables ran its counters over; until then writes hang", human(abort), rt.Reason())
		} else {
			silent = fmt.Sprintf("has acknowledged nothing sent for %s", human(min(state.Elapsed, info.SinceAckRecv())))
			in := max(0, abort-state.Elapsed)
			re.RetransmittingForS = secs(state.Elapsed)
			ev.GiveUpEvidence = &GiveUpEvidence{GivesUpInS: ptrTo(secs(in)), GivesUpAfterS: secs(abort), GivesUpBecause: rt.Reason()}
			failsIn = ptrTo(secs(in))
			when = fmt.Sprintf("the kernel gives up in %s (%s, %s after the first unanswered transmission); until then writes hang", human(in), rt.Reason(), human(abort))
		}
	}
	return &Finding{
		Rule:     RuleHalfOpen,
		Severity: Critical,
		Failing:  FailingNow,
		FailsInS: failsIn,
		Summary: fmt.Sprintf("%s: the peer %s (%s in a row, %s; %s unacknowledged): it is probably gone; %s",
			ends(s), silent, plural(inARow, "unanswered retransmission"), counter, plural(int(info.Unacked), "segment"), when),
		Evidence: ev,
		Fix:      userTimeoutFixes(suggestedUserTimeout, snap.Target.Sysctls),
	}
}

// connectUnanswered fires on a connect whose SYNs go unanswered: a peer
// that is down, a firewall that drops, a route to nowhere. The kernel
// fails it after a number of retransmissions, not a time.
func connectUnanswered(c conn) *Finding {
	s := c.Socket
	if s.State != diag.SynSent || s.Timer.Kind != diag.TimerOn || s.Timer.Retrans == 0 {
		return nil
	}
	return handshakeFinding(c, RuleConnectUnanswered, "connect", "SYN")
}

// handshakeUnanswered fires on a connection accepted by a listener here
// whose SYN-ACKs go unanswered: the client's ACK never comes back. The
// kernel drops it; the client's connect fails or hangs.
func handshakeUnanswered(c conn) *Finding {
	s := c.Socket
	if s.State != diag.SynRecv && s.State != diag.NewSynRecv || s.Timer.Kind != diag.TimerOn || s.Timer.Retrans < halfOpenRetransmits {
		return nil
	}
	f := handshakeFinding(c, RuleHandshakeUnanswered, "handshake", "SYN-ACK")
	// No application holds it yet: what fails is the client's connect.
	f.Severity = Warning
	return f
}

func handshakeFinding(c conn, rule, what, segment string) *Finding {
	s := c.Socket
	retrans := int(s.Timer.Retrans)
	re := &RetransEvidence{TimerRetransmits: retrans, State: s.State.String()}
	ev := Evidence{RetransEvidence: re}
	sev := Warning
	when, sofar := "the kernel's give-up is unknown (sysctls unreadable)", ""
	var failsIn *float64
	if h, ok := NewHandshake(c.snap.Target.Sysctls, s); ok {
		// The linear SYN retransmissions, a second apart, are there for
		// SYNs lost by chance or dropped by a full accept queue: a connect
		// is failing only once they are spent.
		if retrans >= halfOpenRetransmits && retrans > h.Linear {
			sev = Critical
		}
		elapsed := h.Elapsed(retrans, s.Timer.Expires())
		abort := h.AbortAfter()
		in := max(0, abort-elapsed)
		re.UnansweredForS = secs(elapsed)
		ev.GiveUpEvidence = &GiveUpEvidence{GivesUpInS: ptrTo(secs(in)), GivesUpAfterS: secs(abort), GivesUpBecause: h.Reason(s.State == diag.SynSent)}
		failsIn = ptrTo(secs(in))
		sofar = fmt.Sprintf(", %s so far", human(elapsed))
		when = fmt.Sprintf("the kernel gives up in %s, %s after the first %s (%s), with \"connection timed out\"", human(in), human(abort), segment, h.Reason(s.State == diag.SynSent))
	}
	fixes := []Fix{{Where: "the peer or the path", Snippet: fmt.Sprintf("nothing answers %s from here: check that %s listens, and that no firewall or route drops the %s", s.Remote, s.Remote, segment)}}
	if what == "connect" {
		fixes = append(fixes, Fix{Where: "the application", Snippet: "bound the connect: a dial timeout (Go net.Dialer{Timeout: 5 * time.Second}, gRPC WithConnectParams MinConnectTimeout), or TCP_SYNCNT / TCP_USER_TIMEOUT on the socket"})
	}
	return &Finding{
		Rule:     rule,
		Severity: sev,
		Failing:  FailingNow,
		FailsInS: failsIn,
		Summary: fmt.Sprintf("%s: %s unanswered: %d %s retransmissions without reply%s; %s",
			ends(s), what, retrans, segment, sofar, when),
		Evidence: ev,
		Fix:      fixes,
	}
}

// slowDeadPeer is the namespace-wide finding for connections that nothing
// bounds when a peer dies with data in flight: keepalive does not run then,
// only tcp_retries2 or TCP_USER_TIMEOUT.
func slowDeadPeer(snap *diag.Snapshot) *Finding {
	rt, ok := NewRetransmission(snap.Target.Sysctls, 0)
	if !ok {
		return nil
	}
	var exposed []diag.Cookie
	unknown := 0
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if !crossesNetwork(snap, s) {
			continue
		}
		switch ut, known := s.UserTimeout(); {
		case !known:
			unknown++
		case ut == 0:
			exposed = append(exposed, s.ID)
		}
	}
	if len(exposed) == 0 {
		return nil
	}
	abort := rt.AbortAfter(rtoMin)
	sev := Info
	if abort > slowDetection {
		sev = Warning
	}
	listed := exposed[:min(len(exposed), listExposed)]
	return &Finding{
		Rule:     RuleSlowDeadPeer,
		Severity: sev,
		Summary: fmt.Sprintf("%s without TCP_USER_TIMEOUT: if a peer dies while data is in flight (keepalive does not run then), writes hang about %s (tcp_retries2=%d) before the application hears of it",
			plural(len(exposed), "connection"), human(abort), rt.Retries2),
		Evidence: Evidence{
			NamespaceEvidence: &NamespaceEvidence{TCPRetries2: rt.Retries2, ModelTimeoutS: secs(rt.Budget), Exposed: len(exposed), Sockets: listed, OptionsUnknown: unknown},
			GiveUpEvidence:    &GiveUpEvidence{GivesUpAfterS: secs(abort), GivesUpBecause: rt.Reason()},
		},
		Fix: userTimeoutFixes(suggestedUserTimeout, snap.Target.Sysctls),
	}
}
