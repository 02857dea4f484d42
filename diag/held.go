package diag

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotHeld reports that a process no longer holds a socket at the
// descriptor it did.
var ErrNotHeld = errors.New("no longer held there")

// HeldDeath reads, through its owner p, a connection the dump stopped
// listing while the owner may still hold it at p.FD: the kernel ended it
// (a reset, a give-up: tcp_done takes it out of the tables) and announces
// its death only once the application lets go. Its tcp_info is the final
// one already; the queues are derived from its counters, since nothing but
// getsockopt may touch the duplicate. SO_ERROR is never asked: reading it
// clears the error the application is still to get.
//
// It returns false when the socket is still open (it only left the dump
// for a state the dump was not asked for) and ErrNotHeld when p no longer
// holds it. Where duplicating a socket would re-tag it (f.Classifiers), it
// reads nothing.
func HeldDeath(p Process, last *Socket, f *Facts) (Death, bool, error) {
	if f != nil && f.Classifiers != "" {
		return Death{}, false, fmt.Errorf("not read: %s", f.Classifiers)
	}
	pidfd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		return Death{}, false, err
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, p.FD, 0)
	if err != nil {
		return Death{}, false, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != uint64(last.Inode) {
		return Death{}, false, ErrNotHeld
	}
	var b [512]byte
	n := uint32(len(b))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO, uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0); errno != 0 {
		return Death{}, false, errno
	}
	info := decodeTCPInfo(b[:min(n, uint32(len(b)))])
	if State(info.State) != Close {
		return Death{}, false, nil
	}
	// What it sent that was never acknowledged, and what waits unsent.
	// bytes_acked counts the SYN of the end that connected too: the last
	// sample, all of it acknowledged then, says how much beyond the data.
	var syn int64
	if b := last.TCPInfo; b != nil && last.SendQ == 0 {
		syn = min(max(int64(b.BytesAcked)-int64(b.BytesSent-b.BytesRetrans), 0), 1)
	}
	inFlight := int64(info.BytesSent-info.BytesRetrans) - int64(info.BytesAcked) + syn
	sendQ := uint32(max(inFlight, 0)) + info.NotsentBytes
	return Death{Cookie: last.ID, Local: last.Local, Remote: last.Remote, State: Close, SendQ: sendQ, Info: &info, At: time.Now()}, true, nil
}
