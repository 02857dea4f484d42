package diag

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Keepalive is a socket's keepalive setting. Pointers are nil when the
// setting could not be read; Reason then says why.
type Keepalive struct {
	// Enabled is SO_KEEPALIVE.
	Enabled *bool `json:"enabled"`
	// IdleS is TCP_KEEPIDLE: idle seconds before the first probe.
	IdleS *int `json:"idle_s"`
	// IntervalS is TCP_KEEPINTVL: seconds between probes.
	IntervalS *int `json:"interval_s"`
	// Probes is TCP_KEEPCNT: unanswered probes before the kernel gives up.
	Probes *int `json:"probes"`
	// Source is "socket" when the socket set its own timings, "namespace"
	// when it inherits the namespace's net.ipv4.tcp_keepalive_* sysctls, and
	// "unknown" when they could not be read.
	Source string `json:"source"`
	// Reason says why the options are unknown.
	Reason string `json:"reason,omitempty"`
}

// SockOpts are a socket's own settings as getsockopt returns them.
type SockOpts struct {
	Keepalive     bool
	IdleS         int
	IntervalS     int
	Probes        int
	UserTimeoutMS int
	// SynRetries is TCP_SYNCNT as getsockopt returns it: the socket's own
	// count of SYN retransmissions, else the namespace's tcp_syn_retries.
	SynRetries int
	// noUserTimeout and noSynRetries are set where the socket answers
	// neither (an MPTCP socket: Go's listeners are MPTCP since Go 1.24),
	// which leaves those two unknown, not the rest.
	noUserTimeout, noSynRetries bool
}

// optionReader reads socket options of sockets held by other processes.
// It is safe for concurrent use; each goroutine reading asks it for a worker.
type optionReader struct {
	// blocked, when not empty, is why no socket may be duplicated at all.
	blocked string
	force   bool
	// deniedHint is the machine's Facts.DeniedHint.
	deniedHint string
}

func newOptionReader(force bool, f *Facts) *optionReader {
	return &optionReader{blocked: f.Classifiers, force: force, deniedHint: f.DeniedHint}
}

// optionWorker reads options in one goroutine, with its own pidfds: one per
// process, reused for all its sockets.
type optionWorker struct {
	r      *optionReader
	pidfds map[int]int
	// The buffers the system calls write to, here rather than on a stack
	// that could move under a raw system call.
	val int32
	len uint32
	st  unix.Stat_t
}

func (r *optionReader) worker() *optionWorker {
	return &optionWorker{r: r, pidfds: make(map[int]int)}
}

// readHint is what the dump already says of a socket's options.
type readHint struct {
	// keepalive is set when the kernel reported the socket's keepalive
	// timer armed. For a socket still held by a process (ESTABLISHED or
	// CLOSE_WAIT), sk_timer is armed only by SO_KEEPALIVE, and turning
	// SO_KEEPALIVE off disarms it: SO_KEEPALIVE need not be asked.
	keepalive bool
}

// read returns the options of the socket with the given inode held by procs.
// It tries each owner in turn; the error of the last attempt explains an
// unknown result.
//
// A socket's INET_DIAG_CLASS_ID is no reason to refuse: it carries
// sk_priority when no net_cls class id is set (IP_TOS sets a priority, and
// OpenSSH sets IP_TOS on every connection), and pidfd_getfd re-tags only the
// net_cls class id and net_prio index, which exist only where a cgroup-v1
// hierarchy of those controllers is mounted: the blocked case.
func (w *optionWorker) read(inode uint32, procs []Process, h readHint, o *SockOpts) error {
	if len(procs) == 0 {
		return errors.New("no process in the namespace holds this socket")
	}
	if !w.r.force && w.r.blocked != "" {
		return fmt.Errorf("not read: %s, and duplicating a socket resets its net_cls/net_prio marks (--dup-sockets overrides)", w.r.blocked)
	}
	var err error
	for _, p := range procs {
		*o = SockOpts{} // nothing of a failed attempt stays
		if err = w.readFrom(p, inode, h, o); err == nil {
			return nil
		}
	}
	return err
}

