package diag

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The replies below are laid out as net/netfilter/ipvs/ip_vs_ctl.c writes
// them (ip_vs_genl_fill_service, ip_vs_genl_fill_dest): native-endian
// integers, ports in network byte order, addresses as a 16-byte union
// nf_inet_addr, nests without NLA_F_NESTED. This kernel has no IPVS to
// capture them from.

// ipvsConfigReply is a GET_CONFIG reply with the default timeouts (tcp
// 900 s, tcpfin 120 s, udp 300 s): three NLA_U32 attributes.
var ipvsConfigReply = []byte{
	0x08, 0x00, 0x04, 0x00, 0x84, 0x03, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_TCP = 900
	0x08, 0x00, 0x05, 0x00, 0x78, 0x00, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_TCP_FIN = 120
	0x08, 0x00, 0x06, 0x00, 0x2c, 0x01, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_UDP = 300
}

// ipvsServiceTCP4 is a GET_SERVICE reply for TCP 10.96.0.10:443, as
// kube-proxy creates for a ClusterIP.
var ipvsServiceTCP4 = []byte{
	0x60, 0x00, 0x01, 0x00, // IPVS_CMD_ATTR_SERVICE, 96 bytes
	0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // AF = AF_INET
	0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, // PROTOCOL = IPPROTO_TCP
	0x14, 0x00, 0x03, 0x00, 0x0a, 0x60, 0x00, 0x0a, // ADDR = 10.96.0.10 ...
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ... padded to 16 bytes
	0x06, 0x00, 0x04, 0x00, 0x01, 0xbb, 0x00, 0x00, // PORT = 443, big-endian
	0x07, 0x00, 0x06, 0x00, 'r', 'r', 0x00, 0x00, // SCHED_NAME = "rr"
	0x0c, 0x00, 0x07, 0x00, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, // FLAGS = hashed, mask ~0
	0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // TIMEOUT (persistence) = 0
	0x08, 0x00, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, // NETMASK
	0x0c, 0x00, 0x0a, 0x00, // STATS, nested
	0x08, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, // CONNS = 5
}

// ipvsServiceUDP4 is UDP 10.96.0.10:53, which cannot hold a TCP flow.
var ipvsServiceUDP4 = []byte{
	0x30, 0x00, 0x01, 0x00,
	0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // AF_INET
	0x06, 0x00, 0x02, 0x00, 0x11, 0x00, 0x00, 0x00, // IPPROTO_UDP
	0x14, 0x00, 0x03, 0x00, 0x0a, 0x60, 0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0x06, 0x00, 0x04, 0x00, 0x00, 0x35, 0x00, 0x00, // PORT = 53
}

// ipvsServiceFWMark is a service selected by firewall mark 7: the kernel
// sends no protocol, address or port for it.
var ipvsServiceFWMark = []byte{
	0x14, 0x00, 0x01, 0x00,
	0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // AF_INET
	0x08, 0x00, 0x05, 0x00, 0x07, 0x00, 0x00, 0x00, // FWMARK = 7
}

// ipvsServiceTCP6 is TCP [fd00:96::a]:8443.
var ipvsServiceTCP6 = []byte{
	0x30, 0x00, 0x01, 0x00,
	0x06, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, // AF_INET6
	0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, // IPPROTO_TCP
	0x14, 0x00, 0x03, 0x00, 0xfd, 0x00, 0x00, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
	0x06, 0x00, 0x04, 0x00, 0x20, 0xfb, 0x00, 0x00, // PORT = 8443
}

// ipvsDest4 is a GET_DEST reply: real server 10.244.1.5:8080, NAT.
var ipvsDest4 = []byte{
	0x40, 0x00, 0x02, 0x00, // IPVS_CMD_ATTR_DEST, 64 bytes
	0x14, 0x00, 0x01, 0x00, 0x0a, 0xf4, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ADDR
	0x06, 0x00, 0x02, 0x00, 0x1f, 0x90, 0x00, 0x00, // PORT = 8080
	0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, // FWD_METHOD = masquerade
	0x08, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, // WEIGHT = 1
	0x08, 0x00, 0x07, 0x00, 0x02, 0x00, 0x00, 0x00, // ACTIVE_CONNS = 2
	0x06, 0x00, 0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, // ADDR_FAMILY = AF_INET
}

