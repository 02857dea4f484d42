package ui

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// Document is what tcpvet writes as JSON, from --json and from the live
// view's export key alike: the snapshot and what the rules made of it.
type Document struct {
	*diag.Snapshot
	rules.Report
}

// MarshalJSON writes the snapshot's fields (diag.Snapshot.MarshalJSON)
// then the report's, in one object. Without it, the snapshot's method,
// promoted, would write the snapshot alone.
func (d Document) MarshalJSON() ([]byte, error) {
	rep, err := json.Marshal(d.Report)
	if err != nil || d.Snapshot == nil {
		return rep, err
	}
	snap, err := json.Marshal(d.Snapshot)
	if err != nil {
		return nil, err
	}
	// Both are objects with keys: {snapshot…} and {report…} make
	// {snapshot…,report…}.
	return append(append(snap[:len(snap)-1], ','), rep[1:]...), nil
}

// UnmarshalJSON reads what MarshalJSON writes: the one object into both.
func (d *Document) UnmarshalJSON(b []byte) error {
	if d.Snapshot == nil {
		d.Snapshot = new(diag.Snapshot)
	}
	if err := json.Unmarshal(b, d.Snapshot); err != nil {
		return err
	}
	return json.Unmarshal(b, &d.Report)
}

// WriteIndentedJSON writes d indented, for people to read, as
// json.Encoder with a two-space indent does.
func (d Document) WriteIndentedJSON(w io.Writer) error {
	// The streamed document, indented: what the encoder does, less its
	// reflection over every socket (twice, through MarshalJSON).
	var b, out bytes.Buffer
	if err := d.WriteJSON(&b); err != nil {
		return err
	}
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return err
	}
	_, err := out.WriteTo(w)
	return err
}

// WriteJSON writes d as json.Encoder does, byte for byte, but streams the
// sockets (diag.WriteSockets) rather than building the whole document
// (tens of megabytes for a busy node) in memory first.
func (d Document) WriteJSON(w io.Writer) error {
	const marker = `"sockets":null`
	if d.Snapshot == nil {
		return json.NewEncoder(w).Encode(d)
	}
	socks := d.Snapshot.Sockets
	rest := *d.Snapshot
	rest.Sockets = nil
	// The method itself, not json.Marshal, which would check and
	// compact its output again: a large report's worth, for nothing.
	doc, err := Document{&rest, d.Report}.MarshalJSON()
	if err != nil {
		return err
	}
	// Nothing before the sockets (schema, time, target, host, sysctls)
	// has a key of that name, and a string's quotes are escaped: the first
	// match is the snapshot's own field.
	i := bytes.Index(doc, []byte(marker))
	if socks == nil || i < 0 {
		return json.NewEncoder(w).Encode(d)
	}
	if _, err := w.Write(append(doc[:i:i], `"sockets":`...)); err != nil {
		return err
	}
	if err := diag.WriteSockets(w, socks); err != nil {
		return err
	}
	_, err = w.Write(append(doc[i+len(marker):], '\n'))
	return err
}
