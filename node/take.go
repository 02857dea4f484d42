package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/netns"
	"github.com/tcpvet/tcpvet/rules"
)

// Options selects what a sweep reads.
type Options struct {
	// Host is the node's namespace, read once for every namespace; nil
	// when it is not visible.
	Host *netns.NS
	// CRISocket is the container runtime's socket; "" tries CRISockets.
	CRISocket string
	// DupSockets is diag.Options.DupSockets, for every namespace.
	DupSockets bool
	// Middleboxes are the idle timeouts the user declared on the path.
	Middleboxes []rules.Middlebox
	// ProcRoot is where proc is mounted; "" means /proc.
	ProcRoot string
	// NetnsDir is where `ip netns` binds namespaces; "" means /run/netns.
	NetnsDir string
	// Workers bounds how many namespaces are read at once, and so the
	// threads and open sockets a sweep holds; 0 picks from the CPUs.
	Workers int
	// Sandboxes keeps the container runtime's answers about each pod
	// sandbox from one sweep to the next, for a caller that sweeps again;
	// nil asks the runtime about every sandbox.
	Sandboxes *SandboxCache
}

// defaultWorkers: a namespace's snapshot mostly waits on the kernel (the
// dump, /proc, getsockopt), so a few more than the CPUs keep them busy;
// more would only hold more descriptors and memory at once.
func defaultWorkers() int { return min(8, 2*runtime.GOMAXPROCS(0)) }

// Take sweeps every network namespace of the machine once: it finds them,
// names those of pods, reads the host once and each namespace side by side
// within opts.Workers, and orders them most urgent first. A namespace that
// vanishes before it is read is skipped with a note; one that cannot be read
// is listed with why. It fails only when it cannot list namespaces at all.
func Take(ctx context.Context, opts Options) (*Sweep, error) {
	start := time.Now()
	proc := opts.ProcRoot
	if proc == "" {
		proc = "/proc"
	}
	dir := opts.NetnsDir
	if dir == "" {
		dir = "/run/netns"
	}
	d, err := discoverWith(ctx, proc, dir, opts.CRISocket, opts.Sandboxes)
	if err != nil {
		return nil, err
	}
	sw, err := sweepFound(ctx, d, opts, proc)
	if err != nil {
		return nil, err
	}
	sw.TakenAt, sw.Duration = start.UTC(), time.Since(start)
	return sw, nil
}

// sweepFound reads the host once and every namespace d found, and orders
// them.
func sweepFound(ctx context.Context, d *discovery, opts Options, proc string) (*Sweep, error) {
	sw := &Sweep{Notes: d.notes, Host: diag.Namespace{Role: diag.Host}}
	var hv *diag.HostView
	if opts.Host != nil {
		hv = diag.ReadHost(opts.Host, proc)
		sw.Host = hv.Host()
		sw.Notes = append(sw.Notes, hv.Notes...)
	}
	d.nameFromCgroups(proc, opts.Host)

	// The machine's facts, read once for every namespace's snapshot.
	facts := diag.ReadFacts()
	results := make([]*Namespace, len(d.list))
	vanished := make([]*diag.Note, len(d.list))
	jobs := make(chan int)
	workers := opts.Workers
	if workers <= 0 {
		workers = defaultWorkers()
	}
	var wg sync.WaitGroup
	for range min(workers, len(d.list)) {
		wg.Go(func() {
			for i := range jobs {
				results[i], vanished[i] = readNamespace(ctx, &d.list[i], d.unplaced, hv, facts, opts, proc)
			}
		})
	}
feed:
	for i := range d.list {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sweep interrupted: %w", err)
	}

	for i, n := range results {
		switch {
		case vanished[i] != nil:
			sw.Notes = append(sw.Notes, *vanished[i])
		case n != nil:
			if n.Snapshot == nil {
				sw.Errors++
			}
			sw.Namespaces = append(sw.Namespaces, *n)
		}
	}
	slices.SortStableFunc(sw.Namespaces, func(a, b Namespace) int { return CompareUrgency(&a, &b) })
	return sw, nil
}