// ipvsDestOld is a real server from a kernel before 4.14, which sends no
// ADDR_FAMILY: 10.244.2.9:8080.
var ipvsDestOld = []byte{
	0x20, 0x00, 0x02, 0x00,
	0x14, 0x00, 0x01, 0x00, 0x0a, 0xf4, 0x02, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0x06, 0x00, 0x02, 0x00, 0x1f, 0x90, 0x00, 0x00,
}

func TestDecodeIPVSConfigGolden(t *testing.T) {
	got, err := decodeIPVSConfig(ipvsConfigReply)
	if err != nil {
		t.Fatal(err)
	}
	want := IPVS{Present: true, TCPTimeoutS: 900, TCPFinTimeoutS: 120, UDPTimeoutS: 300}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decode = %+v, want %+v", got, want)
	}
	if _, err := decodeIPVSConfig(ipvsConfigReply[:len(ipvsConfigReply)-2]); err == nil {
		t.Error("truncated reply decoded without error")
	}
}

func TestDecodeIPVSServiceGolden(t *testing.T) {
	tests := []struct {
		name     string
		b        []byte
		protocol uint16
		fwmark   uint32
		vip      string
	}{
		{name: "tcp4", b: ipvsServiceTCP4, protocol: unix.IPPROTO_TCP, vip: "10.96.0.10:443"},
		{name: "udp4", b: ipvsServiceUDP4, protocol: unix.IPPROTO_UDP, vip: "10.96.0.10:53"},
		{name: "tcp6", b: ipvsServiceTCP6, protocol: unix.IPPROTO_TCP, vip: "[fd00:96::a]:8443"},
		{name: "fwmark", b: ipvsServiceFWMark, fwmark: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeIPVSService(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if got.protocol != tt.protocol || got.fwmark != tt.fwmark {
				t.Errorf("protocol %d fwmark %d, want %d and %d", got.protocol, got.fwmark, tt.protocol, tt.fwmark)
			}
			if tt.vip != "" && got.vip != netip.MustParseAddrPort(tt.vip) {
				t.Errorf("vip %s, want %s", got.vip, tt.vip)
			}
		})
	}
	// A service whose address does not fit its family is malformed.
	bad := bytes.Clone(ipvsServiceTCP6)
	bad[8] = unix.AF_INET6 + 1
	if _, err := decodeIPVSService(bad); err == nil {
		t.Error("unknown family decoded without error")
	}
	// A port that is not two bytes is malformed, not zero.
	short := bytes.Clone(ipvsServiceUDP4)
	short[40] = 0x05 // PORT's length
	if _, err := decodeIPVSService(short); err == nil {
		t.Error("a 1-byte port decoded without error")
	}
}

// TestIPVSServiceKey pins the request that names a service for GET_DEST:
// the attributes of the reply that described it, re-encoded.
func TestIPVSServiceKey(t *testing.T) {
	svc, err := decodeIPVSService(ipvsServiceTCP4)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x30, 0x00, 0x01, 0x80}, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, 48 bytes
		ipvsServiceTCP4[4:4+8+8+20+8]...) // AF, PROTOCOL, ADDR, PORT as the kernel sent them
	if !bytes.Equal(svc.key, want) {
		t.Errorf("key\n% x\nwant\n% x", svc.key, want)
	}
}

