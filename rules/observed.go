package rules

import (
	"cmp"
	"fmt"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// RuleKeepaliveNotSeen: keepalive is on, yet a watch saw the connection sit
// idle past its first probe time with no probe crossing it.
const RuleKeepaliveNotSeen = "keepalive-not-seen"

// ObservedEvidence is what a watch (tcpvet --watch) saw of a connection.
type ObservedEvidence struct {
	WatchedS      float64 `json:"watched_s"`
	LongestQuietS float64 `json:"longest_quiet_s"`
	// LongestQuietWatchedS is the longest quiet within the watch alone.
	LongestQuietWatchedS float64 `json:"longest_quiet_watched_s"`
	RefreshedBy          string  `json:"refreshed_by"`
	PingPeriodS          float64 `json:"ping_period_s,omitempty"`
	PingSizeBytes        int     `json:"ping_size_bytes,omitempty"`
	// KeepaliveProbesSeen counts this end's probes, PeerProbesSeen the
	// other end's.
	KeepaliveProbesSeen int `json:"keepalive_probes_seen"`
	PeerProbesSeen      int `json:"peer_probes_seen"`
	// WindowProbesSeen counts this end's probes of a closed window.
	WindowProbesSeen int `json:"window_probes_seen,omitempty"`
}

func observedEvidence(o *diag.Observed) *ObservedEvidence {
	ev := &ObservedEvidence{
		WatchedS: o.WatchedS, LongestQuietS: o.LongestQuietS, LongestQuietWatchedS: o.LongestQuietWatchedS,
		RefreshedBy: o.RefreshedBy, KeepaliveProbesSeen: o.KeepaliveProbesSent, PeerProbesSeen: o.PeerProbes,
		WindowProbesSeen: o.WindowProbes,
	}
	if p := o.Pings; p != nil {
		ev.PingPeriodS, ev.PingSizeBytes = p.PeriodS, p.SizeBytes
	}
	return ev
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// keptAlive reports whether what a watch saw keeps c's flow alive on a
// path whose shortest idle timeout is shortest: the longest quiet seen is
// at most half of it, so a lost segment or a late one still leaves room,
// and the watch lasted that long at least, so a longer quiet had shown.
func keptAlive(o *diag.Observed, shortest time.Duration) bool {
	return o != nil && shortest > 0 && seconds(o.WatchedS) >= shortest/2 && seconds(o.LongestQuietS) <= shortest/2
}

// shortestOnPath is the shortest idle timeout of the middleboxes on c's
// path that do not let a forgotten flow go on.
func shortestOnPath(c conn) time.Duration {
	var d time.Duration
	for i := range c.path {
		if f := &c.path[i]; f.Meets != Survives && (d == 0 || f.IdleTimeout < d) {
			d = f.IdleTimeout
		}
	}
	return d
}

// refresher says, for a person, what kept segments crossing a connection.
func refresher(o *diag.Observed) string {
	switch o.RefreshedBy {
	case diag.RefreshedByAppPings:
		p := o.Pings
		kind := fmt.Sprintf("pings of %d bytes each way", p.SizeBytes)
		switch {
		case p.SizeBytes == 17:
			kind = "HTTP/2-size pings (17 bytes)"
		case p.SizeBytes >= 39 && p.SizeBytes <= 46:
			kind = fmt.Sprintf("HTTP/2-size pings in TLS records (%d bytes)", p.SizeBytes)
		}
		return fmt.Sprintf("%s every %s", kind, human(seconds(p.PeriodS)))
	case diag.RefreshedByKeepalive:
		switch {
		case o.KeepaliveProbesSent == 0 && o.PeerProbes == 0:
			return "window probes to a peer whose receive window is closed"
		case o.KeepaliveProbesSent == 0:
			return "the other end's keepalive probes"
		}
		return "keepalive probes"
	case diag.RefreshedByData:
		return "the application's own traffic"
	}
	return "nothing"
}

// keptAliveFinding is what becomes of a no-keepalive or keepalive-too-slow
// finding about c when a watch saw its flow kept alive: information, and
// what does it.
func keptAliveFinding(c conn, f *forgetting, rule string, shortest time.Duration) *Finding {
	o := c.Observed
	ev := pathEvidence(c, f)
	ev.ObservedEvidence = observedEvidence(o)
	return &Finding{
		Rule:     rule,
		Severity: Info,
		Summary: fmt.Sprintf("%s: %s kept the flow alive: in %s of watching it was never quiet more than %s, within half of the %s after which %s forgets it; its own keepalive would not, should that stop",
			ends(c.Socket), refresher(o), human(seconds(o.WatchedS)), human(seconds(o.LongestQuietS)), human(shortest), f.Name),
		Evidence: ev,
		Fix:      keepaliveFixes(c, shortest),
	}
}

// keepaliveNotSeen flags a connection with keepalive on that a watch saw
// idle past its first probe time, and longer than a sample besides, with
// nothing crossing it: no probe left, or none crossed the path. Linux
// holds keepalive back while data waits to be sent (tcp_keepalive_timer):
// a peer whose window is closed gets window probes instead, ever further
// apart.
func keepaliveNotSeen(c conn) *Finding {
	o, k := c.Observed, c.Keepalive
	if o == nil || c.State != diag.Established || k.Enabled == nil || !*k.Enabled || k.IdleS == nil || o.Samples < 2 {
		return nil
	}
	idle := time.Duration(*k.IdleS) * time.Second
	// A probe due at idle is seen by the next sample, and the kernel's
	// keepalive timer may fire up to a second late.
	sample := seconds(o.WatchedS) / time.Duration(o.Samples-1)
	quiet := seconds(o.LongestQuietWatchedS)
	if quiet <= idle+sample+time.Second {
		return nil
	}
	why := ""
	if c.Timer.Kind == diag.TimerPersist {
		why = "its peer's receive window is closed, so the kernel sends window probes, backing off, and no keepalive; "
	}
	ev := Evidence{ObservedEvidence: observedEvidence(o)}
	sev, then := Info, "nothing on its path forgets idle flows, but a dead peer goes unnoticed while nothing crosses it"
	var fails *float64
	for i := range c.path {
		f := &c.path[i]
		if f.Meets == Survives || f.IdleTimeout != shortestOnPath(c) {
			continue
		}
		ev.PathEvidence = pathEvidence(c, f).PathEvidence
		sev, then = Warning, fmt.Sprintf("%s forgets it after %s quiet, and keepalive is not what keeps it", f.Name, human(f.IdleTimeout))
		if f.Meets.certain() && f.Entry == nil && quiet >= f.IdleTimeout+sample {
			// Seen quiet past the timeout: the middlebox has forgotten
			// the flow, whatever comes next meets its fate.
			sev, fails = Critical, ptrTo(0.0)
			then = fmt.Sprintf("that outlasted the %s after which %s forgets it: %s, so %s", human(f.IdleTimeout), f.Name, f.Because, consequence(c, f.Meets))
		}
		break
	}
	fin := &Finding{
		Rule:     RuleKeepaliveNotSeen,
		Severity: sev,
		Summary: fmt.Sprintf("%s has keepalive on with its first probe after %s idle, yet sat %s with no segment either way while watched (%s in %s): %s%s",
			ends(c.Socket), human(idle), human(quiet), plural(o.KeepaliveProbesSent, "probe")+" seen", human(seconds(o.WatchedS)), why, then),
		Evidence: ev,
		Fix:      keepaliveFixes(c, cmp.Or(shortestOnPath(c), 350*time.Second)),
		FailsInS: fails,
	}
	if sev == Critical {
		fin.Failing = FailingNextWrite
	}
	return fin
}

// watchedSummary says what a watch saw of a connection a finding stays on.
func watchedSummary(o *diag.Observed) string {
	return fmt.Sprintf("; watched %s: quiet up to %s, refreshed by %s", human(seconds(o.WatchedS)), human(seconds(o.LongestQuietS)), refresher(o))
}
