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
	ct := newConntrack([]conntrack.Flow{
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
	}, "target")
	got := map[flowKey]netip.AddrPort{}
	for k := range ct.entries {
		if to, ok := ct.RedirectOf(k.from, k.to); ok {
			got[k] = to
		}
	}
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
	if to, _ := ct.RedirectOf(mapped.from, mapped.to); to != netip.MustParseAddrPort("127.0.0.1:15001") {
		t.Errorf("an IPv4-mapped socket does not find its flow: %v", to)
	}
	if ct.Flows != 4 {
		t.Errorf("Flows = %d, want the 4 TCP entries", ct.Flows)
	}
}

// TestConntrackJoinsBothEnds finds a translated flow's entry from the
// client, by its original direction, and from the server behind the
// translation, by the reply direction; and sums up what is translated.
func TestConntrackJoinsBothEnds(t *testing.T) {
	ap := netip.MustParseAddrPort
	var dnat, snat conntrack.Flow
	dnat.Status = conntrack.StatusDstNAT | conntrack.StatusConfirmed
	dnat.Timeout = 41
	dnat.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: 3}
	dnat.TupleOrig.IP = conntrack.IPTuple{SourceAddress: ap("10.0.0.5:1").Addr(), DestinationAddress: ap("10.96.0.1:1").Addr()}
	dnat.TupleOrig.Proto = conntrack.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: 40000, DestinationPort: 80}
	dnat.TupleReply.IP = conntrack.IPTuple{SourceAddress: ap("10.1.0.7:1").Addr(), DestinationAddress: ap("10.0.0.5:1").Addr()}
	dnat.TupleReply.Proto = conntrack.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: 7001, DestinationPort: 40000}
	snat.Status = conntrack.StatusSrcNAT
	snat.TupleOrig.IP = conntrack.IPTuple{SourceAddress: ap("10.0.0.6:1").Addr(), DestinationAddress: ap("192.0.2.9:1").Addr()}
	snat.TupleOrig.Proto = conntrack.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: 5000, DestinationPort: 443}
	snat.TupleReply.IP = conntrack.IPTuple{SourceAddress: ap("192.0.2.9:1").Addr(), DestinationAddress: ap("203.0.113.1:1").Addr()}
	snat.TupleReply.Proto = conntrack.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: 443, DestinationPort: 61000}
	ct := newConntrack([]conntrack.Flow{dnat, snat}, "host")

	tests := []struct {
		local, remote string
		side, nat     string
	}{
		{"10.0.0.5:40000", "10.96.0.1:80", "original", "dnat"},
		{"10.1.0.7:7001", "10.0.0.5:40000", "reply", "dnat"},
		{"[::ffff:10.1.0.7]:7001", "[::ffff:10.0.0.5]:40000", "reply", "dnat"},
		{"10.0.0.6:5000", "192.0.2.9:443", "original", "snat"},
		{"192.0.2.9:443", "203.0.113.1:61000", "reply", "snat"},
	}
	for _, tt := range tests {
		f := ct.Lookup(ap(tt.local), ap(tt.remote))
		if f == nil || f.Side != tt.side || f.NAT != tt.nat || f.Netns != "host" {
			t.Errorf("Lookup(%s, %s) = %+v, want side %s, nat %s", tt.local, tt.remote, f, tt.side, tt.nat)
		}
	}
	if f := ct.Lookup(ap("10.0.0.5:40000"), ap("10.1.0.7:7001")); f != nil {
		t.Errorf("a client socket matched the translated destination: %+v", f)
	}
	if f := ct.Lookup(ap("10.0.0.5:40000"), ap("10.96.0.1:80")); f.ExpiresInS != 41 || f.TCPState != "ESTABLISHED" || f.Original != "10.0.0.5:40000->10.96.0.1:80" || f.Reply != "10.1.0.7:7001->10.0.0.5:40000" {
		t.Errorf("entry = %+v", f)
	}
	if b := ct.Services[ap("10.96.0.1:80")]; len(b) != 1 || b[0] != ap("10.1.0.7:7001") {
		t.Errorf("Services = %v, want 10.96.0.1:80 to one backend", ct.Services)
	}
	if len(ct.Masqueraded) != 1 || ct.Masqueraded[0] != ap("10.0.0.6:1").Addr() {
		t.Errorf("Masqueraded = %v", ct.Masqueraded)
	}
	var none *Conntrack
	if none.Lookup(ap("10.0.0.5:40000"), ap("10.96.0.1:80")) != nil {
		t.Error("a table not read found an entry")
	}
}

// TestTimeoutIn derives the timeout in force for an entry from the time it
// has left and the flow's quiet: a timeout policy shows as less than the
// sysctl, and anything else as the sysctl.
func TestTimeoutIn(t *testing.T) {
	sys := Sysctls{ConntrackEstablished: 432000, ConntrackTimeWait: 120}
	quiet := func(ms uint32) *TCPInfo {
		return &TCPInfo{LastDataSentMS: ms, LastDataRecvMS: ms + 500, LastAckRecvMS: ms}
	}
	tests := []struct {
		name string
		f    Flow
		info *TCPInfo
		sys  Sysctls
		want uint32
	}{
		{"a policy of 8 s, 2.3 s quiet", Flow{TCPState: "ESTABLISHED", ExpiresInS: 5}, quiet(2300), sys, 8},
		{"a policy of 8 s, just refreshed", Flow{TCPState: "ESTABLISHED", ExpiresInS: 7}, quiet(20), sys, 8},
		{"the sysctl", Flow{TCPState: "ESTABLISHED", ExpiresInS: 431990}, quiet(9500), sys, 432000},
		{"refreshed by what tcp_info does not count", Flow{TCPState: "ESTABLISHED", ExpiresInS: 431999}, quiet(60000), sys, 432000},
		{"another state's sysctl", Flow{TCPState: "TIME_WAIT", ExpiresInS: 100}, quiet(20000), sys, 120},
		{"no tcp_info", Flow{TCPState: "ESTABLISHED", ExpiresInS: 5}, nil, sys, 432000},
		{"a state without a sysctl here", Flow{TCPState: "SYN_SENT", ExpiresInS: 5}, quiet(1), sys, 0},
		{"sysctls unknown", Flow{TCPState: "ESTABLISHED", ExpiresInS: 5}, quiet(1), nil, 0},
	}
	for _, tt := range tests {
		if got := tt.f.timeoutIn(tt.sys, tt.info); got != tt.want {
			t.Errorf("%s: timeoutIn = %d, want %d", tt.name, got, tt.want)
		}
	}
}
