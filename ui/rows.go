package ui

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// row is one socket of the table with what the rules said of it and how it
// changed since the last refresh. Cells are formatted only when drawn.
type row struct {
	s *diag.Socket
	// findings index the report's findings about this socket, worst first.
	findings []int
	worst    rules.Severity
	isNew    bool
	// retransUp and queueUp mark values that grew since the last refresh.
	retransUp, queueUp bool
	haystack           string
}

// sample is what change detection remembers of a socket between refreshes.
type sample struct {
	retrans      uint32
	recvQ, sendQ uint32
}

func sampleOf(s *diag.Socket) sample {
	var r uint32
	if s.TCPInfo != nil {
		r = s.TCPInfo.TotalRetrans
	}
	return sample{retrans: r, recvQ: s.RecvQ, sendQ: s.SendQ}
}

// buildRows turns a snapshot and its report into rows, marking what changed
// since prev (nil on the first snapshot: nothing is new then).
func buildRows(snap *diag.Snapshot, rep *rules.Report, prev map[string]sample) ([]row, map[string]sample) {
	byID := make(map[string][]int)
	for i, f := range rep.Findings {
		if f.Socket != nil {
			byID[*f.Socket] = append(byID[*f.Socket], i)
		}
	}
	rows := make([]row, len(snap.Sockets))
	next := make(map[string]sample, len(snap.Sockets))
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		r := row{s: s, findings: byID[s.ID], worst: -1}
		for _, fi := range r.findings {
			r.worst = max(r.worst, rep.Findings[fi].Severity)
		}
		cur := sampleOf(s)
		next[s.ID] = cur
		if prev != nil {
			old, seen := prev[s.ID]
			r.isNew = !seen
			r.retransUp = seen && cur.retrans > old.retrans
			r.queueUp = seen && (cur.sendQ > old.sendQ || cur.recvQ > old.recvQ)
		}
		rows[i] = r
	}
	return rows, next
}

// matches reports whether every word of the query appears in the row's
// address, port, process, state or rule names.
func (r *row) matches(words []string, rep *rules.Report) bool {
	if r.haystack == "" {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s %s", strings.ToLower(r.s.State.String()), r.s.Local, r.s.Remote, r.s.ID)
		for _, p := range r.s.Processes {
			fmt.Fprintf(&b, " %s %d", strings.ToLower(p.Comm), p.PID)
		}
		for _, fi := range r.findings {
			b.WriteString(" " + rep.Findings[fi].Rule)
		}
		r.haystack = b.String()
	}
	for _, w := range words {
		if !strings.Contains(r.haystack, w) {
			return false
		}
	}
	return true
}

// column is a column of the connection table.
type column int

const (
	colState column = iota
	colLocal
	colRemote
	colProcess
	colRecvQ
	colSendQ
	colTimer
	colRetrans
	colRTO
	colIdle
	colKeepalive
	colUserTimeout
	colFinding
	numColumns
)

// columnSpec says how a column is titled, how wide it is and how important
// it is to keep when the terminal is narrow (lower keeps longer).
type columnSpec struct {
	title    string
	width    int
	flex     bool
	right    bool
	priority int
}

var columns = [numColumns]columnSpec{
	colState:       {"STATE", 11, false, false, 0},
	colLocal:       {"LOCAL", 21, true, false, 3},
	colRemote:      {"REMOTE", 21, true, false, 1},
	colProcess:     {"PROCESS", 14, false, false, 4},
	colRecvQ:       {"RECV-Q", 7, false, true, 6},
	colSendQ:       {"SEND-Q", 7, false, true, 5},
	colTimer:       {"TIMER", 16, false, false, 7},
	colRetrans:     {"RETR", 5, false, true, 9},
	colRTO:         {"RTO", 6, false, true, 11},
	colIdle:        {"IDLE", 6, false, true, 10},
	colKeepalive:   {"KEEPALIVE", 10, false, false, 8},
	colUserTimeout: {"USER-TO", 7, false, true, 12},
	colFinding:     {"FINDING", 18, false, false, 2},
}

