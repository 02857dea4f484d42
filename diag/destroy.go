package diag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// The sock_diag multicast groups that announce TCP sockets being freed
// (enum sknetlink_groups, include/uapi/linux/sock_diag.h).
const (
	sknlgrpInetTCPDestroy  = 1
	sknlgrpInet6TCPDestroy = 3
)

// destroyReadBuffer is the receive buffer asked for a destroy watch. The
// kernel sends each death as its own datagram of about 400 bytes, which
// costs 1,280 bytes of buffer (the skb's true size, what SO_RCVBUF counts;
// measured on Linux 6.18), and doubles what it is asked for: 4 MiB holds
// some 6,500 deaths the reader has not yet taken, several seconds of a
// node closing a thousand connections a second.
const destroyReadBuffer = 4 << 20

// destroyBacklog is how many decoded deaths wait for the consumer before
// the reader stops reading and lets the socket's buffer fill.
const destroyBacklog = 1024

// ErrDestroyDenied reports that the kernel refused to announce socket
// deaths: the caller leaves deaths out and says why. Linux lets any
// process join the destroy groups of its own namespace (sock_diag's
// groups are NL_CFG_F_NONROOT_RECV; TestWatchUnprivileged holds it to
// that), so the refusal comes from opening the socket inside another
// namespace without the privilege to enter it, or from a security module.
var ErrDestroyDenied = errors.New("the kernel refused to announce socket deaths")

// errDeathMessage reports a destroy notification tcpvet cannot read.
var errDeathMessage = errors.New("unexpected sock_diag destroy notification")

// Death is a TCP socket freed by the kernel, as sock_diag announced it.
//
// The kernel announces a socket when it frees it (__sk_free calls
// sock_diag_broadcast_destroy), which is after everything else: the
// application has closed its descriptor and the kernel has finished with
// the connection (a reset, a give-up, the last ACK of a close, or the
// hand-over to a timewait socket, which is never announced). An orphan
// reaching FIN_WAIT2 is handed over at once, so the end that closes first
// is announced when its FIN is acknowledged, often before the peer's FIN
// comes. A connection reset or timed out while its application still
// holds it is announced only when the application closes it. Request
// sockets (SYN_RECV) are never announced.
type Death struct {
	// Cookie is the kernel's socket cookie, the socket's identity in
	// sock_diag, as Socket.ID.
	Cookie Cookie
	Local  netip.AddrPort
	Remote netip.AddrPort
	// State is the socket's state when freed: CLOSE, for connections and
	// listeners alike (tcp_done or tcp_close has run).
	State State
	// RecvQ and SendQ are what was left unread and unacknowledged.
	RecvQ, SendQ uint32
	// Info is the socket's final tcp_info, nil if the kernel sent none.
	Info *TCPInfo
	// At is when tcpvet read the announcement: the socket was freed
	// shortly before (the kernel announces from a work queue).
	At time.Time
}

// decodeDeath decodes one destroy notification: an inet_diag reply
// (SOCK_DIAG_BY_FAMILY) carrying INET_DIAG_PROTOCOL and INET_DIAG_INFO,
// read by the decoder dumps use.
func decodeDeath(m netlink.Message, at time.Time) (Death, error) {
	if m.Header.Type != sockDiagByFamily {
		return Death{}, fmt.Errorf("%w: message type %d", errDeathMessage, m.Header.Type)
	}
	s, err := decodeDiagMsg(m.Data)
	if err != nil {
		return Death{}, err
	}
	return Death{
		Cookie: Cookie(s.Cookie),
		Local:  s.Local,
		Remote: s.Remote,
		State:  s.State,
		RecvQ:  s.RecvQ,
		SendQ:  s.SendQ,
		Info:   s.Info,
		At:     at,
	}, nil
}

// denied reports whether err is the kernel refusing for lack of privilege.
func denied(err error) bool { return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) }

// DestroyWatch receives the deaths of one namespace's TCP sockets from
// the moment WatchDestroys returns until Close or the end of its context.
type DestroyWatch struct{ *groupWatch[Death] }

// WatchDestroys subscribes to the deaths of every TCP socket (IPv4 and
// IPv6) in ns. The socket is opened inside ns, so no thread of ours enters
// it. It returns an error wrapping ErrDestroyDenied when the kernel
// refuses the subscription.
//
// Nothing is missed silently: an announcement the kernel could not queue,
// the receive buffer being full, is counted in Lost.
func WatchDestroys(ctx context.Context, ns *netns.NS) (*DestroyWatch, error) {
	w, err := watchGroups(ctx, ns, groupSpec[Death]{
		family: unix.NETLINK_SOCK_DIAG,
		groups: []uint32{sknlgrpInetTCPDestroy, sknlgrpInet6TCPDestroy},
		what:   "sock_diag", events: "socket deaths", denied: ErrDestroyDenied,
		decode: func(m netlink.Message, at time.Time) (Death, bool, error) {
			d, err := decodeDeath(m, at)
			return d, err == nil, err
		},
	})
	if err != nil {
		return nil, err
	}
	return &DestroyWatch{w}, nil
}

// Deaths delivers each death as it is announced. It is closed after Close,
// the end of the context, or an error (Err says which).
func (w *DestroyWatch) Deaths() <-chan Death { return w.out }

// growReadBuffer sets the socket's receive buffer to n bytes, past
// net.core.rmem_max when tcpvet may (SO_RCVBUFFORCE takes CAP_NET_ADMIN),
// else as far as rmem_max lets SO_RCVBUF go.
func growReadBuffer(c *netlink.Conn, rc syscall.RawConn, n int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr == nil {
		return nil
	}
	return c.SetReadBuffer(n)
}

// socketDrops reads how many messages the kernel dropped for want of room
// in the socket's receive buffer (SO_MEMINFO's SK_MEMINFO_DROPS).
func socketDrops(rc syscall.RawConn) (uint64, error) {
	var mem [unix.SK_MEMINFO_VARS * 4]byte
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		l := uint32(len(mem))
		// The kernel writes an array of u32 into a byte buffer, read
		// below with encoding/binary.
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return uint64(binary.NativeEndian.Uint32(mem[unix.SK_MEMINFO_DROPS*4:])), nil
}
