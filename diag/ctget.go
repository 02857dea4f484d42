package diag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// ctnetlink's numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	// ctGet is IPCTNL_MSG_CT_GET: without NLM_F_DUMP it asks for the one
	// entry a tuple names.
	ctGet = unix.NFNL_SUBSYS_CTNETLINK<<8 | 1
	// ctNew is IPCTNL_MSG_CT_NEW (0), the type of the kernel's answer:
	// it writes every entry it sends, to a GET as in a dump, as CT_NEW.
	ctNew = unix.NFNL_SUBSYS_CTNETLINK << 8

	ctaTupleOrig    = 1
	ctaTupleIP      = 1
	ctaTupleProto   = 2
	ctaIPv4Src      = 1
	ctaIPv4Dst      = 2
	ctaIPv6Src      = 3
	ctaIPv6Dst      = 4
	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3
)

// conntrackLookupLimit bounds the connections whose entries tcpvet asks
// for one by one in a table too large to dump. A lookup costs a little
// more than a dumped entry (13 to 16 µs against 10 to 13 on a test
// machine): 20,000 take about 0.3 s.
const conntrackLookupLimit = 20000

// The kernel answers every request of a sendmsg before the call returns,
// and drops an answer that does not fit in the socket's receive buffer:
// so the requests sent at once are as many as their answers fit, at
// ctGetBudget bytes of buffer each (an answer, a flow and an ACK, takes
// about 1.4 KiB), and no more than ctGetBatch, past which sending more at
// once saves nothing measurable.
const (
	ctGetBudget = 3 << 10
	ctGetBatch  = 64
)

// ctGetWait bounds the wait for the answers to one batch of requests: the
// kernel has answered before sendmsg returns, so waiting at all means an
// answer was lost.
const ctGetWait = 5 * time.Second

// errCTAnswer reports a ctnetlink answer tcpvet did not ask for or cannot
// read.
var errCTAnswer = errors.New("unexpected ctnetlink answer")

// lookupFlows asks the conntrack of ns for the entry of each TCP
// connection in conns, one IPCTNL_MSG_CT_GET each, and returns the entries
// found, each once. A connection the table holds no entry for is left
// out: an answer, not an error.
//
// One request finds an entry from either end of its connection: the
// kernel looks the tuple up in the hash that holds both directions of
// every entry, whichever direction the request names it by, so a server
// behind DNAT finds its entry by its own view (the entry's reply
// direction) as a client does by the original one. Only zone 0 is
// searched: the zone of every flow no rule puts in another.
func lookupFlows(ns *netns.NS, conns []flowKey) ([]conntrack.Flow, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, netlinkConfig(ns))
	if err != nil {
		return nil, fmt.Errorf("open ctnetlink in %s: %w", ns.Path, err)
	}
	defer c.Close()
	return getFlows(c, conns)
}

// getFlows runs lookupFlows's requests on c, a batch at a time.
//
// The answers are read off the socket, not with c.Receive: the kernel
// flags the entry it sends NLM_F_MULTI and ends the answer with an ACK,
// not NLMSG_DONE, and Receive, once it has seen a multipart message,
// waits for an NLMSG_DONE that never comes.
func getFlows(c *netlink.Conn, conns []flowKey) ([]conntrack.Flow, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	rcvbuf, err := c.ReadBuffer()
	if err != nil {
		return nil, err
	}
	batch := min(max(rcvbuf/ctGetBudget, 1), ctGetBatch)
	// found holds both ends of every entry found, so that the two sockets
	// of a connection within the namespace get one entry.
	found := make(map[flowKey]bool, 2*len(conns))
	// Most connections have an entry: room for all spares growing a
	// slice of 500-byte flows.
	flows := make([]conntrack.Flow, 0, len(conns))
	// The kernel builds each answer in NLMSG_DEFAULT_SIZE, under 8 KiB.
	buf := make([]byte, 8<<10)
	msgs := make([]netlink.Message, 0, batch)
	for len(conns) > 0 {
		msgs = msgs[:0]
		for len(conns) > 0 && len(msgs) < batch {
			k := conns[0]
			conns = conns[1:]
			if found[k] {
				continue
			}
			if m, ok, err := ctGetRequest(k); err != nil {
				return nil, err
			} else if ok {
				msgs = append(msgs, m)
			}
		}
		if len(msgs) == 0 {
			continue
		}
		sent, err := c.SendMessages(msgs)
		if err != nil {
			return nil, fmt.Errorf("send conntrack GET: %w", err)
		}
		if err := c.SetReadDeadline(time.Now().Add(ctGetWait)); err != nil {
			return nil, err
		}
		first, last := sent[0].Header.Sequence, sent[len(sent)-1].Header.Sequence
		// Each request is answered by its entry, if there is one, and
		// then an ACK or an error, in the order they were sent.
		for acked := 0; acked < len(sent); {
			ms, err := receiveDatagram(rc, buf)
			if err != nil {
				return nil, fmt.Errorf("receive conntrack GET answers: %w", err)
			}
			for _, m := range ms {
				if s := m.Header.Sequence; s-first > last-first {
					return nil, fmt.Errorf("%w: sequence %d, asked %d to %d", errCTAnswer, s, first, last)
				}
				switch m.Header.Type {
				case netlink.Error:
					// ENOENT: the table holds no entry of the tuple.
					if err := ackErr(m); err != nil && !errors.Is(err, unix.ENOENT) {
						return nil, fmt.Errorf("conntrack GET: %w", err)
					}
					acked++
				case ctNew:
					// The entry is decoded as an event: the one
					// exported decoder of ti-mo/conntrack, and the
					// one its Dump uses inside.
					var e conntrack.Event
					if err := e.Unmarshal(m); err != nil {
						return nil, fmt.Errorf("%w: %v", errCTAnswer, err)
					}
					if e.Flow == nil {
						return nil, fmt.Errorf("%w: no flow", errCTAnswer)
					}
					f := *e.Flow
					if f.TupleOrig.Proto.Protocol != unix.IPPROTO_TCP {
						return nil, fmt.Errorf("%w: an entry of protocol %d to a request for TCP", errCTAnswer, f.TupleOrig.Proto.Protocol)
					}
					o, r := tupleKey(f.TupleOrig), tupleKey(f.TupleReply)
					if found[o] {
						continue
					}
					found[o], found[r] = true, true
					flows = append(flows, f)
				default:
					return nil, fmt.Errorf("%w: message type %#x", errCTAnswer, uint16(m.Header.Type))
				}
			}
		}
	}
	return flows, nil
}

