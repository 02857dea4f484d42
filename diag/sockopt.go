package diag

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
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
}

// optionReader reads socket options of sockets held by other processes.
// It is safe for concurrent use.
type optionReader struct {
	mu     sync.Mutex
	pidfds map[int]int
	// blocked, when not empty, is why no socket may be duplicated at all.
	blocked string
	force   bool
}

func newOptionReader(force bool) *optionReader {
	return &optionReader{pidfds: make(map[int]int), blocked: cgroupV1Classifiers(), force: force}
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
func (r *optionReader) read(inode uint32, procs []Process) (SockOpts, error) {
	if len(procs) == 0 {
		return SockOpts{}, errors.New("no process in the namespace holds this socket")
	}
	if !r.force && r.blocked != "" {
		return SockOpts{}, fmt.Errorf("not read: %s, and duplicating a socket resets its net_cls/net_prio marks (--dup-sockets overrides)", r.blocked)
	}
	var err error
	for _, p := range procs {
		var o SockOpts
		if o, err = r.readFrom(p, inode); err == nil {
			return o, nil
		}
	}
	return SockOpts{}, err
}

func (r *optionReader) pidfd(pid int) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fd, ok := r.pidfds[pid]; ok {
		return fd, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	r.pidfds[pid] = fd
	return fd, nil
}

// readFrom duplicates p's descriptor with pidfd_getfd and reads the options
// with raw getsockopt calls. Nothing else touches the duplicate: it shares
// the app's open file description, so anything that sets flags or options
// on it (Go's net.FileConn does both) would change the app's socket.
func (r *optionReader) readFrom(p Process, inode uint32) (SockOpts, error) {
	pidfd, err := r.pidfd(p.PID)
	if err != nil {
		return SockOpts{}, explainDupErr(p, err)
	}
	fd, err := unix.PidfdGetfd(pidfd, p.FD, 0)
	if err != nil {
		return SockOpts{}, explainDupErr(p, err)
	}
	defer unix.Close(fd)

	// The descriptor number may have been closed and reused since /proc was read.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != uint64(inode) {
		return SockOpts{}, fmt.Errorf("%s (pid %d) no longer holds this socket at fd %d", p.Comm, p.PID, p.FD)
	}
	var o SockOpts
	var ka int
	for _, g := range []struct {
		level, opt int
		dst        *int
	}{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, &ka},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, &o.IdleS},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, &o.IntervalS},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, &o.Probes},
		{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, &o.UserTimeoutMS},
		{unix.IPPROTO_TCP, unix.TCP_SYNCNT, &o.SynRetries},
	} {
		v, err := unix.GetsockoptInt(fd, g.level, g.opt)
		if err != nil {
			return SockOpts{}, fmt.Errorf("getsockopt on a copy of fd %d of %s (pid %d): %w", p.FD, p.Comm, p.PID, err)
		}
		*g.dst = v
	}
	o.Keepalive = ka != 0
	return o, nil
}

func explainDupErr(p Process, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("no ptrace right over %s (pid %d): %s", p.Comm, p.PID, netns.DeniedHint())
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EBADF):
		return fmt.Errorf("%s (pid %d) exited or closed fd %d while being read", p.Comm, p.PID, p.FD)
	case errors.Is(err, unix.ENOSYS):
		return errors.New("this kernel has no pidfd_getfd (Linux 5.6 or newer is needed)")
	}
	return fmt.Errorf("duplicate fd %d of %s (pid %d): %w", p.FD, p.Comm, p.PID, err)
}

func (r *optionReader) close() {
	for _, fd := range r.pidfds {
		unix.Close(fd)
	}
}

// cgroupV1Classifiers says which cgroup-v1 net_cls or net_prio hierarchies
// are mounted, or "" when none is. pidfd_getfd re-tags a socket with the
// caller's net_cls class id and net_prio index, so with those in use a
// duplicate would change the app's traffic classification.
func cgroupV1Classifiers() string {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return ""
	}
	return parseCgroups(string(b))
}

// parseCgroups reads /proc/cgroups: a controller with a non-zero hierarchy
// ID is mounted as cgroup v1.
func parseCgroups(s string) string {
	var inUse []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && (f[0] == "net_cls" || f[0] == "net_prio") && f[1] != "0" && f[3] == "1" {
			inUse = append(inUse, f[0])
		}
	}
	if len(inUse) == 0 {
		return ""
	}
	return "cgroup v1 " + strings.Join(inUse, " and ") + " is in use"
}
