package diag

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
)

// fillRandom sets every exported field reachable from v to a random value,
// or leaves it zero (nil, empty) about a third of the time, so that a field
// added to Socket or TCPInfo without a line in AppendJSON fails the test.
func fillRandom(r *rand.Rand, v reflect.Value) {
	strs := []string{"", "a", "bbr", "sockfarm", "ESTABLISHED", "x<y>&z", "tab\there", "quote\"back\\", "\xff\xfeinvalid", "üñí", "\u2028", "no ptrace right over nginx (pid 7)"}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.Uint64()) >> (64 - v.Type().Bits()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := r.Uint64()
		if r.IntN(3) == 0 {
			n = 0
		}
		v.SetUint(n & (1<<v.Type().Bits() - 1))
	case reflect.Float32, reflect.Float64:
		// Seconds to the millisecond, as observations hold them, and the
		// magnitudes where encoding/json turns to exponents.
		floats := []float64{0, 1e-7, 1e-6, 123456789e13, 1e21, -2.5, 0.001, 7200}
		if r.IntN(2) == 0 {
			v.SetFloat(floats[r.IntN(len(floats))])
		} else {
			v.SetFloat(float64(r.IntN(1e9)) / 1000)
		}
	case reflect.String:
		v.SetString(strs[r.IntN(len(strs))])
	case reflect.Pointer:
		if r.IntN(3) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fillRandom(r, v.Elem())
	case reflect.Slice:
		if r.IntN(3) == 0 {
			return
		}
		n := r.IntN(3)
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fillRandom(r, v.Index(i))
		}
	case reflect.Struct:
		switch v.Addr().Interface().(type) {
		case *netip.AddrPort:
			addrs := []string{"127.0.0.1:9000", "[::1]:443", "[::ffff:10.0.0.1]:80", "0.0.0.0:0", "[fe80::1%eth0]:22", "[2001:db8::1]:65535"}
			if r.IntN(5) != 0 {
				v.Set(reflect.ValueOf(netip.MustParseAddrPort(addrs[r.IntN(len(addrs))])))
			}
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillRandom(r, v.Field(i))
			}
		}
	}
}

// TestSocketAppendJSON holds AppendJSON to encoding/json, byte for byte.
func TestSocketAppendJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(s *Socket) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON differs from encoding/json\n got %s\nwant %s", got, want)
		}
	}
	check(&Socket{})
	for range 5000 {
		var s Socket
		fillRandom(r, reflect.ValueOf(&s).Elem())
		if s.State > NewSynRecv+1 {
			s.State %= NewSynRecv + 2
		}
		check(&s)
	}
	// A real one, as the kernel sent it.
	raw, err := decodeDiagMsg(readGolden(t, "established6.bin"))
	if err != nil {
		t.Fatal(err)
	}
	check(&Socket{ID: 0x1f, State: raw.State, Local: raw.Local, Remote: raw.Remote, TCPInfo: raw.Info, Cong: raw.Cong, Processes: []Process{}})
}
