package rules

import (
	"bytes"
	"cmp"
	"fmt"
	"strings"

	"github.com/tcpvet/tcpvet/diag"
)

// Severity ranks findings.
type Severity int

// Severities, from least to most urgent.
const (
	Info Severity = iota
	Warning
	Critical
)

var severityNames = [...]string{"info", "warning", "critical"}

// String returns the severity's name.
func (s Severity) String() string {
	if s >= 0 && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText encodes the severity by name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// ParseSeverity parses "info", "warning" or "critical".
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(n, name) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q: want info, warning or critical", name)
}

// Finding is one thing wrong, with the numbers behind it and how to fix it.
type Finding struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	// Socket is the id of the socket concerned, or nil for the namespace.
	Socket *diag.Cookie `json:"socket"`
	// Summary is one line: what will happen, and when.
	Summary string `json:"summary"`
	// Failing is "now" for a connection failing as it stands (a dead peer,
	// a connect unanswered, a full accept queue), "next-write" for one
	// whose next packet meets its fate, and "" otherwise.
	Failing Failing `json:"failing,omitempty"`
	// FailsInS is how many seconds until the application hears of the
	// failure, where tcpvet predicts it: the kernel's give-up, or when the
	// path forgets the flow.
	FailsInS *float64 `json:"fails_in_s,omitempty"`
	Evidence Evidence `json:"evidence"`
	Fix      []Fix    `json:"fix"`
}

// Failing says how soon a finding's connection fails.
type Failing string

// How soon a connection fails.
const (
	FailingNow       Failing = "now"
	FailingNextWrite Failing = "next-write"
)

// rank orders failings: now, then at the next write, then the rest.
func (f Failing) rank() int {
	switch f {
	case FailingNow:
		return 0
	case FailingNextWrite:
		return 1
	}
	return 2
}

// urgency orders findings most urgent first: by severity, then what fails
// now, then what fails at its next write, then soonest to fail.
func urgency(a, b Finding) int {
	if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Failing.rank(), b.Failing.rank()); c != 0 {
		return c
	}
	switch {
	case a.FailsInS != nil && b.FailsInS == nil:
		return -1
	case a.FailsInS == nil && b.FailsInS != nil:
		return 1
	case a.FailsInS != nil:
		if c := cmp.Compare(*a.FailsInS, *b.FailsInS); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(a.Rule, b.Rule); c != 0 {
		return c
	}
	return compareSockets(a.Socket, b.Socket)
}

// compareSockets orders socket ids as their text sorts, namespace-wide
// (nil) first: hex as strings order it, "10" before "f", the order
// findings have always been listed in.
func compareSockets(a, b *diag.Cookie) int {
	var x, y [16]byte
	text := func(buf []byte, c *diag.Cookie) []byte {
		if c == nil {
			return nil
		}
		b, _ := c.AppendText(buf)
		return b
	}
	return bytes.Compare(text(x[:0], a), text(y[:0], b))
}

// Urgency orders findings most urgent first, as a report lists them: by
// severity, then what fails now, then what fails at its next write, then
// soonest to fail. Views that rank more than one report (a node's
// namespaces by their worst finding) compare with it.
func Urgency(a, b Finding) int { return urgency(a, b) }

// Fix is one way to prevent what a finding predicts.
type Fix struct {
	// Where names the layer: sysctl, setsockopt, go, grpc-go, istio, ...
	Where   string `json:"where"`
	Snippet string `json:"snippet"`
}

// Report is everything the rules concluded from one snapshot.
type Report struct {
	Middleboxes []Middlebox `json:"middleboxes"`
	Findings    []Finding   `json:"findings"`
}

// Worst returns the highest severity in r, and false when there are no findings.
func (r Report) Worst() (Severity, bool) {
	worst, any := Info, false
	for _, f := range r.Findings {
		if !any || f.Severity > worst {
			worst, any = f.Severity, true
		}
	}
	return worst, any
}
