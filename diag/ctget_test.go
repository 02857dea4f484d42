package diag

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// ctTable makes a namespace whose conntrack holds flows, created over
// ctnetlink, and returns it with a connection to its ctnetlink.
func ctTable(t *testing.T, flows []conntrack.Flow) (*netns.NS, *conntrack.Conn) {
	t.Helper()
	if !modulePresent("nf_conntrack_netlink") {
		t.Skip("nf_conntrack_netlink is not loaded")
	}
	ns := testnet.New(t)
	h, err := netns.FromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := conntrack.Dial(netlinkConfig(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for i, f := range flows {
		if err := c.Create(f); err != nil {
			t.Fatalf("create entry %d: %v", i, err)
		}
	}
	return h, c
}

// ctFlow is an established flow from from to to, answered from replyFrom.
func ctFlow(proto uint8, from, to, replyFrom string) conntrack.Flow {
	f, t, r := netip.MustParseAddrPort(from), netip.MustParseAddrPort(to), netip.MustParseAddrPort(replyFrom)
	var fl conntrack.Flow
	fl.Status = conntrack.StatusConfirmed | conntrack.StatusAssured | conntrack.StatusSeenReply
	fl.Timeout = 600
	if proto == unix.IPPROTO_TCP {
		fl.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: 3}
	}
	fl.TupleOrig = conntrack.Tuple{IP: conntrack.IPTuple{SourceAddress: f.Addr(), DestinationAddress: t.Addr()},
		Proto: conntrack.ProtoTuple{Protocol: proto, SourcePort: f.Port(), DestinationPort: t.Port()}}
	fl.TupleReply = conntrack.Tuple{IP: conntrack.IPTuple{SourceAddress: r.Addr(), DestinationAddress: f.Addr()},
		Proto: conntrack.ProtoTuple{Protocol: proto, SourcePort: r.Port(), DestinationPort: f.Port()}}
	return fl
}

// TestLookupFlows asks a table for the entries of connections one by one,
// from the client's view (the entry's original direction) and from the
// server's (its reply direction, behind a translation), and finds what a
// dump of the same table holds, each entry once; a connection the table
// has no entry for, or an entry of another protocol, is not found and is
// no error.
func TestLookupFlows(t *testing.T) {
	// More than a batch of requests, so that answers to several batches
	// and a miss amid a batch are read.
	flows, _ := benchFlows(3*ctGetBatch+5, 0)
	flows = append(flows,
		ctFlow(unix.IPPROTO_TCP, "[fd00::5]:40008", "[fd00:96::a]:80", "[fd00:244::7]:8080"),
		ctFlow(unix.IPPROTO_TCP, "192.0.2.1:5000", "192.0.2.2:443", "192.0.2.2:443"),
		ctFlow(unix.IPPROTO_UDP, "192.0.2.1:5353", "192.0.2.2:53", "192.0.2.2:53"),
	)
	ns, c := ctTable(t, flows)
	dumped, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[flowKey]conntrack.Flow{}
	for _, f := range dumped {
		if f.TupleOrig.Proto.Protocol == unix.IPPROTO_TCP {
			want[tupleKey(f.TupleOrig)] = f
		}
	}
	if len(want) != len(flows)-1 {
		t.Fatalf("the table holds %d TCP entries, want %d", len(want), len(flows)-1)
	}

	ap := netip.MustParseAddrPort
	var clients, servers []flowKey
	for _, f := range flows[:len(flows)-1] {
		clients = append(clients, tupleKey(f.TupleOrig))
		servers = append(servers, tupleKey(f.TupleReply))
	}
	missing := []flowKey{
		keyOf(ap("10.200.0.1:1234"), ap("10.96.0.10:80")),
		// Only the UDP entry has this tuple.
		keyOf(ap("192.0.2.1:5353"), ap("192.0.2.2:53")),
		// A client's view turned around is neither direction of its entry.
		keyOf(ap("10.96.0.10:80"), ap("10.0.0.1:40000")),
	}
	interleave := func(a, b []flowKey) []flowKey {
		out := append([]flowKey(nil), a...)
		for i, k := range b {
			at := min(len(out), (i+1)*ctGetBatch/2)
			out = append(out[:at], append([]flowKey{k}, out[at:]...)...)
		}
		return out
	}
	tests := []struct {
		name  string
		conns []flowKey
		want  int
	}{
		{"clients", interleave(clients, missing), len(want)},
		{"servers", interleave(servers, missing), len(want)},
		// Both ends of each connection, as when both sockets are in
		// the namespace: one entry each.
		{"both ends", append(append([]flowKey(nil), clients...), servers...), len(want)},
		{"none there", missing, 0},
		{"nothing asked", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lookupFlows(ns, tt.conns)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Errorf("found %d entries, want %d", len(got), tt.want)
			}
			seen := map[flowKey]bool{}
			for _, f := range got {
				k := tupleKey(f.TupleOrig)
				w, ok := want[k]
				switch {
				case !ok:
					t.Errorf("found %v, which a dump does not hold", k)
					continue
				case seen[k]:
					t.Errorf("found %v twice", k)
				}
				seen[k] = true
				if err := sameFlow(f, w); err != nil {
					t.Errorf("entry %v: %v", k, err)
				}
			}
		})
	}

	// A small receive buffer takes smaller batches, whose answers fit.
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, netlinkConfig(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if got, err := getFlows(nc, clients); err != nil || len(got) != len(want) {
		t.Errorf("with a small receive buffer: %d entries, %v; want %d", len(got), err, len(want))
	}

	// The table tcpvet builds from the entries found joins every socket
	// as the one it builds from a dump does.
	got, err := lookupFlows(ns, append(append([]flowKey(nil), clients...), servers...))
	if err != nil {
		t.Fatal(err)
	}
	looked, full := newConntrack(got, "host"), newConntrack(dumped, "host")
	if looked.Flows != full.Flows {
		t.Errorf("Flows = %d, a dump's %d", looked.Flows, full.Flows)
	}
	for _, k := range append(append(clients, servers...), missing...) {
		l, f := looked.Lookup(k.from, k.to), full.Lookup(k.from, k.to)
		if (l == nil) != (f == nil) {
			t.Errorf("Lookup(%v, %v) = %+v, with a dump %+v", k.from, k.to, l, f)
			continue
		}
		if l == nil {
			continue
		}
		if d := int64(l.ExpiresInS) - int64(f.ExpiresInS); d < -2 || d > 2 {
			t.Errorf("Lookup(%v, %v): %d s left, with a dump %d s", k.from, k.to, l.ExpiresInS, f.ExpiresInS)
		}
		l.ExpiresInS = f.ExpiresInS
		if *l != *f {
			t.Errorf("Lookup(%v, %v) = %+v, with a dump %+v", k.from, k.to, l, f)
		}
	}
}