func TestDecodeIPVSDestGolden(t *testing.T) {
	tests := []struct {
		name  string
		b     []byte
		svcAF uint16
		want  string
	}{
		{name: "with family", b: ipvsDest4, svcAF: unix.AF_INET6, want: "10.244.1.5:8080"},
		{name: "before 4.14: the service's family", b: ipvsDestOld, svcAF: unix.AF_INET, want: "10.244.2.9:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeIPVSDest(tt.b, tt.svcAF)
			if err != nil {
				t.Fatal(err)
			}
			if got != netip.MustParseAddrPort(tt.want) {
				t.Errorf("real server %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := decodeIPVSDest(ipvsDest4[:30], unix.AF_INET); err == nil {
		t.Error("truncated real server decoded without error")
	}
}

// ipvsKernel answers the requests tcpvet sends as a kernel with the given
// services and real servers (by the VIP of their service) would.
func ipvsKernel(t *testing.T, services [][]byte, dests map[netip.AddrPort][][]byte) *genetlink.Conn {
	t.Helper()
	family := genetlink.Family{ID: 0x24, Version: 1, Name: "IPVS"}
	reply := func(cmd uint8, data []byte) genetlink.Message {
		return genetlink.Message{Header: genetlink.Header{Command: cmd, Version: 1}, Data: bytes.Clone(data)}
	}
	return genltest.Dial(genltest.ServeFamily(family, func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		if len(nreq.Data) == 0 {
			// nltest polls again after a dump that answered nothing, where
			// the kernel would have sent NLMSG_DONE alone.
			return nil, io.EOF
		}
		if nreq.Header.Type != netlink.HeaderType(family.ID) || greq.Header.Version != 1 {
			t.Errorf("request to family %d version %d, want %d version 1", nreq.Header.Type, greq.Header.Version, family.ID)
		}
		dump := nreq.Header.Flags&netlink.Dump == netlink.Dump
		switch greq.Header.Command {
		case ipvsCmdGetConfig:
			if dump || len(greq.Data) != 0 {
				t.Errorf("GET_CONFIG %+v: want a plain request without attributes", nreq.Header)
			}
			return []genetlink.Message{reply(ipvsCmdSetConfig, ipvsConfigReply)}, nil
		case ipvsCmdGetService:
			if !dump {
				t.Error("GET_SERVICE without NLM_F_DUMP")
			}
			var out []genetlink.Message
			for _, s := range services {
				out = append(out, reply(ipvsCmdNewService, s))
			}
			return out, nil
		case ipvsCmdGetDest:
			// The kernel finds the service from the request's attributes.
			svc, err := decodeIPVSService(greq.Data)
			if err != nil || !dump {
				t.Errorf("GET_DEST request %x (dump %v): %v", greq.Data, dump, err)
				return nil, genltest.Error(int(unix.EINVAL))
			}
			var out []genetlink.Message
			for _, d := range dests[svc.vip] {
				out = append(out, reply(ipvsCmdNewDest, d))
			}
			return out, nil
		}
		t.Errorf("unexpected IPVS command %d", greq.Header.Command)
		return nil, genltest.Error(int(unix.EOPNOTSUPP))
	}))
}

func TestIPVSConversation(t *testing.T) {
	c := ipvsKernel(t,
		[][]byte{ipvsServiceTCP4, ipvsServiceUDP4, ipvsServiceFWMark, ipvsServiceTCP6},
		map[netip.AddrPort][][]byte{
			netip.MustParseAddrPort("10.96.0.10:443"): {ipvsDest4, ipvsDestOld},
			netip.MustParseAddrPort("10.96.0.10:53"):  {ipvsDest4},
		})
	defer c.Close()
	got, err := queryIPVS(c)
	if err != nil {
		t.Fatal(err)
	}
	want := IPVS{
		Present: true, TCPTimeoutS: 900, TCPFinTimeoutS: 120, UDPTimeoutS: 300,
		ServicesListed: true, TCPServices: 2, RealServers: 2, FWMarkServices: 1,
		Services: []IPVSService{
			{VIP: netip.MustParseAddrPort("10.96.0.10:443"), RealServers: []netip.AddrPort{
				netip.MustParseAddrPort("10.244.1.5:8080"), netip.MustParseAddrPort("10.244.2.9:8080")}},
			{VIP: netip.MustParseAddrPort("[fd00:96::a]:8443"), RealServers: []netip.AddrPort{}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("queryIPVS =\n%+v\nwant\n%+v", got, want)
	}
}

// TestIPVSServicesUnreadable: when a real server cannot be read, the
// timeouts are still known, the services are not, and the caller is told.
func TestIPVSServicesUnreadable(t *testing.T) {
	c := ipvsKernel(t, [][]byte{ipvsServiceTCP4}, map[netip.AddrPort][][]byte{
		netip.MustParseAddrPort("10.96.0.10:443"): {ipvsDest4[:30]},
	})
	defer c.Close()
	got, err := queryIPVS(c)
	if err == nil || !strings.Contains(err.Error(), "GET_DEST of 10.96.0.10:443") {
		t.Errorf("error %v, want one naming GET_DEST of the service", err)
	}
	if !got.Present || got.TCPTimeoutS != 900 || got.ServicesListed {
		t.Errorf("queryIPVS = %+v, want present, tcp 900 s, services not listed", got)
	}
}

// TestIPVSRefused: without CAP_NET_ADMIN the kernel refuses GET_CONFIG,
// and the note says what that means and what to do.
func TestIPVSRefused(t *testing.T) {
	family := genetlink.Family{ID: 0x24, Version: 1, Name: "IPVS"}
	c := genltest.Dial(genltest.ServeFamily(family, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.EPERM))
	}))
	defer c.Close()
	got, err := queryIPVS(c)
	if got.Present || !errors.Is(err, unix.EPERM) {
		t.Fatalf("queryIPVS = %+v, %v; want EPERM", got, err)
	}
	if note := ipvsNote("target", err); note.Code != NoteIPVSUnreadable || !strings.Contains(note.Text, "without CAP_NET_ADMIN") || !strings.Contains(note.Text, "--middlebox ipvs") {
		t.Errorf("note %q", note)
	}
}

func TestIPVSAbsentIsAFact(t *testing.T) {
	// The controller answers ENOENT for a family the kernel does not have.
	c := genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.ENOENT))
	})
	defer c.Close()
	got, err := queryIPVS(c)
	if err != nil || got.Present {
		t.Errorf("queryIPVS = %+v, %v; want not present and no error", got, err)
	}
}

