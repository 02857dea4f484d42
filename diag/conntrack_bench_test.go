package diag

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// benchFlows makes n TCP entries of established flows from 10.0.0.0/8
// clients to a service address, DNATed to one of 50 backends; conns are
// the first m of them as their clients see them.
func benchFlows(n, m int) (flows []conntrack.Flow, conns []flowKey) {
	vip := netip.MustParseAddr("10.96.0.10")
	for i := range n {
		client := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		backend := netip.AddrFrom4([4]byte{10, 244, byte(i % 50), 7})
		var f conntrack.Flow
		f.Status = conntrack.StatusConfirmed | conntrack.StatusAssured | conntrack.StatusDstNAT | conntrack.StatusSeenReply
		f.Timeout = 432000
		f.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: 3}
		f.TupleOrig = conntrack.Tuple{IP: conntrack.IPTuple{SourceAddress: client, DestinationAddress: vip},
			Proto: conntrack.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: 40000, DestinationPort: 80}}
		f.TupleReply = conntrack.Tuple{IP: conntrack.IPTuple{SourceAddress: backend, DestinationAddress: client},
			Proto: conntrack.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: 8080, DestinationPort: 40000}}
		flows = append(flows, f)
		if i < m {
			conns = append(conns, keyOf(netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(vip, 80)))
		}
	}
	return flows, conns
}

// BenchmarkConntrackJoin indexes a 250,000-entry table and joins 40,000
// sockets to it: the work tcpvet adds to a dump.
func BenchmarkConntrackJoin(b *testing.B) {
	flows, conns := benchFlows(250000, 40000)
	b.ReportAllocs()
	for b.Loop() {
		ct := newConntrack(flows, "host")
		for _, k := range conns {
			if ct.Lookup(k.from, k.to) == nil {
				b.Fatal("a socket found no entry")
			}
		}
	}
}

// filledConntrack is a namespace of the test's own whose conntrack table
// holds flows, and a connection to that table; both close when the
// benchmark ends.
func filledConntrack(b *testing.B, flows []conntrack.Flow) (*netns.NS, *conntrack.Conn) {
	b.Helper()
	ns := testnet.New(b)
	// Any ct rule hooks conntrack in; entries created over ctnetlink do
	// not need it, but a table a rule uses is the real case.
	ns.Run(b, "nft", "add table inet t")
	ns.Run(b, "nft", "add chain inet t c { type filter hook input priority 0 ; }")
	ns.Run(b, "nft", "add rule inet t c ct state new counter")
	h, err := netns.FromPath(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	c, err := conntrack.Dial(netlinkConfig(h))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for i, f := range flows {
		if err := c.Create(f); err != nil {
			b.Fatalf("create entry %d: %v (net.netfilter.nf_conntrack_max too low?)", i, err)
		}
	}
	return h, c
}

// BenchmarkConntrackRead dumps a table of 250,000 entries from the kernel
// and indexes it, and against the same table asks for the entries of
// 40,000 and of 200 connections one by one, as tcpvet does for a table too
// large to dump. It needs root, and fills a namespace's table of its own.
func BenchmarkConntrackRead(b *testing.B) {
	if !modulePresent("nf_conntrack_netlink") {
		b.Skip("nf_conntrack_netlink is not loaded")
	}
	n := 250000
	flows, conns := benchFlows(n, 40000)
	h, c := filledConntrack(b, flows)
	b.Run(fmt.Sprintf("dump-%d", n), func(b *testing.B) {
		for b.Loop() {
			got, err := c.Dump(nil)
			if err != nil || len(got) < n {
				b.Fatalf("dump: %d entries, %v", len(got), err)
			}
			newConntrack(got, "host")
		}
	})
	for _, m := range []int{40000, 200} {
		b.Run(fmt.Sprintf("lookup-%d", m), func(b *testing.B) {
			for b.Loop() {
				got, err := lookupFlows(h, conns[:m])
				if err != nil || len(got) != m {
					b.Fatalf("lookup: %d entries, %v", len(got), err)
				}
				newConntrack(got, "host")
			}
		})
	}
}

// BenchmarkHostAsTarget takes a snapshot of a host namespace whose
// conntrack holds 20,000 entries (all a table may hold and still be
// dumped), as a node sweep takes the host's own: through the view the
// sweep read once (view), and reading it again (again), as sweeps did.
func BenchmarkHostAsTarget(b *testing.B) {
	if !modulePresent("nf_conntrack_netlink") {
		b.Skip("nf_conntrack_netlink is not loaded")
	}
	flows, _ := benchFlows(conntrackDumpLimit, 0)
	h, _ := filledConntrack(b, flows)
	view := ReadHost(h, "")
	if view.Host().Conntrack == nil || view.Host().Conntrack.Flows < conntrackDumpLimit {
		b.Fatalf("the view's conntrack: %+v", view.Host().Conntrack)
	}
	for _, o := range []struct {
		name string
		opts Options
	}{{"view", Options{Target: h, HostView: view}}, {"again", Options{Target: h, Host: h}}} {
		b.Run(o.name, func(b *testing.B) {
			for b.Loop() {
				snap, err := Take(context.Background(), o.opts)
				if err != nil || snap.Target.Conntrack == nil || snap.Target.Conntrack.Flows < conntrackDumpLimit {
					b.Fatalf("take: %v", err)
				}
			}
		})
	}
}
