package diag

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrCookie is returned for text that is not a socket cookie in hex.
var ErrCookie = errors.New("not a socket cookie in hex")

// Cookie is the kernel's socket cookie: a socket's identity in sock_diag,
// unique on the machine and never reused (sock_gen_cookie counts up from
// 1, so zero is no socket). tcpvet writes it in lowercase hex, as `ss -e`
// prints it after "sk:".
type Cookie uint64

// String is the cookie in lowercase hex.
func (c Cookie) String() string { return strconv.FormatUint(uint64(c), 16) }

// AppendText appends the cookie in lowercase hex.
func (c Cookie) AppendText(b []byte) ([]byte, error) {
	return strconv.AppendUint(b, uint64(c), 16), nil
}

// MarshalText encodes the cookie in lowercase hex: a JSON string.
func (c Cookie) MarshalText() ([]byte, error) { return c.AppendText(nil) }

// UnmarshalText decodes a cookie written by MarshalText.
func (c *Cookie) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrCookie, b)
	}
	*c = Cookie(v)
	return nil
}
