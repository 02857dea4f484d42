package diag

import (
	"os"
	"testing"

	"github.com/tcpvet/tcpvet/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.MaybeRunAgent()
	os.Exit(m.Run())
}
