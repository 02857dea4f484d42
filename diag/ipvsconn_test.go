package diag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// The fixtures in testdata/ipvs_conn are /proc/net/ip_vs_conn and
// /proc/net/ip_vs_conn_sync as net/netfilter/ipvs/ip_vs_conn.c prints them,
// written with C printf from the format strings of ip_vs_conn_seq_show and
// ip_vs_conn_sync_seq_show (identical from Linux 5.x through 6.x):
//
//	"%-3s %08X %04X %08X %04X %s %04X %-11s %7u%s\n"
//	"%-3s %08X %04X %08X %04X %s %04X %-11s %-6s %7u\n"
//
// with %pI6 (lib/vsprintf.c ip6_string: eight groups of four lower-case
// hex digits) for IPv6. The state names are those of
// ip_vs_proto_tcp.c tcp_state_name_table, ip_vs_proto_udp.c ("UDP") and,
// for templates, ip_vs_proto.c ip_vs_ctpl_state_name_table (NONE,
// ASSURED); the protocol names those of ip_vs_core.c ip_vs_proto_name.
// This machine's kernel has no IPVS to capture them from.
//
// ip_vs_conn holds, in order: TCP ESTABLISHED, FIN_WAIT and TIME_WAIT; a
// persistence template of a /24 netmask (NONE, client port 0); the
// connection it placed; an ASSURED template; an IPv6 connection; an IPv4
// service tunnelled to an IPv6 real server; a UDP flow; a UDP template of
// the SIP persistence engine with its PEName and PEData columns; and the
// template of a firewall-mark service, protocol IP.

func ipvsFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ipvs_conn", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParseIPVSConnsFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []IPVSConn
	}{
		{"ip_vs_conn", []IPVSConn{
			{Client: ap("10.244.1.5:40000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "ESTABLISHED", ExpiresInS: 897},
			{Client: ap("10.244.1.5:40002"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.8:8080"), State: "FIN_WAIT", ExpiresInS: 118},
			{Client: ap("192.168.10.20:51000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "TIME_WAIT", ExpiresInS: 61},
			{Client: ap("10.244.1.0:0"), Virtual: ap("10.96.0.20:443"), Dest: ap("10.244.3.9:8443"), State: "NONE", ExpiresInS: 10797, Template: true},
			{Client: ap("10.244.1.17:45678"), Virtual: ap("10.96.0.20:443"), Dest: ap("10.244.3.9:8443"), State: "ESTABLISHED", ExpiresInS: 899},
			{Client: ap("10.244.1.17:0"), Virtual: ap("10.96.0.30:6443"), Dest: ap("10.244.3.10:6443"), State: "ASSURED", ExpiresInS: 298, Template: true},
			{Client: ap("[2001:db8:a::5]:50000"), Virtual: ap("[2001:db8:ffff::10]:443"), Dest: ap("[2001:db8:b::7]:8443"), State: "ESTABLISHED", ExpiresInS: 900},
			{Client: ap("198.51.100.7:33000"), Virtual: ap("203.0.113.10:80"), Dest: ap("[2001:db8:b::8]:80"), State: "SYN_RECV", ExpiresInS: 59},
		}},
		{"ip_vs_conn_sync", []IPVSConn{
			{Client: ap("10.244.1.5:40000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "ESTABLISHED", ExpiresInS: 897},
			{Client: ap("10.244.1.6:41000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.8:8080"), State: "ESTABLISHED", ExpiresInS: 612},
			{Client: ap("10.244.1.0:0"), Virtual: ap("10.96.0.20:443"), Dest: ap("10.244.3.9:8443"), State: "NONE", ExpiresInS: 10797, Template: true},
			{Client: ap("[2001:db8:a::6]:50002"), Virtual: ap("[2001:db8:ffff::10]:443"), Dest: ap("[2001:db8:b::7]:8443"), State: "CLOSE_WAIT", ExpiresInS: 58},
			{Client: ap("10.244.1.7:40100"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "CLOSE", ExpiresInS: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := parseIPVSConns(bytes.NewReader(ipvsFixture(t, tt.file)))
			if err != nil {
				t.Fatalf("parseIPVSConns: %v", err)
			}
			if len(c.conns) != len(tt.want) {
				t.Errorf("%d entries, want %d (UDP and IP left out)", len(c.conns), len(tt.want))
			}
			for i := range min(len(c.conns), len(tt.want)) {
				if c.conns[i] != tt.want[i] {
					t.Errorf("entry %d:\n got %+v\nwant %+v", i, c.conns[i], tt.want[i])
				}
			}
		})
	}
}

// renderIPVSConn prints e as the kernel would, with the format strings of
// ip_vs_conn_seq_show (origin "") or ip_vs_conn_sync_seq_show.
func renderIPVSConn(e IPVSConn, proto, origin string) string {
	addr := func(a netip.Addr) string {
		if a.Is4() {
			return fmt.Sprintf("%08X", binary.BigEndian.Uint32(a.AsSlice()))
		}
		b := a.As16()
		var groups []string
		for i := 0; i < 16; i += 2 {
			groups = append(groups, fmt.Sprintf("%02x%02x", b[i], b[i+1]))
		}
		return strings.Join(groups, ":")
	}
	if origin == "" {
		return fmt.Sprintf("%-3s %s %04X %s %04X %s %04X %-11s %7d\n",
			proto, addr(e.Client.Addr()), e.Client.Port(), addr(e.Virtual.Addr()), e.Virtual.Port(),
			addr(e.Dest.Addr()), e.Dest.Port(), e.State, e.ExpiresInS)
	}
	return fmt.Sprintf("%-3s %s %04X %s %04X %s %04X %-11s %-6s %7d\n",
		proto, addr(e.Client.Addr()), e.Client.Port(), addr(e.Virtual.Addr()), e.Virtual.Port(),
		addr(e.Dest.Addr()), e.Dest.Port(), e.State, origin, e.ExpiresInS)
}

// TestIPVSConnFixturesInKernelFormat holds the fixtures' TCP lines to the
// kernel's columns byte for byte: each must be what the format string
// makes of the entry decoded from it.
func TestIPVSConnFixturesInKernelFormat(t *testing.T) {
	for _, file := range []string{"ip_vs_conn", "ip_vs_conn_sync"} {
		b := ipvsFixture(t, file)
		c, err := parseIPVSConns(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var tcp []string
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if strings.HasPrefix(l, "TCP ") {
				tcp = append(tcp, l)
			}
		}
		if len(tcp) != len(c.conns) {
			t.Fatalf("%s: %d TCP lines, %d entries", file, len(tcp), len(c.conns))
		}
		for i, l := range tcp {
			origin := ""
			if file == "ip_vs_conn_sync" {
				origin = strings.Fields(l)[8]
			}
			if got := renderIPVSConn(c.conns[i], "TCP", origin); got != l {
				t.Errorf("%s line of entry %d:\n got %q\nwant %q", file, i, got, l)
			}
		}
	}
}

func TestParseIPVSConnsRejects(t *testing.T) {
	const conn = ipvsConnHeader + "\n"
	const sync = ipvsConnSyncHeader + "\n"
	const good = "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED     897\n"
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"unknown header", "Pro FromIP FPrt\n" + good},
		{"no header", good},
		{"header with trailing space", ipvsConnHeader + " \n" + good},
		{"short line", conn + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED\n"},
		{"empty line", conn + "\n"},
		{"7-digit address", conn + "TCP AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED     897\n"},
		{"dotted address", conn + "TCP 10.244.1.5 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED     897\n"},
		{"non-hex address", conn + "TCP 0AF4010G 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED     897\n"},
		{"signed address", conn + "TCP +AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED     897\n"},
		{"compressed IPv6", conn + "TCP 2001:db8:a::5 C350 2001:db8:ffff::10 01BB 2001:db8:b::7 20FB ESTABLISHED     900\n"},
		{"IPv6 without colons", conn + "TCP 2001-0db8-000a-0000-0000-0000-0000-0005 C350 2001:0db8:ffff:0000:0000:0000:0000:0010 01BB 2001:0db8:000b:0000:0000:0000:0000:0007 20FB ESTABLISHED     900\n"},
		{"client and virtual of two families", conn + "TCP 0AF40105 C350 2001:0db8:ffff:0000:0000:0000:0000:0010 01BB 2001:0db8:000b:0000:0000:0000:0000:0007 20FB ESTABLISHED     900\n"},
		{"5-digit port", conn + "TCP 0AF40105 09C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED     897\n"},
		{"3-digit port", conn + "TCP 0AF40105 9C40 0A60000A 050 0AF40207 1F90 ESTABLISHED     897\n"},
		{"negative expires", conn + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED      -1\n"},
		{"signed expires", conn + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED    +897\n"},
		{"expires past uint64", conn + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED 99999999999999999999\n"},
		{"bad line after good", conn + good + "TCP garbage\n"},
		{"bad UDP line", conn + good + "UDP 0AF40105 CF08 0A60000A 35 0AF40209 0035 UDP             299\n"},
		{"sync line in conn file", conn + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED LOCAL      897\n"},
		{"conn line in sync file", sync + good},
		{"sync origin unknown", sync + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED REMOTE     897\n"},
		{"sync extra column", sync + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED LOCAL      897 sip x\n"},
		{"line longer than a scanner's buffer", conn + "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED 897 sip " + strings.Repeat("x", 70000) + "\n"},
	}
	for _, tt := range tests {
		c, err := parseIPVSConns(strings.NewReader(tt.in))
		if !errors.Is(err, ErrIPVSConnLine) {
			t.Errorf("%s: err = %v, want ErrIPVSConnLine", tt.name, err)
		}
		if len(c.conns) != 0 || len(c.byTuple) != 0 {
			t.Errorf("%s: a failed parse returned %d entries", tt.name, len(c.conns))
		}
	}
}

func TestParseIPVSConnsAccepts(t *testing.T) {
	tests := []struct {
		name, in string
		want     IPVSConn
	}{
		{
			// Kernels before jiffies_delta_to_msecs printed an overdue
			// timer as a wrapped unsigned long.
			"wrapped expires",
			ipvsConnHeader + "\nTCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 CLOSE       18446744073709551\n",
			IPVSConn{Client: ap("10.244.1.5:40000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "CLOSE", ExpiresInS: 0},
		},
		{
			// The kernel prints %08X, upper case; lower case means the same.
			"lower-case hex",
			ipvsConnHeader + "\nTCP 0af40105 9c40 0a60000a 0050 0af40207 1f90 ESTABLISHED     897\n",
			IPVSConn{Client: ap("10.244.1.5:40000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "ESTABLISHED", ExpiresInS: 897},
		},
		{
			// tcp_state_name answers "ERR!" or "?" for a state outside its
			// table: the kernel's word, kept rather than refused.
			"state outside the table",
			ipvsConnHeader + "\nTCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ERR!            897\n",
			IPVSConn{Client: ap("10.244.1.5:40000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "ERR!", ExpiresInS: 897},
		},
		{
			// ip_vs_check_template marks a template whose real server went
			// away with DPrt FFFF.
			"invalidated template",
			ipvsConnSyncHeader + "\nTCP 0AF40100 0000 0A600014 01BB 0AF40309 FFFF NONE        LOCAL     3000\n",
			IPVSConn{Client: ap("10.244.1.0:0"), Virtual: ap("10.96.0.20:443"), Dest: ap("10.244.3.9:65535"), State: "NONE", ExpiresInS: 3000, Template: true},
		},
		{
			"no final newline",
			ipvsConnHeader + "\nTCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 ESTABLISHED     897",
			IPVSConn{Client: ap("10.244.1.5:40000"), Virtual: ap("10.96.0.10:80"), Dest: ap("10.244.2.7:8080"), State: "ESTABLISHED", ExpiresInS: 897},
		},
	}
	for _, tt := range tests {
		c, err := parseIPVSConns(strings.NewReader(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if len(c.conns) != 1 || c.conns[0] != tt.want {
			t.Errorf("%s: got %+v, want [%+v]", tt.name, c.conns, tt.want)
		}
	}

	c, err := parseIPVSConns(strings.NewReader(ipvsConnSyncHeader + "\n"))
	if err != nil || len(c.conns) != 0 {
		t.Errorf("an empty table: %+v, %v", c.conns, err)
	}
}

// A failure to read is not a line out of format.
func TestParseIPVSConnsReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, r := range []io.Reader{
		iotest.ErrReader(boom),
		io.MultiReader(strings.NewReader(ipvsConnHeader+"\n"), iotest.ErrReader(boom)),
	} {
		_, err := parseIPVSConns(r)
		if !errors.Is(err, boom) || errors.Is(err, ErrIPVSConnLine) {
			t.Errorf("err = %v, want boom and not ErrIPVSConnLine", err)
		}
	}
}

func TestIPVSConnsLookup(t *testing.T) {
	c, err := parseIPVSConns(bytes.NewReader(ipvsFixture(t, "ip_vs_conn")))
	if err != nil {
		t.Fatal(err)
	}
	mapped := func(s string) netip.AddrPort {
		a := ap(s)
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	}
	zoned := func(s string) netip.AddrPort {
		a := ap(s)
		return netip.AddrPortFrom(a.Addr().WithZone("eth0"), a.Port())
	}
	tests := []struct {
		name          string
		local, remote netip.AddrPort
		want          netip.AddrPort // the Client of the entry found; invalid for none
	}{
		{"client side", ap("10.244.1.5:40000"), ap("10.96.0.10:80"), ap("10.244.1.5:40000")},
		{"server side", ap("10.244.2.7:8080"), ap("10.244.1.5:40000"), ap("10.244.1.5:40000")},
		{"client side, FIN_WAIT", ap("10.244.1.5:40002"), ap("10.96.0.10:80"), ap("10.244.1.5:40002")},
		{"server side, TIME_WAIT", ap("10.244.2.7:8080"), ap("192.168.10.20:51000"), ap("192.168.10.20:51000")},
		{"client side through v4-mapped", mapped("10.244.1.5:40000"), mapped("10.96.0.10:80"), ap("10.244.1.5:40000")},
		{"server side through v4-mapped", mapped("10.244.2.7:8080"), ap("10.244.1.5:40000"), ap("10.244.1.5:40000")},
		{"v4-mapped remote only", ap("10.244.1.5:40000"), mapped("10.96.0.10:80"), ap("10.244.1.5:40000")},
		{"connection a template placed", ap("10.244.1.17:45678"), ap("10.96.0.20:443"), ap("10.244.1.17:45678")},
		{"IPv6 client side", ap("[2001:db8:a::5]:50000"), ap("[2001:db8:ffff::10]:443"), ap("[2001:db8:a::5]:50000")},
		{"IPv6 server side", ap("[2001:db8:b::7]:8443"), ap("[2001:db8:a::5]:50000"), ap("[2001:db8:a::5]:50000")},
		{"IPv6 with a zone", zoned("[2001:db8:a::5]:50000"), ap("[2001:db8:ffff::10]:443"), ap("[2001:db8:a::5]:50000")},
		{"IPv4 service, IPv6 real server: client", ap("198.51.100.7:33000"), ap("203.0.113.10:80"), ap("198.51.100.7:33000")},
		{"IPv4 service, IPv6 real server: server", ap("[2001:db8:b::8]:80"), ap("198.51.100.7:33000"), ap("198.51.100.7:33000")},

		{"reversed client tuple", ap("10.96.0.10:80"), ap("10.244.1.5:40000"), netip.AddrPort{}},
		{"server's address as the client's peer", ap("10.244.1.5:40000"), ap("10.244.2.7:8080"), netip.AddrPort{}},
		{"other client port", ap("10.244.1.5:40001"), ap("10.96.0.10:80"), netip.AddrPort{}},
		{"template's tuple", ap("10.244.1.0:0"), ap("10.96.0.20:443"), netip.AddrPort{}},
		{"template's server side", ap("10.244.3.9:8443"), ap("10.244.1.0:0"), netip.AddrPort{}},
		{"ASSURED template's tuple", ap("10.244.1.17:0"), ap("10.96.0.30:6443"), netip.AddrPort{}},
		{"UDP flow", ap("10.244.1.5:53000"), ap("10.96.0.10:53"), netip.AddrPort{}},
		{"firewall-mark template", ap("10.244.1.5:0"), ap("0.0.0.1:0"), netip.AddrPort{}},
		{"invalid addresses", netip.AddrPort{}, netip.AddrPort{}, netip.AddrPort{}},
	}
	for _, tt := range tests {
		got, ok := c.Lookup(tt.local, tt.remote)
		if ok != tt.want.IsValid() || got.Client != tt.want {
			t.Errorf("%s: Lookup(%v, %v) = %+v, %v; want client %v", tt.name, tt.local, tt.remote, got, ok, tt.want)
		}
		if ok && got.Template {
			t.Errorf("%s: Lookup matched template %+v", tt.name, got)
		}
	}

	if _, ok := (IPVSConns{}).Lookup(ap("10.244.1.5:40000"), ap("10.96.0.10:80")); ok {
		t.Error("the zero IPVSConns found an entry")
	}
}

// When a SYN reuses the tuple of a closed connection, IPVS expires the old
// entry at once and both are listed until it is reaped: the one with time
// left is the one that carries the connection, whichever is listed first.
func TestIPVSConnsSameTupleTwice(t *testing.T) {
	const old = "TCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 TIME_WAIT         0\n"
	const renewed = "TCP 0AF40105 9C40 0A60000A 0050 0AF40208 1F90 SYN_RECV         60\n"
	for _, in := range []string{old + renewed, renewed + old} {
		c, err := parseIPVSConns(strings.NewReader(ipvsConnHeader + "\n" + in))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := c.Lookup(ap("10.244.1.5:40000"), ap("10.96.0.10:80")); !ok || got.State != "SYN_RECV" {
			t.Errorf("client side of\n%s= %+v, %v; want the SYN_RECV entry", in, got, ok)
		}
		if got, ok := c.Lookup(ap("10.244.2.8:8080"), ap("10.244.1.5:40000")); !ok || got.State != "SYN_RECV" {
			t.Errorf("new server's side of\n%s= %+v, %v; want the SYN_RECV entry", in, got, ok)
		}
		if got, ok := c.Lookup(ap("10.244.2.7:8080"), ap("10.244.1.5:40000")); !ok || got.State != "TIME_WAIT" {
			t.Errorf("old server's side of\n%s= %+v, %v; want the TIME_WAIT entry", in, got, ok)
		}
	}
}

func FuzzParseIPVSConns(f *testing.F) {
	for _, file := range []string{"ip_vs_conn", "ip_vs_conn_sync"} {
		f.Add(ipvsFixture(f, file))
	}
	f.Add([]byte(ipvsConnHeader + "\nTCP 0AF40105 9C40 0A60000A 0050 0AF40207 1F90 TIME_WAIT         0\n" +
		"TCP 0AF40207 1F90 0A60000A 0050 0AF40105 9C40 ESTABLISHED     900\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseIPVSConns(bytes.NewReader(b))
		if err != nil {
			return
		}
		origin := ""
		if bytes.HasPrefix(b, []byte(ipvsConnSyncHeader+"\n")) {
			origin = "LOCAL"
		}
		for _, e := range c.conns {
			if !e.Client.Addr().IsValid() || !e.Virtual.Addr().IsValid() || !e.Dest.Addr().IsValid() {
				t.Fatalf("entry with an invalid address: %+v", e)
			}
			if e.Client.Addr().Is4() != e.Virtual.Addr().Is4() {
				t.Fatalf("client and virtual of two families: %+v", e)
			}
			if e.Template != (e.Client.Port() == 0) {
				t.Fatalf("template flag %v with client port %d", e.Template, e.Client.Port())
			}

			// What decodes must print back as a line that decodes the same.
			line := renderIPVSConn(e, "TCP", origin)
			header := ipvsConnHeader
			if origin != "" {
				header = ipvsConnSyncHeader
			}
			again, err := parseIPVSConns(strings.NewReader(header + "\n" + line))
			if err != nil || len(again.conns) != 1 || again.conns[0] != e {
				t.Fatalf("%+v prints as %q, which decodes as %+v, %v", e, line, again.conns, err)
			}

			if e.Template {
				continue
			}
			got, ok := c.Lookup(e.Client, e.Virtual)
			if !ok || got.Template || ipvsEnd(got.Client) != ipvsEnd(e.Client) || ipvsEnd(got.Virtual) != ipvsEnd(e.Virtual) {
				t.Fatalf("Lookup(%v, %v) from the client side = %+v, %v; want %+v", e.Client, e.Virtual, got, ok, e)
			}
			if _, ok := c.Lookup(e.Dest, e.Client); !ok {
				t.Fatalf("Lookup(%v, %v) from the server side found nothing; want %+v", e.Dest, e.Client, e)
			}
		}
	})
}
