// Package node reads every network namespace of a machine: it finds them
// (held by processes, bound under /run/netns, or pod sandboxes the container
// runtime knows), names each by its pod, and takes one snapshot of each with
// the host read once. The exporter and the node view read what a sweep found.
package node

import (
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/rules"
)

// Pod names the pod a network namespace belongs to.
type Pod struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	UID       string `json:"uid"`
	Container string `json:"container,omitempty"`
	// Source says how the pod was named: "cri" (the container runtime
	// answered) or "cgroup" (its UID and container ID from a process's
	// cgroup path, with no namespace or name).
	Source string `json:"source"`
}

// Namespace is one network namespace as one sweep saw it.
type Namespace struct {
	// Inode is the namespace's inode: what makes it the same namespace
	// however many processes and bind mounts hold it.
	Inode uint64
	// Path is how the sweep opened it: /run/netns/NAME or /proc/PID/ns/net.
	Path string
	// Pod is nil when the namespace belongs to no pod that tcpvet could name.
	Pod *Pod
	// IsHost is true for the node's own namespace, the one the host's
	// sysctls, conntrack and IPVS were read from.
	IsHost bool
	// Snapshot is nil when the namespace could not be read (it vanished
	// mid-sweep): Notes then say why.
	Snapshot *diag.Snapshot
	Report   rules.Report
	Notes    []diag.Note
}

// Sweep is one pass over every network namespace of the machine.
type Sweep struct {
	TakenAt time.Time
	// Duration is how long the whole sweep took.
	Duration time.Duration
	// Namespaces are ordered most urgent first: the worst finding, then
	// the soonest failure.
	Namespaces []Namespace
	// Errors counts the namespaces that were found but could not be read.
	Errors int
	// Notes say what the sweep could not do for every namespace (no CRI
	// socket, so pods are named from cgroups; the host not visible), and
	// which namespaces vanished before they could be read.
	Notes []diag.Note
	// Host is the node's namespace, read once for the whole sweep, its
	// sysctls too; its Visible is false when tcpvet could not see it.
	Host diag.Namespace
}
