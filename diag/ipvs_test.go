package diag

import (
	"bytes"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
)

// ipvsConfigReply is the attribute payload of a kernel GET_CONFIG reply
// with the default timeouts (tcp 900 s, tcpfin 120 s, udp 300 s), laid out as
// ip_vs_genl_get_cmd writes it: three NLA_U32 attributes, 8 bytes each.
var ipvsConfigReply = []byte{
	0x08, 0x00, 0x04, 0x00, 0x84, 0x03, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_TCP = 900
	0x08, 0x00, 0x05, 0x00, 0x78, 0x00, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_TCP_FIN = 120
	0x08, 0x00, 0x06, 0x00, 0x2c, 0x01, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_UDP = 300
}

func TestDecodeIPVSConfigGolden(t *testing.T) {
	got, err := decodeIPVSConfig(ipvsConfigReply)
	if err != nil {
		t.Fatal(err)
	}
	want := IPVS{Present: true, TCPTimeoutS: 900, TCPFinTimeoutS: 120, UDPTimeoutS: 300}
	if got != want {
		t.Errorf("decode = %+v, want %+v", got, want)
	}
	if _, err := decodeIPVSConfig(ipvsConfigReply[:len(ipvsConfigReply)-2]); err == nil {
		t.Error("truncated reply decoded without error")
	}
}

func TestIPVSConfigConversation(t *testing.T) {
	family := genetlink.Family{ID: 0x24, Version: 1, Name: "IPVS"}
	c := genltest.Dial(genltest.ServeFamily(family,
		genltest.CheckRequest(family.ID, ipvsCmdGetConfig, netlink.Request,
			func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
				if greq.Header.Version != 1 || len(greq.Data) != 0 {
					t.Errorf("request %+v, want version 1 and no attributes", greq)
				}
				return []genetlink.Message{{
					Header: genetlink.Header{Command: ipvsCmdSetConfig, Version: 1},
					Data:   bytes.Clone(ipvsConfigReply),
				}}, nil
			})))
	defer c.Close()
	got, err := ipvsConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Present || got.TCPTimeoutS != 900 {
		t.Errorf("ipvsConfig = %+v, want present with tcp 900 s", got)
	}
}

func TestIPVSAbsentIsAFact(t *testing.T) {
	// The controller answers ENOENT for a family the kernel does not have.
	c := genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(2) // ENOENT
	})
	defer c.Close()
	got, err := ipvsConfig(c)
	if err != nil || got.Present {
		t.Errorf("ipvsConfig = %+v, %v; want not present and no error", got, err)
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