// layout picks the columns that fit in width and how wide each is.
func layout(width int) (cols []column, widths [numColumns]int) {
	order := make([]column, numColumns)
	for i := range order {
		order[i] = column(i)
	}
	slices.SortFunc(order, func(a, b column) int { return cmp.Compare(columns[a].priority, columns[b].priority) })
	used := 0
	var keep [numColumns]bool
	for _, c := range order {
		w := columns[c].width + 1
		if used+w > width && len(cols) > 0 {
			continue
		}
		keep[c] = true
		used += w
		cols = append(cols, c)
	}
	slices.Sort(cols)
	for _, c := range cols {
		widths[c] = columns[c].width
	}
	// Give what is left to the addresses, which IPv6 makes long.
	spare := width - used
	for spare > 0 {
		grew := false
		for _, c := range []column{colRemote, colLocal} {
			if keep[c] && spare > 0 && widths[c] < 47 {
				widths[c]++
				spare--
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	return cols, widths
}

// cell formats one cell of r, uncoloured.
func (r *row) cell(c column, rep *rules.Report) string {
	s := r.s
	switch c {
	case colState:
		return s.State.String()
	case colLocal:
		return s.Local.String()
	case colRemote:
		return s.Remote.String()
	case colProcess:
		if len(s.Processes) == 0 {
			return "-"
		}
		p := s.Processes[0]
		return p.Comm + "/" + strconv.Itoa(p.PID)
	case colRecvQ:
		return strconv.FormatUint(uint64(s.RecvQ), 10)
	case colSendQ:
		return strconv.FormatUint(uint64(s.SendQ), 10)
	case colTimer:
		if s.Timer.Kind == diag.TimerOff {
			return "off"
		}
		return fmt.Sprintf("%s %s/%d", s.Timer.Kind, shortDur(time.Duration(s.Timer.ExpiresMS)*time.Millisecond), s.Timer.Retrans)
	case colRetrans:
		if s.TCPInfo == nil {
			return "-"
		}
		return strconv.FormatUint(uint64(s.TCPInfo.TotalRetrans), 10)
	case colRTO:
		if s.TCPInfo == nil || s.TCPInfo.RTO == 0 {
			return "-"
		}
		return shortDur(time.Duration(s.TCPInfo.RTO) * time.Microsecond)
	case colIdle:
		if s.TCPInfo == nil || s.State != diag.Established {
			return "-"
		}
		return shortDur(time.Duration(s.TCPInfo.LastDataRecv) * time.Millisecond)
	case colKeepalive:
		k := s.Keepalive
		switch {
		case k.Enabled == nil:
			return "unknown"
		case !*k.Enabled:
			return "off"
		}
		return fmt.Sprintf("%d/%d/%d", *k.IdleS, *k.IntervalS, *k.Probes)
	case colUserTimeout:
		switch {
		case s.UserTimeoutMS == nil:
			return "?"
		case *s.UserTimeoutMS == 0:
			return "-"
		}
		return shortDur(time.Duration(*s.UserTimeoutMS) * time.Millisecond)
	case colFinding:
		if len(r.findings) == 0 {
			return ""
		}
		name := rep.Findings[r.findings[0]].Rule
		if len(r.findings) > 1 {
			name += fmt.Sprintf(" +%d", len(r.findings)-1)
		}
		return name
	}
	return ""
}

// shortDur writes a duration in at most six characters: 850ms, 3.2s, 15m, 2h.
func shortDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 100*time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 100*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// less orders rows by column c; ties fall back to the socket id so the
// order is stable from one refresh to the next.
func less(c column, a, b *row) int {
	var r int
	switch c {
	case colState:
		r = cmp.Compare(a.s.State.String(), b.s.State.String())
	case colRemote:
		r = a.s.Remote.Compare(b.s.Remote)
	case colProcess:
		r = cmp.Compare(procKey(a.s), procKey(b.s))
	case colSendQ:
		r = cmp.Compare(a.s.SendQ+a.s.RecvQ, b.s.SendQ+b.s.RecvQ)
	case colRetrans:
		r = cmp.Compare(retrans(a.s), retrans(b.s))
	case colIdle:
		r = cmp.Compare(idle(a.s), idle(b.s))
	case colFinding:
		r = cmp.Compare(a.worst, b.worst)
	default:
		r = a.s.Local.Compare(b.s.Local)
	}
	if r == 0 {
		r = cmp.Compare(a.s.ID, b.s.ID)
	}
	return r
}

func procKey(s *diag.Socket) string {
	if len(s.Processes) == 0 {
		return ""
	}
	return s.Processes[0].Comm
}

func retrans(s *diag.Socket) uint32 {
	if s.TCPInfo == nil {
		return 0
	}
	return s.TCPInfo.TotalRetrans
}

func idle(s *diag.Socket) uint32 {
	if s.TCPInfo == nil {
		return 0
	}
	return s.TCPInfo.LastDataRecv
}
