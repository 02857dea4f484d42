package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tcpvet/tcpvet/diag"
)

// watchedSysctls drift between host and pod matters for these.
var watchedSysctls = []string{diag.KeepaliveTime, diag.KeepaliveIntvl, diag.KeepaliveProbes, diag.Retries2}

func podSysctlDiffers(snap *diag.Snapshot) *Finding {
	if !snap.Host.Visible || snap.Host.Sysctls == nil {
		return nil
	}
	diff := map[string]map[string]int64{}
	var parts []string
	var yaml strings.Builder
	for _, name := range watchedSysctls {
		t, tok := snap.Target.Sysctls.Get(name)
		h, hok := snap.Host.Sysctls.Get(name)
		// Each of these is looser the larger it is. A namespace tuned
		// tighter than its host is no finding, and never told to loosen.
		if !tok || !hok || t <= h {
			continue
		}
		diff[name] = map[string]int64{diag.Target.String(): t, diag.Host.String(): h}
		parts = append(parts, fmt.Sprintf("%s=%d (host %d)", strings.TrimPrefix(name, "net.ipv4."), t, h))
		if name != diag.Retries2 {
			fmt.Fprintf(&yaml, "\n    - {name: %s, value: \"%d\"}", name, h)
		}
	}
	if len(diff) == 0 {
		return nil
	}
	fixes := []Fix{}
	if yaml.Len() > 0 {
		fixes = append(fixes, Fix{Where: "pod sysctls (safe since Kubernetes 1.29)", Snippet: "spec:\n  securityContext:\n    sysctls:" + yaml.String()})
	}
	if _, ok := diff[diag.Retries2]; ok {
		fixes = append(fixes, Fix{Where: "pod sysctls (tcp_retries2 is unsafe: the kubelet must allow it with --allowed-unsafe-sysctls)", Snippet: fmt.Sprintf("- {name: net.ipv4.tcp_retries2, value: \"%d\"}", diff[diag.Retries2][diag.Host.String()])})
	}
	return &Finding{
		Rule:     RulePodSysctlDiffers,
		Severity: Warning,
		Summary:  fmt.Sprintf("this namespace is looser than its host: %s; these sysctls are per network namespace, so tuning the node never reached it", strings.Join(parts, ", ")),
		Evidence: Evidence{NamespaceEvidence: &NamespaceEvidence{Sysctls: diff}},
		Fix:      fixes,
	}
}

// ipvsNodestDrop is the rule for the IPVS of ns, the namespace of role where:
// with expire_nodest_conn off, once a rolling update removes a real
// server, IPVS drops its clients' packets without a word, and each client
// hangs until its kernel gives up.
//
// path is the report's, where that IPVS already is, with the connections
// it carries.
func ipvsNodestDrop(path []Middlebox, ns *diag.Namespace, where diag.Role) func(*diag.Snapshot) *Finding {
	return func(snap *diag.Snapshot) *Finding {
		if on, ok := ns.Sysctls.Get(diag.IPVSExpireNodestConn); !ok || on != 0 {
			return nil
		}
		i := slices.IndexFunc(path, func(m Middlebox) bool { return m.Name == ipvsName(where) })
		if i < 0 {
			return nil
		}
		m := path[i]
		var carried []diag.Cookie
		for i := range snap.Sockets {
			s := &snap.Sockets[i]
			if !crossesNetwork(snap, s) {
				continue
			}
			if onPath([]Middlebox{m}, s) != nil {
				carried = append(carried, s.ID)
			}
		}
		if len(carried) == 0 {
			return nil
		}
		hang := "until the kernel gives up"
		if rt, ok := NewRetransmission(snap.Target.Sysctls, 0); ok {
			hang = fmt.Sprintf("up to %s with %s and no TCP_USER_TIMEOUT", human(rt.AbortAfter(rtoMin)), rt.Reason())
		}
		return &Finding{
			Rule:     RuleIPVSNodestDrop,
			Severity: Warning,
			Summary: fmt.Sprintf("the %s's IPVS has %s=0: when a rolling update removes a real server, IPVS silently drops the packets of its open connections, so %s here would hang instead of failing at once: %s",
				where, diag.IPVSExpireNodestConn, plural(len(carried), "connection"), hang),
			Evidence: Evidence{NamespaceEvidence: &NamespaceEvidence{ExpireNodestConn: ptrTo[int64](0), IPVS: where.String(), Exposed: len(carried), Sockets: carried[:min(len(carried), listExposed)]}},
			Fix: []Fix{
				{Where: "the " + where.String() + "'s sysctl (kube-proxy in IPVS mode sets it; 0 means something reset it, or another IPVS manager runs here)", Snippet: "sysctl -w " + diag.IPVSExpireNodestConn + "=1"},
				{Where: "the clients", Snippet: "TCP_USER_TIMEOUT or gRPC keepalive bounds the hang whatever IPVS does"},
			},
		}
	}
}
