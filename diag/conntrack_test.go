package diag

import (
	"net/netip"
	"testing"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

func TestRedirects(t *testing.T) {
	flow := func(proto uint8, status conntrack.Status, from, to, replyFrom string) conntrack.Flow {
		f, t2, r := netip.MustParseAddrPort(from), netip.MustParseAddrPort(to), netip.MustParseAddrPort(replyFrom)
		var fl conntrack.Flow
		fl.Status = status
		fl.TupleOrig.IP = conntrack.IPTuple{SourceAddress: f.Addr(), DestinationAddress: t2.Addr()}
		fl.TupleOrig.Proto = conntrack.ProtoTuple{Protocol: proto, SourcePort: f.Port(), DestinationPort: t2.Port()}
		fl.TupleReply.IP = conntrack.IPTuple{SourceAddress: r.Addr(), DestinationAddress: f.Addr()}
		fl.TupleReply.Proto = conntrack.ProtoTuple{Protocol: proto, SourcePort: r.Port(), DestinationPort: f.Port()}
		return fl
	}
	got := redirects([]conntrack.Flow{
		// Istio: the application's connection to a service, to the sidecar.
		flow(unix.IPPROTO_TCP, conntrack.StatusDstNAT|conntrack.StatusConfirmed, "10.244.1.5:40000", "10.96.0.10:80", "127.0.0.1:15001"),
		// Tracked, not translated.
		flow(unix.IPPROTO_TCP, conntrack.StatusConfirmed, "10.244.1.5:40002", "10.244.7.3:5432", "10.244.7.3:5432"),
		// Source NAT alone leaves the destination where it was.
		flow(unix.IPPROTO_TCP, conntrack.StatusSrcNAT, "10.244.1.5:40004", "192.0.2.9:443", "192.0.2.9:443"),
		// Not TCP.
		flow(unix.IPPROTO_UDP, conntrack.StatusDstNAT, "10.244.1.5:40006", "10.96.0.10:53", "127.0.0.1:15053"),
		// IPv6.
		flow(unix.IPPROTO_TCP, conntrack.StatusDstNAT, "[fd00::5]:40008", "[fd00:96::a]:80", "[::1]:15001"),
	})
	want := map[flowKey]netip.AddrPort{
		keyOf(netip.MustParseAddrPort("10.244.1.5:40000"), netip.MustParseAddrPort("10.96.0.10:80")):  netip.MustParseAddrPort("127.0.0.1:15001"),
		keyOf(netip.MustParseAddrPort("[fd00::5]:40008"), netip.MustParseAddrPort("[fd00:96::a]:80")): netip.MustParseAddrPort("[::1]:15001"),
	}
	if len(got) != len(want) {
		t.Errorf("redirects = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("redirects[%v] = %v, want %v", k, got[k], v)
		}
	}
	// A dual-stack socket names the IPv4 flow with mapped addresses.
	mapped := keyOf(netip.MustParseAddrPort("[::ffff:10.244.1.5]:40000"), netip.MustParseAddrPort("[::ffff:10.96.0.10]:80"))
	if got[mapped] != netip.MustParseAddrPort("127.0.0.1:15001") {
		t.Errorf("an IPv4-mapped socket does not find its flow: %v", got[mapped])
	}
}
