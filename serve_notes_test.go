package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
)

// TestOneNamespaceNotesOnce: the exporter of one namespace tells each of
// the snapshot's notes once, not once as the snapshot's and again as the
// sweep's.
func TestOneNamespaceNotesOnce(t *testing.T) {
	snap := &diag.Snapshot{Schema: diag.Schema, Notes: []diag.Note{diag.Notef(diag.NotePIDGone, "pid 7 has exited")}}
	sweep := oneNamespace(func(context.Context) (*diag.Snapshot, rules.Report, error) { return snap, rules.Report{}, nil })
	sw, err := sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := node.WriteJSON(&b, sw); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Namespaces []struct {
			Notes []diag.Note `json:"notes"`
		} `json:"namespaces"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Namespaces) != 1 || len(doc.Namespaces[0].Notes) != 1 {
		t.Fatalf("the namespace's notes: %+v, want the snapshot's one note once", doc.Namespaces)
	}
}
