package watch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/netns"
)

const (
	// Settle is how old a death must be before it is told: the path's
	// conntrack ends come on another socket, and may be read up to this
	// much after the death they came before (see forgetSlack).
	Settle = 300 * time.Millisecond
	// keepGone is how long a connection's last sample is kept after it
	// left the dump, waiting for its death; keepEnds how long the path's
	// flow ends are kept, waiting for the deaths they explain.
	keepGone = 10 * time.Minute
	keepEnds = 10 * time.Minute
)

// Deaths follows, while a watch runs, the deaths of one namespace's
// connections and the ends of the conntrack entries on their path, and
// tells how each connection ended (Classify) from what the watch's
// Observer saw of it. Both are read as they come, each by a goroutine of
// its own, so the kernel's queues never wait for a sample.
type Deaths struct {
	sockets *diag.DestroyWatch
	flows   []*diag.CTWatch
	notes   []diag.Note
	facts   *diag.Facts

	mu      sync.Mutex
	pending []diag.Death
	// forgot holds the entries that ended while established, the only
	// ones Classify asks about, under both of their directions; nForgot
	// counts what it holds.
	forgot  map[flowKey][]diag.FlowEnd
	nForgot int
	// overflow counts what was let go for want of room: deaths waiting to
	// be told, and entry ends.
	overflow uint64
}

// flowKey is a flow as one of its ends sees it.
type flowKey struct{ from, to netip.AddrPort }

func keyOf(from, to netip.AddrPort) flowKey {
	return flowKey{netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), netip.AddrPortFrom(to.Addr().Unmap(), to.Port())}
}

// maxPending and maxForgot bound what Deaths holds between two samples:
// far more than a second of a busy node's churn.
const (
	maxPending = 200_000
	maxForgot  = 200_000
)

// StartDeaths starts following the deaths of target's connections, and the
// entries that the conntrack of each namespace of path (the target's own,
// the host's) destroys. Where the kernel refuses the deaths themselves,
// Watching is false and Notes say why: closed is then absent, and nothing
// else changes. A table whose events cannot be read only takes "the path
// forgot it" from the causes, with a note.
func StartDeaths(ctx context.Context, target *netns.NS, path ...*netns.NS) *Deaths {
	d := &Deaths{forgot: map[flowKey][]diag.FlowEnd{}, facts: diag.ReadFacts()}
	w, err := diag.WatchDestroys(ctx, target)
	if err != nil {
		d.notes = append(d.notes, diag.Notef(diag.NoteDeathsUnwatched, "connections that close are not listed: %v", err))
		return d
	}
	d.sockets = w
	go d.takeDeaths(w.Deaths())
	for _, ns := range path {
		if ns == nil {
			continue
		}
		f, err := diag.WatchFlowEnds(ctx, ns)
		switch {
		case errors.Is(err, diag.ErrCTEventsUnavailable):
			// No ctnetlink, so no table anyone reads: nothing to note.
		case err != nil:
			d.notes = append(d.notes, diag.Notef(diag.NoteFlowEndsUnwatched, "a closed connection's cause cannot say whether the path forgot it first: %v", err))
		default:
			d.flows = append(d.flows, f)
			go d.takeEnds(f.Ends())
		}
	}
	return d
}

// Watching reports whether deaths are followed at all.
func (d *Deaths) Watching() bool { return d != nil && d.sockets != nil }

// Follow makes o keep what Classify needs of each connection it samples.
func (d *Deaths) Follow(o *Observer) {
	if d.Watching() {
		o.keepSeen = true
	}
}

// takeDeaths keeps each death announced until a Drain tells it.
func (d *Deaths) takeDeaths(deaths <-chan diag.Death) {
	for x := range deaths {
		d.mu.Lock()
		if len(d.pending) < maxPending {
			d.pending = append(d.pending, x)
		} else {
			d.overflow++
		}
		d.mu.Unlock()
	}
}

// takeEnds keeps the entries that ended while established.
func (d *Deaths) takeEnds(ends <-chan diag.FlowEnd) {
	for e := range ends {
		if !e.Forgotten() {
			continue
		}
		d.mu.Lock()
		if d.nForgot < maxForgot {
			for _, k := range []flowKey{keyOf(e.OrigSrc, e.OrigDst), keyOf(e.ReplySrc, e.ReplyDst)} {
				d.forgot[k] = append(d.forgot[k], e)
				d.nForgot++
			}
		} else {
			d.overflow++
		}
		d.mu.Unlock()
	}
}

