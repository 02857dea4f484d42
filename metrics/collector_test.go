package metrics

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// findings makes a report of one finding per rule:severity pair given.
func findings(pairs ...string) rules.Report {
	var r rules.Report
	for _, p := range pairs {
		rule, sev, _ := strings.Cut(p, ":")
		s, err := rules.ParseSeverity(sev)
		if err != nil {
			panic(err)
		}
		id := diag.Cookie(0x5c)
		r.Findings = append(r.Findings, rules.Finding{Rule: rule, Severity: s, Socket: &id, Summary: "addresses never reach a label 10.1.2.3:443"})
	}
	return r
}

// sockets makes a snapshot holding one socket per state given.
func sockets(states ...diag.State) *diag.Snapshot {
	snap := &diag.Snapshot{}
	for _, st := range states {
		snap.Sockets = append(snap.Sockets, diag.Socket{State: st})
	}
	return snap
}

// sweep is a node with a pod the runtime named, a pod named from its
// cgroup path alone, the node's own namespace, and one it could not read.
func sweep() *node.Sweep {
	return &node.Sweep{
		TakenAt:  t0,
		Duration: 1500 * time.Millisecond,
		Errors:   1,
		Namespaces: []node.Namespace{
			{
				Inode: 4026532001,
				Pod:   &node.Pod{Namespace: "shop", Name: "api-7d9", UID: "0b5e-uid", Container: "api", Source: "cri"},
				Snapshot: sockets(diag.Established, diag.Established, diag.Established, diag.Listen,
					diag.CloseWait),
				Report: findings("no-keepalive:critical", "no-keepalive:critical", "close-wait:warning", "half-open:critical"),
			},
			{
				Inode:    4026532002,
				Pod:      &node.Pod{UID: "77aa-uid", Container: "c0ffee", Source: "cgroup"},
				Snapshot: sockets(diag.SynSent),
				Report:   findings("connect-unanswered:critical"),
			},
			{
				Inode:    4026531840,
				Snapshot: sockets(diag.Listen, diag.TimeWait),
				Report:   findings("pod-sysctl-differs:info"),
			},
			{Inode: 4026532003, Path: "/proc/9/ns/net", Notes: []diag.Note{{Code: diag.NoteNamespaceUnreadable, Text: "open /proc/9/ns/net: permission denied"}}},
		},
	}
}

func collector(now time.Time) *Collector {
	c := NewCollector()
	c.now = func() time.Time { return now }
	return c
}

