package rules

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// Middlebox is something on a connection's path that forgets a TCP flow
// after it has been idle for IdleTimeout.
type Middlebox struct {
	Name        string        `json:"name"`
	IdleTimeout time.Duration `json:"-"`
	// IdleTimeoutS is IdleTimeout in seconds, for JSON.
	IdleTimeoutS float64 `json:"idle_timeout_s"`
	// Source says where the figure comes from: a kernel reading, a flag, or
	// the vendor documentation behind a preset.
	Source string `json:"source"`
}

func newMiddlebox(name string, d time.Duration, source string) Middlebox {
	return Middlebox{Name: name, IdleTimeout: d, IdleTimeoutS: d.Seconds(), Source: source}
}

// Presets are the documented default idle timeouts of common cloud
// middleboxes, by the name --middlebox accepts.
func Presets() []Middlebox {
	return []Middlebox{
		// "The default idle timeout value for TCP flows is 350 seconds."
		newMiddlebox("aws-nlb", 350*time.Second, "preset: AWS Network Load Balancer default TCP idle timeout (docs.aws.amazon.com/elasticloadbalancing/latest/network/update-idle-timeout.html)"),
		// "If a connection that's using a NAT gateway is idle for 350 seconds or more, the connection times out."
		newMiddlebox("aws-nat-gateway", 350*time.Second, "preset: AWS NAT gateway idle timeout (docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html)"),
		// Network Firewall TcpIdleTimeoutSeconds: "If no value is provided, it defaults to 350 seconds."
		newMiddlebox("aws-network-firewall", 350*time.Second, "preset: AWS Network Firewall default TCP idle timeout (docs.aws.amazon.com/network-firewall/latest/APIReference/API_FlowTimeouts.html)"),
		// "The default setting is 4 minutes." (configurable 4 to 100 minutes)
		newMiddlebox("azure-lb", 4*time.Minute, "preset: Azure Load Balancer default idle timeout (learn.microsoft.com/azure/load-balancer/load-balancer-tcp-idle-timeout)"),
		// VPC firewall connection tracking keeps an idle established TCP connection 10 minutes.
		newMiddlebox("gcp-vpc-firewall", 10*time.Minute, "preset: Google Cloud VPC firewall connection tracking (cloud.google.com/firewall/docs/firewalls#specifications)"),
		// tcpEstablishedIdleTimeoutSec: "Defaults to 1200s if not set."
		newMiddlebox("gcp-cloud-nat", 20*time.Minute, "preset: Google Cloud NAT default TCP established idle timeout (cloud.google.com/nat/docs/tune-nat-configuration)"),
		// kube-proxy in IPVS mode leaves the kernel's 900 s unless --ipvs-tcp-timeout is set.
		newMiddlebox("ipvs", 900*time.Second, "preset: IPVS default TCP timeout, kube-proxy IPVS mode (kernel ip_vs_proto_tcp.c)"),
	}
}

// ParseMiddlebox parses a --middlebox value: a preset name, or NAME=DURATION
// (a Go duration, or plain seconds).
func ParseMiddlebox(s string) (Middlebox, error) {
	name, dur, ok := strings.Cut(s, "=")
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
		return Middlebox{}, fmt.Errorf("--middlebox %q: not a preset (%s) nor NAME=DURATION", s, strings.Join(names, ", "))
	}
	d, err := time.ParseDuration(dur)
	if err != nil {
		if secs, serr := time.ParseDuration(dur + "s"); serr == nil {
			d, err = secs, nil
		}
	}
	if err != nil || d <= 0 || name == "" {
		return Middlebox{}, fmt.Errorf("--middlebox %q: want NAME=DURATION with a positive duration such as 350s or 4m", s)
	}
	return newMiddlebox(name, d, "declared: --middlebox "+s), nil
}

// PathTimeouts lists every idle timeout known on the target's path: IPVS
// and conntrack on the host (or in the target, which may itself NAT), and
// the middleboxes the user declared, shortest first.
func PathTimeouts(snap *diag.Snapshot, declared []Middlebox) []Middlebox {
	out := slices.Clone(declared)
	if ipvs := snap.Host.IPVS; ipvs != nil && ipvs.Present && ipvs.TCPTimeoutS > 0 {
		out = append(out, newMiddlebox("ipvs", time.Duration(ipvs.TCPTimeoutS)*time.Second, "host IPVS tcp timeout (ipvsadm -l --timeout)"))
	}
	if v, ok := snap.Sysctls.Host.Get(diag.ConntrackEstablished); ok && v > 0 {
		out = append(out, newMiddlebox("conntrack (host)", time.Duration(v)*time.Second, "host sysctl "+diag.ConntrackEstablished))
	}
	if v, ok := snap.Sysctls.Target.Get(diag.ConntrackEstablished); ok && v > 0 {
		out = append(out, newMiddlebox("conntrack (target)", time.Duration(v)*time.Second, "target sysctl "+diag.ConntrackEstablished))
	}
	slices.SortStableFunc(out, func(a, b Middlebox) int { return cmp.Compare(a.IdleTimeout, b.IdleTimeout) })
	return out
}
