package diag

import "testing"

// TestNoteAs: a note of the host's, said of the target instead, names the
// target where it named the host, and only there.
func TestNoteAs(t *testing.T) {
	for _, tt := range []struct {
		in   Note
		want Note
	}{
		{Host.notef(NoteConntrackUnread, "host conntrack holds 9 flows"), Note{Code: NoteConntrackUnread, Netns: Target, Text: "target conntrack holds 9 flows"}},
		{Host.notef(NoteFirewallUnread, "hostile rules"), Note{Code: NoteFirewallUnread, Netns: Target, Text: "hostile rules"}},
		{Notef(NoteDeathsLost, "host deaths"), Note{Code: NoteDeathsLost, Text: "host deaths"}},
	} {
		if got := tt.in.as(Target); got != tt.want {
			t.Errorf("%+v as the target's: %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
