package diag

import (
	"strconv"
	"testing"
)

// TestCookieIDs: the IDs sharing one string are each cookie in hex, as
// strconv writes it alone.
func TestCookieIDs(t *testing.T) {
	cookies := []uint64{0, 1, 0xf, 0x10, 0x52cf9, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	raws := make([]rawSocket, len(cookies))
	for i, c := range cookies {
		raws[i].Cookie = c
	}
	ids := cookieIDs(raws)
	if len(ids) != len(cookies) {
		t.Fatalf("%d IDs for %d sockets", len(ids), len(cookies))
	}
	for i, c := range cookies {
		if want := strconv.FormatUint(c, 16); ids[i] != want {
			t.Errorf("ID of cookie %d = %q, want %q", c, ids[i], want)
		}
	}
	if len(cookieIDs(nil)) != 0 {
		t.Error("IDs for no sockets")
	}
}
