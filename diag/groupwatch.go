package diag

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// groupWatch receives what netlink multicast groups announce in one
// namespace, decoded one message at a time, from the moment it is opened
// until Close or the end of its context. DestroyWatch and CTWatch are two.
type groupWatch[T any] struct {
	c   *netlink.Conn
	rc  syscall.RawConn
	out chan T
	// stop is closed by Close; done by the reader when it has stopped.
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	closed bool
	lost   uint64
	err    error
}

// groupSpec says what a groupWatch listens to and how it reads it.
type groupSpec[T any] struct {
	family int      // NETLINK_SOCK_DIAG, NETLINK_NETFILTER
	groups []uint32 // the multicast groups joined
	what   string   // "sock_diag", "ctnetlink": for errors
	events string   // "socket deaths", "conntrack events": for errors
	denied error    // wrapped when the kernel refuses
	// decode reads one message read at at: keep is false for one that
	// is not wanted (another protocol's).
	decode func(m netlink.Message, at time.Time) (v T, keep bool, err error)
}

// watchGroups opens a netlink socket inside ns (so no thread of ours enters
// it), sizes its receive buffer and joins spec's groups.
func watchGroups[T any](ctx context.Context, ns *netns.NS, spec groupSpec[T]) (*groupWatch[T], error) {
	c, err := netlink.Dial(spec.family, netlinkConfig(ns))
	if err != nil {
		if denied(err) {
			return nil, fmt.Errorf("%w: open %s in %s: %v", spec.denied, spec.what, ns.Path, err)
		}
		return nil, fmt.Errorf("open %s in %s: %w", spec.what, ns.Path, err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open %s in %s: %w", spec.what, ns.Path, err)
	}
	if err := growReadBuffer(c, rc, destroyReadBuffer); err != nil {
		c.Close()
		return nil, fmt.Errorf("size the %s receive buffer: %w", spec.what, err)
	}
	for _, g := range spec.groups {
		if err := c.JoinGroup(g); err != nil {
			c.Close()
			if denied(err) {
				return nil, fmt.Errorf("%w: in %s: %v", spec.denied, ns.Path, err)
			}
			return nil, fmt.Errorf("join %s group %d in %s: %w", spec.what, g, ns.Path, err)
		}
	}
	w := &groupWatch[T]{c: c, rc: rc, out: make(chan T, destroyBacklog), stop: make(chan struct{}), done: make(chan struct{})}
	go w.read(ns.Path, spec)
	go func() {
		select {
		case <-ctx.Done():
			w.Close()
		case <-w.done:
		}
	}()
	return w, nil
}

// Lost counts the messages the kernel dropped for want of room in tcpvet's
// receive buffer: every one (the socket's drop counter), not just the
// overflows.
func (w *groupWatch[T]) Lost() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		if n, err := socketDrops(w.rc); err == nil {
			w.lost = n
		}
	}
	return w.lost
}

// Err is the error that ended the watch early, nil after Close or the end
// of the context.
func (w *groupWatch[T]) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch. Its channel is closed once the reader has stopped.
func (w *groupWatch[T]) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	if n, err := socketDrops(w.rc); err == nil {
		w.lost = n
	}
	w.closed = true
	close(w.stop)
	return w.c.Close()
}

// fail records the error that ends the watch, unless Close ended it, and
// closes the socket so that the kernel stops queueing into it.
func (w *groupWatch[T]) fail(err error) {
	w.mu.Lock()
	if !w.closed {
		w.err = err
	}
	w.mu.Unlock()
	w.Close()
}

// read decodes messages until the socket closes, counting every overflow:
// the kernel reports one as ENOBUFS, once, and drops every message after
// it until the queue drains.
func (w *groupWatch[T]) read(where string, spec groupSpec[T]) {
	defer close(w.out)
	defer close(w.done)
	buf := make([]byte, 8<<10)
	for {
		ms, err := receiveDatagram(w.rc, buf)
		switch {
		case errors.Is(err, unix.ENOBUFS):
			w.Lost()
			continue
		case err != nil:
			w.fail(fmt.Errorf("read %s in %s: %w", spec.events, where, err))
			return
		}
		at := time.Now()
		for _, m := range ms {
			v, keep, err := spec.decode(m, at)
			if err != nil {
				w.fail(fmt.Errorf("read %s in %s: %w", spec.events, where, err))
				return
			}
			if !keep {
				continue
			}
			select {
			case w.out <- v:
			case <-w.stop:
				return
			}
		}
	}
}
