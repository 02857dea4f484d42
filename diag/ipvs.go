package diag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// IPVS generic netlink numbers (include/uapi/linux/ip_vs.h).
const (
	ipvsFamily        = "IPVS"
	ipvsCmdNewService = 1 // the command of a GET_SERVICE reply
	ipvsCmdGetService = 4
	ipvsCmdNewDest    = 5 // the command of a GET_DEST reply
	ipvsCmdGetDest    = 8
	ipvsCmdSetConfig  = 12 // also the command of a GET_CONFIG reply
	ipvsCmdGetConfig  = 13

	ipvsAttrService       = 1
	ipvsAttrDest          = 2
	ipvsAttrTimeoutTCP    = 4
	ipvsAttrTimeoutTCPFin = 5
	ipvsAttrTimeoutUDP    = 6

	ipvsSvcAttrAF       = 1
	ipvsSvcAttrProtocol = 2
	ipvsSvcAttrAddr     = 3
	ipvsSvcAttrPort     = 4
	ipvsSvcAttrFWMark   = 5

	ipvsDestAttrAddr   = 1
	ipvsDestAttrPort   = 2
	ipvsDestAttrFamily = 11 // since Linux 4.14; before it a real server has its service's family
)

// IPVS is what a namespace's IPVS says about TCP flows: how long it
// remembers an idle established flow before a new packet of it is treated as
// unknown (900 s unless kube-proxy's --ipvs-tcp-timeout changed it), and
// which flows pass through it at all.
type IPVS struct {
	// Present is false when the kernel has no IPVS (the module is not loaded).
	Present        bool   `json:"present"`
	TCPTimeoutS    uint32 `json:"tcp_timeout_s,omitempty"`
	TCPFinTimeoutS uint32 `json:"tcp_fin_timeout_s,omitempty"`
	UDPTimeoutS    uint32 `json:"udp_timeout_s,omitempty"`
	// ServicesListed is false when the virtual services could not be
	// listed; then nothing is known about which flows IPVS carries.
	ServicesListed bool `json:"services_listed"`
	// Services are the TCP virtual services, each with its real servers.
	// An IPVS module loaded on a node, or in a pod's namespace, answers
	// with the default timeout even when it balances nothing: the services
	// say whether a connection is one of IPVS's. Left out of JSON, as a
	// cluster's services can run to thousands; findings name the one that
	// matched.
	Services []IPVSService `json:"-"`
	// TCPServices and RealServers count Services and their real servers.
	TCPServices int `json:"tcp_services"`
	RealServers int `json:"real_servers"`
	// FWMarkServices counts services selected by firewall mark, which can
	// carry any flow: their traffic cannot be told from the addresses.
	FWMarkServices int `json:"fwmark_services"`
}

// IPVSService is one TCP virtual service.
type IPVSService struct {
	VIP         netip.AddrPort
	RealServers []netip.AddrPort
}

// readIPVS asks IPVS in ns for its timeouts and TCP services. IPVS being
// absent is an answer, not an error.
func readIPVS(ns *netns.NS) (IPVS, error) {
	// Looking up a generic netlink family the kernel lacks makes it try to
	// load a module for it: a read-only tool must not load IPVS into a node.
	if _, err := os.Stat("/sys/module/ip_vs"); errors.Is(err, os.ErrNotExist) {
		return IPVS{}, nil
	}
	c, err := genetlink.Dial(netlinkConfig(ns))
	if err != nil {
		return IPVS{}, fmt.Errorf("open generic netlink in %s: %w", ns.Path, err)
	}
	defer c.Close()
	return queryIPVS(c)
}

// queryIPVS asks IPVS on c for its configuration and then its services.
func queryIPVS(c *genetlink.Conn) (IPVS, error) {
	f, err := c.GetFamily(ipvsFamily)
	if errors.Is(err, os.ErrNotExist) {
		return IPVS{}, nil
	}
	if err != nil {
		return IPVS{}, fmt.Errorf("look up generic netlink family IPVS: %w", err)
	}
	v, err := ipvsConfig(c, f)
	if err != nil {
		return IPVS{}, err
	}
	if err := ipvsServices(c, f, &v); err != nil {
		return v, err
	}
	v.ServicesListed = true
	return v, nil
}

// ipvsConfig runs IPVS_CMD_GET_CONFIG.
func ipvsConfig(c *genetlink.Conn, f genetlink.Family) (IPVS, error) {
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

// ipvsServices dumps the services into v, and for each TCP service by
// address, its real servers.
func ipvsServices(c *genetlink.Conn, f genetlink.Family, v *IPVS) error {
	msgs, err := c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: ipvsCmdGetService, Version: f.Version},
	}, f.ID, netlink.Request|netlink.Dump)
	if err != nil {
		return fmt.Errorf("IPVS GET_SERVICE: %w", err)
	}
	for _, m := range msgs {
		svc, err := decodeIPVSService(m.Data)
		if err != nil {
			return err
		}
		switch {
		case svc.fwmark != 0:
			v.FWMarkServices++
			continue
		case svc.protocol != unix.IPPROTO_TCP:
			continue
		}
		// The kernel finds the service to list from the attributes that
		// name it, exactly as it sent them.
		dests, err := c.Execute(genetlink.Message{
			Header: genetlink.Header{Command: ipvsCmdGetDest, Version: f.Version},
			Data:   svc.key,
		}, f.ID, netlink.Request|netlink.Dump)
		if err != nil {
			return fmt.Errorf("IPVS GET_DEST of %s: %w", svc.vip, err)
		}
		s := IPVSService{VIP: svc.vip, RealServers: make([]netip.AddrPort, 0, len(dests))}
		for _, d := range dests {
			rs, err := decodeIPVSDest(d.Data, svc.af)
			if err != nil {
				return fmt.Errorf("IPVS GET_DEST of %s: %w", svc.vip, err)
			}
			s.RealServers = append(s.RealServers, rs)
		}
		v.Services = append(v.Services, s)
		v.RealServers += len(s.RealServers)
	}
	v.TCPServices = len(v.Services)
	return nil
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

