package node

import (
	"cmp"
	"context"
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
	d, err := discover(ctx, proc, dir, opts.CRISocket)
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
	sw := &Sweep{Notes: d.notes}
	var hv *diag.HostView
	if opts.Host != nil {
		hv = diag.ReadHost(opts.Host, proc)
		sw.Host, sw.HostSysctls = hv.Host(), hv.Sysctls()
		sw.Notes = append(sw.Notes, hv.Notes...)
	}
	d.nameFromCgroups(proc, opts.Host)

	results := make([]*Namespace, len(d.list))
	vanished := make([]string, len(d.list))
	jobs := make(chan int)
	workers := opts.Workers
	if workers <= 0 {
		workers = defaultWorkers()
	}
	var wg sync.WaitGroup
	for range min(workers, len(d.list)) {
		wg.Go(func() {
			for i := range jobs {
				results[i], vanished[i] = readNamespace(ctx, &d.list[i], hv, opts, proc)
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
		case vanished[i] != "":
			sw.Notes = append(sw.Notes, vanished[i])
		case n != nil:
			if n.Snapshot == nil {
				sw.Errors++
			}
			sw.Namespaces = append(sw.Namespaces, *n)
		}
	}
	slices.SortStableFunc(sw.Namespaces, compareUrgency)
	return sw, nil
}

// readNamespace opens f and takes its snapshot. It returns a note instead
// when the namespace is gone.
func readNamespace(ctx context.Context, f *found, hv *diag.HostView, opts Options, proc string) (*Namespace, string) {
	ns, err := f.Open(proc)
	if err != nil {
		return nil, fmt.Sprintf("network namespace %d vanished mid-sweep (its processes exited, its bind mount was removed): skipped", f.Inode)
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
	snap, err := diag.Take(ctx, diag.Options{Target: ns, HostView: hv, Host: opts.Host, DupSockets: opts.DupSockets, ProcRoot: opts.ProcRoot, PIDs: pids})
	if err != nil {
		n.Notes = append(n.Notes, fmt.Sprintf("unreadable: %v", err))
		return n, ""
	}
	n.Snapshot = snap
	n.Report = rules.Evaluate(snap, opts.Middleboxes)
	return n, ""
}

// compareUrgency orders namespaces most urgent first: by their worst
// finding (its severity, then whether it fails now or at the next write,
// then how soon), then by how many findings that bad, then by size, and
// the inode to keep the order stable.
func compareUrgency(a, b Namespace) int {
	wa, wb := worstOf(&a), worstOf(&b)
	switch {
	case wa != nil && wb == nil:
		return -1
	case wa == nil && wb != nil:
		return 1
	case wa != nil:
		if c := cmp.Compare(wb.Severity, wa.Severity); c != 0 {
			return c
		}
		if c := cmp.Compare(failingRank(wa.Failing), failingRank(wb.Failing)); c != 0 {
			return c
		}
		switch {
		case wa.FailsInS != nil && wb.FailsInS == nil:
			return -1
		case wa.FailsInS == nil && wb.FailsInS != nil:
			return 1
		case wa.FailsInS != nil:
			if c := cmp.Compare(*wa.FailsInS, *wb.FailsInS); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(a.Count(wa.Severity), b.Count(wb.Severity)); c != 0 {
			return -c
		}
	}
	if c := cmp.Compare(a.Sockets(), b.Sockets()); c != 0 {
		return -c
	}
	return cmp.Compare(a.Inode, b.Inode)
}

// worstOf is the namespace's most urgent finding: the rules sort a
// report's findings most urgent first.
func worstOf(n *Namespace) *rules.Finding {
	if len(n.Report.Findings) == 0 {
		return nil
	}
	return &n.Report.Findings[0]
}

func failingRank(f rules.Failing) int {
	switch f {
	case rules.FailingNow:
		return 0
	case rules.FailingNextWrite:
		return 1
	}
	return 2
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
