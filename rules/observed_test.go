package rules

import (
	"strings"
	"testing"

	"github.com/tcpvet/tcpvet/diag"
)

// pinged is what a watch of watched seconds saw of a connection pinged
// every period seconds with 17-byte HTTP/2 PINGs.
func pinged(watched, period float64) *diag.Observed {
	return &diag.Observed{
		WatchedS: watched, Samples: int(watched) + 1, LongestQuietS: period, LongestQuietWatchedS: period,
		RefreshedBy: diag.RefreshedByAppPings, Pings: &diag.Pings{PeriodS: period, SizeBytes: 17, Count: int(watched / period)},
		DataExchanges: int(watched / period),
	}
}

// quiet is what a watch saw of a connection nothing crossed.
func quiet(watched, since float64) *diag.Observed {
	return &diag.Observed{WatchedS: watched, Samples: int(watched) + 1, LongestQuietS: since, LongestQuietWatchedS: watched, RefreshedBy: diag.RefreshedByNone}
}

func TestObservedKeepsAlive(t *testing.T) {
	lb := mustMiddlebox(t, "lb=30s,reset")
	tests := []struct {
		name     string
		mutate   func(*diag.Socket)
		want     string
		severity Severity
		says     string
	}{
		{"pings within half the timeout", func(s *diag.Socket) { noKA(s); s.Observed = pinged(25, 10) },
			RuleNoKeepalive, Info, "HTTP/2-size pings (17 bytes) every 10.0 s kept the flow alive"},
		{"grpc-go's SO_KEEPALIVE at 7200 s, and pings", func(s *diag.Socket) { slowKA(7200)(s); s.Observed = pinged(25, 10) },
			RuleKeepaliveTooSlow, Info, "pings"},
		{"TLS pings", func(s *diag.Socket) {
			noKA(s)
			s.Observed = pinged(25, 10)
			s.Observed.Pings.SizeBytes = 39
		}, RuleNoKeepalive, Info, "in TLS records (39 bytes)"},
		{"the peer's keepalive", func(s *diag.Socket) {
			noKA(s)
			s.Observed = &diag.Observed{WatchedS: 25, Samples: 26, LongestQuietS: 5, LongestQuietWatchedS: 5, RefreshedBy: diag.RefreshedByKeepalive, PeerProbes: 5}
		}, RuleNoKeepalive, Info, "the other end's keepalive probes kept the flow alive"},
		{"pings slower than half the timeout", func(s *diag.Socket) { noKA(s); s.Observed = pinged(25, 20) },
			RuleNoKeepalive, Critical, "refreshed by HTTP/2-size pings (17 bytes) every 20.0 s"},
		{"watched too briefly to tell", func(s *diag.Socket) { noKA(s); s.Observed = pinged(10, 5) },
			RuleNoKeepalive, Critical, "watched 10.0 s"},
		{"silent", func(s *diag.Socket) { noKA(s); s.Observed = quiet(25, 25) },
			RuleNoKeepalive, Critical, "refreshed by nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			tt.mutate(&s)
			s.TCPInfo.LastDataRecvMS, s.TCPInfo.LastDataSentMS = 1000, 1000
			got := fired(Evaluate(snapshot(s), []Middlebox{lb}), s.ID)
			f, ok := got[tt.want]
			if !ok || len(got) != 1 {
				t.Fatalf("fired %v, want %s alone", keys(got), tt.want)
			}
			if f.Severity != tt.severity || !strings.Contains(f.Summary, tt.says) {
				t.Errorf("%s %s, want %s saying %q", f.Severity, f.Summary, tt.severity, tt.says)
			}
			if ev := f.Evidence.ObservedEvidence; ev == nil || ev.LongestQuietS != s.Observed.LongestQuietS || ev.RefreshedBy != s.Observed.RefreshedBy {
				t.Errorf("evidence %+v, want what was observed", ev)
			}
			if f.Evidence.PathEvidence == nil || f.Evidence.Middlebox != "lb" || len(f.Fix) == 0 {
				t.Errorf("evidence %+v, fixes %d: want the middlebox and fixes", f.Evidence.PathEvidence, len(f.Fix))
			}
		})
	}
}

func TestKeepaliveNotSeen(t *testing.T) {
	lb := mustMiddlebox(t, "lb=30s,reset")
	tests := []struct {
		name     string
		observed *diag.Observed
		path     []Middlebox
		want     bool
		severity Severity
	}{
		{"idle past the first probe, on a path that forgets", quiet(25, 40), []Middlebox{lb}, true, Warning},
		{"idle past the path's timeout", quiet(25, 40), []Middlebox{mustMiddlebox(t, "nat=20s,drop")}, true, Critical},
		{"idle past the first probe, nothing on the path", quiet(25, 40), nil, true, Info},
		{"probes seen", &diag.Observed{WatchedS: 25, Samples: 26, LongestQuietS: 10, LongestQuietWatchedS: 10, RefreshedBy: diag.RefreshedByKeepalive, KeepaliveProbesSent: 2, KeepaliveProbesAnswered: 2}, []Middlebox{lb}, false, 0},
		{"idle since before the watch only", &diag.Observed{WatchedS: 25, Samples: 26, LongestQuietS: 40, LongestQuietWatchedS: 11, RefreshedBy: diag.RefreshedByKeepalive, KeepaliveProbesSent: 2}, []Middlebox{lb}, false, 0},
		{"not watched", nil, []Middlebox{lb}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			s.Keepalive.IdleS = ptr(10)
			s.Observed = tt.observed
			got := fired(Evaluate(snapshot(s), tt.path), s.ID)
			f, ok := got[RuleKeepaliveNotSeen]
			if ok != tt.want {
				t.Fatalf("fired %v, want %s %v", keys(got), RuleKeepaliveNotSeen, tt.want)
			}
			if !ok {
				return
			}
			if f.Severity != tt.severity || f.Evidence.ObservedEvidence == nil || f.Evidence.LongestQuietWatchedS != 25 {
				t.Errorf("%s %+v, want %s with the quiet seen", f.Severity, f.Evidence.ObservedEvidence, tt.severity)
			}
			if (f.Evidence.PathEvidence != nil) != (tt.path != nil) {
				t.Errorf("path evidence %+v, want it where a middlebox is on the path", f.Evidence.PathEvidence)
			}
			if len(f.Fix) == 0 {
				t.Error("no fix")
			}
			t.Log(f.Summary)
		})
	}
}

func mustMiddlebox(t *testing.T, spec string) Middlebox {
	t.Helper()
	m, err := ParseMiddlebox(spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