// ipvsService is a service as a GET_SERVICE reply describes it.
type ipvsService struct {
	af       uint16
	protocol uint16
	fwmark   uint32
	vip      netip.AddrPort
	// key is the nested IPVS_CMD_ATTR_SERVICE naming the service, for GET_DEST.
	key []byte
}

// decodeIPVSService decodes the attributes of a GET_SERVICE reply: one
// nested IPVS_CMD_ATTR_SERVICE.
func decodeIPVSService(b []byte) (ipvsService, error) {
	var svc ipvsService
	var addr []byte
	var port uint16
	err := decodeNest(b, ipvsAttrService, func(nad *netlink.AttributeDecoder) {
		switch nad.Type() {
		case ipvsSvcAttrAF:
			svc.af = nad.Uint16()
		case ipvsSvcAttrProtocol:
			svc.protocol = nad.Uint16()
		case ipvsSvcAttrAddr:
			addr = nad.Bytes()
		case ipvsSvcAttrPort:
			nad.Do(bePort(&port))
		case ipvsSvcAttrFWMark:
			svc.fwmark = nad.Uint32()
		}
	})
	if err != nil {
		return svc, fmt.Errorf("decode IPVS service: %w", err)
	}
	if svc.fwmark != 0 {
		return svc, nil
	}
	a, ok := ipvsAddr(svc.af, addr)
	if !ok {
		return svc, fmt.Errorf("decode IPVS service: address family %d with a %d-byte address", svc.af, len(addr))
	}
	svc.vip = netip.AddrPortFrom(a, port)
	key, err := ipvsServiceKey(svc.af, svc.protocol, addr, port)
	if err != nil {
		return svc, err
	}
	svc.key = key
	return svc, nil
}

// ipvsServiceKey encodes the attributes by which GET_DEST finds a service.
func ipvsServiceKey(af, protocol uint16, addr []byte, port uint16) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(ipvsAttrService, func(nae *netlink.AttributeEncoder) error {
		nae.Uint16(ipvsSvcAttrAF, af)
		nae.Uint16(ipvsSvcAttrProtocol, protocol)
		nae.Bytes(ipvsSvcAttrAddr, addr)
		nae.Bytes(ipvsSvcAttrPort, binary.BigEndian.AppendUint16(nil, port))
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode IPVS service key: %w", err)
	}
	return b, nil
}

// decodeIPVSDest decodes the attributes of a GET_DEST reply: one nested
// IPVS_CMD_ATTR_DEST. Kernels before 4.14 send no family; the real
// server then has its service's, svcAF.
func decodeIPVSDest(b []byte, svcAF uint16) (netip.AddrPort, error) {
	af := svcAF
	var addr []byte
	var port uint16
	err := decodeNest(b, ipvsAttrDest, func(nad *netlink.AttributeDecoder) {
		switch nad.Type() {
		case ipvsDestAttrAddr:
			addr = nad.Bytes()
		case ipvsDestAttrPort:
			nad.Do(bePort(&port))
		case ipvsDestAttrFamily:
			af = nad.Uint16()
		}
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("decode IPVS real server: %w", err)
	}
	a, ok := ipvsAddr(af, addr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("decode IPVS real server: address family %d with a %d-byte address", af, len(addr))
	}
	return netip.AddrPortFrom(a, port), nil
}

// decodeNest calls fn for each attribute nested in the attributes of type
// typ in b, and returns the first decoding error.
func decodeNest(b []byte, typ uint16, fn func(nad *netlink.AttributeDecoder)) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != typ {
			continue
		}
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			for nad.Next() {
				fn(nad)
			}
			return nil
		})
	}
	return ad.Err()
}

// ipvsAddr reads a union nf_inet_addr (16 bytes; an IPv4 address in the
// first four) of family af.
func ipvsAddr(af uint16, b []byte) (netip.Addr, bool) {
	switch {
	case af == unix.AF_INET && len(b) >= 4:
		return netip.AddrFrom4([4]byte(b[:4])), true
	case af == unix.AF_INET6 && len(b) >= 16:
		return netip.AddrFrom16([16]byte(b[:16])), true
	}
	return netip.Addr{}, false
}

// bePort decodes a port in network byte order (NLA_BE16) into p.
func bePort(p *uint16) func([]byte) error {
	return func(b []byte) error {
		if len(b) != 2 {
			return fmt.Errorf("port of %d bytes, want 2", len(b))
		}
		*p = binary.BigEndian.Uint16(b)
		return nil
	}
}
