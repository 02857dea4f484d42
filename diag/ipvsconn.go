package diag

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// The layout below is what net/netfilter/ipvs/ip_vs_conn.c prints, in
// ip_vs_conn_seq_show (/proc/net/ip_vs_conn) and ip_vs_conn_sync_seq_show
// (/proc/net/ip_vs_conn_sync), unchanged from Linux 5.x through 6.x and the
// resizable-table rework after it:
//
//	"%-3s %08X %04X %08X %04X %s %04X %-11s %7u%s\n"         (ip_vs_conn)
//	"%-3s %08X %04X %08X %04X %s %04X %-11s %-6s %7u\n"      (ip_vs_conn_sync)
//
// An IPv6 connection prints its client and virtual addresses with %pI6
// instead of %08X: eight groups of four lower-case hex digits, never
// compressed. The real server's address is formatted on its own, by the
// real server's family, so an IPv4 service tunnelled to an IPv6 real
// server mixes both on one line.
const (
	ipvsConnHeader     = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData"
	ipvsConnSyncHeader = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires"
)

// ErrIPVSConnLine reports a line of /proc/net/ip_vs_conn or
// /proc/net/ip_vs_conn_sync that is not in the layout the kernel prints.
//
// A line that does not parse fails the whole table rather than being
// skipped: the kernel writes every line with the same format string, so one
// bad line means tcpvet misreads the format (a kernel that changed it), and
// then every other line is suspect too. Skipping would report connections
// as unknown to IPVS, a verdict, where the truth is that tcpvet could not
// tell.
var ErrIPVSConnLine = errors.New("not in the kernel's ip_vs_conn format")

// IPVSConn is one entry of IPVS's connection table.
type IPVSConn struct {
	Client  netip.AddrPort `json:"client"`  // CIP:CPort
	Virtual netip.AddrPort `json:"virtual"` // VIP:VPort
	Dest    netip.AddrPort `json:"dest"`    // DIP:DPort (the real server)
	// State is the name the kernel prints: a TCP state of IPVS's own
	// table (NONE, ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT, TIME_WAIT,
	// CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK), or for a template
	// NONE or ASSURED.
	State string `json:"state"`
	// ExpiresInS is how many seconds the entry has left unless a packet
	// of the connection refreshes it.
	ExpiresInS uint32 `json:"expires_in_s"`
	// Template is true for an entry with client port 0, which stands for
	// no single connection: a persistence template (ip_vs_sched_persist
	// creates every one with client port 0, and its client address masked
	// by the service's persistence netmask), or the placeholder the FTP
	// helper makes for a data connection it expects.
	Template bool `json:"template,omitempty"` // a persistence template, not a connection
}

// IPVSConns indexes a table for lookups by the 4-tuple either end sees.
type IPVSConns struct {
	// conns holds every TCP entry read, templates too, in the kernel's order.
	conns []IPVSConn
	// byTuple finds a connection's entry in conns by the 4-tuple one of
	// its sockets sees.
	byTuple map[ipvsTuple]int
}

// ipvsConnsLimit bounds the IPVS connection table tcpvet reads on every
// refresh: about 100 bytes a line.
const ipvsConnsLimit = 16 << 20

// readIPVSConns reads the connection table at path, the calling thread's
// /proc/net/ip_vs_conn; nil without an error where IPVS is not loaded.
func readIPVSConns(path string) (*IPVSConns, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lr := &io.LimitedReader{R: f, N: ipvsConnsLimit + 1}
	c, err := parseIPVSConns(lr)
	switch {
	case lr.N <= 0:
		return nil, fmt.Errorf("more than %d MiB, too large to read on every refresh", ipvsConnsLimit>>20)
	case err != nil:
		return nil, err
	}
	return &c, nil
}

// ipvsTuple is a connection as one of its sockets sees it. server tells the
// real server's view (local = dest, remote = client) from the client's
// (local = client, remote = virtual), so that one entry's client view
// cannot shadow another's server view.
type ipvsTuple struct {
	local, remote netip.AddrPort
	server        bool
}

