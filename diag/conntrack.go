package diag

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// conntrackDumpLimit bounds the conntrack tables tcpvet dumps on every
// refresh. A pod's table holds a few flows; a node's can hold a million,
// too many to read every second (a dump of 250,000 entries takes 2.3 s).
// In a larger table tcpvet asks for the entries of the namespace's
// connections instead (lookupFlows), which scales with them.
const conntrackDumpLimit = 20000

// Conntrack is what one namespace's connection tracking knows of the
// flows through it, as far as tcpvet could read it.
type Conntrack struct {
	// Read is true when the table was read; Reason says why it was not.
	Read   bool   `json:"read"`
	Reason string `json:"reason,omitempty"`
	// LookedUp is true when the table, too large to dump, was asked for
	// the entries of the namespace's established connections alone. Then
	// Flows, Services and Masqueraded know only those entries.
	LookedUp bool `json:"looked_up,omitempty"`
	// Flows counts the TCP entries read.
	Flows int `json:"flows"`
	// Services maps each destination its rules translate (a service
	// address) to the backends the flows tracked now reach.
	Services map[netip.AddrPort][]netip.AddrPort `json:"services,omitempty"`
	// Masqueraded lists the source addresses whose flows it translates.
	Masqueraded []netip.Addr `json:"masqueraded,omitempty"`

	// entries finds a flow's entry by the 4-tuple either end sees: each
	// entry is there twice, once by its original direction, once by its
	// reply. Flows are built from them only for the sockets that ask.
	entries map[flowKey]*ctEntry
	// role is whose table this is, as its flows say (Flow.Netns).
	role Role
	// pairs holds how the flows between two addresses are translated, by
	// the addresses either end sees; ends, the addresses that end them.
	pairs map[[2]netip.Addr]pairFlags
	ends  map[netip.Addr]struct{}
}

// pairFlags say how the flows between two addresses are translated.
type pairFlags uint8

const (
	pairPlain pairFlags = 1 << iota
	pairDNAT
	pairSNAT
)

// Tracks reports whether the table holds any flow of a socket at address
// a: only then is a flow of that socket missing from it forgotten, rather
// than never tracked (another family, a NOTRACK rule, a datapath such as
// Cilium's that bypasses netfilter).
func (c *Conntrack) Tracks(a netip.Addr) bool {
	_, ok := c.ends[a.Unmap()]
	return ok
}

// Between says how the table translates the flows it tracks between a
// socket at local and a peer at remote, as that socket sees them: "dnat",
// "snat", "dnat+snat" or "" for untranslated; false when it tracks none,
// or the flows between them disagree.
func (c *Conntrack) Between(local, remote netip.Addr) (string, bool) {
	p := c.pairs[[2]netip.Addr{local.Unmap(), remote.Unmap()}]
	switch {
	case p == 0, p&pairPlain != 0 && p != pairPlain:
		return "", false
	case p&pairDNAT != 0 && p&pairSNAT != 0:
		return "dnat+snat", true
	case p&pairDNAT != 0:
		return "dnat", true
	case p&pairSNAT != 0:
		return "snat", true
	}
	return "", true
}

// Flow is a conntrack entry that tracks a socket's connection.
type Flow struct {
	// Netns is whose table holds the entry: the target's or the host's.
	Netns Role `json:"netns"`
	// ExpiresInS is how many seconds the entry has left unless a packet
	// of the flow refreshes it.
	ExpiresInS uint32 `json:"expires_in_s"`
	// TimeoutS is the timeout in force for the entry in its state: what a
	// packet resets ExpiresInS to. The kernel reports only the time left,
	// so it is derived (see timeoutIn); 0 when it cannot be.
	TimeoutS uint32 `json:"timeout_s,omitempty"`
	TCPState string `json:"tcp_state"`
	Original string `json:"original"`
	Reply    string `json:"reply"`
	// NAT is "dnat", "snat", "dnat+snat" or "" for an untranslated flow.
	NAT string `json:"nat,omitempty"`
	// Side is "original" for the socket that sent the flow's first packet
	// (the client) and "reply" for the one that answers it.
	Side string `json:"side"`

	// replyFrom is where the reply comes from: the flow's real destination.
	replyFrom netip.AddrPort
}

// DNAT reports whether the flow's destination is translated.
func (f *Flow) DNAT() bool { return strings.Contains(f.NAT, "dnat") }

