package diag

import "slices"

// What refreshes a connection's flow on the path, as a watch saw it
// (Observed.RefreshedBy).
const (
	// RefreshedByData: the application's own traffic, of varied size.
	RefreshedByData = "data"
	// RefreshedByKeepalive: TCP's own probes and their answers, no data:
	// keepalive probes from either end, or window probes while the peer's
	// receive window is closed (Observed says which).
	RefreshedByKeepalive = "keepalive"
	// RefreshedByAppPings: small exchanges of one size, the same each way,
	// again and again: HTTP/2 PING frames (17 bytes, 39 to 46 with TLS),
	// a driver's heartbeat.
	RefreshedByAppPings = "app-pings"
	// RefreshedByNone: nothing crossed the connection while it was watched.
	RefreshedByNone = "none"
)

// Observed is what a watch saw a connection do over time, read from how its
// tcp_info counters moved between samples. A single snapshot cannot tell
// a connection kept alive by application pings from one left idle: both
// show little data and the same settings.
type Observed struct {
	// WatchedS is how long the connection was watched: from the first
	// sample that saw it to the last.
	WatchedS float64 `json:"watched_s"`
	// Samples counts the samples that saw it.
	Samples int `json:"samples"`
	// LongestQuietS is the longest time seen with no segment either way,
	// the quiet an idle timer on the path measures. It counts from the
	// connection's last segment before the watch began, and runs to the
	// last sample for a connection quiet at the end.
	LongestQuietS float64 `json:"longest_quiet_s"`
	// LongestQuietWatchedS is the same counted within the watch alone:
	// how long the connection was seen quiet, start to end.
	LongestQuietWatchedS float64 `json:"longest_quiet_watched_s"`
	// RefreshedBy is what kept segments crossing it: one of the
	// RefreshedBy constants.
	RefreshedBy string `json:"refreshed_by"`
	// Pings describes the application's pings, when RefreshedBy is
	// app-pings.
	Pings *Pings `json:"pings,omitempty"`
	// DataExchanges counts the samples in which data crossed it, pings
	// included.
	DataExchanges int `json:"data_exchanges"`
	// KeepaliveProbesSent counts this end's keepalive probes: segments
	// without data sent while no data went either way.
	// KeepaliveProbesAnswered counts those the peer answered.
	KeepaliveProbesSent     int `json:"keepalive_probes_sent"`
	KeepaliveProbesAnswered int `json:"keepalive_probes_answered"`
	// PeerProbes counts the keepalive probes of the other end seen here.
	PeerProbes int `json:"peer_probes"`
	// WindowProbes counts the probes sent while the peer's receive window
	// was closed: the same bare segment as a keepalive probe, sent by the
	// persist timer instead, which keepalive then waits for.
	WindowProbes int `json:"window_probes"`
	// EntriesSeen are the conntrack tables (the target's, the host's) that
	// held an entry of the connection in some sample of the watch, with
	// how each translated it. A table that holds none now forgot the flow:
	// it cannot be one that a rule exempts from tracking and that never had
	// an entry, and how it was translated is known, not guessed from other
	// flows.
	EntriesSeen []SeenEntry `json:"entries_seen,omitempty"`
}

// SeenEntry is a conntrack entry of a connection that a watch saw.
type SeenEntry struct {
	// Netns is whose table held it, as Flow.Netns.
	Netns Role `json:"netns"`
	// NAT is how it translated the flow, as Flow.NAT.
	NAT string `json:"nat,omitempty"`
	// MissingS is how long the table, read, has held no entry of the
	// connection, from the first sample that found none to the last; nil
	// while it holds one (or could not be read since).
	MissingS *float64 `json:"missing_s,omitempty"`
}

// EntrySeen is the entry of the connection a sample of the watch saw in
// the conntrack of the namespace of role r; false when none did.
func (o *Observed) EntrySeen(r Role) (SeenEntry, bool) {
	if o == nil {
		return SeenEntry{}, false
	}
	i := slices.IndexFunc(o.EntriesSeen, func(e SeenEntry) bool { return e.Netns == r })
	if i < 0 {
		return SeenEntry{}, false
	}
	return o.EntriesSeen[i], true
}

// Pings are an application's small periodic exchanges.
type Pings struct {
	// PeriodS is the mean time from one ping to the next.
	PeriodS float64 `json:"period_s"`
	// SizeBytes is the payload of one ping (and of its answer) on the
	// wire, TLS records included: 17 for an HTTP/2 PING frame.
	SizeBytes int `json:"size_bytes"`
	// Count is how many pings were seen.
	Count int `json:"count"`
}

// Watch says how a watched snapshot was taken: over DurationS seconds, in
// Samples samples; the snapshot is the last of them.
type Watch struct {
	DurationS float64 `json:"duration_s"`
	Samples   int     `json:"samples"`
	// IntervalS is the time asked for between samples.
	IntervalS float64 `json:"interval_s"`
}