// Lookup returns the entry tracking the connection from local to remote,
// from either end: a client socket (local = client, remote = virtual) or a
// real server's socket (local = dest, remote = client). IPv4-mapped IPv6
// addresses (::ffff:a.b.c.d) match their IPv4 entries. Templates never
// match a connection.
func (c IPVSConns) Lookup(local, remote netip.AddrPort) (IPVSConn, bool) {
	local, remote = ipvsEnd(local), ipvsEnd(remote)
	if i, ok := c.byTuple[ipvsTuple{local, remote, false}]; ok {
		return c.conns[i], true
	}
	if i, ok := c.byTuple[ipvsTuple{local, remote, true}]; ok {
		return c.conns[i], true
	}
	return IPVSConn{}, false
}

// ipvsEnd puts an address the way IPVS keeps it: an IPv6 socket talking
// IPv4 reports ::ffff:a.b.c.d where IPVS saw an IPv4 packet, and IPVS keeps
// no zone.
func ipvsEnd(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// add records e, and indexes it by both ends unless it is a template.
func (c *IPVSConns) add(e IPVSConn) {
	c.conns = append(c.conns, e)
	if e.Template {
		return
	}
	if c.byTuple == nil {
		c.byTuple = make(map[ipvsTuple]int)
	}
	i := len(c.conns) - 1
	client := ipvsEnd(e.Client)
	for _, k := range []ipvsTuple{
		{client, ipvsEnd(e.Virtual), false},
		{ipvsEnd(e.Dest), client, true},
	} {
		// Two entries can share a tuple: when a new SYN reuses the tuple
		// of a closed connection (conn_reuse_mode), ip_vs_in_hook expires
		// the old entry at once (ip_vs_conn_expire_now) and schedules a
		// new one, and both are listed until the old one is reaped. The
		// entry with time left is the one packets meet.
		if j, dup := c.byTuple[k]; dup && c.conns[j].ExpiresInS >= e.ExpiresInS {
			continue
		}
		c.byTuple[k] = i
	}
}

// ipvsConnLayout is what follows the state column in one of the two files.
type ipvsConnLayout int

const (
	// ipvsConnLayoutConn: Expires, then PEName and PEData, which only a
	// template of a persistence engine (SIP) has.
	ipvsConnLayoutConn ipvsConnLayout = iota
	// ipvsConnLayoutSync: Origin (LOCAL or SYNC), then Expires.
	ipvsConnLayoutSync
)

// parseIPVSConns reads /proc/net/ip_vs_conn or /proc/net/ip_vs_conn_sync,
// told apart by their header, and keeps the TCP entries. Entries of other
// protocols (UDP, SCTP, and IP for the templates of firewall-mark services)
// are checked like the rest and then left out.
func parseIPVSConns(r io.Reader) (IPVSConns, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return IPVSConns{}, ipvsConnScanErr(1, err)
		}
		// seq_file prints the header even for an empty table.
		return IPVSConns{}, fmt.Errorf("%w: no header", ErrIPVSConnLine)
	}
	var layout ipvsConnLayout
	switch sc.Text() {
	case ipvsConnHeader:
		layout = ipvsConnLayoutConn
	case ipvsConnSyncHeader:
		layout = ipvsConnLayoutSync
	default:
		return IPVSConns{}, fmt.Errorf("%w: line 1: unknown header %q", ErrIPVSConnLine, sc.Text())
	}

	var c IPVSConns
	line := 1
	for sc.Scan() {
		line++
		e, tcp, err := parseIPVSConnLine(sc.Text(), layout)
		if err != nil {
			return IPVSConns{}, fmt.Errorf("%w: line %d: %v", ErrIPVSConnLine, line, err)
		}
		if tcp {
			c.add(e)
		}
	}
	if err := sc.Err(); err != nil {
		return IPVSConns{}, ipvsConnScanErr(line+1, err)
	}
	return c, nil
}

// ipvsConnScanErr tells a line longer than any the kernel prints (its
// longest, IPv6 with a persistence engine's name and data, is under 500
// bytes) from a failure to read.
func ipvsConnScanErr(line int, err error) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("%w: line %d: %v", ErrIPVSConnLine, line, err)
	}
	return fmt.Errorf("reading the ipvs connection table: %w", err)
}

