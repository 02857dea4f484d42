package diag

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// socketsPerPiece is how many sockets one goroutine formats at a time:
// about 180 KB of JSON, enough to make handing it over cheap, and few
// enough that the pieces in flight stay a megabyte or two.
const socketsPerPiece = 128

// pieceBytes is what a piece's buffer starts with: room for a piece of
// busy sockets, so that buffers are made once and reused, not grown.
const pieceBytes = 256 << 10

// WriteSockets writes socks as a JSON array, each as AppendJSON gives it.
//
// Formatting is most of what writing a large snapshot costs, and the
// sockets are independent: pieces of the array are formatted on every CPU
// and written in order, at most two a CPU ahead of the writer, so memory
// stays bounded however many sockets there are.
func WriteSockets(w io.Writer, socks []Socket) error {
	pieces := (len(socks) + socketsPerPiece - 1) / socketsPerPiece
	workers := min(runtime.GOMAXPROCS(0), pieces)
	if workers <= 1 {
		b := make([]byte, 0, pieceBytes)
		for lo := 0; lo < len(socks) || lo == 0; lo += socketsPerPiece {
			b = appendPiece(b[:0], socks[lo:min(len(socks), lo+socketsPerPiece)], lo)
			if lo+socketsPerPiece >= len(socks) {
				b = append(b, ']')
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	}

	done := make([]chan []byte, pieces)
	for i := range done {
		done[i] = make(chan []byte, 1)
	}
	// A slot is taken before a piece's number, so the pieces in flight
	// are always the next ones the writer needs: it never waits on a
	// piece whose worker waits for a slot.
	slots := make(chan struct{}, 2*workers)
	stop := make(chan struct{})
	free := make(chan []byte, 2*workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case slots <- struct{}{}:
				case <-stop:
					return
				}
				i := int(next.Add(1) - 1)
				if i >= pieces {
					return
				}
				var b []byte
				select {
				case b = <-free:
				default:
					b = make([]byte, 0, pieceBytes)
				}
				lo, hi := i*socketsPerPiece, min(len(socks), (i+1)*socketsPerPiece)
				done[i] <- appendPiece(b[:0], socks[lo:hi], lo)
			}
		})
	}
	var err error
	for i := range pieces {
		b := <-done[i]
		if i == pieces-1 {
			b = append(b, ']')
		}
		if _, err = w.Write(b); err != nil {
			break
		}
		select {
		case free <- b:
		default:
		}
		<-slots
	}
	close(stop)
	wg.Wait()
	return err
}

// appendPiece appends socks, the sockets from index first of the array,
// with the separators before each; the array's opening bracket comes
// with the first.
func appendPiece(b []byte, socks []Socket, first int) []byte {
	for j := range socks {
		if first+j == 0 {
			b = append(b, '[')
		} else {
			b = append(b, ',')
		}
		b = socks[j].AppendJSON(b)
	}
	if first == 0 && len(socks) == 0 {
		b = append(b, '[')
	}
	return b
}
