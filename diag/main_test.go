package diag

import (
	"os"
	"testing"

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
