package diag

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

var update = flag.Bool("update", false, "capture new golden inet_diag replies from the running kernel")

// TestCaptureGolden records real inet_diag replies from this kernel into
// testdata: a listener, an established IPv6 connection with keepalive and
// a TIME_WAIT socket. Run with -update; the decoder tests read the files.
func TestCaptureGolden(t *testing.T) {
	if !*update {
		t.Skip("run with -update to capture new golden bytes")
	}
	a, b := testnet.New(t), testnet.New(t)
	_, bAddr := testnet.Link(t, a, b, 9)
	b.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: ":7001", Mode: testnet.Hold}}})
	a.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "ka", To: fmt.Sprintf("[%s]:7001", bAddr.V6), Keepalive: &testnet.KA{Idle: 600}},
		{Name: "tw", To: bAddr.V4 + ":7001", CloseFirst: true},
	}, Listen: []testnet.Listener{{Name: "l", Addr: "0.0.0.0:8001", Mode: testnet.Hold}}})

	ns, err := netns.FromPath(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	files := map[State]string{Listen: "listen6.bin", Established: "established6.bin", TimeWait: "timewait4.bin"}
	err = dumpMessages(context.Background(), ns, func(m []byte) error {
		s, err := decodeDiagMsg(m)
		if err != nil {
			return err
		}
		if name, ok := files[s.State]; ok {
			t.Logf("%s: %+v", name, s)
			return os.WriteFile(filepath.Join("testdata", name), m, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
