package node

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/netns"
)

// found is one namespace discovery found, and its pod.
type found struct {
	*netns.Found
	pod *Pod
}

// discovery is every network namespace of the machine, each once.
type discovery struct {
	list  []found
	notes []diag.Note
	// unplaced counts the processes whose namespace could not be read:
	// any of them may hold a socket of any namespace found.
	unplaced int
}

// discover is discoverWith for one sweep: every sandbox's status asked.
func discover(ctx context.Context, proc, netnsDir, criSocket string) (*discovery, error) {
	return discoverWith(ctx, proc, netnsDir, criSocket, nil)
}

// discoverWith finds the network namespaces held by processes under proc,
// bound under netnsDir, and known to the container runtime at criSocket
// ("" tries CRISockets), naming those of pods the runtime knows; the
// sandboxes' statuses are kept in, and read from, sandboxes (nil: none).
func discoverWith(ctx context.Context, proc, netnsDir, criSocket string, sandboxes *SandboxCache) (*discovery, error) {
	l, err := netns.List(proc, netnsDir)
	if err != nil && l == nil {
		return nil, err
	}
	d := &discovery{}
	if err != nil {
		d.notes = append(d.notes, diag.Notef(diag.NoteNetnsDirUnreadable, "%v: namespaces bound only there are missing", err))
	}
	d.unplaced = l.Hidden
	if l.Hidden > 0 {
		what, they := fmt.Sprintf("%d processes", l.Hidden), "they hold"
		if l.Hidden == 1 {
			what, they = "1 process", "it holds"
		}
		d.notes = append(d.notes, diag.Notef(diag.NoteNamespacesHidden, "the network namespace of %s could not be read (permission denied): a namespace only %s is missing", what, they))
	}
	pods := d.askRuntime(ctx, l, criSocket, sandboxes)
	for _, f := range l.Found {
		d.list = append(d.list, found{Found: f, pod: pods[f]})
	}
	return d, nil
}

// askRuntime names the namespaces of the pods the container runtime
// knows, adding to l those no process holds and no /run/netns file binds.
func (d *discovery) askRuntime(ctx context.Context, l *netns.Listing, criSocket string, sandboxes *SandboxCache) map[*netns.Found]*Pod {
	socket := findCRISocket(criSocket)
	if socket == "" {
		d.notes = append(d.notes, diag.Notef(diag.NoteCRISocketMissing, "no container runtime socket (tried %s; --cri-socket names another): pods are named by UID and container ID from their processes' cgroups, without namespace or name, and pod namespaces no process holds are missed", strings.Join(CRISockets, ", ")))
		return nil
	}
	if _, err := os.Stat(socket); err != nil {
		d.notes = append(d.notes, diag.Notef(diag.NoteCRISocketMissing, "no container runtime socket (%v): pods are named from their processes' cgroups, without namespace or name", err))
		return nil
	}
	sbs, err := listSandboxes(ctx, socket, sandboxes, statusWorkers)
	switch {
	case err != nil && len(sbs) == 0:
		d.notes = append(d.notes, diag.Notef(diag.NoteCRIUnreachable, "the container runtime did not answer (%v): pods are named from their processes' cgroups, without namespace or name", err))
		return nil
	case err != nil:
		d.notes = append(d.notes, diag.Notef(diag.NoteCRIIncomplete, "the container runtime stopped answering (%v): the pods it did not name are named from their processes' cgroups, without namespace or name", err))
	}
	pods := make(map[*netns.Found]*Pod, len(sbs))
	for _, sb := range sbs {
		if sb.netns == "" {
			continue
		}
		// A stopped sandbox whose namespace is gone has nothing to read.
		if f, ok := l.Bind(sb.netns); ok {
			pod := sb.pod
			pods[f] = &pod
		}
	}
	return pods
}

// nameFromCgroups names, from its processes' cgroups, each namespace the
// runtime did not: by pod UID and container ID. It reads at most a few
// processes of each, preferring one that is not the pod's pause process,
// and never names the host's namespace, where host-network pods live
// among the node's own processes.
func (d *discovery) nameFromCgroups(proc string, host *netns.NS) {
	const perNamespace = 8
	for i := range d.list {
		f := &d.list[i]
		if f.pod != nil || host != nil && f.Inode == host.Inode && f.Dev == host.Dev() {
			continue
		}
		var best *Pod
		for _, pid := range f.PIDs[:min(len(f.PIDs), perNamespace)] {
			dir := proc + "/" + strconv.Itoa(pid)
			b, err := os.ReadFile(dir + "/cgroup")
			if err != nil {
				continue
			}
			uid, container, ok := PodFromCgroup(b)
			if !ok {
				continue
			}
			p := &Pod{UID: uid, Container: container, Source: "cgroup"}
			if best == nil || best.Container == "" && container != "" {
				best = p
			}
			if container != "" && comm(dir) != "pause" {
				best = p
				break
			}
		}
		f.pod = best
	}
}

func comm(dir string) string {
	b, _ := os.ReadFile(dir + "/comm")
	return strings.TrimSpace(string(b))
}