// TestIPVSOnThisKernel asks the real kernel, which here has no IPVS.
func TestIPVSOnThisKernel(t *testing.T) {
	ns := selfNS(t)
	got, err := readIPVS(ns)
	if err != nil {
		t.Fatalf("readIPVS: %v", err)
	}
	t.Logf("IPVS on this kernel: %+v", got)
}

func FuzzDecodeIPVSConfig(f *testing.F) {
	f.Add(ipvsConfigReply)
	f.Fuzz(func(t *testing.T, b []byte) { decodeIPVSConfig(b) })
}

func FuzzDecodeIPVSService(f *testing.F) {
	for _, b := range [][]byte{ipvsServiceTCP4, ipvsServiceUDP4, ipvsServiceFWMark, ipvsServiceTCP6} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		svc, err := decodeIPVSService(b)
		if err != nil || svc.fwmark != 0 {
			return
		}
		// What decodes must name the same service when sent back.
		again, err := decodeIPVSService(svc.key)
		if err != nil || again.vip != svc.vip || again.protocol != svc.protocol {
			t.Fatalf("key of %v decodes as %v, %v", svc.vip, again.vip, err)
		}
	})
}

func FuzzDecodeIPVSDest(f *testing.F) {
	f.Add(ipvsDest4, uint16(unix.AF_INET))
	f.Add(ipvsDestOld, uint16(unix.AF_INET6))
	f.Fuzz(func(t *testing.T, b []byte, af uint16) { decodeIPVSDest(b, af) })
}
