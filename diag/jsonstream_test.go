package diag

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestWriteSockets: the array is the sockets in order, as AppendJSON
// gives each, whatever the count against the pieces and the CPUs, and a
// failing writer stops it with its error.
func TestWriteSockets(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	goroutines := runtime.NumGoroutine()
	for _, procs := range []int{1, 2, 4} {
		runtime.GOMAXPROCS(procs)
		for _, n := range []int{0, 1, socketsPerPiece - 1, socketsPerPiece, socketsPerPiece + 1, 5*socketsPerPiece + 7} {
			socks := make([]Socket, n)
			want := []byte{'['}
			for i := range socks {
				socks[i] = Socket{Inode: uint32(i), Local: netip.MustParseAddrPort("127.0.0.1:80"), Keepalive: Keepalive{Source: "unknown"}}
				if i > 0 {
					want = append(want, ',')
				}
				want = socks[i].AppendJSON(want)
			}
			want = append(want, ']')
			var got bytes.Buffer
			if err := WriteSockets(&got, socks); err != nil {
				t.Fatalf("GOMAXPROCS %d, %d sockets: %v", procs, n, err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("GOMAXPROCS %d, %d sockets: the array differs from the sockets in order (%d bytes, want %d)", procs, n, got.Len(), len(want))
			}
			if !json.Valid(got.Bytes()) {
				t.Fatalf("GOMAXPROCS %d, %d sockets: not valid JSON", procs, n)
			}
			for after := range 3 {
				fw := &failingWriter{after: after}
				err := WriteSockets(fw, socks)
				pieces := max(1, (n+socketsPerPiece-1)/socketsPerPiece)
				if failed := after < pieces; failed != errors.Is(err, errWriteFailed) {
					t.Fatalf("GOMAXPROCS %d, %d sockets, a writer failing after %d writes: %v", procs, n, after, err)
				}
			}
		}
	}
	// Every formatting goroutine has ended, failed writes included.
	for range 100 {
		if runtime.NumGoroutine() <= goroutines {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines left running, %d before", runtime.NumGoroutine(), goroutines)
}

var errWriteFailed = errors.New("write failed")

// failingWriter accepts after writes, then fails every one.
type failingWriter struct{ after int }

func (w *failingWriter) Write(b []byte) (int, error) {
	if w.after == 0 {
		return 0, errWriteFailed
	}
	w.after--
	return len(b), nil
}
