package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// nsKey identifies a namespace: its inode on the namespace file system.
type nsKey struct{ dev, ino uint64 }

// found is one namespace discovery found, with every way to open it.
type found struct {
	key nsKey
	// bound are files that pin it (bind mounts under /run/netns, the
	// runtime's sandbox path): stable, so tried first.
	bound []string
	// pids are the processes in it, in /proc order.
	pids []int
	pod  *Pod
}

// discovery is every network namespace of the machine, each once.
type discovery struct {
	byKey map[nsKey]*found
	order []nsKey
	notes []string
}

func (d *discovery) get(k nsKey) *found {
	f, ok := d.byKey[k]
	if !ok {
		f = &found{key: k}
		d.byKey[k] = f
		d.order = append(d.order, k)
	}
	return f
}

// nsStat stats a namespace file, following the magic link of /proc/PID/ns/net.
func nsStat(path string) (nsKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsKey{}, err
	}
	return nsKey{st.Dev, st.Ino}, nil
}

// discover finds the network namespaces held by processes under proc,
// bound under netnsDir, and known to the container runtime at criSocket
// ("" tries CRISockets), naming those of pods.
func discover(ctx context.Context, proc, netnsDir, criSocket string) (*discovery, error) {
	d := &discovery{byKey: make(map[nsKey]*found)}
	self, err := nsStat(proc + "/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("read own network namespace: %w", err)
	}
	nsfs := self.dev

	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	hidden := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		k, err := nsStat(proc + "/" + e.Name() + "/ns/net")
		if err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
				hidden++
			}
			continue
		}
		f := d.get(k)
		f.pids = append(f.pids, pid)
	}
	if hidden > 0 {
		what := fmt.Sprintf("%d processes", hidden)
		if hidden == 1 {
			what = "1 process"
		}
		d.notes = append(d.notes, fmt.Sprintf("the network namespace of %s could not be read (permission denied): a namespace only they hold is missing", what))
	}

	if names, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range names {
			p := netnsDir + "/" + e.Name()
			// Only bind mounts of a namespace live on nsfs; anything
			// else in the directory (an unmounted placeholder) is not one.
			if k, err := nsStat(p); err == nil && k.dev == nsfs {
				f := d.get(k)
				f.bound = append(f.bound, p)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		d.notes = append(d.notes, fmt.Sprintf("%s unreadable, so namespaces bound only there are missing: %v", netnsDir, err))
	}

	d.addSandboxes(ctx, criSocket, nsfs)
	return d, nil
}

// addSandboxes names the namespaces of the pods the container runtime
// knows, and adds those no process holds and no /run/netns file binds.
func (d *discovery) addSandboxes(ctx context.Context, criSocket string, nsfs uint64) {
	socket := findCRISocket(criSocket)
	if socket == "" {
		d.notes = append(d.notes, fmt.Sprintf("no container runtime socket (tried %s; --cri-socket names another): pods are named by UID and container ID from their processes' cgroups, without namespace or name, and pod namespaces no process holds are missed", strings.Join(CRISockets, ", ")))
		return
	}
	sbs, err := listSandboxes(ctx, socket)
	if err != nil {
		d.notes = append(d.notes, fmt.Sprintf("the container runtime did not answer (%v): pods are named from their processes' cgroups, without namespace or name", err))
		return
	}
	for _, sb := range sbs {
		if sb.netns == "" {
			continue
		}
		k, err := nsStat(sb.netns)
		if err != nil || k.dev != nsfs {
			// A stopped sandbox whose namespace is gone: nothing to read.
			continue
		}
		f := d.get(k)
		if !slices.Contains(f.bound, sb.netns) {
			f.bound = append(f.bound, sb.netns)
		}
		pod := sb.pod
		f.pod = &pod
	}
}

// nameFromCgroups names, from its processes' cgroups, each namespace the
// runtime did not: by pod UID and container ID. It reads at most a few
// processes of each, preferring one that is not the pod's pause process,
// and never names the host's namespace, where host-network pods live
// among the node's own processes.
func (d *discovery) nameFromCgroups(proc string, host nsKey) {
	const perNamespace = 8
	for _, k := range d.order {
		f := d.byKey[k]
		if f.pod != nil || k == host {
			continue
		}
		var best *Pod
		for _, pid := range f.pids[:min(len(f.pids), perNamespace)] {
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
