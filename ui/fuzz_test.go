package ui

import (
	"net/netip"
	"testing"

	tea "charm.land/bubbletea/v2"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// FuzzModelKeys drives the model with any sequence of keys, refreshes and
// window sizes, rendering after each: no sequence may panic. The first two
// bytes pick the window size, each further byte one message.
func FuzzModelKeys(f *testing.F) {
	f.Add([]byte{70, 21, 13, 13})             // enter, enter
	f.Add([]byte{0, 0, 7, 1, 1, 13, 14, 13})  // tiny window, findings, down, enter
	f.Add([]byte{150, 37, 25, 22, 2, 13, 10}) // empty snapshot, findings, down, enter, back
	f.Add([]byte{90, 30, 9, 30, 31, 11, 9, 13})

	withNotes := fixture()
	withNotes.Notes = []string{"host namespace not visible: permission denied", "target IPVS unreadable"}
	withNotes.Sockets[1].RedirectedTo = ptr(netip.MustParseAddrPort("127.0.0.1:15001"))
	empty := fixture()
	empty.Sockets = nil
	refresh := func(i int) tea.Msg {
		snap := []*diag.Snapshot{fixture(), withNotes, empty}[i]
		return snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)}
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
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 || len(data) > 400 {
			return
		}
		var m tea.Model = New(Options{})
		m, _ = m.Update(tea.WindowSizeMsg{Width: int(data[0]) % 220, Height: int(data[1]) % 70})
		m, _ = m.Update(refresh(int(data[1]) % 3))
		for _, b := range data[2:] {
			m, _ = m.Update(msgs[int(b)%len(msgs)])
			m.View()
		}
	})
}
