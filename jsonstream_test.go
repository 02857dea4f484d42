package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
	"github.com/tcpvet/tcpvet/ui"
)

// TestJSONStreamedAsEncoded: --json streams the sockets, and must write
// exactly what json.Encoder writes for the whole document.
func TestJSONStreamedAsEncoded(t *testing.T) {
	one, yes := 1, true
	snap := &diag.Snapshot{Schema: diag.Schema, TakenAt: time.Unix(1700000000, 5).UTC(), Processes: 3, Notes: []diag.Note{{Code: diag.NoteOwnersHidden, Text: `a "sockets":null <note>`}}}
	snap.Target.Path = `/run/netns/"sockets":null`
	snap.Target.Addresses = []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	for i := range 5000 {
		s := diag.Socket{ID: 0xc0ffee, State: diag.Established, Family: "inet", Local: netip.MustParseAddrPort("127.0.0.1:9000"),
			Remote: netip.MustParseAddrPort("127.0.0.1:40000"), Cong: "cubic", TCPInfo: &diag.TCPInfo{Size: 232, RTTUs: 8},
			Keepalive: diag.Keepalive{Enabled: &yes, IdleS: &one, IntervalS: &one, Probes: &one, Source: "socket"},
			Processes: []diag.Process{{PID: 7, Comm: "nginx<", FD: i}}, Peer: 0xbeef}
		if i%7 == 0 {
			s.TCPInfo, s.Processes, s.Keepalive = nil, []diag.Process{}, diag.Keepalive{Source: "unknown", Reason: "no file descriptor"}
		}
		if i%11 == 0 {
			s.Conntrack = []diag.Flow{{Netns: "host", TCPState: "ESTABLISHED", Side: "original"}}
		}
		snap.Sockets = append(snap.Sockets, s)
	}
	rep := rules.Report{Middleboxes: []rules.Middlebox{}, Findings: []rules.Finding{}}
	for _, socks := range [][]diag.Socket{snap.Sockets, {}, nil} {
		snap.Sockets = socks
		doc := ui.Document{Snapshot: snap, Report: rep}
		var want, got bytes.Buffer
		if err := json.NewEncoder(&want).Encode(doc); err != nil {
			t.Fatal(err)
		}
		if err := doc.WriteJSON(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			i := 0
			for i < min(got.Len(), want.Len()) && got.Bytes()[i] == want.Bytes()[i] {
				i++
			}
			t.Fatalf("%d sockets: streamed JSON differs from json.Encoder's at byte %d:\n got …%.200s\nwant …%.200s", len(socks), i, got.Bytes()[i:], want.Bytes()[i:])
		}
		// Indented, for a terminal: the streamed document indented is
		// what the encoder indents.
		want.Reset()
		got.Reset()
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		if err := doc.WriteIndentedJSON(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%d sockets: indented JSON differs from json.Encoder's (%d bytes, want %d)", len(socks), got.Len(), want.Len())
		}
	}
}
