package diag

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
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

// dumpSockets asks the kernel for every IPv4 and IPv6 TCP socket of ns,
// ordered by their ends. Sockets seen twice (a dump racing with the socket
// table) are kept once.
func dumpSockets(ctx context.Context, ns *netns.NS) ([]rawSocket, error) {
	// Decoded into chunks, then copied once into a slice of the exact
	// size: a slice grown as the dump goes would allocate up to three
	// times the sockets' size, and keep a third of it as slack.
	const chunk = 1024
	var chunks [][]rawSocket
	n := 0
	var cong string
	d := diagDecoder{lastCong: &cong, useSlab: true}
	err := dumpMessages(ctx, ns, func(b []byte) error {
		s, err := d.decode(b)
		if err != nil {
			return err
		}
		if len(chunks) == 0 || len(chunks[len(chunks)-1]) == chunk {
			chunks = append(chunks, make([]rawSocket, 0, chunk))
		}
		chunks[len(chunks)-1] = append(chunks[len(chunks)-1], s)
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]rawSocket, 0, n)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return ordered(out), nil
}

// ordered sorts raws by their ends and drops every socket seen twice.
func ordered(raws []rawSocket) []rawSocket {
	// The cookie last, so that a socket seen twice sits beside itself and
	// listeners sharing a port (SO_REUSEPORT) come in one order every time.
	slices.SortFunc(raws, func(a, b rawSocket) int {
		if c := a.Local.Compare(b.Local); c != 0 {
			return c
		}
		if c := a.Remote.Compare(b.Remote); c != 0 {
			return c
		}
		return cmp.Compare(a.Cookie, b.Cookie)
	})
	raws = slices.CompactFunc(raws, func(a, b rawSocket) bool { return a.Cookie == b.Cookie })
	return dropStale(raws)
}

// dropStale drops the first sighting of a socket that connected or
// listened while the dump went on: the kernel walks its sockets that are
// only bound (CLOSE) before its listening and established ones, so such a
// socket is seen once with its old ends and once with its new, apart in
// the order. The later sighting is kept; sockets are unique by cookie.
func dropStale(raws []rawSocket) []rawSocket {
	var bound map[uint64]int
	for i := range raws {
		if raws[i].State == Close {
			if bound == nil {
				bound = make(map[uint64]int)
			}
			bound[raws[i].Cookie] = i
		}
	}
	if bound == nil {
		return raws
	}
	stale := make(map[int]bool)
	for i := range raws {
		if j, ok := bound[raws[i].Cookie]; ok && raws[i].State != Close {
			stale[j] = true
		}
	}
	if len(stale) == 0 {
		return raws
	}
	kept := raws[:0]
	for i := range raws {
		if !stale[i] {
			kept = append(kept, raws[i])
		}
	}
	return kept
}

// dumpMessages runs an inet_diag dump of each address family in ns and hands
// every reply's payload to fn. The netlink socket is opened inside ns, so no
// thread of ours changes namespace to read it.
func dumpMessages(ctx context.Context, ns *netns.NS, fn func([]byte) error) error {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, netlinkConfig(ns))
	if err != nil {
		if errors.Is(err, unix.EPERM) && !ns.Own() {
			// The socket is opened inside ns: setns refused.
			return fmt.Errorf("open sock_diag in %s: %w (entering another network namespace takes root or CAP_SYS_ADMIN)", ns.Path, err)
		}
		return fmt.Errorf("open sock_diag in %s: %w", ns.Path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return fmt.Errorf("set sock_diag deadline: %w", err)
		}
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("open sock_diag in %s: %w", ns.Path, err)
	}
	// Replies are read straight off the socket into one buffer and handed
	// over in place: netlink's Receive copies every message and attribute.
	// The kernel fills at most 32 KiB per read of a dump.
	buf := make([]byte, 64<<10)
	// One request for both families, one walk of the kernel's tables;
	// a kernel that refuses it before answering anything is asked per
	// family.
	delivered := false
	counted := func(b []byte) error { delivered = true; return fn(b) }
	req, err := c.Send(bothFamiliesRequest())
	if err == nil {
		if err = receiveDump(rc, buf, req.Header.Sequence, counted); err == nil || delivered {
			if err != nil {
				return fmt.Errorf("read sock_diag in %s: %w", ns.Path, err)
			}
			return nil
		}
	}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		req, err := c.Send(diagRequest(family))
		if err != nil {
			return fmt.Errorf("request sock_diag dump in %s: %w", ns.Path, err)
		}
		if err := receiveDump(rc, buf, req.Header.Sequence, fn); err != nil {
			return fmt.Errorf("read sock_diag in %s: %w", ns.Path, err)
		}
	}
	return nil
}

// receiveDump reads the replies to the dump request numbered seq, handing
// the payload of each to fn, until the kernel says it is done.
func receiveDump(rc syscall.RawConn, buf []byte, seq uint32, fn func([]byte) error) error {
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
		}); err != nil {
			return err
		}
		if rerr != nil {
			return os.NewSyscallError("recvfrom", rerr)
		}
		if n == 0 {
			return errors.New("sock_diag socket closed mid-dump")
		}
		for b := buf[:n]; len(b) > 0; {
			if len(b) < unix.SizeofNlMsghdr {
				return errors.New("short netlink message header")
			}
			l := int(binary.NativeEndian.Uint32(b))
			typ := binary.NativeEndian.Uint16(b[4:])
			msgSeq := binary.NativeEndian.Uint32(b[8:])
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("netlink message of length %d in %d bytes", l, len(b))
			}
			data := b[unix.SizeofNlMsghdr:l]
			b = b[min(len(b), (l+3)&^3):]
			if msgSeq != seq {
				return fmt.Errorf("netlink reply to request %d, not %d", msgSeq, seq)
			}
			switch typ {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if len(data) == 0 && typ == unix.NLMSG_DONE {
					return nil
				}
				if len(data) < 4 {
					return errors.New("short netlink error message")
				}
				if code := int32(binary.NativeEndian.Uint32(data)); code != 0 {
					return syscall.Errno(-code)
				}
				if typ == unix.NLMSG_DONE {
					return nil
				}
			case unix.NLMSG_NOOP:
			default:
				if err := fn(data); err != nil {
					return err
				}
			}
		}
	}
}