// SNAT reports whether the flow's source is translated.
func (f *Flow) SNAT() bool { return strings.Contains(f.NAT, "snat") }

// flowKey is a TCP flow as one of its sockets sees it: from itself to its peer.
type flowKey struct{ from, to netip.AddrPort }

func keyOf(from, to netip.AddrPort) flowKey { return flowKey{unmap(from), unmap(to)} }

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ctEntry is one entry of a table as tcpvet keeps it: small, for tables
// of hundreds of thousands.
type ctEntry struct {
	orig, reply flowKey
	expires     uint32
	state       uint8
	dnat, snat  bool
}

// Lookup returns the entry tracking the connection from local to remote,
// from whichever end the socket is; nil when there is none or the table
// was not read.
func (c *Conntrack) Lookup(local, remote netip.AddrPort) *Flow {
	if c == nil {
		return nil
	}
	k := keyOf(local, remote)
	e, ok := c.entries[k]
	if !ok {
		return nil
	}
	f := &Flow{
		Netns: c.role, ExpiresInS: e.expires, Side: "original",
		Original:  e.orig.from.String() + "->" + e.orig.to.String(),
		Reply:     e.reply.from.String() + "->" + e.reply.to.String(),
		replyFrom: e.reply.from,
	}
	if k != e.orig {
		f.Side = "reply"
	}
	if int(e.state) < len(conntrackStates) {
		f.TCPState = conntrackStates[e.state]
	}
	switch {
	case e.dnat && e.snat:
		f.NAT = "dnat+snat"
	case e.dnat:
		f.NAT = "dnat"
	case e.snat:
		f.NAT = "snat"
	}
	return f
}

// stateTimeouts are the sysctls behind each TCP conntrack state's timeout.
var stateTimeouts = map[string]string{
	"ESTABLISHED": ConntrackEstablished,
	"CLOSE_WAIT":  ConntrackCloseWait,
	"FIN_WAIT":    ConntrackFinWait,
	"TIME_WAIT":   ConntrackTimeWait,
}

// timeoutIn derives the timeout in force for the entry: the time it has
// left plus the time since the flow's last segment, as the socket's
// tcp_info tells it, is what a packet set it to. A timeout policy (nftables
// "ct timeout") gives a flow less than the sysctl; more than the sysctl
// means a segment tcp_info does not count (a keepalive probe, a pure ACK)
// refreshed it since, and the sysctl is the truth.
func (f *Flow) timeoutIn(s Sysctls, info *TCPInfo) uint32 {
	v, ok := s.Get(stateTimeouts[f.TCPState])
	if !ok || v <= 0 {
		return 0
	}
	sysctl := uint32(v)
	if info == nil {
		return sysctl
	}
	sinceMS := min(info.LastDataSentMS, info.LastDataRecvMS, info.LastAckRecvMS)
	// The entry counts whole seconds down; a second of slack keeps a
	// flow on the sysctl's timeout from looking like a policy.
	derived := f.ExpiresInS + (sinceMS+999)/1000
	if derived+1 >= sysctl {
		return sysctl
	}
	return derived
}

// conntrackStates names the kernel's TCP conntrack states
// (enum tcp_conntrack).
var conntrackStates = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// readConntrack reads the conntrack of ns, the namespace of role, if it
// tracks anything: the kernel hooks conntrack into a namespace only once a
// rule there needs it, and then it is on the path of what passes through.
// A table too large to dump is asked for the entries of conns alone: the
// established connections of the namespace tcpvet looks at, as keyOf
// makes them. It returns nil when the namespace tracks nothing.
func readConntrack(ns *netns.NS, role Role, s Sysctls, conns []flowKey) *Conntrack {
	n, ok := s.Get(ConntrackCount)
	switch {
	case !ok || n == 0:
		return nil
	case n > conntrackDumpLimit && len(conns) > conntrackLookupLimit:
		return &Conntrack{Reason: fmt.Sprintf("holds %d flows, more than the %d tcpvet dumps on every refresh, and the target has %d established connections, more than the %d whose entries it asks for one by one", n, conntrackDumpLimit, len(conns), conntrackLookupLimit)}
	case !modulePresent("nf_conntrack_netlink"):
		// Opening it would make the kernel load nf_conntrack_netlink,
		// and a read-only tool loads nothing into a node.
		return &Conntrack{Reason: "nf_conntrack_netlink is not loaded (tcpvet does not load it)"}
	}
	if n > conntrackDumpLimit {
		flows, err := lookupFlows(ns, conns)
		if err != nil {
			return &Conntrack{Reason: conntrackErr(err)}
		}
		ct := newConntrack(flows, role)
		ct.LookedUp = true
		return ct
	}
	c, err := conntrack.Dial(netlinkConfig(ns))
	if err != nil {
		return &Conntrack{Reason: conntrackErr(err)}
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return &Conntrack{Reason: conntrackErr(err)}
	}
	return newConntrack(flows, role)
}

func conntrackErr(err error) string {
	if errors.Is(err, unix.EPERM) {
		return "unreadable without CAP_NET_ADMIN"
	}
	return fmt.Sprintf("unreadable: %v", err)
}

// ConntrackFromFlows is the table of a dump's flows in the namespace of
// role, as tcpvet reads it: for tests of what reads a table.
func ConntrackFromFlows(flows []conntrack.Flow, role Role) *Conntrack {
	return newConntrack(flows, role)
}

// newConntrack indexes the TCP entries of a dump by the 4-tuple each end
// of the connection sees: the client its original direction, the server
// the reply direction, through any translation.
func newConntrack(flows []conntrack.Flow, role Role) *Conntrack {
	ct := &Conntrack{Read: true, role: role, entries: make(map[flowKey]*ctEntry, 2*len(flows)),
		pairs: make(map[[2]netip.Addr]pairFlags), ends: make(map[netip.Addr]struct{})}
	all := make([]ctEntry, 0, len(flows))
	for _, f := range flows {
		o, r := f.TupleOrig, f.TupleReply
		if o.Proto.Protocol != unix.IPPROTO_TCP || !r.IP.SourceAddress.IsValid() {
			continue
		}
		ct.Flows++
		e := ctEntry{
			orig:    keyOf(netip.AddrPortFrom(o.IP.SourceAddress, o.Proto.SourcePort), netip.AddrPortFrom(o.IP.DestinationAddress, o.Proto.DestinationPort)),
			reply:   keyOf(netip.AddrPortFrom(r.IP.SourceAddress, r.Proto.SourcePort), netip.AddrPortFrom(r.IP.DestinationAddress, r.Proto.DestinationPort)),
			expires: f.Timeout, dnat: f.Status.DstNAT(), snat: f.Status.SrcNAT(),
		}
		if f.ProtoInfo.TCP != nil {
			e.state = f.ProtoInfo.TCP.State
		} else {
			e.state = uint8(len(conntrackStates)) // unknown
		}
		if e.dnat {
			if backends := ct.Services[e.orig.to]; !slices.Contains(backends, e.reply.from) {
				if ct.Services == nil {
					ct.Services = make(map[netip.AddrPort][]netip.AddrPort)
				}
				ct.Services[e.orig.to] = append(backends, e.reply.from)
			}
		}
		if e.snat && !slices.Contains(ct.Masqueraded, e.orig.from.Addr()) {
			ct.Masqueraded = append(ct.Masqueraded, e.orig.from.Addr())
		}
		flags := pairPlain
		if e.dnat || e.snat {
			flags = 0
		}
		if e.dnat {
			flags |= pairDNAT
		}
		if e.snat {
			flags |= pairSNAT
		}
		for _, k := range []flowKey{e.orig, e.reply} {
			ct.pairs[[2]netip.Addr{k.from.Addr(), k.to.Addr()}] |= flags
			ct.ends[k.from.Addr()] = struct{}{}
		}
		all = append(all, e)
		p := &all[len(all)-1]
		ct.entries[p.orig] = p
		ct.entries[p.reply] = p
	}
	return ct
}

// RedirectOf returns where a rule of this namespace sent the connection
// from local to remote instead (a sidecar's REDIRECT, a DNAT): the address
// its reply comes from, when the socket started the flow and it was
// translated.
func (c *Conntrack) RedirectOf(local, remote netip.AddrPort) (netip.AddrPort, bool) {
	f := c.Lookup(local, remote)
	if f == nil || f.Side != "original" || !f.DNAT() {
		return netip.AddrPort{}, false
	}
	return f.replyFrom, true
}
