package rules

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// Expiry is what a middlebox does with a packet of a flow it has forgotten.
type Expiry string

// What middleboxes do once they have forgotten a flow.
const (
	// ExpiryReset: the packet is answered with a reset, and the
	// application sees "connection reset by peer".
	ExpiryReset Expiry = "reset"
	// ExpiryDrop: the packet is dropped without a word; the sender
	// retransmits until it gives up with "connection timed out".
	ExpiryDrop Expiry = "drop"
	// ExpiryResetOrDrop: either, depending on what tcpvet cannot see (NAT,
	// firewall rules, the device's settings).
	ExpiryResetOrDrop Expiry = "reset-or-drop"
	// ExpiryPerFlow: a Linux conntrack, whose forgotten flows meet what
	// their own translation and the namespace's settings decide; each
	// finding's evidence says what ("meets").
	ExpiryPerFlow Expiry = "per-flow"
)

// Middlebox is something on a connection's path that forgets a TCP flow
// after it has been idle for IdleTimeout.
type Middlebox struct {
	Name        string        `json:"name"`
	IdleTimeout time.Duration `json:"-"`
	// IdleTimeoutS is IdleTimeout in seconds, for JSON.
	IdleTimeoutS float64 `json:"idle_timeout_s"`
	// OnExpiry is what the next packet of a forgotten flow meets.
	OnExpiry Expiry `json:"on_expiry"`
	// Source says where the figure comes from: a kernel reading, a flag, or
	// the vendor documentation behind a preset.
	Source string `json:"source"`
	// Scope says which connections pass through it.
	Scope string `json:"scope"`
	// carries says whether a connection passes through the middlebox, and
	// why; nil means every connection that leaves the namespace does.
	carries func(*diag.Socket) (why string, ok bool)
	// tracker is the conntrack behind a "conntrack (...)" middlebox, whose
	// fate for each flow depends on what it knows of it.
	tracker *tracker
	// ipvs is set for an IPVS, whose connection table says how long it
	// keeps each connection.
	ipvs bool
}

// tracker is one namespace's conntrack, with what decides the fate of a
// flow it forgot.
type tracker struct {
	// where is whose conntrack it is, as its flows' Netns says.
	where diag.Role
	// hooks are where the flows of the target's sockets meet its netfilter:
	// forwarded through a host, sent and received in the target.
	hooks     []string
	sysctls   diag.Sysctls
	table     *diag.Conntrack
	firewall  *diag.Firewall
	addresses []netip.Addr
}

// newTracker is the conntrack of ns, the snapshot's namespace of role where,
// met at hooks.
func newTracker(where diag.Role, ns *diag.Namespace, hooks ...string) *tracker {
	return &tracker{where, hooks, ns.Sysctls, ns.Conntrack, ns.Firewall, ns.Addresses}
}

func newMiddlebox(name string, d time.Duration, onExpiry Expiry, source string) Middlebox {
	return Middlebox{Name: name, IdleTimeout: d, IdleTimeoutS: d.Seconds(), OnExpiry: onExpiry, Source: source,
		Scope: "every connection that leaves the namespace"}
}

// Everywhere reports whether every connection that leaves the namespace
// passes through m, rather than only those Scope names.
func (m Middlebox) Everywhere() bool { return m.carries == nil }

// hop is the middlebox a connection meets, and why it meets it ("" when
// every connection does).
type hop struct {
	Middlebox
	why string
}

// describe adds the middlebox, and why the connection meets it, to ev.
func (h *hop) describe(ev *PathEvidence) {
	ev.IdleTimeoutS, ev.Middlebox, ev.MiddleboxSource, ev.OnExpiry, ev.MiddleboxMatch = h.IdleTimeoutS, h.Name, h.Source, h.OnExpiry, h.why
}

// onPath returns the first of path, sorted shortest first, that carries s;
// nil when none does.
func onPath(path []Middlebox, s *diag.Socket) *hop {
	for _, m := range path {
		if m.carries == nil {
			return &hop{Middlebox: m}
		}
		if why, ok := m.carries(s); ok {
			return &hop{Middlebox: m, why: why}
		}
	}
	return nil
}

