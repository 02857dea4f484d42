package diag

import (
	"github.com/tcpvet/tcpvet/netns"
)

// HostView is the node's namespace as read once for many snapshots: a sweep
// of every namespace reads the node's sysctls, addresses, conntrack,
// firewall and IPVS once, not once per pod, and hands the view to each
// namespace's Take (Options.HostView). Take only reads it, so one view may
// serve snapshots taken side by side.
type HostView struct {
	ns   *netns.NS
	host Namespace
	// ipvsConns is the host's IPVS connection table, where IPVS is loaded.
	ipvsConns *IPVSConns
	// lookup is true when the host's conntrack table is too large to dump:
	// each Take then asks it for the entries of its own connections.
	lookup bool
	// Notes say what could not be read of the host, once for every
	// snapshot that uses the view.
	Notes []Note
}

// Host is what was read of the host namespace, its sysctls too, as a
// snapshot's Host shows it.
func (v *HostView) Host() Namespace { return v.host }

// ReadHost reads the host namespace h once, for Options.HostView. procRoot
// is where proc is mounted; "" means /proc. h must stay open while the view
// is in use: a host conntrack table too large to dump is asked for each
// snapshot's own entries.
func ReadHost(h *netns.NS, procRoot string) *HostView {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return readHost(h, procRoot, nil, true)
}

// readHost reads h: its addresses, sysctls, conntrack (for the flows of
// established where the table is too large to dump), firewall and IPVS,
// noting what it could not read in the order a snapshot always has. shared
// defers a large table's lookups to each snapshot.
func readHost(h *netns.NS, proc string, established []flowKey, shared bool) *HostView {
	var notes Snapshot // collects the notes of the readers below
	v := &HostView{ns: h, host: Namespace{Role: Host, NetnsInode: h.Inode, Path: h.Path, Visible: true}}
	in := notes.visit(h, &v.host, proc)
	v.ipvsConns = in.ipvsConns
	if n, _ := v.host.Sysctls.Get(ConntrackCount); shared && n > conntrackDumpLimit {
		// The rules need the firewall only beside a conntrack table; this
		// one is read, per snapshot, in Take.
		v.lookup = true
		v.host.Firewall = notes.readFirewallNoted(h, Host, in.legacy)
	} else {
		notes.readNetfilter(h, &v.host, in, established)
	}
	notes.readIPVS(h, &v.host)
	v.Notes = notes.Notes
	return v
}

// readAsTarget makes what the view read of the host snap's target, when the
// target is the host itself (a sweep's host namespace): a sweep then reads
// the host once, not twice, its conntrack and IPVS tables the largest of a
// node. Its conntrack names its flows the target's, its notes say the
// target's, and a table too large to dump is asked for the entries of
// established, as any target's is. It returns the host's IPVS connections.
func (v *HostView) readAsTarget(snap *Snapshot, established []flowKey) *IPVSConns {
	n := v.host
	n.Role, n.NetnsInode, n.Path, n.PID, n.Visible = Target, snap.Target.NetnsInode, snap.Target.Path, snap.Target.PID, false
	for _, note := range v.Notes {
		snap.Notes = append(snap.Notes, note.as(Target))
	}
	switch {
	case v.lookup:
		v.lookupConntrack(snap, established, &n)
	case n.Conntrack != nil:
		// The same entries, shared and never written, under the target's name.
		ct := *n.Conntrack
		ct.role = Target
		n.Conntrack = &ct
	}
	snap.Target = n
	return v.ipvsConns
}

// lookupConntrack asks the host's table, too large to dump, for the entries
// of established, as into's (the snapshot's host, or its target when that
// is the host) under into's role, noting in snap what it could not read.
// A table that tracks nothing leaves into no firewall to judge by either.
func (v *HostView) lookupConntrack(snap *Snapshot, established []flowKey, into *Namespace) {
	into.Conntrack = readConntrack(v.ns, into.Role, v.host.Sysctls, established)
	switch ct := into.Conntrack; {
	case ct == nil:
		into.Firewall = nil
	case !ct.Read:
		snap.Notes = append(snap.Notes, conntrackNote(into.Role, ct))
	}
}
