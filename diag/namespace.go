package diag

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Role says which of a snapshot's two namespaces one is: the target, whose
// sockets are read, or the host, the node's own. Notes, conntrack entries
// (Flow.Netns) and the rules' evidence name a namespace by its role.
type Role string

const (
	// Target is the inspected namespace: a pod's, a process's, a bound one.
	Target Role = "target"
	// Host is the node's namespace, holding its sysctls, conntrack and IPVS.
	Host Role = "host"
)

// String is the role's name: "target" or "host".
func (r Role) String() string { return string(r) }

// Namespace is one network namespace as a snapshot read it: the target
// or the host, the same facts of either.
type Namespace struct {
	// Role is which of the snapshot's namespaces this is. JSON writes it
	// by place (the document's "target" and "host"), never as a key.
	Role       Role   `json:"-"`
	NetnsInode uint64 `json:"netns_inode"`
	// NetnsCookie is the namespace's cookie (SO_NETNS_COOKIE, Linux
	// 5.14+), 0 when unknown. Unlike its inode number, which the kernel
	// gives to the next namespace made once it is deleted, a cookie is
	// never used again: it tells a namespace from a later one. Not in JSON.
	NetnsCookie uint64 `json:"-"`
	Path        string `json:"path"`
	// PID is the process the target was named by (--pid); 0 for the host
	// and for a target named by path.
	PID int `json:"pid,omitempty"`
	// Visible is the host's alone: false when the host namespace is the
	// target itself (inside a pod, PID 1 is the pod's own) and so tells
	// nothing about the node.
	Visible bool `json:"visible"`
	// Addresses are the namespace's own: a connection to one of the
	// target's never leaves it; a translated flow that reaches one of the
	// host's untranslated meets the host's own stack.
	Addresses []netip.Addr `json:"addresses"`
	// Sysctls are the namespace's; nil when unread, and for a host that is
	// not visible. JSON writes them apart, under the document's "sysctls".
	Sysctls Sysctls `json:"-"`
	// IPVS is the namespace's IPVS: the host's is kube-proxy's; on a node
	// inspected from inside its own namespace, so is the target's. Nil
	// when nothing could be read, or the host is not visible.
	IPVS *IPVS `json:"ipvs,omitempty"`
	// Conntrack is the namespace's connection tracking; nil when it
	// tracks nothing, and so is on no connection's path.
	Conntrack *Conntrack `json:"conntrack,omitempty"`
	// Firewall is read where Conntrack is on the path: what the
	// namespace's rules do with a packet of a flow conntrack forgot.
	Firewall *Firewall `json:"firewall,omitempty"`
}

// The layouts of a namespace in JSON, as tcpvet/v1 has always written them:
// a target's and a host's keys differ in order and in which are left out.
type (
	targetJSON struct {
		NetnsInode uint64       `json:"netns_inode"`
		Path       string       `json:"path"`
		PID        int          `json:"pid,omitempty"`
		Addresses  []netip.Addr `json:"addresses"`
		IPVS       *IPVS        `json:"ipvs,omitempty"`
		Conntrack  *Conntrack   `json:"conntrack,omitempty"`
		Firewall   *Firewall    `json:"firewall,omitempty"`
	}
	hostJSON struct {
		Visible    bool         `json:"visible"`
		NetnsInode uint64       `json:"netns_inode"`
		Path       string       `json:"path"`
		IPVS       *IPVS        `json:"ipvs,omitempty"`
		Addresses  []netip.Addr `json:"addresses,omitempty"`
		Conntrack  *Conntrack   `json:"conntrack,omitempty"`
		Firewall   *Firewall    `json:"firewall,omitempty"`
	}
)

// MarshalJSON writes n in its role's layout (a host's, or else a
// target's), without its sysctls.
func (n Namespace) MarshalJSON() ([]byte, error) {
	if n.Role == Host {
		return json.Marshal(hostJSON{Visible: n.Visible, NetnsInode: n.NetnsInode, Path: n.Path,
			IPVS: n.IPVS, Addresses: n.Addresses, Conntrack: n.Conntrack, Firewall: n.Firewall})
	}
	return json.Marshal(targetJSON{NetnsInode: n.NetnsInode, Path: n.Path, PID: n.PID,
		Addresses: n.Addresses, IPVS: n.IPVS, Conntrack: n.Conntrack, Firewall: n.Firewall})
}

// UnmarshalJSON reads a namespace in either layout: one that says whether
// it is visible is a host's.
func (n *Namespace) UnmarshalJSON(b []byte) error {
	type plain Namespace // its fields, without these methods
	var v struct {
		plain
		Visible *bool `json:"visible"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*n = Namespace(v.plain)
	n.Role = Target
	if v.Visible != nil {
		n.Role, n.Visible = Host, *v.Visible
	}
	return nil
}

// snapshotJSON is a Snapshot as JSON holds it: the namespaces' sysctls
// apart from them, under "sysctls". Its fields are Snapshot's, in order;
// TestSnapshotJSONMirrorsSnapshot holds the two together.
type snapshotJSON struct {
	Schema  string    `json:"schema"`
	TakenAt time.Time `json:"taken_at"`
	Target  Namespace `json:"target"`
	Host    Namespace `json:"host"`
	Sysctls struct {
		Target Sysctls `json:"target"`
		// Host is null when the host namespace is not visible.
		Host Sysctls `json:"host"`
	} `json:"sysctls"`
	Sockets   []Socket `json:"sockets"`
	Processes int      `json:"processes"`
	Notes     []Note   `json:"notes,omitempty"`
	Watch     *Watch   `json:"watch,omitempty"`
	Closed    []Closed `json:"closed,omitzero"`
}

// MarshalJSON writes the snapshot as tcpvet/v1 lays it out: the target's
// and the host's sysctls under "sysctls", after the namespaces.
func (s Snapshot) MarshalJSON() ([]byte, error) {
	j := snapshotJSON{Schema: s.Schema, TakenAt: s.TakenAt, Target: s.Target, Host: s.Host,
		Sockets: s.Sockets, Processes: s.Processes, Notes: s.Notes, Watch: s.Watch, Closed: s.Closed}
	// Each in its place's layout, whatever Role a hand-built one says.
	j.Target.Role, j.Host.Role = Target, Host
	j.Sysctls.Target, j.Sysctls.Host = s.Target.Sysctls, s.Host.Sysctls
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Snapshot) UnmarshalJSON(b []byte) error {
	var j snapshotJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Snapshot{Schema: j.Schema, TakenAt: j.TakenAt, Target: j.Target, Host: j.Host,
		Sockets: j.Sockets, Processes: j.Processes, Notes: j.Notes, Watch: j.Watch, Closed: j.Closed}
	s.Target.Role, s.Host.Role = Target, Host
	s.Target.Sysctls, s.Host.Sysctls = j.Sysctls.Target, j.Sysctls.Host
	return nil
}