// readNamespace opens f and takes its snapshot, unplaced processes of the
// machine (their namespace unreadable) maybe holding its sockets. It
// returns a note instead when the namespace is gone.
func readNamespace(ctx context.Context, f *found, unplaced int, hv *diag.HostView, facts *diag.Facts, opts Options, proc string) (*Namespace, *diag.Note) {
	ns, err := f.Open(proc)
	switch {
	case errors.Is(err, netns.ErrVanished):
		n := diag.Notef(diag.NoteNamespaceVanished, "network namespace %d vanished mid-sweep (its processes exited, its bind mount was removed): skipped", f.Inode)
		return nil, &n
	case err != nil:
		// There, but not to be opened: listed, unread, with the reason.
		return &Namespace{Inode: f.Inode, Pod: f.pod, Notes: []diag.Note{diag.Notef(diag.NoteNamespaceUnreadable, "unreadable: %v (%s)", err, netns.DeniedHint())}}, nil
	}
	defer ns.Close()
	n := &Namespace{Inode: ns.Inode, Path: ns.Path, Pod: f.pod, IsHost: ns.Same(opts.Host)}
	// The processes listed with the namespace, so that each snapshot does
	// not list /proc again: a sweep's cost would grow with namespaces
	// times processes.
	pids := f.PIDs
	if pids == nil {
		pids = []int{}
	}
	snap, err := diag.Take(ctx, diag.Options{Target: ns, HostView: hv, Host: opts.Host, Facts: facts, DupSockets: opts.DupSockets, ProcRoot: opts.ProcRoot, PIDs: pids, Unplaced: unplaced})
	if err != nil {
		n.Notes = append(n.Notes, diag.Notef(diag.NoteNamespaceUnreadable, "unreadable: %v", err))
		return n, nil
	}
	n.Snapshot = snap
	n.Report = rules.Evaluate(snap, opts.Middleboxes)
	return n, nil
}

// CompareUrgency orders namespaces most urgent first: those with findings
// by their worst finding as the rules rank findings (severity, failing
// now, at the next write, soonest), then by how many findings that bad;
// then those that could not be read; then the healthy ones; larger first,
// and the inode to keep the order stable. The node view ranks its rows
// with it too.
func CompareUrgency(a, b *Namespace) int {
	if c := cmp.Compare(a.group(), b.group()); c != 0 {
		return c
	}
	if wa, wb := worstOf(a), worstOf(b); wa != nil && wb != nil {
		// The rules break ties between findings by rule name and socket:
		// across namespaces those say nothing of urgency.
		x, y := *wa, *wb
		x.Rule, y.Rule, x.Socket, y.Socket = "", "", nil, nil
		if c := rules.Urgency(x, y); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Count(wb.Severity), a.Count(wa.Severity)); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(b.Sockets(), a.Sockets()); c != 0 {
		return c
	}
	return cmp.Compare(a.Inode, b.Inode)
}

// group ranks a namespace with findings before one that could not be
// read, and that before a healthy one.
func (n *Namespace) group() int {
	switch {
	case worstOf(n) != nil:
		return 0
	case n.Snapshot == nil:
		return 1
	}
	return 2
}

// worstOf is the namespace's most urgent finding. The rules list a
// report's findings most urgent first; a report put together otherwise is
// searched.
func worstOf(n *Namespace) *rules.Finding {
	var w *rules.Finding
	for i := range n.Report.Findings {
		if f := &n.Report.Findings[i]; w == nil || rules.Urgency(*f, *w) < 0 {
			w = f
		}
	}
	return w
}

// Worst is the namespace's most urgent finding; nil when it has none.
func (n *Namespace) Worst() *rules.Finding { return worstOf(n) }

// Count counts the namespace's findings of severity s.
func (n *Namespace) Count(s rules.Severity) int {
	c := 0
	for i := range n.Report.Findings {
		if n.Report.Findings[i].Severity == s {
			c++
		}
	}
	return c
}

// Sockets counts the namespace's TCP sockets; 0 when it was not read.
func (n *Namespace) Sockets() int {
	if n.Snapshot == nil {
		return 0
	}
	return len(n.Snapshot.Sockets)
}

// Unread says in one sentence how many of the sweep's namespaces could not
// be read, and why the first could not; "" when every one was read.
func (s *Sweep) Unread() string {
	if s.Errors == 0 {
		return ""
	}
	why := ""
	for i := range s.Namespaces {
		if n := &s.Namespaces[i]; n.Snapshot == nil && len(n.Notes) > 0 {
			why = fmt.Sprintf(", e.g. netns %d (%s): %s", n.Inode, n.Name(), n.Notes[0].Text)
			break
		}
	}
	return fmt.Sprintf("%d of %d namespaces could not be read, so their connections are not inspected%s", s.Errors, len(s.Namespaces), why)
}

// Worst returns the highest severity over every namespace of the sweep,
// and false when there are no findings: what --fail-on judges.
func (s *Sweep) Worst() (rules.Severity, bool) {
	worst, any := rules.Info, false
	for i := range s.Namespaces {
		if w, ok := s.Namespaces[i].Report.Worst(); ok && (!any || w > worst) {
			worst, any = w, true
		}
	}
	return worst, any
}
