package ui

import (
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"github.com/tcpvet/tcpvet/diag"
)

// TestDetailsUnreadTableForgotNothing: a table this snapshot could
// not read (too big to dump now, a dump error) says nothing of what it
// holds; the details must not say it forgot an entry a watch saw.
func TestDetailsUnreadTableForgotNothing(t *testing.T) {
	snap := fixture()
	snap.Sockets[1].Observed = &diag.Observed{WatchedS: 60, Samples: 61, LongestQuietS: 40, RefreshedBy: diag.RefreshedByNone,
		EntriesSeen: []diag.SeenEntry{{Netns: diag.Host}}}
	snap.Sockets[1].Conntrack = nil
	snap.Host.Conntrack = &diag.Conntrack{Reason: "holds 300000 flows, more than the 262144 tcpvet dumps on every refresh"}
	m := drive(t, 160, 40, snap)
	got := ansi.Strip(m.socketText(&m.snap.Sockets[1]))
	if strings.Contains(got, "nothing any more") {
		t.Errorf("an unread table is said to have forgotten the entry:\n%s", got)
	}
}
