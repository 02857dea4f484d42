package ui

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

func plain(t *testing.T, snap *diag.Snapshot) string {
	t.Helper()
	var b bytes.Buffer
	if err := WritePlain(&b, snap, rules.Evaluate(snap, nil)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPlainWatched: a watched snapshot's plain output keeps the table as it
// is, and after the findings says how long it was watched and which
// connections ended, each on one line with its cause and why.
func TestPlainWatched(t *testing.T) {
	single := plain(t, fixture())
	if strings.Contains(single, "Watched") || strings.Contains(single, "Closed while watched") {
		t.Errorf("a single snapshot speaks of a watch:\n%s", single)
	}

	snap := watched(9, t0)
	snap.Watch = &diag.Watch{DurationS: 30, Samples: 31, IntervalS: 1}
	for i := range snap.Sockets {
		snap.Sockets[i].Observed = &diag.Observed{WatchedS: 30, Samples: 31, LongestQuietS: 12, RefreshedBy: diag.RefreshedByData}
	}
	out := plain(t, snap)
	table := func(s string) string { return s[:strings.Index(s, "\nFindings:")] }
	if table(out) != table(single) {
		t.Errorf("the table changed with a watch:\n%s\nwant:\n%s", table(out), table(single))
	}
	findings := strings.Index(out, "\nFindings:")
	watchLine := strings.Index(out, "\nWatched 30s in 31 samples, one every 1.0s.\n")
	closedAt := strings.Index(out, "\nClosed while watched: 9\n")
	if findings < 0 || watchLine < findings || closedAt < watchLine {
		t.Fatalf("want the findings, then the watch, then the closed connections:\n%s", out)
	}
	lines := strings.Split(out[closedAt+1:], "\n")[1:]
	for i, e := range snap.Closed {
		l := lines[i]
		for _, want := range []string{strings.ToUpper(e.Cause), e.Local.String() + " → " + e.Remote.String(), "lived " + livedText(&e), e.Why} {
			if !strings.Contains(l, want) {
				t.Errorf("closed line %d %q lacks %q", i, l, want)
			}
		}
	}
	// Nothing else: no line per observed socket.
	unwatched := *snap
	unwatched.Watch, unwatched.Closed = nil, nil
	base := plain(t, &unwatched)
	if rest, ok := strings.CutPrefix(out, base); !ok || strings.Count(rest, "\n") != 4+len(snap.Closed) {
		t.Errorf("a watch adds more than its line and the closed connections:\n%s\nto:\n%s", out, base)
	}

	// Watched, and nothing ended: the watch's line, no closed section.
	snap.Closed = []diag.Closed{}
	out = plain(t, snap)
	if !strings.Contains(out, "Watched 30s in 31 samples") || strings.Contains(out, "Closed while watched") {
		t.Errorf("a watch where nothing closed:\n%s", out)
	}
}
