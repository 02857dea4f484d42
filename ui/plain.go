package ui

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// WritePlain prints the connection table and the findings as plain text,
// for when stdout is a pipe or a file rather than a terminal.
func WritePlain(w io.Writer, snap *diag.Snapshot, rep rules.Report) error {
	var cache rowCache
	rows := cache.build(snap, &rep)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	plainCols := []column{colState, colQueues, colLocal, colRemote, colProcess, colTimer, colRetrans, colRTO, colIdle, colKeepalive, colUserTimeout, colPath, colFinding}
	titles := make([]string, len(plainCols))
	for i, c := range plainCols {
		titles[i] = columns[c].title
	}
	fmt.Fprintln(tw, strings.Join(titles, "\t"))
	cells := make([]string, len(plainCols))
	for i := range rows {
		for j, c := range plainCols {
			if full := columns[c].full; full != nil {
				// A pipe has no width to save: the exact figure.
				cells[j] = full(&rows[i])
			} else {
				cells[j] = rows[i].cell(c, &rep, &cache)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(rep.Middleboxes) > 0 {
		fmt.Fprintln(w, "\nIdle timeouts on the path:")
		for _, mb := range rep.Middleboxes {
			fmt.Fprintf(w, "  %-20s %8.0f s  then %-13s %s; carries %s\n", mb.Name, mb.IdleTimeoutS, mb.OnExpiry, mb.Source, mb.Scope)
		}
	}
	fmt.Fprintf(w, "\nFindings: %d\n", len(rep.Findings))
	for _, f := range rep.Findings {
		sock := "namespace"
		if f.Socket != nil {
			sock = "sk:" + f.Socket.String()
		}
		fmt.Fprintf(w, "  %-8s %-24s %-12s %s\n", strings.ToUpper(f.Severity.String()), f.Rule, sock, f.Summary)
	}
	if err := writeWatched(w, snap); err != nil {
		return err
	}
	for _, n := range snap.Notes {
		fmt.Fprintf(w, "note: %s\n", n.Text)
	}
	return nil
}

// writeWatched says, after the findings, how a watched snapshot was taken
// and which connections ended while it was: what each socket was seen
// doing is in the findings and the JSON, not one more line per socket.
func writeWatched(w io.Writer, snap *diag.Snapshot) error {
	if wa := snap.Watch; wa != nil {
		every := ""
		if wa.IntervalS > 0 {
			every = ", one every " + shortDur(secDur(wa.IntervalS))
		}
		fmt.Fprintf(w, "\nWatched %s in %d samples%s.\n", shortDur(secDur(wa.DurationS)), wa.Samples, every)
	}
	if len(snap.Closed) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nClosed while watched: %d\n", len(snap.Closed))
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for i := range snap.Closed {
		e := &snap.Closed[i]
		fmt.Fprintf(tw, "  %s\t%s → %s\tlived %s\t%s\n", strings.ToUpper(e.Cause), e.Local, e.Remote, livedText(e), e.Why)
	}
	return tw.Flush()
}
