package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is an open handle to a network namespace.
type NS struct {
	// Path is the file the namespace was opened from.
	Path string
	// PID is the process the namespace was taken from, or 0.
	PID int
	// Inode is the namespace's inode number, the number `ls -l /proc/PID/ns/net`
	// and `lsns` show.
	Inode uint64
	dev   uint64
	h     vnetns.NsHandle
	// own is true when this is the namespace tcpvet runs in: nothing needs
	// entering, which also spares unprivileged users a setns they may not do.
	own bool
}

// Self opens the network namespace tcpvet itself runs in.
func Self() (*NS, error) {
	return open("/proc/self/ns/net", 0)
}

// FromPID opens the network namespace of process pid.
func FromPID(pid int) (*NS, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("invalid PID %d: must be a positive number", pid)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no process with PID %d: %w", pid, err)
	}
	ns, err := open(fmt.Sprintf("/proc/%d/ns/net", pid), pid)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	return ns, nil
}

// FromPath opens the network namespace file at path, such as /run/netns/NAME,
// /proc/PID/ns/net or a bind mount of one.
func FromPath(path string) (*NS, error) {
	return open(path, 0)
}

func open(path string, pid int) (*NS, error) {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("open network namespace %s: no such file%w", path, errNoSuchFile)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("open network namespace %s: permission denied (%s)%w", path, DeniedHint(), errDenied)
		}
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	ns := &NS{Path: path, PID: pid, h: h}
	if err := ns.check(); err != nil {
		h.Close()
		return nil, err
	}
	return ns, nil
}

// check makes sure the file really is a network namespace: a regular file or
// a mount namespace handed to setns would fail later with a far less clear error.
func (n *NS) check() error {
	typ, err := unix.IoctlRetInt(int(n.h), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("%s is not a namespace file", n.Path)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is a namespace, but not a network namespace", n.Path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(n.h), &st); err != nil {
		return fmt.Errorf("stat network namespace %s: %w", n.Path, err)
	}
	n.Inode, n.dev = st.Ino, st.Dev
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err == nil {
		n.own = self.Ino == st.Ino && self.Dev == st.Dev
	}
	return nil
}

// Own reports whether n is the namespace tcpvet itself runs in.
func (n *NS) Own() bool { return n.own }

// FD returns the namespace's file descriptor, valid until Close.
func (n *NS) FD() int { return int(n.h) }

// Same reports whether n and o are the same namespace.
func (n *NS) Same(o *NS) bool {
	return n != nil && o != nil && n.Inode == o.Inode && n.dev == o.dev
}

// Close releases the handle.
func (n *NS) Close() error {
	if n == nil || !n.h.IsOpen() {
		return nil
	}
	return n.h.Close()
}

// Do runs fn on an OS thread that has entered namespace n and waits for it.
// The thread is moved back to its own namespace afterwards; if that fails it
// stays locked, and the runtime kills it when the goroutine ends.
func (n *NS) Do(fn func() error) error {
	if n.own {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", n.Path, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			// The thread is poisoned: leave it locked so it dies with us.
			errc <- fmt.Errorf("return from network namespace %s: %w", n.Path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dev returns the device of the namespace file system holding n; with
// Inode it identifies the namespace.
func (n *NS) Dev() uint64 { return n.dev }

// silent carries a sentinel for errors.Is without adding to the message,
// which already says the same in words.
type silent struct{ error }

func (silent) Error() string   { return "" }
func (s silent) Unwrap() error { return s.error }

// errNoSuchFile and errDenied mark why a namespace file did not open.
var (
	errNoSuchFile = silent{fs.ErrNotExist}
	errDenied     = silent{fs.ErrPermission}
)
