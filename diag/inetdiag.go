package diag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sockDiagByFamily is SOCK_DIAG_BY_FAMILY, the inet_diag request type.
const sockDiagByFamily = 20

// Attribute types of an inet_diag reply (include/uapi/linux/inet_diag.h).
const (
	attrInfo    = 2  // INET_DIAG_INFO: struct tcp_info
	attrCong    = 4  // INET_DIAG_CONG: congestion control name
	attrTClass  = 6  // INET_DIAG_TCLASS
	attrShut    = 8  // INET_DIAG_SHUTDOWN
	attrClassID = 17 // INET_DIAG_CLASS_ID: net_cls class id, else sk_priority
)

// inetDiagMsgLen is sizeof(struct inet_diag_msg).
const inetDiagMsgLen = 72

// errShortMessage reports an inet_diag reply too short for its fixed header.
var errShortMessage = errors.New("inet_diag message shorter than struct inet_diag_msg")

// diagRequest builds an inet_diag_req_v2 asking for every TCP socket of one
// address family in every state, with tcp_info, the congestion control name
// and the class id.
func diagRequest(family uint8) netlink.Message {
	b := make([]byte, 56)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	b[2] = 1<<(attrInfo-1) | 1<<(attrCong-1) | 1<<(attrTClass-1)
	binary.NativeEndian.PutUint32(b[4:], allStates)
	// The socket id (b[8:56]) stays zero; its cookie must be "none" (~0)
	// or the kernel treats the zero as a cookie to match.
	binary.NativeEndian.PutUint32(b[48:], ^uint32(0))
	binary.NativeEndian.PutUint32(b[52:], ^uint32(0))
	return netlink.Message{
		Header: netlink.Header{
			Type:  sockDiagByFamily,
			Flags: netlink.Request | netlink.Dump,
		},
		Data: b,
	}
}

// tcpDiagGetSock is TCPDIAG_GETSOCK, the request type of inet_diag's first
// interface: the only one that asks for both address families at once.
const tcpDiagGetSock = 18

// bothFamiliesRequest builds the older struct inet_diag_req asking for
// every TCP socket of both address families, with the extensions of
// diagRequest. The kernel finds a namespace's sockets by walking tables
// shared by every namespace of the machine, once per request: on a node
// of many pods one walk instead of two per family halves the dump's cost.
func bothFamiliesRequest() netlink.Message {
	b := make([]byte, 60)
	b[0] = unix.AF_UNSPEC
	b[3] = 1<<(attrInfo-1) | 1<<(attrCong-1) | 1<<(attrTClass-1)
	// The socket id (b[4:52]) stays zero but for its "no cookie" (~0).
	binary.NativeEndian.PutUint32(b[44:], ^uint32(0))
	binary.NativeEndian.PutUint32(b[48:], ^uint32(0))
	binary.NativeEndian.PutUint32(b[52:], allStates)
	return netlink.Message{
		Header: netlink.Header{
			Type:  tcpDiagGetSock,
			Flags: netlink.Request | netlink.Dump,
		},
		Data: b,
	}
}

// rawSocket is one decoded inet_diag reply, before processes and socket
// options are attached.
type rawSocket struct {
	Family  uint8
	State   State
	Timer   TimerKind
	Retrans uint8
	Local   netip.AddrPort
	Remote  netip.AddrPort
	IfIndex uint32
	Cookie  uint64
	Expires uint32
	RecvQ   uint32
	SendQ   uint32
	UID     uint32
	Inode   uint32

	Info     *TCPInfo
	Cong     string
	ClassID  uint32
	Shutdown uint8
}

// decodeDiagMsg decodes an inet_diag_msg and its attributes. Ports and
// addresses are big-endian; everything else is in host order.
func decodeDiagMsg(b []byte) (rawSocket, error) {
	var cong string
	return (&diagDecoder{lastCong: &cong}).decode(b)
}

// diagDecoder decodes the replies of one dump: tcp_info goes into slabs of
// up to a thousand rather than an allocation each, and a congestion control name
// repeated from the last socket is the same string.
type diagDecoder struct {
	slab     []TCPInfo
	lastCong *string
	useSlab  bool
}

