package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Found is one network namespace of the machine, with every file that
// opens it.
type Found struct {
	// Inode and Dev identify the namespace, as NS.Inode and NS.Dev do.
	Inode, Dev uint64
	// Bound are files that pin it (bind mounts under /run/netns, a
	// container runtime's sandbox file): stable, so Open tries them first.
	Bound []string
	// PIDs are the processes in it, in /proc's order.
	PIDs []int
}

// nsID identifies a namespace on the namespace file system.
type nsID struct{ dev, ino uint64 }

// Listing is every network namespace List found, each once however many
// processes and files hold it.
type Listing struct {
	// Found are the namespaces in the order they were found: those of
	// processes first, by PID, then those only bound.
	Found []*Found
	// Hidden counts the processes whose namespace could not be read
	// (permission denied): a namespace only they hold is missing.
	Hidden int
	byID   map[nsID]*Found
	nsfs   uint64
}

// List finds every network namespace held by a process under procRoot
// ("" means /proc) and every one bound under dir (`ip netns`'s
// /run/netns; a dir that does not exist holds none). It only stats: no
// namespace is opened or entered.
func List(procRoot, dir string) (*Listing, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	self, err := stat(procRoot + "/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("read own network namespace: %w", err)
	}
	l := &Listing{byID: make(map[nsID]*Found), nsfs: self.dev}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		id, err := stat(procRoot + "/" + e.Name() + "/ns/net")
		if err != nil {
			// A process that exited since the listing hides nothing.
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
				l.Hidden++
			}
			continue
		}
		f := l.get(id)
		f.PIDs = append(f.PIDs, pid)
	}
	names, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return l, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range names {
		l.Bind(dir + "/" + e.Name())
	}
	return l, nil
}

// Bind adds the namespace file at path, a bind mount of a namespace, to
// the listing, and returns the namespace it opens. It reports false for a
// path that is no namespace file (an unmounted placeholder) or is gone.
func (l *Listing) Bind(path string) (*Found, bool) {
	id, err := stat(path)
	// Only namespace files live on the namespace file system.
	if err != nil || id.dev != l.nsfs {
		return nil, false
	}
	f := l.get(id)
	if !slices.Contains(f.Bound, path) {
		f.Bound = append(f.Bound, path)
	}
	return f, true
}

func (l *Listing) get(id nsID) *Found {
	f, ok := l.byID[id]
	if !ok {
		f = &Found{Inode: id.ino, Dev: id.dev}
		l.byID[id] = f
		l.Found = append(l.Found, f)
	}
	return f
}

// Lookup returns the namespace of n in the listing; nil when it holds none.
func (l *Listing) Lookup(n *NS) *Found {
	if n == nil {
		return nil
	}
	return l.byID[nsID{n.Dev(), n.Inode}]
}

// Open opens f by the first of its files that still is f: its bound files,
// then its processes' (procRoot "" means /proc). A file that opens another
// namespace (a PID reused since List) does not count. It returns
// ErrVanished when every way in is gone.
func (f *Found) Open(procRoot string) (*NS, error) {
	// refused is the last error that was not the file being gone: a way
	// in that is there but shut (no permission) is no vanishing.
	var refused error
	try := func(ns *NS, err error) *NS {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				refused = err
			}
			return nil
		}
		if ns.Inode != f.Inode || ns.Dev() != f.Dev {
			ns.Close()
			return nil
		}
		return ns
	}
	for _, p := range f.Bound {
		if ns := try(FromPath(p)); ns != nil {
			return ns, nil
		}
	}
	for _, pid := range f.PIDs {
		var ns *NS
		if procRoot == "" || procRoot == "/proc" {
			ns = try(FromPID(pid))
		} else {
			ns = try(open(procRoot+"/"+strconv.Itoa(pid)+"/ns/net", pid))
		}
		if ns != nil {
			return ns, nil
		}
	}
	if refused != nil {
		return nil, fmt.Errorf("network namespace %d: %w", f.Inode, refused)
	}
	return nil, fmt.Errorf("network namespace %d: %w", f.Inode, ErrVanished)
}

// stat identifies the namespace file at path, following /proc's magic links.
func stat(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{st.Dev, st.Ino}, nil
}

// ErrVanished is why Found.Open failed: the namespace is gone (its
// processes exited, its bind mounts were removed) since List found it.
var ErrVanished = errors.New("vanished")
