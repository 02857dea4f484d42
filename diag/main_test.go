package diag

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

func TestMain(m *testing.M) {
	testnet.MaybeRunAgent()
	os.Exit(m.Run())
}

func selfNS(t *testing.T) *netns.NS {
	t.Helper()
	ns, err := netns.Self()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// waitAccepted waits until every established connection in ns has a file:
// an agent is ready once it has dialed, and its listener may not yet have
// accepted what it dialed, which sits in the accept queue with no file.
func waitAccepted(t *testing.T, ns *netns.NS) {
	t.Helper()
	unaccepted := func(s Socket) bool { return s.State == Established && s.Inode == 0 }
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		snap, err := Take(context.Background(), Options{Target: ns})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(snap.Sockets, unaccepted) {
			return
		}
	}
	t.Fatal("connections still unaccepted after 5 s")
}