// errInvalidAttribute is netlink's own word for a malformed attribute.
var errInvalidAttribute = errors.New("invalid attribute; length too short or too large")

// attrTypeMask masks off the nested and byte-order flags of a type.
const attrTypeMask = 0x3fff

func (d *diagDecoder) decode(b []byte) (rawSocket, error) {
	var slab *[]TCPInfo
	if d.useSlab {
		slab = &d.slab
	}
	lastCong := d.lastCong
	if len(b) < inetDiagMsgLen {
		return rawSocket{}, fmt.Errorf("%w: %d bytes", errShortMessage, len(b))
	}
	s := rawSocket{
		Family:  b[0],
		State:   State(b[1]),
		Timer:   TimerKind(b[2]),
		Retrans: b[3],
		IfIndex: binary.NativeEndian.Uint32(b[40:]),
		Cookie:  uint64(binary.NativeEndian.Uint32(b[44:])) | uint64(binary.NativeEndian.Uint32(b[48:]))<<32,
		Expires: binary.NativeEndian.Uint32(b[52:]),
		RecvQ:   binary.NativeEndian.Uint32(b[56:]),
		SendQ:   binary.NativeEndian.Uint32(b[60:]),
		UID:     binary.NativeEndian.Uint32(b[64:]),
		Inode:   binary.NativeEndian.Uint32(b[68:]),
	}
	sport := binary.BigEndian.Uint16(b[4:])
	dport := binary.BigEndian.Uint16(b[6:])
	switch s.Family {
	case unix.AF_INET:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[8:12])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[24:28])), dport)
	case unix.AF_INET6:
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])), dport)
	default:
		return rawSocket{}, fmt.Errorf("inet_diag message of unknown address family %d", s.Family)
	}

	// The attributes, walked as netlink's AttributeDecoder walks them
	// (the same lengths refused) without copying each one.
	attrs := b[inetDiagMsgLen:]
	for i := 0; i < len(attrs); {
		if len(attrs)-i < 4 {
			return rawSocket{}, fmt.Errorf("decode inet_diag attributes: %w", errInvalidAttribute)
		}
		l := int(binary.NativeEndian.Uint16(attrs[i:]))
		typ := binary.NativeEndian.Uint16(attrs[i+2:]) & attrTypeMask
		if l > len(attrs)-i || l != 0 && l < 4 {
			return rawSocket{}, fmt.Errorf("decode inet_diag attributes: %w", errInvalidAttribute)
		}
		var data []byte
		if l != 0 {
			data = attrs[i+4 : i+l]
		}
		i += max(4, (l+3)&^3)
		switch typ {
		case attrInfo:
			if slab != nil {
				if len(*slab) == cap(*slab) {
					// Slabs grow from 32 to a thousand: a pod's few
					// sockets, a node sweep's hundreds of namespaces,
					// must not each hold a thousand's room.
					*slab = make([]TCPInfo, 0, min(1024, max(32, 2*cap(*slab))))
				}
				*slab = append(*slab, decodeTCPInfo(data))
				s.Info = &(*slab)[len(*slab)-1]
			} else {
				info := decodeTCPInfo(data)
				s.Info = &info
			}
		case attrCong:
			if cong := bytes.TrimRight(data, "\x00"); string(cong) != *lastCong {
				*lastCong = string(cong)
			}
			s.Cong = *lastCong
		case attrClassID:
			if len(data) != 4 {
				return rawSocket{}, fmt.Errorf("decode inet_diag attributes: netlink: attribute %d is not a uint32; length: %d", typ, len(data))
			}
			s.ClassID = binary.NativeEndian.Uint32(data)
		case attrShut:
			if len(data) != 1 {
				return rawSocket{}, fmt.Errorf("decode inet_diag attributes: netlink: attribute %d is not a uint8; length: %d", typ, len(data))
			}
			s.Shutdown = data[0]
		}
	}
	return s, nil
}