// ctGetRequest builds the IPCTNL_MSG_CT_GET that asks for the entry of
// the TCP connection k: a plain GET, neither a dump nor CT_GET_CTRZERO,
// which zeroes counters. It reports false for a connection no entry can
// have, between addresses of two families.
func ctGetRequest(k flowKey) (netlink.Message, bool, error) {
	from, to := k.from.Addr().Unmap(), k.to.Addr().Unmap()
	family, src, dst := uint8(unix.AF_INET), uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	switch {
	case !from.IsValid() || !to.IsValid() || from.Is4() != to.Is4():
		return netlink.Message{}, false, nil
	case from.Is6():
		family, src, dst = unix.AF_INET6, ctaIPv6Src, ctaIPv6Dst
	}
	ae := netlink.NewAttributeEncoder()
	// ctnetlink reads every number in network byte order.
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaTupleOrig, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(src, from.AsSlice())
			ae.Bytes(dst, to.AsSlice())
			return nil
		})
		ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoNum, unix.IPPROTO_TCP)
			ae.Uint16(ctaProtoSrcPort, k.from.Port())
			ae.Uint16(ctaProtoDstPort, k.to.Port())
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, false, fmt.Errorf("encode conntrack GET: %w", err)
	}
	// struct nfgenmsg: the family, NFNETLINK_V0, res_id 0.
	data := append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...)
	return netlink.Message{
		Header: netlink.Header{Type: ctGet, Flags: netlink.Request | netlink.Acknowledge},
		Data:   data,
	}, true, nil
}

// receiveDatagram reads the next datagram on rc into buf, waiting as long
// as the socket's read deadline allows, and splits it into messages.
func receiveDatagram(rc syscall.RawConn, buf []byte) ([]netlink.Message, error) {
	var n, flags int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, _, flags, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
			if rerr != unix.EINTR {
				// On EAGAIN, wait until the socket is readable.
				return rerr != unix.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return nil, err
	case rerr != nil:
		// ENOBUFS: answers were dropped, the receive buffer full.
		return nil, rerr
	case flags&unix.MSG_TRUNC != 0:
		return nil, fmt.Errorf("%w: a datagram over %d bytes", errCTAnswer, len(buf))
	}
	var ms []netlink.Message
	for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, fmt.Errorf("%w: a message of %d bytes in %d", errCTAnswer, l, len(b))
		}
		al := min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1))
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:al]); err != nil {
			return nil, fmt.Errorf("%w: %v", errCTAnswer, err)
		}
		ms = append(ms, m)
		b = b[al:]
	}
	return ms, nil
}

// ackErr returns the error an NLMSG_ERROR message carries; nil for an ACK.
func ackErr(m netlink.Message) error {
	if len(m.Data) < 4 {
		return fmt.Errorf("%w: an error message of %d bytes", errCTAnswer, len(m.Data))
	}
	if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
		return unix.Errno(-e)
	}
	return nil
}

// tupleKey is a tuple as the socket that sends it sees its connection.
func tupleKey(t conntrack.Tuple) flowKey {
	return keyOf(netip.AddrPortFrom(t.IP.SourceAddress, t.Proto.SourcePort), netip.AddrPortFrom(t.IP.DestinationAddress, t.Proto.DestinationPort))
}
