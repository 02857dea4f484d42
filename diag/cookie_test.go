package diag

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
)

// TestCookie: a cookie reads as ss -e prints it after "sk:", lowercase hex,
// in text and in JSON, and reads back.
func TestCookie(t *testing.T) {
	for _, c := range []uint64{0, 1, 0xf, 0x10, 0x52cf9, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		want := strconv.FormatUint(c, 16)
		if got := Cookie(c).String(); got != want {
			t.Errorf("Cookie(%d).String() = %q, want %q", c, got, want)
		}
		j, err := json.Marshal(Cookie(c))
		if err != nil || string(j) != `"`+want+`"` {
			t.Errorf("Cookie(%d) as JSON = %s, %v; want %q", c, j, err, want)
		}
		var back Cookie
		if err := json.Unmarshal(j, &back); err != nil || back != Cookie(c) {
			t.Errorf("%s read back as %d, %v; want %d", j, back, err, c)
		}
	}
	for _, bad := range []string{`""`, `"0x1f"`, `"-1"`, `"sk:1f"`, `"1_0"`, `"10000000000000000"`, `"g"`} {
		var c Cookie
		if err := json.Unmarshal([]byte(bad), &c); !errors.Is(err, ErrCookie) {
			t.Errorf("%s: err = %v, want ErrCookie", bad, err)
		}
	}
	// Zero is no peer: left out, as the empty string was.
	var s struct {
		ID   Cookie `json:"id"`
		Peer Cookie `json:"peer,omitempty"`
	}
	if j, _ := json.Marshal(s); string(j) != `{"id":"0"}` {
		t.Errorf("no peer = %s, want it left out", j)
	}
	s.ID, s.Peer = 0x1f, 0x2a
	if j, _ := json.Marshal(s); string(j) != `{"id":"1f","peer":"2a"}` {
		t.Errorf("with a peer = %s", j)
	}
}