// sameFlow compares what tcpvet reads of an entry found by lookup with the
// same entry dumped: the time left may have ticked down in between.
func sameFlow(got, want conntrack.Flow) error {
	switch {
	case got.TupleOrig != want.TupleOrig || got.TupleReply != want.TupleReply:
		return fmt.Errorf("tuples %v %v, dumped %v %v", got.TupleOrig, got.TupleReply, want.TupleOrig, want.TupleReply)
	case got.Status != want.Status:
		return fmt.Errorf("status %v, dumped %v", got.Status, want.Status)
	case got.ProtoInfo.TCP == nil || want.ProtoInfo.TCP == nil || got.ProtoInfo.TCP.State != want.ProtoInfo.TCP.State:
		return fmt.Errorf("TCP state %+v, dumped %+v", got.ProtoInfo.TCP, want.ProtoInfo.TCP)
	case got.Timeout > want.Timeout || want.Timeout-got.Timeout > 2:
		return fmt.Errorf("%d s left, dumped with %d", got.Timeout, want.Timeout)
	}
	return nil
}

// TestReadConntrackLooksUp reads a table said to be too large to dump by
// asking for the entries of the connections given, and notes instead a
// namespace with more connections than tcpvet asks for.
func TestReadConntrackLooksUp(t *testing.T) {
	flows, conns := benchFlows(10, 10)
	ns, _ := ctTable(t, flows)
	large := Sysctls{ConntrackCount: conntrackDumpLimit + 1}
	ap := netip.MustParseAddrPort
	asked := append(conns[:5:5], keyOf(ap("10.200.0.1:1234"), ap("10.96.0.10:80")))
	ct := readConntrack(ns, "host", large, asked)
	if !ct.Read || !ct.LookedUp || ct.Flows != 5 {
		t.Fatalf("read = %v, looked up = %v, %d flows (%s); want 5 flows looked up", ct.Read, ct.LookedUp, ct.Flows, ct.Reason)
	}
	for i, k := range conns {
		if f := ct.Lookup(k.from, k.to); (f != nil) != (i < 5) {
			t.Errorf("Lookup(%v, %v) = %+v: only the first 5 were asked for", k.from, k.to, f)
		}
	}
	if ct := readConntrack(ns, "host", Sysctls{ConntrackCount: 10}, asked); !ct.Read || ct.LookedUp || ct.Flows != 10 {
		t.Errorf("a small table: read = %v, looked up = %v, %d flows; want all 10 dumped", ct.Read, ct.LookedUp, ct.Flows)
	}
	many := make([]flowKey, conntrackLookupLimit+1)
	if ct := readConntrack(ns, "host", large, many); ct.Read || !strings.Contains(ct.Reason, "established connections") {
		t.Errorf("too many connections: read = %v, reason %q", ct.Read, ct.Reason)
	}
}
