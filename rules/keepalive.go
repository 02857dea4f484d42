package rules

import (
	"fmt"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// ownKeepalive is how often the socket's own keepalive refreshes an idle
// flow: its TCP_KEEPIDLE, or 0 when keepalive is off or unknown.
func ownKeepalive(s *diag.Socket) time.Duration {
	k := s.Keepalive
	if k.Enabled == nil || !*k.Enabled || k.IdleS == nil {
		return 0
	}
	return time.Duration(*k.IdleS) * time.Second
}

// threat is how bad a forgetting is for the connection: critical only where
// the path will certainly break it, and the kernel's verdict does not hang
// on what tcpvet cannot see from this end.
func threat(f *forgetting, sd side) Severity {
	switch {
	case !f.Meets.certain():
		return Warning
	case f.Already && (f.gone || !sd.server):
		return Critical
	case sd.server:
		// Clients keep flows alive more often than servers do, and their
		// keepalive probes cannot be seen from here: only the path's own
		// table can say they did not come.
		return Warning
	case f.IdleTimeout > nearTimeout:
		return Warning
	}
	return Critical
}

// idleRule judges a connection against the middleboxes that forget idle
// flows on its path: no keepalive, keepalive slower than the path, or a
// flow already forgotten. A socket whose options are unknown is judged
// only by what the path already did.
func idleRule(c conn) *Finding {
	if !crossesNetwork(c.snap, c.Socket) {
		return nil
	}
	if i := c.TCPInfo; c.Timer.Kind == diag.TimerOn && i != nil && i.Unacked > 0 || c.Timer.Kind == diag.TimerPersist {
		// Data in flight, or window probes to a peer that stopped reading:
		// not idle, whatever its last data says. half-open and zero-window
		// say what is wrong.
		return nil
	}
	// Known: off, or on with its timings (the kernel's timer can say it
	// is on where its timings are unknown, which is as good as unknown).
	k := c.Keepalive
	known := k.Enabled != nil && (!*k.Enabled || k.IdleS != nil)
	every := ownKeepalive(c.Socket)
	if len(c.path) == 0 {
		if every > 0 || !known {
			return nil
		}
		return unknownPath(c)
	}
	// harmless is the soonest to forget of the middleboxes that pick the
	// flow up again; outpaced, the one of them whose idle timeout the
	// keepalive does not beat, the shortest.
	var worst, harmless, outpaced *forgetting
	var sev Severity
	for i := range c.path {
		f := &c.path[i]
		switch {
		case f.Meets == Survives:
			if harmless == nil {
				harmless = f
			}
			if every > 0 && every >= f.IdleTimeout && (outpaced == nil || f.IdleTimeout < outpaced.IdleTimeout) {
				outpaced = f
			}
			continue
		case f.KeptAlive, !f.Already && (!known || every > 0 && every < f.IdleTimeout):
			continue
		}
		if s := threat(f, c.side); worst == nil || s > sev {
			worst, sev = f, s
		}
	}
	switch {
	case worst != nil:
		if shortest := shortestOnPath(c); !worst.Already && keptAlive(c.Observed, shortest) {
			rule := RuleNoKeepalive
			if every > 0 {
				rule = RuleKeepaliveTooSlow
			}
			return keptAliveFinding(c, worst, rule, shortest)
		}
		return idleFinding(c, worst, sev, every)
	case harmless != nil && known && every == 0:
		return &Finding{
			Rule:     RuleNoKeepalive,
			Severity: Info,
			Summary: fmt.Sprintf("%s has no keepalive; %s forgets it after %s quiet, but %s; a dead peer still goes unnoticed while it is idle",
				ends(c.Socket), harmless.Name, human(harmless.IdleTimeout), harmless.Because),
			Evidence: pathEvidence(c, harmless),
			Fix:      keepaliveFixes(c, harmless.IdleTimeout),
		}
	case outpaced != nil && known:
		// As without keepalive: said, and harmless, so that turning on a
		// keepalive still too slow does not make the finding vanish.
		return &Finding{
			Rule:     RuleKeepaliveTooSlow,
			Severity: Info,
			Summary: fmt.Sprintf("%s sends its first keepalive probe after %s idle; %s forgets it after %s quiet, but %s; a dead peer still takes %s to notice",
				ends(c.Socket), human(every), outpaced.Name, human(outpaced.IdleTimeout), outpaced.Because, human(detection(c.Socket))),
			Evidence: pathEvidence(c, outpaced),
			Fix:      keepaliveFixes(c, outpaced.IdleTimeout),
		}
	}
	return nil
}

// unknownPath is the finding for a connection without keepalive on a path
// tcpvet knows nothing of.
func unknownPath(c conn) *Finding {
	return &Finding{
		Rule:     RuleNoKeepalive,
		Severity: Warning,
		Summary: fmt.Sprintf("%s has no keepalive: a NAT, load balancer or IPVS on the path that forgets idle flows will reset or silently drop its next write after a quiet spell, and a dead peer goes unnoticed while it is idle (idle now %s)",
			ends(c.Socket), human(c.Idle())),
		Evidence: Evidence{PathEvidence: &PathEvidence{Keepalive: ptrTo(false), IdleS: secs(c.Idle()), Side: c.side.String()}},
		Fix:      keepaliveFixes(c, 350*time.Second),
	}
}

// pathEvidence is what a finding about f on c's path rests on.
func pathEvidence(c conn, f *forgetting) Evidence {
	ev := &PathEvidence{
		IdleS: secs(c.Idle()), Side: c.side.String(),
		Meets: f.Meets, MeetsBecause: f.Because,
		AlreadyForgotten: f.Already, ForgetsInS: secs(f.In),
	}
	f.describe(ev)
	if e := c.IPVS; f.ipvs && e != nil {
		ev.IPVSExpiresInS, ev.IPVSState = e.ExpiresInS, e.State
	}
	if e := f.Entry; e != nil {
		ev.EntryExpiresInS, ev.EntryTimeoutS, ev.EntryNAT, ev.EntryOriginal = e.ExpiresInS, e.TimeoutS, e.NAT, e.Original
	}
	if k := c.Keepalive; k.Enabled != nil {
		ev.Keepalive = ptrTo(*k.Enabled)
		if *k.Enabled && k.IdleS != nil {
			ev.KeepaliveIdleS, ev.KeepaliveIntervalS, ev.KeepaliveProbes, ev.KeepaliveSource = *k.IdleS, *k.IntervalS, *k.Probes, k.Source
			ev.DetectionS = secs(detection(c.Socket))
		}
	}
	return Evidence{PathEvidence: ev}
}

// detection is how long s's keepalive takes to declare a silent peer dead,
// from the last data (tcp_keepalive_timer): its probes all spent or, with
// TCP_USER_TIMEOUT, the first probe timer at or past that silence with a
// probe out, however many probes that leaves unsent.
func detection(s *diag.Socket) time.Duration {
	k := s.Keepalive
	idle := time.Duration(*k.IdleS) * time.Second
	ut, _ := s.UserTimeout()
	return idle + keepaliveGivesUp(idle, 0, *k.Probes, time.Duration(*k.IntervalS)*time.Second, ut)
}

// keepaliveGivesUp is how long after one of its firings the kernel's
// keepalive timer (tcp_keepalive_timer) gives up on a silent peer, the
// peer silent for silence at that firing with out probes unanswered
// before it; the timer fires again every intvl. Without TCP_USER_TIMEOUT
// (ut 0) it gives up at the firing that finds probes out; with it, at the
// first that finds the peer silent ut with a probe out, however many
// probes that leaves unsent.
func keepaliveGivesUp(silence time.Duration, out, probes int, intvl, ut time.Duration) time.Duration {
	if ut == 0 {
		return time.Duration(max(0, probes-out)) * intvl
	}
	firings := 0
	if out == 0 {
		firings = 1 // this firing sends the first probe
	}
	if short := ut - silence; short > 0 && intvl > 0 {
		firings = max(firings, int((short+intvl-1)/intvl))
	}
	return time.Duration(firings) * intvl
}

func ptrTo[T any](v T) *T { return &v }

func idleFinding(c conn, f *forgetting, sev Severity, every time.Duration) *Finding {
	then := fmt.Sprintf("%s, so %s", f.Because, consequence(c, f.Meets))
	var rule, summary string
	switch {
	case f.Already:
		rule = RuleFlowForgotten
		how := fmt.Sprintf("quiet %s, past its %s", human(c.Idle()), human(f.IdleTimeout))
		if f.tracker != nil && f.tracker.table != nil && f.tracker.table.Read {
			how = "it holds no entry for it"
		}
		summary = fmt.Sprintf("%s: %s has already forgotten this connection (%s): %s", ends(c.Socket), f.Name, how, then)
	case every > 0:
		rule = RuleKeepaliveTooSlow
		from := "its own TCP_KEEPIDLE"
		if c.Keepalive.Source == "namespace" {
			from = "the namespace's net.ipv4.tcp_keepalive_time"
		}
		summary = fmt.Sprintf("%s sends its first keepalive probe after %s idle (%s), but %s forgets an idle flow after %s (in %s%s): %s, so %s",
			ends(c.Socket), human(every), from, f.Name, human(f.IdleTimeout), human(f.In), nextProbe(c), f.Because, lateProbe(f.Meets, detection(c.Socket)))
	default:
		rule = RuleNoKeepalive
		summary = fmt.Sprintf("%s has no keepalive: %s forgets it after %s quiet (in %s; idle now %s): %s",
			ends(c.Socket), f.Name, human(f.IdleTimeout), human(f.In), human(c.Idle()), then)
	}
	ev := pathEvidence(c, f)
	switch {
	case c.Observed != nil:
		summary += watchedSummary(c.Observed)
		ev.ObservedEvidence = observedEvidence(c.Observed)
	case c.side.server && !f.gone && f.Meets.certain():
		summary += "; unless its client keeps the flow alive, which tcpvet cannot see from this end"
	}
	fin := &Finding{Rule: rule, Severity: sev, Summary: summary, Evidence: ev, Fix: keepaliveFixes(c, f.IdleTimeout), FailsInS: ptrTo(secs(f.In))}
	if f.Already {
		fin.Failing = FailingNextWrite
		if in, ok := probesRunOut(c); ok && f.Meets != Resets {
			// Its probes meet the path already, and nothing answers them
			// (where the path resets, the first would have ended it): it
			// fails with no write.
			fin.Failing, fin.FailsInS = FailingNow, ptrTo(secs(in))
			fin.Summary += fmt.Sprintf("; its keepalive probes already go unanswered (%d of %d sent): the kernel closes it with \"connection timed out\" in %s, written to or not",
				c.Timer.Retrans, *c.Keepalive.Probes, human(in))
		}
	}
	return fin
}

// probesRunOut is how long until the kernel closes c for want of an answer
// to its keepalive probes, when some already went unanswered: its keepalive
// timer fires once per probe left and once more to give up
// (tcp_keepalive_timer). With TCP_USER_TIMEOUT set the probe count is not
// consulted: the first firing that finds the peer silent that long gives
// up, sooner or later than the probes would.
func probesRunOut(c conn) (time.Duration, bool) {
	k, out := c.Keepalive, int(c.Timer.Retrans)
	ut, known := c.UserTimeout()
	if c.Timer.Kind != diag.TimerKeepalive || out == 0 || k.Probes == nil || k.IntervalS == nil || !known || c.TCPInfo == nil {
		return 0, false
	}
	// keepalive_time_elapsed: the silence since anything was received,
	// as of the timer's next firing.
	left := c.Timer.Expires()
	silence := min(c.TCPInfo.SinceDataRecv(), c.TCPInfo.SinceAckRecv()) + left
	return left + keepaliveGivesUp(silence, out, *k.Probes, time.Duration(*k.IntervalS)*time.Second, ut), true
}

// nextProbe says when the socket's next keepalive probe goes, where its
// keepalive timer is the one the kernel reports.
func nextProbe(c conn) string {
	if c.Timer.Kind != diag.TimerKeepalive {
		return ""
	}
	return "; its next keepalive probe in " + human(c.Timer.Expires())
}

// consequence says what the application sees when its next packet meets o.
func consequence(c conn, o Outcome) string {
	hang := "hangs until the kernel gives up"
	if g, ok := futureGiveUp(c); ok {
		hang = fmt.Sprintf("hangs about %s until the kernel gives up (%s) with \"connection timed out\"", human(g.after), g.because)
	}
	switch o {
	case Resets:
		return `the next write gets "connection reset by peer"`
	case Drops:
		return "the next write is dropped without a word and " + hang
	case Breaks:
		// Untranslated, it may be routed nowhere: the kernel keeps the
		// ICMP unreachable it gets back as the error it gives up with.
		return `the next write gets "connection reset by peer", or is dropped and ` + hang +
			` (or "no route to host" or "network is unreachable", where the path answers with an ICMP unreachable)`
	}
	return "the next write may fail"
}

// lateProbe says what a keepalive probe sent after the path forgot the
// flow meets; detection is when keepalive gives up on a silent peer, from
// the last data.
func lateProbe(o Outcome, detection time.Duration) string {
	dies := fmt.Sprintf("the connection dies with \"connection timed out\" %s after its last data", human(detection))
	switch o {
	case Resets:
		return `the probe or the next write gets "connection reset by peer"`
	case Drops:
		return "the probe is dropped without a word, the next write hangs, and " + dies
	case Breaks:
		return `the probe or the next write gets "connection reset by peer", or is dropped and ` + dies
	}
	return "the probe or the next write may fail"
}

// giveUp is when the kernel fails a write that nothing acknowledges.
type giveUp struct {
	after   time.Duration
	because string
}

// futureGiveUp is the give-up of a write not yet sent on c: one figure per
// namespace and TCP_USER_TIMEOUT, the same in every finding.
func futureGiveUp(c conn) (giveUp, bool) {
	ut, _ := c.UserTimeout()
	rt, ok := NewRetransmission(c.snap.Target.Sysctls, ut)
	if !ok {
		return giveUp{}, false
	}
	return giveUp{rt.AbortAfter(rtoMin), rt.Reason()}, true
}