func (w *optionWorker) pidfd(pid int) (int, error) {
	if fd, ok := w.pidfds[pid]; ok {
		return fd, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	w.pidfds[pid] = fd
	return fd, nil
}

// sockopts are the options read, in the order read.
var sockopts = [...]struct{ level, opt int }{
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
	{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
	{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
	{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
	{unix.IPPROTO_TCP, unix.TCP_SYNCNT},
}

// readFrom duplicates p's descriptor with pidfd_getfd and reads the options
// with raw getsockopt calls. Nothing else touches the duplicate: it shares
// the app's open file description, so anything that sets flags or options
// on it (Go's net.FileConn does both) would change the app's socket.
//
// fstat and getsockopt go to the kernel directly, without telling Go's
// scheduler: neither waits on anything, and each costs less than the
// scheduler's own bookkeeping of a call that might. pidfd_getfd may wait
// for the target's exec to finish, and close may be the last reference
// to a socket with SO_LINGER (the app closed its own meanwhile), which
// sleeps: those two tell the scheduler, so a blocked call holds no P.
func (w *optionWorker) readFrom(p Process, inode uint32, h readHint, o *SockOpts) error {
	pidfd, err := w.pidfd(p.PID)
	if err != nil {
		return explainDupErr(p, err, w.r.deniedHint)
	}
	r, _, errno := syscall.Syscall(unix.SYS_PIDFD_GETFD, uintptr(pidfd), uintptr(p.FD), 0)
	if errno != 0 {
		return explainDupErr(p, errno, w.r.deniedHint)
	}
	defer syscall.Syscall(unix.SYS_CLOSE, r, 0, 0)

	// The descriptor number may have been closed and reused since /proc was read.
	if _, _, errno := syscall.RawSyscall(unix.SYS_FSTAT, r, uintptr(unsafe.Pointer(&w.st)), 0); errno != 0 || w.st.Ino != uint64(inode) {
		return fmt.Errorf("%s (pid %d) no longer holds this socket at fd %d", p.Comm, p.PID, p.FD)
	}
	dsts := [len(sockopts)]*int{nil, &o.IdleS, &o.IntervalS, &o.Probes, &o.UserTimeoutMS, &o.SynRetries}
	for i, g := range sockopts {
		if i == 0 && h.keepalive {
			o.Keepalive = true
			continue
		}
		w.val, w.len = 0, 4
		_, _, errno := syscall.RawSyscall6(unix.SYS_GETSOCKOPT, r, uintptr(g.level), uintptr(g.opt), uintptr(unsafe.Pointer(&w.val)), uintptr(unsafe.Pointer(&w.len)), 0)
		switch {
		case errno == unix.EOPNOTSUPP && g.opt == unix.TCP_USER_TIMEOUT && g.level == unix.IPPROTO_TCP:
			o.noUserTimeout = true
			continue
		case errno == unix.EOPNOTSUPP && g.opt == unix.TCP_SYNCNT && g.level == unix.IPPROTO_TCP:
			o.noSynRetries = true
			continue
		case errno != 0:
			return fmt.Errorf("getsockopt on a copy of fd %d of %s (pid %d): %w", p.FD, p.Comm, p.PID, errno)
		}
		if i == 0 {
			o.Keepalive = w.val != 0
		} else {
			*dsts[i] = int(w.val)
		}
	}
	return nil
}

// explainDupErr says why p's descriptor could not be duplicated; hint is
// the machine's Facts.DeniedHint.
func explainDupErr(p Process, err error, hint string) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("no ptrace right over %s (pid %d): %s", p.Comm, p.PID, hint)
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EBADF):
		return fmt.Errorf("%s (pid %d) exited or closed fd %d while being read", p.Comm, p.PID, p.FD)
	case errors.Is(err, unix.ENOSYS):
		return errors.New("this kernel has no pidfd_getfd (Linux 5.6 or newer is needed)")
	}
	return fmt.Errorf("duplicate fd %d of %s (pid %d): %w", p.FD, p.Comm, p.PID, err)
}

// close closes the worker's pidfds.
func (w *optionWorker) close() {
	for _, fd := range w.pidfds {
		unix.Close(fd)
	}
}
