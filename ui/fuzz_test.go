package ui

import (
	"errors"
	"net/netip"
	"testing"

	tea "charm.land/bubbletea/v2"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
)

// FuzzModelKeys drives the model with any sequence of keys, refreshes,
// sweeps and window sizes, rendering after each: no sequence may panic.
// The first two bytes pick the window size, and with the second's top bit
// a node model (starting in the node view) rather than one namespace's;
// each further byte is one message.
func FuzzModelKeys(f *testing.F) {
	f.Add([]byte{70, 21, 13, 13})             // enter, enter
	f.Add([]byte{0, 0, 7, 1, 1, 13, 14, 13})  // tiny window, findings, down, enter
	f.Add([]byte{150, 37, 25, 22, 2, 13, 10}) // empty snapshot, findings, down, enter, back
	f.Add([]byte{90, 30, 9, 30, 31, 11, 9, 13})
	f.Add([]byte{80, 24 | 0x80, 12, 1, 12, 11, 11, 38, 12, 13, 12, 35, 36, 12, 11}) // node: enter, down, enter, esc, esc, a sweep without the open namespace, ...
	f.Add([]byte{160, 45 | 0x80, 38, 12, 40, 39, 12, 11, 41, 13, 14, 10})           // node: enter where it vanished, a failed sweep, an empty one, export, f, ?, /
	f.Add([]byte{80, 24, 42, 46, 1, 12, 43, 44, 45, 11, 46, 14, 11, 0, 11})         // deaths, c, down, enter, slide, jump, empty, esc, c, ?, esc, j, esc

	withNotes := fixture()
	withNotes.Notes = []diag.Note{{Code: diag.NoteHostNotVisible, Text: "host namespace not visible: permission denied"}, {Code: diag.NoteIPVSUnreadable, Text: "target IPVS unreadable"}}
	withNotes.Sockets[1].RedirectedTo = ptr(netip.MustParseAddrPort("127.0.0.1:15001"))
	empty := fixture()
	empty.Sockets = nil
	refresh := func(i int) tea.Msg {
		snap := []*diag.Snapshot{fixture(), withNotes, empty}[i]
		return snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)}
	}
	withoutAPI := nodeFixture()
	withoutAPI.Namespaces = withoutAPI.Namespaces[:len(withoutAPI.Namespaces)-1]
	sweeps := []tea.Msg{
		sweepMsg{sweep: nodeFixture()}, sweepMsg{sweep: manyNamespaces(40)}, sweepMsg{sweep: withoutAPI},
		sweepMsg{sweep: &node.Sweep{}}, sweepMsg{err: errors.New("read /proc: permission denied")},
	}
	msgs := []tea.Msg{
		press("j"), press("down"), press("k"), tea.KeyPressMsg{Code: tea.KeyUp},
		tea.KeyPressMsg{Code: tea.KeyPgUp}, tea.KeyPressMsg{Code: tea.KeyPgDown},
		press("g"), press("G"), tea.KeyPressMsg{Code: tea.KeyHome}, tea.KeyPressMsg{Code: tea.KeyEnd},
		press("/"), press("esc"), press("enter"), press("f"), press("?"), press("space"),
		tea.KeyPressMsg{Code: 'r', Mod: tea.ModCtrl}, tea.KeyPressMsg{Code: tea.KeyBackspace},
		press("S"), press("R"), press("P"), press("Q"), press("T"), press("I"), press("F"),
		press("1"), press("0"), press(":"), press("x"), press("q"),
		refresh(0), refresh(1), refresh(2),
		tea.WindowSizeMsg{Width: 1, Height: 1}, tea.WindowSizeMsg{Width: 200, Height: 60}, tea.WindowSizeMsg{Width: 40, Height: 5},
	}
	msgs = append(msgs, sweeps...)
	msgs = append(msgs, press("e"))
	// The closed view: deaths listed in a window that slides, jumps (more
	// ended than it holds) and empties.
	all := deaths()
	for _, w := range [][2]int{{0, 4}, {2, 9}, {8, 9}, {0, 0}} {
		snap := fixture()
		snap.Closed = all[w[0]:w[1]]
		msgs = append(msgs, snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)})
	}
	msgs = append(msgs, press("c"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 || len(data) > 400 {
			return
		}
		var m tea.Model
		if data[1]&0x80 != 0 {
			m = New(Options{Sweep: sweepOf(nodeFixture())})
			m, _ = m.Update(tea.WindowSizeMsg{Width: int(data[0]) % 220, Height: int(data[1]&0x7f) % 70})
			m, _ = m.Update(sweeps[int(data[1])%len(sweeps)])
		} else {
			m = New(Options{})
			m, _ = m.Update(tea.WindowSizeMsg{Width: int(data[0]) % 220, Height: int(data[1]) % 70})
			m, _ = m.Update(refresh(int(data[1]) % 3))
		}
		for _, b := range data[2:] {
			m, _ = m.Update(msgs[int(b)%len(msgs)])
			m.View()
		}
	})
}
