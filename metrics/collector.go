package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpvet/tcpvet/node"
)

// The labels that say which namespace a series is about. A namespace of no
// pod tcpvet could name has empty pod labels; one named from its cgroup path
// alone has a pod_uid but no pod_namespace or pod.
var nsLabels = []string{"pod_namespace", "pod", "pod_uid", "netns"}

var (
	findingsDesc = prometheus.NewDesc("tcpvet_findings",
		"Findings of the latest sweep, by rule and severity, per network namespace.",
		append([]string{"rule", "severity"}, nsLabels...), nil)
	connectionsDesc = prometheus.NewDesc("tcpvet_connections",
		"TCP sockets of the latest sweep by state (listeners included, as LISTEN), per network namespace.",
		append([]string{"state"}, nsLabels...), nil)
	namespacesDesc = prometheus.NewDesc("tcpvet_namespaces",
		"Network namespaces the latest sweep found, read or not.", nil, nil)
	unreadableDesc = prometheus.NewDesc("tcpvet_namespaces_unreadable",
		"Network namespaces the latest sweep found but could not read: their connections are in no other series (the exporter's log says why).", nil, nil)
	durationDesc = prometheus.NewDesc("tcpvet_sweep_duration_seconds",
		"How long the latest completed sweep took.", nil, nil)
	timestampDesc = prometheus.NewDesc("tcpvet_last_sweep_timestamp_seconds",
		"When the latest completed sweep started, in seconds since the epoch.", nil, nil)
	ageDesc = prometheus.NewDesc("tcpvet_last_sweep_age_seconds",
		"How old the latest completed sweep is at scrape time: what every tcpvet_findings and tcpvet_connections series describes.", nil, nil)
	sweepsDesc = prometheus.NewDesc("tcpvet_sweeps_total",
		"Sweeps that completed.", nil, nil)
	errorsDesc = prometheus.NewDesc("tcpvet_sweep_errors_total",
		"Sweeps that failed altogether, plus namespaces that completed sweeps found but could not read.", nil, nil)
)

// Collector is a prometheus.Collector over the latest sweep. Its methods are
// safe to call from any goroutine.
type Collector struct {
	now func() time.Time

	mu     sync.Mutex
	last   *counts
	sweeps uint64
	errors uint64
}

// Summary is what a Collector keeps of a sweep besides its counts.
type Summary struct {
	TakenAt    time.Time
	Duration   time.Duration
	Namespaces int
	// Unreadable counts the namespaces found but not read.
	Unreadable int
}

// counts is a sweep as the Collector keeps it: the series it makes, and
// none of its sockets, so that a sweep's snapshots are garbage as soon as
// the next sweep starts rather than when it ends.
type counts struct {
	Summary
	findings map[[6]string]int // rule, severity, then nsLabels
	conns    map[[5]string]int // state, then nsLabels
}

// NewCollector returns a Collector that has seen no sweep yet: until
// Update it exports only the sweep counters, at zero.
func NewCollector() *Collector { return &Collector{now: time.Now} }

// Update makes s the sweep the Collector exports; it keeps no reference to
// s. A sweep older than the one held (a slow sweep that finished after a
// faster, later one) only adds to the counters.
func (c *Collector) Update(s *node.Sweep) {
	n := count(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweeps++
	if s.Errors > 0 {
		c.errors += uint64(s.Errors)
	}
	if c.last == nil || !s.TakenAt.Before(c.last.TakenAt) {
		c.last = n
	}
}

// Failed counts a sweep that failed altogether. The last completed sweep is
// still exported; its age says how stale it is.
func (c *Collector) Failed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors++
}

// Last summarises the sweep the Collector exports; false before the first.
func (c *Collector) Last() (Summary, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		return Summary{}, false
	}
	return c.last.Summary, true
}

// Describe sends every metric's description: the set is fixed, so the
// registry can check the collector's series against them.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{findingsDesc, connectionsDesc, namespacesDesc, unreadableDesc, durationDesc, timestampDesc, ageDesc, sweepsDesc, errorsDesc} {
		ch <- d
	}
}

// Collect sends the latest sweep's counts.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	s, sweeps, errs := c.last, c.sweeps, c.errors
	c.mu.Unlock()

	ch <- prometheus.MustNewConstMetric(sweepsDesc, prometheus.CounterValue, float64(sweeps))
	ch <- prometheus.MustNewConstMetric(errorsDesc, prometheus.CounterValue, float64(errs))
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(namespacesDesc, prometheus.GaugeValue, float64(s.Namespaces))
	ch <- prometheus.MustNewConstMetric(unreadableDesc, prometheus.GaugeValue, float64(s.Unreadable))
	ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, s.Duration.Seconds())
	ch <- prometheus.MustNewConstMetric(timestampDesc, prometheus.GaugeValue, float64(s.TakenAt.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, max(c.now().Sub(s.TakenAt), 0).Seconds())
	// The maps are never written once made, so they are read unlocked.
	for l, n := range s.findings {
		ch <- prometheus.MustNewConstMetric(findingsDesc, prometheus.GaugeValue, float64(n), l[:]...)
	}
	for l, n := range s.conns {
		ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(n), l[:]...)
	}
}

// count makes the series of s. Counts are summed by label set rather than
// kept per namespace: two entries with the same labels (a sweep that listed
// a namespace twice) would otherwise fail the whole scrape as duplicate
// series.
func count(s *node.Sweep) *counts {
	n := &counts{
		Summary:  Summary{TakenAt: s.TakenAt, Duration: s.Duration, Namespaces: len(s.Namespaces), Unreadable: s.Errors},
		findings: map[[6]string]int{},
		conns:    map[[5]string]int{},
	}
	for i := range s.Namespaces {
		ns := &s.Namespaces[i]
		l := namespaceLabels(ns)
		for _, f := range ns.Report.Findings {
			n.findings[[6]string{f.Rule, f.Severity.String(), l[0], l[1], l[2], l[3]}]++
		}
		if ns.Snapshot == nil {
			continue
		}
		for _, sk := range ns.Snapshot.Sockets {
			n.conns[[5]string{sk.State.String(), l[0], l[1], l[2], l[3]}]++
		}
	}
	return n
}

// namespaceLabels returns the values of nsLabels for ns.
func namespaceLabels(ns *node.Namespace) [4]string {
	l := [4]string{3: strconv.FormatUint(ns.Inode, 10)}
	if p := ns.Pod; p != nil {
		l[0], l[1], l[2] = p.Namespace, p.Name, p.UID
	}
	return l
}