// parseIPVSConnLine decodes one entry, and reports whether it is TCP.
func parseIPVSConnLine(s string, layout ipvsConnLayout) (IPVSConn, bool, error) {
	f := strings.Fields(s)
	const fixed = 8 // Pro through State
	switch {
	case layout == ipvsConnLayoutSync && len(f) != fixed+2:
		return IPVSConn{}, false, fmt.Errorf("%d columns, want %d", len(f), fixed+2)
	case layout == ipvsConnLayoutConn && len(f) < fixed+1:
		return IPVSConn{}, false, fmt.Errorf("%d columns, want at least %d", len(f), fixed+1)
	}

	client, err := ipvsConnAddrPort(f[1], f[2])
	if err != nil {
		return IPVSConn{}, false, fmt.Errorf("client: %v", err)
	}
	virtual, err := ipvsConnAddrPort(f[3], f[4])
	if err != nil {
		return IPVSConn{}, false, fmt.Errorf("virtual: %v", err)
	}
	// Both come from the connection's own family (cp->af); only the real
	// server has a family of its own (cp->daf).
	if client.Addr().Is4() != virtual.Addr().Is4() {
		return IPVSConn{}, false, fmt.Errorf("client %v and virtual %v of different families", client, virtual)
	}
	dest, err := ipvsConnAddrPort(f[5], f[6])
	if err != nil {
		return IPVSConn{}, false, fmt.Errorf("dest: %v", err)
	}

	expires := f[fixed]
	if layout == ipvsConnLayoutSync {
		// ip_vs_origin_name knows no other.
		if o := f[fixed]; o != "LOCAL" && o != "SYNC" {
			return IPVSConn{}, false, fmt.Errorf("origin %q", o)
		}
		expires = f[fixed+1]
	}
	secs, err := ipvsConnExpires(expires)
	if err != nil {
		return IPVSConn{}, false, err
	}

	return IPVSConn{
		Client:     client,
		Virtual:    virtual,
		Dest:       dest,
		State:      f[7],
		ExpiresInS: secs,
		Template:   client.Port() == 0,
	}, f[0] == "TCP", nil
}

// ipvsConnExpires reads the Expires column. Kernels before
// jiffies_delta_to_msecs printed (expires - jiffies)/HZ as an unsigned
// long, so an entry whose timer was due but not yet run showed a wrapped
// negative, far beyond any timeout IPVS can set: it has no time left.
func ipvsConnExpires(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("expires %q is not a count of seconds", s)
	}
	if v > math.MaxUint32 {
		return 0, nil
	}
	return uint32(v), nil
}

// ipvsConnAddrPort decodes an address column (%08X or %pI6) and the %04X
// port column after it.
func ipvsConnAddrPort(addr, port string) (netip.AddrPort, error) {
	a, err := ipvsConnAddr(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, ok := ipvsConnHex(port, 4)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("port %q is not %%04X", port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// ipvsConnAddr decodes an address as the kernel prints it: IPv4 as %08X of
// the host-order value, IPv6 as %pI6, the full form. netip.ParseAddr is not
// used for IPv6 as it also takes compressed and dotted forms, which the
// kernel never prints here and which would then go unnoticed.
func ipvsConnAddr(s string) (netip.Addr, error) {
	switch len(s) {
	case 8:
		v, ok := ipvsConnHex(s, 8)
		if !ok {
			return netip.Addr{}, fmt.Errorf("address %q is not %%08X", s)
		}
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
	case 39:
		var b [16]byte
		for i := range 8 {
			v, ok := ipvsConnHex(s[i*5:i*5+4], 4)
			if !ok || (i < 7 && s[i*5+4] != ':') {
				return netip.Addr{}, fmt.Errorf("address %q is not %%pI6", s)
			}
			b[2*i], b[2*i+1] = byte(v>>8), byte(v)
		}
		return netip.AddrFrom16(b), nil
	}
	return netip.Addr{}, fmt.Errorf("address %q is neither %%08X nor %%pI6", s)
}

// ipvsConnHex decodes a column of exactly n hex digits: the kernel
// zero-pads them, so another width means another format.
func ipvsConnHex(s string, n int) (uint32, bool) {
	if len(s) != n {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err == nil
}
