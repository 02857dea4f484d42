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

// WriteIndentedJSON writes d indented, for people to read, as
// json.Encoder with a two-space indent does.
func (d Document) WriteIndentedJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
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
	doc, err := json.Marshal(Document{&rest, d.Report})
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
