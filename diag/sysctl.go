package diag

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Sysctl names tcpvet reads in every namespace it looks at. All of them are
// per network namespace: tuning the host does not reach a pod.
const (
	KeepaliveTime   = "net.ipv4.tcp_keepalive_time"
	KeepaliveIntvl  = "net.ipv4.tcp_keepalive_intvl"
	KeepaliveProbes = "net.ipv4.tcp_keepalive_probes"
	Retries1        = "net.ipv4.tcp_retries1"
	Retries2        = "net.ipv4.tcp_retries2"
	FinTimeout      = "net.ipv4.tcp_fin_timeout"
	SynRetries      = "net.ipv4.tcp_syn_retries"
	SynackRetries   = "net.ipv4.tcp_synack_retries"
	// SynLinearTimeouts (6.5+) is how many SYN retransmissions come at a
	// constant RTO before it doubles: they add to tcp_syn_retries.
	SynLinearTimeouts = "net.ipv4.tcp_syn_linear_timeouts"
	RTOMinUS          = "net.ipv4.tcp_rto_min_us"
	RTOMaxMS          = "net.ipv4.tcp_rto_max_ms"

	ConntrackEstablished = "net.netfilter.nf_conntrack_tcp_timeout_established"
	ConntrackCloseWait   = "net.netfilter.nf_conntrack_tcp_timeout_close_wait"
	ConntrackFinWait     = "net.netfilter.nf_conntrack_tcp_timeout_fin_wait"
	ConntrackTimeWait    = "net.netfilter.nf_conntrack_tcp_timeout_time_wait"
	ConntrackUnack       = "net.netfilter.nf_conntrack_tcp_timeout_unacknowledged"
	ConntrackMaxRetrans  = "net.netfilter.nf_conntrack_tcp_timeout_max_retrans"
	// ConntrackLoose (1 by default) lets conntrack pick a forgotten flow
	// up again from any packet of it, not only from a SYN.
	ConntrackLoose = "net.netfilter.nf_conntrack_tcp_loose"
	// ConntrackBeLiberal (0 by default) marks only RSTs, not out-of-window
	// packets, as invalid.
	ConntrackBeLiberal = "net.netfilter.nf_conntrack_tcp_be_liberal"
	// ConntrackCount is how many flows conntrack tracks now, not a setting.
	// The kernel hooks conntrack into a namespace only once a rule there
	// needs it (NAT, ct state), so 0 beside established connections means
	// it tracks none of them.
	ConntrackCount = "net.netfilter.nf_conntrack_count"

	// IPVSExpireNodestConn decides what IPVS does with a packet of a
	// connection whose real server was removed: 0 (the kernel's default)
	// drops it silently, 1 (what kube-proxy sets) expires the connection.
	IPVSExpireNodestConn = "net.ipv4.vs.expire_nodest_conn"
)

// sysctlNames are read in this order; those the kernel lacks (no conntrack
// loaded, no tcp_rto_max_ms before 6.15) are left out of the result.
var sysctlNames = []string{
	KeepaliveTime, KeepaliveIntvl, KeepaliveProbes,
	Retries1, Retries2, FinTimeout, SynRetries, SynackRetries, SynLinearTimeouts, RTOMinUS, RTOMaxMS,
	ConntrackEstablished, ConntrackCloseWait, ConntrackFinWait, ConntrackTimeWait,
	ConntrackUnack, ConntrackMaxRetrans, ConntrackLoose, ConntrackBeLiberal, ConntrackCount,
	IPVSExpireNodestConn,
}

// Sysctls maps a sysctl's dotted name to its value.
type Sysctls map[string]int64

// Get returns the value of name and whether it was read.
func (s Sysctls) Get(name string) (int64, bool) {
	v, ok := s[name]
	return v, ok
}

// readSysctls reads sysctlNames under procSys (normally /proc/sys) as the
// calling thread's namespace shows them.
func readSysctls(procSys string) (Sysctls, error) {
	out := make(Sysctls, len(sysctlNames))
	for _, name := range sysctlNames {
		b, err := os.ReadFile(procSys + "/" + strings.ReplaceAll(name, ".", "/"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			continue
		}
		out[name] = v
	}
	return out, nil
}
