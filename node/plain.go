package node

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/tcpvet/tcpvet/rules"
)

// WritePlain prints the sweep as plain text, one row per namespace in the
// sweep's order: the pod or the namespace's path, its inode, sockets, its
// worst finding and when that fails, and its findings by severity; then
// the sweep's notes.
func WritePlain(w io.Writer, s *Sweep) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD/NAMESPACE\tNETNS\tSOCKETS\tWORST\tFAILS IN\tCRIT\tWARN\tINFO")
	for i := range s.Namespaces {
		n := &s.Namespaces[i]
		worst, fails := "-", "-"
		if f := n.Worst(); f != nil {
			worst = strings.ToUpper(f.Severity.String()) + " " + f.Rule
			fails = failsIn(f)
		}
		socks := strconv.Itoa(n.Sockets())
		if n.Snapshot == nil {
			socks, worst = "?", "unreadable"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\n", n.Name(), n.Inode, socks, worst, fails,
			n.Count(rules.Critical), n.Count(rules.Warning), n.Count(rules.Info))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d namespaces in %v", len(s.Namespaces), s.Duration.Round(1e6))
	if s.Errors > 0 {
		fmt.Fprintf(w, ", %d unreadable", s.Errors)
	}
	fmt.Fprintln(w)
	for i := range s.Namespaces {
		n := &s.Namespaces[i]
		if n.Snapshot == nil {
			for _, note := range n.Notes {
				fmt.Fprintf(w, "note: %s: %s\n", n.Name(), note.Text)
			}
		}
	}
	for _, note := range s.Notes {
		fmt.Fprintf(w, "note: %s\n", note.Text)
	}
	return nil
}

// Name is how people call the namespace: its pod's namespace/name, the
// pod UID (and container) when only cgroups named it, or its path (marked
// when it is the host's).
func (n *Namespace) Name() string {
	switch p := n.Pod; {
	case p == nil && n.IsHost:
		return "host " + n.Path
	case p == nil:
		return n.Path
	case p.Name != "":
		return p.Namespace + "/" + p.Name
	case p.Container != "":
		return "pod " + p.UID + " " + shortID(p.Container)
	default:
		return "pod " + p.UID
	}
}

// shortID is a container ID as crictl and docker print it.
func shortID(id string) string { return id[:min(len(id), 13)] }

// failsIn says when a finding's connection fails, as the table shows it.
func failsIn(f *rules.Finding) string {
	switch {
	case f.Failing == rules.FailingNow:
		return "now"
	case f.Failing == rules.FailingNextWrite:
		return "next write"
	case f.FailsInS != nil:
		return strconv.FormatFloat(*f.FailsInS, 'f', 0, 64) + " s"
	}
	return "-"
}