// Drain tells how each connection announced dead by now, and at least
// settle before now, ended, from what o saw of it; those announced later
// wait for the next Drain. Its answer is never nil while deaths are
// followed.
func (d *Deaths) Drain(o *Observer, now time.Time, settle time.Duration) []diag.Closed {
	if !d.Watching() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []diag.Closed{}
	keep := d.pending[:0]
	for _, x := range d.pending {
		if now.Sub(x.At) < settle {
			keep = append(keep, x)
			continue
		}
		ls := o.seen[x.Cookie]
		delete(o.seen, x.Cookie)
		if ls != nil && ls.told {
			continue // told from its owner's descriptor already
		}
		if c, ok := d.tell(ls, x); ok {
			out = append(out, c)
		}
	}
	d.pending = keep
	// Connections the dump no longer lists and the kernel has not
	// announced: ended while their application still holds them (a pool's
	// idle connection reset by the path), or closed a moment ago. Their
	// owners' descriptors tell which, and the end of the first now.
	for _, id := range o.gone {
		ls := o.seen[id]
		if ls == nil || ls.told {
			continue
		}
		for _, p := range ls.sock.Processes {
			x, ended, err := diag.HeldDeath(p, ls.sock, d.facts)
			if err != nil || !ended {
				continue
			}
			if c, ok := d.tell(ls, x); ok {
				c.Why += fmt.Sprintf("; its application (%s, pid %d) still holds it", p.Comm, p.PID)
				out = append(out, c)
			}
			ls.told = true
			break
		}
	}
	o.forgetSeen(now, keepGone)
	for k, ends := range d.forgot {
		kept := slices.DeleteFunc(ends, func(e diag.FlowEnd) bool { return now.Sub(e.At) > keepEnds })
		d.nForgot -= len(ends) - len(kept)
		if len(kept) == 0 {
			delete(d.forgot, k)
		} else {
			d.forgot[k] = kept
		}
	}
	return out
}

// tell classifies the death x of a connection of which ls (nil if none)
// is the last sample; false for a death that ended no connection.
func (d *Deaths) tell(ls *lastSeen, x diag.Death) (diag.Closed, bool) {
	var last *diag.Socket
	var h History
	if ls != nil {
		// A copy: what is told is kept, and must not keep a snapshot.
		ls.detach()
		last, h.FirstSeen, h.LastAt = ls.sock, ls.first, ls.last
		if ls.entries != nil {
			h.Entries, h.EntriesAt, h.EntriesInfo = ls.entries, ls.entriesAt, ls.entriesTCPInfo()
		}
	}
	if !IsConnection(last, x) {
		return diag.Closed{}, false
	}
	local, remote := x.Local, x.Remote
	if last != nil {
		local, remote = last.Local, last.Remote
	}
	h.Forgotten = d.forgot[keyOf(local, remote)]
	return Classify(last, x, h), true
}

// Notes say what could not be followed, and how many announcements the
// kernel could not queue: a death lost is counted, never missed silently.
func (d *Deaths) Notes() []diag.Note {
	if d == nil {
		return nil
	}
	notes := append([]diag.Note(nil), d.notes...)
	if !d.Watching() {
		return notes
	}
	if n := d.sockets.Lost(); n > 0 {
		notes = append(notes, diag.Notef(diag.NoteDeathsLost, "%d connection deaths were lost (the kernel's queue overflowed): closed lists the others", n))
	}
	if err := d.sockets.Err(); err != nil {
		notes = append(notes, diag.Notef(diag.NoteDeathsStopped, "following connection deaths stopped: %v", err))
	}
	d.mu.Lock()
	if d.overflow > 0 {
		notes = append(notes, diag.Notef(diag.NoteDeathsOverflow, "%d connection deaths or conntrack entry ends were let go, more than tcpvet holds between two samples", d.overflow))
	}
	d.mu.Unlock()
	var lost uint64
	for _, f := range d.flows {
		lost += f.Lost()
		if err := f.Err(); err != nil {
			notes = append(notes, diag.Notef(diag.NoteFlowEndsStopped, "following conntrack entry ends stopped: %v", err))
		}
	}
	if lost > 0 {
		notes = append(notes, diag.Notef(diag.NoteFlowEndsLost, "%d conntrack entry ends were lost (the kernel's queue overflowed): a cause may miss that the path forgot a connection", lost))
	}
	return notes
}

// Close stops following.
func (d *Deaths) Close() {
	if d == nil {
		return
	}
	if d.sockets != nil {
		d.sockets.Close()
	}
	for _, f := range d.flows {
		f.Close()
	}
}