// Presets are the documented default idle timeouts of common cloud
// middleboxes, by the name --middlebox accepts.
func Presets() []Middlebox {
	return []Middlebox{
		// "The default idle timeout value for TCP flows is 350 seconds."
		// After it, "a client or a target [that] sends data ... receives a TCP RST packet".
		newMiddlebox("aws-nlb", 350*time.Second, ExpiryReset, "preset: AWS Network Load Balancer default TCP idle timeout (docs.aws.amazon.com/elasticloadbalancing/latest/network/update-idle-timeout.html)"),
		// "If a connection that's using a NAT gateway is idle for 350 seconds or more, the connection times out",
		// and the NAT gateway answers further packets of it with an RST.
		newMiddlebox("aws-nat-gateway", 350*time.Second, ExpiryReset, "preset: AWS NAT gateway idle timeout (docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html)"),
		// Network Firewall TcpIdleTimeoutSeconds: "If no value is provided, it defaults to 350 seconds."
		// "After the idle timeout passes, data packets are dropped."
		newMiddlebox("aws-network-firewall", 350*time.Second, ExpiryDrop, "preset: AWS Network Firewall default TCP idle timeout (docs.aws.amazon.com/network-firewall/latest/APIReference/API_FlowTimeouts.html)"),
		// "The default setting is 4 minutes." (configurable 4 to 100 minutes)
		// "Load Balancer's default behavior is to silently drop flows when the idle timeout of a flow is reached";
		// a rule with "TCP reset" enabled sends resets instead.
		newMiddlebox("azure-lb", 4*time.Minute, ExpiryDrop, "preset: Azure Load Balancer default idle timeout, TCP reset off (learn.microsoft.com/azure/load-balancer/load-balancer-tcp-idle-timeout)"),
		// VPC firewall connection tracking keeps an idle established TCP connection 10 minutes;
		// what a later packet meets depends on the firewall rules.
		newMiddlebox("gcp-vpc-firewall", 10*time.Minute, ExpiryResetOrDrop, "preset: Google Cloud VPC firewall connection tracking (cloud.google.com/firewall/docs/firewalls#specifications)"),
		// tcpEstablishedIdleTimeoutSec: "Defaults to 1200s if not set."
		newMiddlebox("gcp-cloud-nat", 20*time.Minute, ExpiryResetOrDrop, "preset: Google Cloud NAT default TCP established idle timeout (cloud.google.com/nat/docs/tune-nat-configuration)"),
		// kube-proxy in IPVS mode leaves the kernel's 900 s unless --ipvs-tcp-timeout is set. A forgotten
		// flow's next packet is not a SYN, so IPVS does not schedule it; it reaches the VIP kube-proxy binds
		// on the node, where no socket has it, and the node's stack resets it.
		newMiddlebox("ipvs", 900*time.Second, ExpiryReset, "preset: IPVS default TCP timeout, kube-proxy IPVS mode (kernel ip_vs_proto_tcp.c)"),
	}
}

// ParseMiddlebox parses a --middlebox value: a preset name, or
// NAME=DURATION (a Go duration, or plain seconds), optionally followed by
// ",reset" or ",drop" for what the middlebox does with a forgotten flow.
func ParseMiddlebox(s string) (Middlebox, error) {
	name, spec, ok := strings.Cut(s, "=")
	if !ok {
		for _, p := range Presets() {
			if p.Name == s {
				return p, nil
			}
		}
		names := make([]string, 0, 8)
		for _, p := range Presets() {
			names = append(names, p.Name)
		}
		return Middlebox{}, fmt.Errorf("not a preset (%s) nor NAME=DURATION[,reset|,drop]", strings.Join(names, ", "))
	}
	dur, then, comma := strings.Cut(spec, ",")
	onExpiry := ExpiryResetOrDrop
	switch {
	case !comma:
	case Expiry(then) == ExpiryReset, Expiry(then) == ExpiryDrop:
		onExpiry = Expiry(then)
	default:
		return Middlebox{}, errors.New("after the duration, want ,reset or ,drop (what it does with a flow it forgot)")
	}
	d, err := time.ParseDuration(dur)
	if err != nil {
		if secs, serr := time.ParseDuration(dur + "s"); serr == nil {
			d, err = secs, nil
		}
	}
	if err != nil || d <= 0 || name == "" {
		return Middlebox{}, errors.New("want NAME=DURATION with a positive duration such as 350s or 4m")
	}
	return newMiddlebox(name, d, onExpiry, "declared: --middlebox "+s), nil
}

