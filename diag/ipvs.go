package diag

import (
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"

	"github.com/tcpvet/tcpvet/netns"
)

// IPVS generic netlink numbers (include/uapi/linux/ip_vs.h).
const (
	ipvsFamily       = "IPVS"
	ipvsCmdSetConfig = 12 // also the command of a GET_CONFIG reply
	ipvsCmdGetConfig = 13

	ipvsAttrTimeoutTCP    = 4
	ipvsAttrTimeoutTCPFin = 5
	ipvsAttrTimeoutUDP    = 6
)

// IPVS is the IPVS connection-table timeouts of a namespace: how long IPVS
// remembers an idle established TCP flow before a new packet of it is
// treated as unknown (kube-proxy's IPVS mode; 900 s unless changed).
type IPVS struct {
	// Present is false when the kernel has no IPVS (the module is not loaded).
	Present        bool   `json:"present"`
	TCPTimeoutS    uint32 `json:"tcp_timeout_s,omitempty"`
	TCPFinTimeoutS uint32 `json:"tcp_fin_timeout_s,omitempty"`
	UDPTimeoutS    uint32 `json:"udp_timeout_s,omitempty"`
}

// readIPVS asks IPVS in ns for its timeouts. IPVS being absent is an
// answer, not an error.
func readIPVS(ns *netns.NS) (IPVS, error) {
	// Looking up a generic netlink family the kernel lacks makes it try to
	// load a module for it: a read-only tool must not load IPVS into a node.
	if _, err := os.Stat("/sys/module/ip_vs"); errors.Is(err, os.ErrNotExist) {
		return IPVS{}, nil
	}
	var cfg netlink.Config
	if !ns.Own() {
		cfg.NetNS = ns.FD()
	}
	c, err := genetlink.Dial(&cfg)
	if err != nil {
		return IPVS{}, fmt.Errorf("open generic netlink in %s: %w", ns.Path, err)
	}
	defer c.Close()
	return ipvsConfig(c)
}

// ipvsConfig runs IPVS_CMD_GET_CONFIG on c.
func ipvsConfig(c *genetlink.Conn) (IPVS, error) {
	f, err := c.GetFamily(ipvsFamily)
	if errors.Is(err, os.ErrNotExist) {
		return IPVS{}, nil
	}
	if err != nil {
		return IPVS{}, fmt.Errorf("look up generic netlink family IPVS: %w", err)
	}
	msgs, err := c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: ipvsCmdGetConfig, Version: f.Version},
	}, f.ID, netlink.Request)
	if err != nil {
		return IPVS{}, fmt.Errorf("IPVS GET_CONFIG: %w", err)
	}
	if len(msgs) != 1 {
		return IPVS{}, fmt.Errorf("IPVS GET_CONFIG: %d replies, want 1", len(msgs))
	}
	return decodeIPVSConfig(msgs[0].Data)
}

// decodeIPVSConfig decodes the attributes of a GET_CONFIG reply.
func decodeIPVSConfig(b []byte) (IPVS, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return IPVS{}, fmt.Errorf("decode IPVS config: %w", err)
	}
	v := IPVS{Present: true}
	for ad.Next() {
		switch ad.Type() {
		case ipvsAttrTimeoutTCP:
			v.TCPTimeoutS = ad.Uint32()
		case ipvsAttrTimeoutTCPFin:
			v.TCPFinTimeoutS = ad.Uint32()
		case ipvsAttrTimeoutUDP:
			v.UDPTimeoutS = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return IPVS{}, fmt.Errorf("decode IPVS config: %w", err)
	}
	return v, nil
}