func TestCollectorLabels(t *testing.T) {
	c := collector(t0.Add(3 * time.Second))
	c.Update(sweep())
	want := `
# HELP tcpvet_findings Findings of the latest sweep, by rule and severity, per network namespace.
# TYPE tcpvet_findings gauge
tcpvet_findings{netns="4026532001",pod="api-7d9",pod_namespace="shop",pod_uid="0b5e-uid",rule="close-wait",severity="warning"} 1
tcpvet_findings{netns="4026532001",pod="api-7d9",pod_namespace="shop",pod_uid="0b5e-uid",rule="half-open",severity="critical"} 1
tcpvet_findings{netns="4026532001",pod="api-7d9",pod_namespace="shop",pod_uid="0b5e-uid",rule="no-keepalive",severity="critical"} 2
tcpvet_findings{netns="4026532002",pod="",pod_namespace="",pod_uid="77aa-uid",rule="connect-unanswered",severity="critical"} 1
tcpvet_findings{netns="4026531840",pod="",pod_namespace="",pod_uid="",rule="pod-sysctl-differs",severity="info"} 1
# HELP tcpvet_connections TCP sockets of the latest sweep by state (listeners included, as LISTEN), per network namespace.
# TYPE tcpvet_connections gauge
tcpvet_connections{netns="4026532001",pod="api-7d9",pod_namespace="shop",pod_uid="0b5e-uid",state="CLOSE_WAIT"} 1
tcpvet_connections{netns="4026532001",pod="api-7d9",pod_namespace="shop",pod_uid="0b5e-uid",state="ESTABLISHED"} 3
tcpvet_connections{netns="4026532001",pod="api-7d9",pod_namespace="shop",pod_uid="0b5e-uid",state="LISTEN"} 1
tcpvet_connections{netns="4026532002",pod="",pod_namespace="",pod_uid="77aa-uid",state="SYN_SENT"} 1
tcpvet_connections{netns="4026531840",pod="",pod_namespace="",pod_uid="",state="LISTEN"} 1
tcpvet_connections{netns="4026531840",pod="",pod_namespace="",pod_uid="",state="TIME_WAIT"} 1
# HELP tcpvet_namespaces Network namespaces the latest sweep found, read or not.
# TYPE tcpvet_namespaces gauge
tcpvet_namespaces 4
# HELP tcpvet_sweep_duration_seconds How long the latest completed sweep took.
# TYPE tcpvet_sweep_duration_seconds gauge
tcpvet_sweep_duration_seconds 1.5
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"tcpvet_findings", "tcpvet_connections", "tcpvet_namespaces", "tcpvet_sweep_duration_seconds"); err != nil {
		t.Error(err)
	}
	// A label is a name, a UID or an inode: never the pod's container,
	// never an address (the finding's text holds one).
	allowed := map[string]bool{"rule": true, "severity": true, "state": true, "pod_namespace": true, "pod": true, "pod_uid": true, "netns": true}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if !allowed[lp.GetName()] {
					t.Errorf("%s has a label %q", mf.GetName(), lp.GetName())
				}
				if strings.ContainsAny(lp.GetValue(), ":.") {
					t.Errorf("%s{%s=%q}: looks like an address", mf.GetName(), lp.GetName(), lp.GetValue())
				}
				if _, err := strconv.ParseUint(lp.GetValue(), 10, 64); lp.GetName() == "netns" && err != nil {
					t.Errorf("%s{netns=%q}: not an inode number", mf.GetName(), lp.GetValue())
				}
			}
		}
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func TestCollectorBeforeFirstSweep(t *testing.T) {
	c := collector(t0)
	want := `
# HELP tcpvet_sweep_errors_total Sweeps that failed altogether, plus namespaces that completed sweeps found but could not read.
# TYPE tcpvet_sweep_errors_total counter
tcpvet_sweep_errors_total 0
# HELP tcpvet_sweeps_total Sweeps that completed.
# TYPE tcpvet_sweeps_total counter
tcpvet_sweeps_total 0
`
	// Nothing about a sweep that has not happened: no age, no zero counts
	// that a dashboard would read as "all is well".
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestCollectorErrorsMonotonic(t *testing.T) {
	c := collector(t0)
	errs := func() float64 {
		t.Helper()
		return gathered(t, c, "tcpvet_sweep_errors_total")
	}
	var seen []float64
	c.Update(sweep()) // one namespace unreadable
	seen = append(seen, errs())
	c.Failed()
	seen = append(seen, errs())
	clean := sweep()
	clean.Errors, clean.TakenAt = 0, t0.Add(time.Minute)
	c.Update(clean) // a clean sweep does not take the count back
	seen = append(seen, errs())
	c.Failed()
	c.Failed()
	seen = append(seen, errs())
	if want := []float64{1, 2, 2, 4}; !slices.Equal(seen, want) {
		t.Errorf("tcpvet_sweep_errors_total went %v, want %v", seen, want)
	}
	if got := gathered(t, c, "tcpvet_sweeps_total"); got != 2 {
		t.Errorf("tcpvet_sweeps_total = %v, want 2", got)
	}
}

func TestCollectorStaleness(t *testing.T) {
	now := t0.Add(2 * time.Second)
	c := NewCollector()
	c.now = func() time.Time { return now }
	c.Update(sweep())
	if got := gathered(t, c, "tcpvet_last_sweep_age_seconds"); got != 2 {
		t.Errorf("age = %v, want 2", got)
	}
	if got := gathered(t, c, "tcpvet_last_sweep_timestamp_seconds"); got != float64(t0.Unix()) {
		t.Errorf("timestamp = %v, want %v", got, t0.Unix())
	}

	// Sweeps fail for ten minutes: the last one is still served, and says
	// how old it is.
	for range 40 {
		c.Failed()
	}
	now = t0.Add(10 * time.Minute)
	if got := gathered(t, c, "tcpvet_last_sweep_age_seconds"); got != 600 {
		t.Errorf("age after ten minutes of failures = %v, want 600", got)
	}
	if n := testutil.CollectAndCount(c, "tcpvet_findings"); n != 5 {
		t.Errorf("%d tcpvet_findings series after failures, want the last sweep's 5", n)
	}

	// A sweep that started before the one held (it took longer) counts,
	// but does not replace the newer one.
	old := sweep()
	old.TakenAt, old.Namespaces = t0.Add(-time.Minute), nil
	c.Update(old)
	if got := gathered(t, c, "tcpvet_namespaces"); got != 4 {
		t.Errorf("an older sweep replaced the newer: %v namespaces", got)
	}

	// A fresh sweep replaces it, and the series of namespaces that are gone
	// go with it.
	fresh := &node.Sweep{TakenAt: now, Namespaces: []node.Namespace{{Inode: 1, Snapshot: sockets(diag.Established)}}}
	c.Update(fresh)
	if n := testutil.CollectAndCount(c, "tcpvet_findings"); n != 0 {
		t.Errorf("%d tcpvet_findings series from a sweep with none", n)
	}
	if got := gathered(t, c, "tcpvet_last_sweep_age_seconds"); got != 0 {
		t.Errorf("age of a fresh sweep = %v", got)
	}
}

// TestCollectorDuplicateNamespace: a sweep that lists one namespace twice
// must not fail the scrape with duplicate series; the counts add up.
func TestCollectorDuplicateNamespace(t *testing.T) {
	ns := node.Namespace{Inode: 7, Snapshot: sockets(diag.Established), Report: findings("no-keepalive:critical")}
	c := collector(t0)
	c.Update(&node.Sweep{TakenAt: t0, Namespaces: []node.Namespace{ns, ns}})
	want := `
# HELP tcpvet_findings Findings of the latest sweep, by rule and severity, per network namespace.
# TYPE tcpvet_findings gauge
tcpvet_findings{netns="7",pod="",pod_namespace="",pod_uid="",rule="no-keepalive",severity="critical"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "tcpvet_findings"); err != nil {
		t.Error(err)
	}
}