// PathTimeouts lists every idle timeout known on the target's path: IPVS
// and conntrack on the host (or in the target, which may itself NAT), and
// the middleboxes the user declared, shortest first.
func PathTimeouts(snap *diag.Snapshot, declared []Middlebox) []Middlebox {
	out := slices.Clone(declared)
	if m, ok := ipvsMiddlebox(snap.Host.IPVS, diag.Host); ok {
		out = append(out, m)
	}
	if m, ok := ipvsMiddlebox(snap.Target.IPVS, diag.Target); ok {
		out = append(out, m)
	}
	if m, ok := conntrackMiddlebox(newTracker(diag.Host, &snap.Host, "prerouting", "forward")); ok {
		out = append(out, m)
	}
	if m, ok := conntrackMiddlebox(newTracker(diag.Target, &snap.Target, "output", "input", "prerouting")); ok {
		out = append(out, m)
	}
	slices.SortStableFunc(out, func(a, b Middlebox) int { return cmp.Compare(a.IdleTimeout, b.IdleTimeout) })
	return out
}

// conntrackMiddlebox is the conntrack of a namespace, if it tracks any
// flow: it forgets an idle established one after its timeout. What the
// next packet then meets depends on the flow and the namespace (see fate).
func conntrackMiddlebox(t *tracker) (Middlebox, bool) {
	secs, ok := t.sysctls.Get(diag.ConntrackEstablished)
	if !ok || secs <= 0 {
		return Middlebox{}, false
	}
	if n, ok := t.sysctls.Get(diag.ConntrackCount); ok && n == 0 {
		return Middlebox{}, false
	}
	m := newMiddlebox("conntrack ("+t.where.String()+")", time.Duration(secs)*time.Second, ExpiryPerFlow, t.where.String()+" sysctl "+diag.ConntrackEstablished)
	m.tracker = t
	return m, true
}

// ipvsName names the IPVS of the namespace of role where.
func ipvsName(where diag.Role) string { return "ipvs (" + where.String() + ")" }

// ipvsMiddlebox is the IPVS of the namespace of role where, if it carries
// any TCP flow. A loaded IPVS module answers with its timeouts in every
// namespace, balancing something or not: only its services say which
// connections it carries, a virtual service's clients and its real servers.
func ipvsMiddlebox(v *diag.IPVS, where diag.Role) (Middlebox, bool) {
	if v == nil || !v.Present || v.TCPTimeoutS == 0 {
		return Middlebox{}, false
	}
	m := newMiddlebox(ipvsName(where), time.Duration(v.TCPTimeoutS)*time.Second, ExpiryReset, where.String()+" IPVS tcp timeout (ipvsadm -l --timeout)")
	m.ipvs = true
	switch {
	case !v.ServicesListed:
		m.Scope = "every connection that leaves the namespace: IPVS's services could not be listed"
		return m, true
	case v.FWMarkServices > 0:
		m.Scope = fmt.Sprintf("every connection that leaves the namespace: %s selected by firewall mark can carry any flow", plural(v.FWMarkServices, "service"))
		return m, true
	case len(v.Services) == 0:
		return Middlebox{}, false
	}
	vips := make(map[netip.AddrPort]bool, len(v.Services))
	reals := make(map[netip.AddrPort]netip.AddrPort, v.RealServers)
	for _, svc := range v.Services {
		vips[unmap(svc.VIP)] = true
		for _, rs := range svc.RealServers {
			if _, dup := reals[unmap(rs)]; !dup {
				reals[unmap(rs)] = svc.VIP
			}
		}
	}
	m.Scope = fmt.Sprintf("connections to its %s, and those accepted by its %s",
		plural(len(vips), "TCP virtual service"), plural(len(reals), "real server"))
	m.carries = func(s *diag.Socket) (string, bool) {
		if vips[unmap(s.Remote)] {
			return fmt.Sprintf("%s is a virtual service of the %s's IPVS", s.Remote, where), true
		}
		if vip, ok := reals[unmap(s.Local)]; ok {
			return fmt.Sprintf("%s is a real server of IPVS virtual service %s (%s)", s.Local, vip, where), true
		}
		return "", false
	}
	return m, true
}

func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }
