package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// Schema names the layout of a Snapshot in JSON.
const Schema = "tcpvet/v1"

// Snapshot is everything tcpvet read from one namespace at one moment. Its
// JSON (MarshalJSON) is the layout tcpvet/v1 names.
type Snapshot struct {
	Schema  string
	TakenAt time.Time
	// Target is the inspected namespace; Host the node's, read once and
	// shared where a sweep took the snapshot.
	Target  Namespace
	Host    Namespace
	Sockets []Socket
	// Processes counts the processes found in the target namespace.
	Processes int
	// Notes say what could not be read, and so what is marked unknown:
	// each a Note, its Code one of notes.go's.
	Notes []Note
	// Watch is set on the last snapshot of a watch (tcpvet --watch), whose
	// sockets then carry what was Observed of them.
	Watch *Watch
	// Closed lists the connections that ended while they were watched, and
	// how; nil (absent from JSON) when deaths were not watched (a single
	// snapshot, or the kernel refused: Notes say so), empty when none died.
	Closed []Closed
}

// Socket is one TCP socket of the target namespace.
type Socket struct {
	// ID is unique within a snapshot and stable across snapshots: the
	// kernel's socket cookie.
	ID      Cookie         `json:"id"`
	Inode   uint32         `json:"inode"`
	UID     uint32         `json:"uid"`
	Family  string         `json:"family"`
	State   State          `json:"state"`
	Local   netip.AddrPort `json:"local"`
	Remote  netip.AddrPort `json:"remote"`
	RecvQ   uint32         `json:"recv_q"`
	SendQ   uint32         `json:"send_q"`
	Timer   Timer          `json:"timer"`
	Cong    string         `json:"congestion,omitempty"`
	ClassID uint32         `json:"class_id,omitempty"`
	// TCPInfo is nil for sockets that have none (TIME_WAIT, SYN_RECV).
	TCPInfo   *TCPInfo  `json:"tcp_info"`
	Keepalive Keepalive `json:"keepalive"`
	// UserTimeoutMS is TCP_USER_TIMEOUT, 0 when unset, nil when unknown.
	UserTimeoutMS *int `json:"user_timeout_ms"`
	// SynRetries is TCP_SYNCNT: how many times the kernel retransmits this
	// socket's SYN (on top of tcp_syn_linear_timeouts) before a connect
	// fails; the namespace's tcp_syn_retries unless the socket set its own.
	// Nil when unknown.
	SynRetries *int      `json:"syn_retries,omitempty"`
	Processes  []Process `json:"processes"`
	// RedirectedTo is where a rule of the target's own netfilter sent the
	// connection instead of Remote (a sidecar proxy's REDIRECT, a DNAT),
	// as its conntrack says; nil when nothing rewrote it or it is unknown.
	RedirectedTo *netip.AddrPort `json:"redirected_to,omitempty"`
	// IPVS is the entry of IPVS's connection table that carries the
	// connection, in the target's or the host's IPVS; nil when none does.
	IPVS *IPVSConn `json:"ipvs,omitempty"`
	// Conntrack lists the entries that track the connection, one per
	// namespace whose table holds one.
	Conntrack []Flow `json:"conntrack,omitempty"`
	// Peer is the ID of the socket at the other end when that is in the
	// same namespace too: over loopback, the namespace's own address, or a
	// transparent proxy (TPROXY) that answers with the original address.
	// Zero when there is none.
	Peer Cookie `json:"peer,omitempty"`
	// Observed is what a watch saw the connection do over time; nil in a
	// single snapshot.
	Observed *Observed `json:"observed,omitempty"`
}

// Idle is how long the connection has carried no data in either
// direction: the quiet that NATs, load balancers and IPVS time flows out
// by. It is 0 without tcp_info.
func (s *Socket) Idle() time.Duration {
	if s.TCPInfo == nil {
		return 0
	}
	return min(s.TCPInfo.SinceDataRecv(), s.TCPInfo.SinceDataSent())
}

// UserTimeout is TCP_USER_TIMEOUT, 0 when unset; ok is false when it is
// unknown.
func (s *Socket) UserTimeout() (d time.Duration, ok bool) {
	if s.UserTimeoutMS == nil {
		return 0, false
	}
	return time.Duration(*s.UserTimeoutMS) * time.Millisecond, true
}

// Timer is the one timer the kernel reports for a socket.
type Timer struct {
	Kind      TimerKind `json:"kind"`
	ExpiresMS uint32    `json:"expires_ms"`
	// Retrans counts retransmissions (timer "on") or unanswered probes
	// (keepalive and persist).
	Retrans uint8 `json:"retrans"`
}

// Expires is how long until the timer fires.
func (t Timer) Expires() time.Duration { return millis(t.ExpiresMS) }

// Options selects what Take reads.
type Options struct {
	// Target is the namespace whose sockets are read.
	Target *netns.NS
	// Host is the node's namespace; nil or the same as Target means not visible.
	Host *netns.NS
	// HostView, when set, is the host as read once for many snapshots
	// (ReadHost), in place of Host.
	HostView *HostView
	// PIDs, when not nil, are the processes in Target as a sweep listed
	// them (netns.List): Take reads their descriptors instead of scanning
	// every process of /proc for the namespace's own.
	PIDs []int
	// Unplaced counts the processes a sweep could not place in any
	// namespace (their namespace unreadable): any may hold a socket of
	// Target, so one without an owner found is not known to have none.
	Unplaced int
	// DupSockets reads socket options even where duplicating a socket may
	// reset its cgroup-v1 classification.
	DupSockets bool
	// ProcRoot is where proc is mounted; "" means /proc.
	ProcRoot string
	// Facts are the machine's, shared by the snapshots of a sweep; nil
	// means Take reads them.
	Facts *Facts
}

// Take reads one snapshot of opts.Target.
func Take(ctx context.Context, opts Options) (*Snapshot, error) {
	proc := opts.ProcRoot
	if proc == "" {
		proc = "/proc"
	}
	t := opts.Target
	facts := opts.Facts
	if facts == nil {
		facts = ReadFacts()
	}
	snap := &Snapshot{
		Schema:  Schema,
		TakenAt: time.Now().UTC(),
		Target:  Namespace{Role: Target, NetnsInode: t.Inode, Path: t.Path, PID: t.PID},
		Host:    Namespace{Role: Host},
	}

	// The dump and the /proc scan are independent and both mostly wait on
	// the kernel: run them side by side. Each is short, which also keeps
	// the window in which sockets and owners can change small.
	scanc := make(chan procScan, 1)
	go func() {
		if opts.PIDs != nil {
			scanc <- scanListed(proc, t, opts.PIDs)
			return
		}
		scanc <- scanProcesses(proc, t)
	}()
	raws, err := dumpSockets(ctx, t)
	// The sockets as the snapshot keeps them, at once: the dump's own
	// records, used no more, are garbage from here, not held through
	// the options.
	socks := socketsOf(raws)
	scan := <-scanc
	if err != nil {
		return nil, err
	}
	snap.Processes = len(scan.pids)
	if t.PID != 0 && !slices.Contains(scan.pids, t.PID) && !slices.Contains(scan.hidden, t.PID) {
		// The namespace outlives the process (a pod's pause container, or
		// tcpvet's own handle keeps it): say so rather than show an empty
		// namespace as if the process were there.
		snap.Notes = append(snap.Notes, Target.notef(NotePIDGone, "pid %d has exited or left this namespace; tcpvet still shows the namespace it was in", t.PID))
	}
	if len(scan.hidden) > 0 {
		snap.Notes = append(snap.Notes, Target.notef(NoteOwnersHidden, "%s could not be inspected (permission denied or gone), so sockets may show no owner (%s)", describeProcesses(proc, scan.hidden), facts.DeniedHint))
	}

	// The sockets' options are read while the rest is: they need only
	// the dump and the owners.
	optReads := readAllOptions(newOptionReader(opts.DupSockets, facts), socks, scan.owners)

	// A conntrack table too large to dump is asked for the entries of
	// these alone: the rules judge no other connection by its entry, and
	// a busy node's TIME_WAIT sockets would crowd them out of the bound.
	established := make([]flowKey, 0, countEstablished(socks))
	for i := range socks {
		if s := &socks[i]; s.State == Established {
			established = append(established, keyOf(s.Local, s.Remote))
		}
	}

	hv, h := opts.HostView, opts.Host
	var ipvsConns []*IPVSConns
	if hv != nil && hv.ns.Same(t) {
		ipvsConns = append(ipvsConns, hv.readAsTarget(snap, established))
	} else {
		target := snap.visit(t, &snap.Target, proc)
		ipvsConns = append(ipvsConns, target.ipvsConns)
		snap.readNetfilter(t, &snap.Target, target, established)
		snap.readIPVS(t, &snap.Target)
	}

	// The host is read here, or was read once for a whole sweep (HostView).
	if hv != nil {
		h = hv.ns
	}
	if h != nil {
		snap.Host = Namespace{Role: Host, NetnsInode: h.Inode, Path: h.Path, Visible: !h.Same(t)}
	}
	if snap.Host.Visible {
		if hv == nil {
			hv = readHost(h, proc, established, false)
			snap.Notes = append(snap.Notes, hv.Notes...)
		}
		snap.Host = hv.host
		ipvsConns = append(ipvsConns, hv.ipvsConns)
		if hv.lookup {
			hv.lookupConntrack(snap, established, &snap.Host)
		}
	}
	targetSysctls := snap.Target.Sysctls

	// The option readers read each socket's inode, state and timer; this
	// fills in other fields of the same sockets.
	for i := range socks {
		s := &socks[i]
		if to, ok := snap.Target.Conntrack.RedirectOf(s.Local, s.Remote); ok {
			// A copy, so that only a redirected socket costs an allocation.
			to := to
			s.RedirectedTo = &to
		}
		for _, t := range ipvsConns {
			if t == nil || s.IPVS != nil {
				continue
			}
			if e, ok := t.Lookup(s.Local, s.Remote); ok {
				s.IPVS = &e
			}
		}
		for _, ct := range []struct {
			table   *Conntrack
			sysctls Sysctls
		}{{snap.Target.Conntrack, snap.Target.Sysctls}, {snap.Host.Conntrack, snap.Host.Sysctls}} {
			if f := ct.table.Lookup(s.Local, s.Remote); f != nil {
				e := *f
				e.TimeoutS = e.timeoutIn(ct.sysctls, s.TCPInfo)
				s.Conntrack = append(s.Conntrack, e)
			}
		}
		s.Processes = []Process{}
		if owners := scan.owners[s.Inode]; s.Inode != 0 && owners != nil {
			s.Processes = owners
		}
	}
	snap.Sockets = socks
	// Peers need no options: paired while the last are read.
	pairPeers(snap.Sockets)
	optReads.attachAll(snap.Sockets, targetSysctls, len(scan.hidden)+opts.Unplaced, facts.DeniedHint)
	return snap, nil
}

// socketsOf is the dump's sockets as a snapshot keeps them, in order.
func socketsOf(raws []rawSocket) []Socket {
	socks := make([]Socket, len(raws))
	for i := range raws {
		r := &raws[i]
		socks[i] = Socket{
			ID:      Cookie(r.Cookie),
			Inode:   r.Inode,
			UID:     r.UID,
			Family:  familyName(r.Family),
			State:   r.State,
			Local:   r.Local,
			Remote:  r.Remote,
			RecvQ:   r.RecvQ,
			SendQ:   r.SendQ,
			Timer:   Timer{Kind: r.Timer, ExpiresMS: r.Expires, Retrans: r.Retrans},
			Cong:    r.Cong,
			ClassID: r.ClassID,
			TCPInfo: r.Info,
		}
	}
	return socks
}

// countEstablished counts the established sockets of socks, so that their
// keys take one allocation of the right size.
func countEstablished(socks []Socket) int {
	n := 0
	for i := range socks {
		if socks[i].State == Established {
			n++
		}
	}
	return n
}

// pairPeers links each connection whose other end is a socket of the same
// namespace to it: a 4-tuple names one connection, seen from either end.
func pairPeers(socks []Socket) {
	connected := func(s *Socket) bool { return s.State != Listen && s.Remote.Port() != 0 }
	byEnds := make(map[flowKey]Cookie, len(socks))
	for i := range socks {
		if s := &socks[i]; connected(s) {
			byEnds[keyOf(s.Local, s.Remote)] = s.ID
		}
	}
	for i := range socks {
		if s := &socks[i]; connected(s) {
			if p := byEnds[keyOf(s.Remote, s.Local)]; p != s.ID {
				s.Peer = p
			}
		}
	}
}

// optionWorkers bounds how many threads read socket options at once: each
// socket costs eight or nine system calls and no waiting, so more than the
// CPUs would only queue.
var optionWorkers = runtime.GOMAXPROCS(0)

// optionReads are the options of a dump's sockets, read in the background
// while the rest of the snapshot is taken.
type optionReads struct {
	wg sync.WaitGroup
	// opts and errs are by the dump's index: every socket's options in one
	// allocation rather than one each.
	opts []SockOpts
	errs []error
}

// readAllOptions starts reading the options of socks, held by owners,
// split among optionWorkers. Sockets without a file or an owner are left
// for attachOptions to explain. The readers use only each socket's inode,
// state and timer, which nothing writes meanwhile.
func readAllOptions(or *optionReader, socks []Socket, owners map[uint32][]Process) *optionReads {
	rs := &optionReads{opts: make([]SockOpts, len(socks)), errs: make([]error, len(socks))}
	w := max(1, min(optionWorkers, len(socks)/1024))
	for i := range w {
		lo, hi := len(socks)*i/w, len(socks)*(i+1)/w
		rs.wg.Go(func() {
			ow := or.worker()
			defer ow.close()
			for j := lo; j < hi; j++ {
				s := &socks[j]
				if s.Inode == 0 {
					continue
				}
				h := readHint{keepalive: s.Timer.Kind == TimerKeepalive && (s.State == Established || s.State == CloseWait)}
				rs.errs[j] = ow.read(s.Inode, owners[s.Inode], h, &rs.opts[j])
			}
		})
	}
	return rs
}

// attachAll waits for the reads and fills in the options of socks, built
// from the same dump in the same order.
func (rs *optionReads) attachAll(socks []Socket, ns Sysctls, hidden int, deniedHint string) {
	rs.wg.Wait()
	for i := range socks {
		socks[i].attachOptions(&rs.opts[i], rs.errs[i], ns, hidden, deniedHint)
	}
}

// attachOptions fills Keepalive, UserTimeoutMS and SynRetries from o, the
// socket's options as its owner's copy gave them, or err, why they could
// not be read. deniedHint is the machine's Facts.DeniedHint.
func (s *Socket) attachOptions(o *SockOpts, err error, ns Sysctls, hidden int, deniedHint string) {
	if s.Inode == 0 {
		// TIME_WAIT and request sockets have no file and no options.
		s.Keepalive = Keepalive{Source: "unknown", Reason: "no file descriptor: the socket belongs to the kernel alone in " + s.State.String()}
		return
	}
	if len(s.Processes) == 0 && hidden > 0 {
		s.Keepalive = s.keepaliveFromTimer(fmt.Sprintf("no process tcpvet may inspect holds it (%d could not be read: %s)", hidden, deniedHint))
		return
	}
	if err != nil {
		s.Keepalive = s.keepaliveFromTimer(err.Error())
		return
	}
	src := "namespace"
	if int64(o.IdleS) != ns[KeepaliveTime] || int64(o.IntervalS) != ns[KeepaliveIntvl] || int64(o.Probes) != ns[KeepaliveProbes] {
		src = "socket"
	}
	s.Keepalive = Keepalive{Enabled: &o.Keepalive, IdleS: &o.IdleS, IntervalS: &o.IntervalS, Probes: &o.Probes, Source: src}
	if !o.noUserTimeout {
		s.UserTimeoutMS = &o.UserTimeoutMS
	}
	if !o.noSynRetries {
		s.SynRetries = &o.SynRetries
	}
}

// keepaliveFromTimer is s's keepalive where its options could not be read,
// for reason: unknown, but for SO_KEEPALIVE where the kernel's timer tells
// it. Of a socket an application holds, established or closed by its
// peer, sk_timer is armed by SO_KEEPALIVE alone, and only a pending
// retransmission or window probe hides it: the keepalive timer means on,
// no timer at all means off. The timings stay unknown.
func (s *Socket) keepaliveFromTimer(reason string) Keepalive {
	k := Keepalive{Source: "unknown", Reason: reason}
	if s.Inode == 0 || s.State != Established && s.State != CloseWait {
		return k
	}
	var on bool
	switch s.Timer.Kind {
	case TimerKeepalive:
		on = true
	case TimerOff:
	default:
		return k
	}
	k.Enabled = &on
	k.Reason += fmt.Sprintf(" (the kernel's timer shows SO_KEEPALIVE %s; its timings are unknown)", map[bool]string{true: "on", false: "off"}[on])
	return k
}

func familyName(f uint8) string {
	if f == unix.AF_INET6 {
		return "inet6"
	}
	return "inet"
}

// netlinkConfig opens a netlink socket inside ns, so that no thread of
// ours changes namespace to talk to the kernel there.
func netlinkConfig(ns *netns.NS) *netlink.Config {
	if ns.Own() {
		return &netlink.Config{}
	}
	return &netlink.Config{NetNS: ns.FD()}
}

// inside is what tcpvet reads from within a namespace, in one visit, beside
// its addresses and sysctls.
type inside struct {
	legacy []string
	// ipvsConns is IPVS's connection table where IPVS is loaded.
	ipvsConns *IPVSConns
	ipvsErr   error
}

// visit reads into's addresses and sysctls, and ns's iptables-legacy tables
// and IPVS connections, in one trip into ns, noting what it could not read.
func (snap *Snapshot) visit(ns *netns.NS, into *Namespace, proc string) inside {
	var in inside
	var addrErr error
	if err := ns.Do(func() (err error) {
		into.NetnsCookie = netnsCookie()
		into.Addresses, addrErr = interfaceAddrs()
		in.legacy = legacyTables(proc + "/thread-self/net")
		in.ipvsConns, in.ipvsErr = readIPVSConns(proc + "/thread-self/net/ip_vs_conn")
		into.Sysctls, err = readSysctls(proc + "/sys")
		return err
	}); err != nil {
		snap.Notes = append(snap.Notes, into.Role.notef(NoteSysctlsUnreadable, "%s sysctls unreadable: %v", into.Role, err))
	}
	if in.ipvsErr != nil {
		snap.Notes = append(snap.Notes, into.Role.notef(NoteIPVSConnectionsUnread, "%s IPVS connection table unread, so tcpvet cannot see how long IPVS keeps each connection: %v", into.Role, in.ipvsErr))
	}
	if addrErr != nil {
		snap.Notes = append(snap.Notes, into.Role.notef(NoteAddressesUnreadable, "%s addresses unreadable: %v", into.Role, addrErr))
	}
	return in
}

// netnsCookie is the cookie of the namespace the calling thread is in,
// read off a socket made there and closed at once; 0 where the kernel has
// none (before 5.14).
func netnsCookie() uint64 {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0
	}
	return c
}

// readNetfilter reads into's conntrack from ns (in a table too large to
// dump, the entries of conns), and where it tracks flows, its firewall,
// noting what could not be read.
func (snap *Snapshot) readNetfilter(ns *netns.NS, into *Namespace, in inside, conns []flowKey) {
	into.Conntrack, into.Firewall = nil, nil
	ct := readConntrack(ns, into.Role, into.Sysctls, conns)
	if ct == nil {
		return
	}
	if !ct.Read {
		snap.Notes = append(snap.Notes, conntrackNote(into.Role, ct))
	}
	into.Conntrack, into.Firewall = ct, snap.readFirewallNoted(ns, into.Role, in.legacy)
}

// conntrackNote says why the conntrack of the namespace of role is unread.
func conntrackNote(role Role, ct *Conntrack) Note {
	return role.notef(NoteConntrackUnread, "%s conntrack %s, so tcpvet cannot see which flows it translates or how long each has left", role, ct.Reason)
}

// readFirewallNoted reads the firewall of ns, the namespace of role,
// noting when it could not.
func (snap *Snapshot) readFirewallNoted(ns *netns.NS, role Role, legacy []string) *Firewall {
	fw := readFirewall(ns, legacy)
	if !fw.Read {
		snap.Notes = append(snap.Notes, role.notef(NoteFirewallUnread, "%s %s, so tcpvet cannot tell whether it drops the packets of a flow conntrack forgot", role, fw.Reason))
	}
	return fw
}

// interfaceAddrs lists the addresses of the calling thread's namespace.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// readIPVS reads into's IPVS from ns, noting what it could not read. It is
// nil only when nothing at all could be read.
func (snap *Snapshot) readIPVS(ns *netns.NS, into *Namespace) {
	v, err := readIPVS(ns)
	into.IPVS = &v
	if err != nil {
		snap.Notes = append(snap.Notes, ipvsNote(into.Role, err))
		if !v.Present {
			into.IPVS = nil
		}
	}
}

// ipvsNote says why the IPVS of the namespace of role is unknown.
func ipvsNote(role Role, err error) Note {
	if errors.Is(err, unix.EPERM) {
		// Usual in a pod on a node with IPVS loaded, where it matters
		// little: a pod's own namespace balances nothing.
		return role.notef(NoteIPVSUnreadable, "%s IPVS unreadable without CAP_NET_ADMIN: if IPVS balances these connections (kube-proxy's IPVS mode, in a node's namespace), declare it with --middlebox ipvs", role)
	}
	return role.notef(NoteIPVSUnreadable, "%s IPVS unreadable: %v", role, err)
}
