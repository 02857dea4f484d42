package rules

import (
	"fmt"
	"strings"
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
	Socket *string `json:"socket"`
	// Summary is one line: what will happen, and when.
	Summary  string   `json:"summary"`
	Evidence Evidence `json:"evidence"`
	Fix      []Fix    `json:"fix"`
}

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
