package diag

import (
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

	ad, err := netlink.NewAttributeDecoder(b[inetDiagMsgLen:])
	if err != nil {
		return rawSocket{}, fmt.Errorf("decode inet_diag attributes: %w", err)
	}
	for ad.Next() {
		switch ad.Type() {
		case attrInfo:
			ad.Do(func(b []byte) error {
				info := decodeTCPInfo(b)
				s.Info = &info
				return nil
			})
		case attrCong:
			s.Cong = ad.String()
		case attrClassID:
			s.ClassID = ad.Uint32()
		case attrShut:
			s.Shutdown = ad.Uint8()
		}
	}
	if err := ad.Err(); err != nil {
		return rawSocket{}, fmt.Errorf("decode inet_diag attributes: %w", err)
	}
	return s, nil
}