// gathered is the value of the single series name that c exports.
func gathered(t *testing.T, c *Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if len(mf.Metric) != 1 {
			t.Fatalf("%s: %d series, want 1", name, len(mf.Metric))
		}
		m := mf.Metric[0]
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// TestCollectorKeepsNoSweep: what a sweep read (every socket of every
// namespace) is garbage once Update returns, so that a node's exporter
// holds one sweep's sockets at a time, not two, while the next is taken.
func TestCollectorKeepsNoSweep(t *testing.T) {
	c := collector(t0)
	s := sweep()
	gone := weak.Make(s.Namespaces[0].Snapshot)
	c.Update(s)
	s = nil
	runtime.GC()
	if gone.Value() != nil {
		t.Error("the Collector still holds the sweep's snapshots")
	}
	if n := testutil.CollectAndCount(c, "tcpvet_connections"); n != 6 {
		t.Errorf("%d tcpvet_connections series, want 6", n)
	}
}

// TestUnreadableNamespaces: the namespaces a sweep found but could not
// read are a gauge of the latest sweep, /healthz says the exporter is
// degraded (not failed: restarting reads no more), and the log says so,
// with why, once when the count changes rather than every sweep.
func TestUnreadableNamespaces(t *testing.T) {
	c := collector(t0.Add(time.Second))
	c.Update(sweep()) // one of four unreadable
	if got := gathered(t, c, "tcpvet_namespaces_unreadable"); got != 1 {
		t.Errorf("tcpvet_namespaces_unreadable = %v, want 1", got)
	}
	rec := httptest.NewRecorder()
	Handler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if body := rec.Body.String(); rec.Code != http.StatusOK || !strings.HasPrefix(body, "degraded: ") || !strings.Contains(body, "1 of 4 namespaces unreadable") {
		t.Errorf("healthz with a namespace unreadable: %d %q", rec.Code, body)
	}

	var log strings.Builder
	was := logUnreadable(&log, sweep(), 0)
	was = logUnreadable(&log, sweep(), was)
	clean := sweep()
	clean.Errors = 0
	was = logUnreadable(&log, clean, was)
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if was != 0 || len(lines) != 2 ||
		lines[0] != "tcpvet: 1 of 4 namespaces could not be read, so their connections are not inspected, e.g. netns 4026532003 (/proc/9/ns/net): open /proc/9/ns/net: permission denied" ||
		lines[1] != "tcpvet: every one of the 4 namespaces was read again" {
		t.Errorf("the log, two sweeps with one unreadable then a clean one:\n%s", log.String())
	}

	c.Update(clean)
	if got := gathered(t, c, "tcpvet_namespaces_unreadable"); got != 0 {
		t.Errorf("after a clean sweep, tcpvet_namespaces_unreadable = %v, want 0", got)
	}
}
