package node

import (
	"bytes"
	"encoding/json"
	"io"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// Schema names the layout of a sweep in JSON.
const Schema = "tcpvet/node/v1"

// headRoom is what the writer's buffer starts with: a namespace's head and
// tail; its sockets are streamed (diag.WriteSockets), never held as one
// document.
const headRoom = 16 << 10

// The parts of the document, in the order they are written. The sockets of
// each namespace are written between nsHead and nsTail, one at a time.
type (
	sweepHead struct {
		Schema     string    `json:"schema"`
		TakenAt    time.Time `json:"taken_at"`
		DurationMS int64     `json:"duration_ms"`
		Host       hostJSON  `json:"host"`
		Errors     int       `json:"errors"`
	}
	// hostJSON is the host with its sysctls (see MarshalJSON).
	hostJSON struct{ diag.Namespace }
	nsHead   struct {
		Target    diag.Namespace `json:"target"`
		Pod       *Pod           `json:"pod"`
		IsHost    bool           `json:"is_host,omitempty"`
		Sysctls   diag.Sysctls   `json:"sysctls"`
		Processes int            `json:"processes"`
	}
	nsTail struct {
		Middleboxes []rules.Middlebox `json:"middleboxes"`
		Findings    []rules.Finding   `json:"findings"`
		Notes       []diag.Note       `json:"notes"`
	}
)

// WriteJSON writes s as one JSON document: the host once, then each
// namespace (its target, pod, sockets, findings and notes) in the sweep's
// order, then the sweep's notes. Sockets are streamed a piece at a time
// (diag.WriteSockets), so a node of a hundred thousand sockets is never one
// document in memory.
func WriteJSON(w io.Writer, s *Sweep) error {
	sw := &streamWriter{w: w, b: make([]byte, 0, headRoom)}
	sw.object(sweepHead{Schema: Schema, TakenAt: s.TakenAt, DurationMS: s.Duration.Milliseconds(),
		Host: hostJSON{s.Host}, Errors: s.Errors}, true)
	sw.b = append(sw.b, `,"namespaces":[`...)
	for i := range s.Namespaces {
		if i > 0 {
			sw.b = append(sw.b, ',')
		}
		sw.namespace(&s.Namespaces[i])
	}
	sw.b = append(sw.b, `],"notes":`...)
	sw.object(nonNil(s.Notes), false)
	sw.b = append(sw.b, "}\n"...)
	sw.flush()
	return sw.err
}

// WriteIndentedJSON writes s as WriteJSON does, indented by two spaces for
// people to read. It holds the whole document to indent it.
func WriteIndentedJSON(w io.Writer, s *Sweep) error {
	var b, out bytes.Buffer
	if err := WriteJSON(&b, s); err != nil {
		return err
	}
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return err
	}
	_, err := out.WriteTo(w)
	return err
}

// streamWriter gathers the JSON around the sockets and writes it before
// each namespace's sockets and at the end, keeping the first error.
type streamWriter struct {
	w   io.Writer
	b   []byte
	err error
}

func (sw *streamWriter) flush() {
	if sw.err == nil {
		_, sw.err = sw.w.Write(sw.b)
	}
	sw.b = sw.b[:0]
}

// object appends v as JSON; open leaves an object's closing brace off, for
// more fields to follow.
func (sw *streamWriter) object(v any, open bool) {
	o, err := json.Marshal(v)
	if err != nil {
		if sw.err == nil {
			sw.err = err
		}
		return
	}
	if open {
		o = bytes.TrimSuffix(o, []byte("}"))
	}
	sw.b = append(sw.b, o...)
}

// namespace appends one namespace's object, streaming its sockets.
func (sw *streamWriter) namespace(n *Namespace) {
	head := nsHead{Target: diag.Namespace{Role: diag.Target, NetnsInode: n.Inode, Path: n.Path}, Pod: n.Pod, IsHost: n.IsHost}
	tail := nsTail{Middleboxes: n.Report.Middleboxes, Findings: n.Report.Findings, Notes: n.Notes}
	var socks []diag.Socket
	if snap := n.Snapshot; snap != nil {
		head.Target, head.Sysctls, head.Processes = snap.Target, snap.Target.Sysctls, snap.Processes
		socks = snap.Sockets
		tail.Notes = append(append([]diag.Note(nil), snap.Notes...), n.Notes...)
	}
	tail.Middleboxes, tail.Findings, tail.Notes = nonNil(tail.Middleboxes), nonNil(tail.Findings), nonNil(tail.Notes)
	sw.object(head, true)
	sw.b = append(sw.b, `,"sockets":`...)
	sw.flush()
	if sw.err == nil {
		sw.err = diag.WriteSockets(sw.w, nonNil(socks))
	}
	// The tail's fields continue the object the head opened.
	mark := len(sw.b)
	sw.object(tail, false)
	if len(sw.b) > mark {
		sw.b[mark] = ','
	}
}

// MarshalJSON writes the host as the namespace's own JSON does, in a
// host's layout whatever its Role, with its sysctls after: the document's
// host is the one place a namespace carries them.
func (h hostJSON) MarshalJSON() ([]byte, error) {
	ns := h.Namespace
	ns.Role = diag.Host
	b, err := json.Marshal(ns)
	if err != nil {
		return nil, err
	}
	sysctls, err := json.Marshal(h.Sysctls)
	if err != nil {
		return nil, err
	}
	b = append(b[:len(b)-1], `,"sysctls":`...)
	return append(append(b, sysctls...), '}'), nil
}

// nonNil makes an absent list an empty one, so the document's lists are
// always lists.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
