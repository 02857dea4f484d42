package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// keepaliveTimings proposes keepalive settings whose first probe comes well
// inside the shortest idle timeout on the path: half of it, so one lost
// probe still leaves room, and a few probes a fraction of that apart.
type keepaliveTimings struct {
	Idle, Interval time.Duration
	Probes         int
}

func proposeKeepalive(shortest time.Duration) keepaliveTimings {
	idle := max(time.Second, (shortest / 2).Truncate(time.Second))
	if idle >= 20*time.Second {
		idle = idle.Truncate(10 * time.Second)
	}
	interval := max(time.Second, min(30*time.Second, (idle/4).Truncate(time.Second)))
	return keepaliveTimings{Idle: idle, Interval: interval, Probes: 4}
}

// tighten keeps each of k no looser than what applies now: the socket's
// own timings when it has keepalive on, else the namespace's sysctls, which
// a socket that turns keepalive on inherits. A fix never loosens anything.
func (k keepaliveTimings) tighten(c conn) keepaliveTimings {
	// cur is the value in force: the socket's own, else the sysctl's; 0
	// when unknown.
	cur := func(own *int, sysctl string) int {
		if ka := c.Keepalive; ka.Enabled != nil && *ka.Enabled && own != nil {
			return *own
		}
		v, _ := c.snap.Target.Sysctls.Get(sysctl)
		return int(v)
	}
	tighter := func(proposed, now int) int {
		if now > 0 && now < proposed {
			return now
		}
		return proposed
	}
	k.Idle = time.Duration(tighter(wholeSecs(k.Idle), cur(c.Keepalive.IdleS, diag.KeepaliveTime))) * time.Second
	k.Interval = time.Duration(tighter(wholeSecs(k.Interval), cur(c.Keepalive.IntervalS, diag.KeepaliveIntvl))) * time.Second
	k.Probes = tighter(k.Probes, cur(c.Keepalive.Probes, diag.KeepaliveProbes))
	return k
}

func wholeSecs(d time.Duration) int { return int(d / time.Second) }

// http2Pings warns that gRPC keepalive fixes the flow but not what tcpvet
// sees, so that the finding staying after the fix is no surprise.
const http2Pings = "HTTP/2 pings keep the flow alive but leave SO_KEEPALIVE off: one snapshot cannot see them, so watch it (tcpvet --watch 1m, or the live view) and tcpvet judges the connection by the quiet it saw"

// keepaliveFixes are the ways to give c keepalive that beats an idle
// timeout of shortest, from the pod down to the socket and up to the mesh,
// never looser than what c has. A socket with its own TCP_KEEPIDLE ignores
// the namespace's sysctls, so for it they are left out.
func keepaliveFixes(c conn, shortest time.Duration) []Fix {
	k := proposeKeepalive(shortest).tighten(c)
	i, n, p := wholeSecs(k.Idle), wholeSecs(k.Interval), k.Probes
	fixes := []Fix{
		{Where: "pod sysctls (safe since Kubernetes 1.29; apply to sockets that turn SO_KEEPALIVE on without their own timings)", Snippet: fmt.Sprintf(`spec:
  securityContext:
    sysctls:
    - {name: net.ipv4.tcp_keepalive_time, value: "%d"}
    - {name: net.ipv4.tcp_keepalive_intvl, value: "%d"}
    - {name: net.ipv4.tcp_keepalive_probes, value: "%d"}`, i, n, p)},
		{Where: "setsockopt (C, on the connected or listening socket)", Snippet: fmt.Sprintf(`int on = 1, idle = %d, intvl = %d, cnt = %d;
setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);`, i, n, p)},
		{Where: "Go net.Dialer / net.ListenConfig", Snippet: fmt.Sprintf(`net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
	Enable: true, Idle: %d * time.Second, Interval: %d * time.Second, Count: %d}}`, i, n, p)},
		{Where: "gRPC Go (client; the server must allow it)", Snippet: fmt.Sprintf(`// `+http2Pings+`
grpc.WithKeepaliveParams(keepalive.ClientParameters{
	Time: %d * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true})
// server:
grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
	MinTime: %d * time.Second, PermitWithoutStream: true})`, i, max(1, i/2))},
		{Where: "gRPC Java (Netty)", Snippet: fmt.Sprintf(`// `+http2Pings+`
NettyChannelBuilder.forTarget(target)
    .keepAliveTime(%d, TimeUnit.SECONDS).keepAliveTimeout(20, TimeUnit.SECONDS)
    .keepAliveWithoutCalls(true);
// server:
NettyServerBuilder.forPort(port)
    .permitKeepAliveTime(%d, TimeUnit.SECONDS).permitKeepAliveWithoutCalls(true);`, i, max(1, i/2))},
		{Where: "gRPC Node (@grpc/grpc-js) and Python (grpcio) channel options", Snippet: fmt.Sprintf(`// `+http2Pings+`
'grpc.keepalive_time_ms': %d, 'grpc.keepalive_timeout_ms': 20000,
'grpc.keepalive_permit_without_calls': 1
// server: 'grpc.http2.min_ping_interval_without_data_ms': %d,
//         'grpc.keepalive_permit_without_calls': 1`, i*1000, max(1, i/2)*1000)},
		{Where: "Istio DestinationRule", Snippet: fmt.Sprintf(`spec:
  trafficPolicy:
    connectionPool:
      tcp:
        tcpKeepalive: {time: %ds, interval: %ds, probes: %d}`, i, n, p)},
		{Where: "Envoy cluster", Snippet: fmt.Sprintf(`upstream_connection_options:
  tcp_keepalive: {keepalive_time: %d, keepalive_interval: %d, keepalive_probes: %d}`, i, n, p)},
		{Where: "Linkerd", Snippet: "the proxy already keeps its own connections alive (LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE / INBOUND_ACCEPT_KEEPALIVE, 10s);\nthis socket bypasses it (skipped or opaque port, or not meshed): mesh it or use a fix above"},
	}
	if c.Keepalive.Source == "socket" {
		return slices.DeleteFunc(fixes, func(f Fix) bool { return strings.HasPrefix(f.Where, "pod sysctls") })
	}
	return fixes
}

// userTimeoutFixes bound how long a dead peer can hold unacknowledged data
// to d, and name the tcp_retries2 that comes near it only where it is
// tighter than what the namespace has (ns, from tcpvet's snapshot).
func userTimeoutFixes(d time.Duration, ns diag.Sysctls) []Fix {
	ms := d.Milliseconds()
	fixes := []Fix{
		{Where: "setsockopt (C)", Snippet: fmt.Sprintf(`unsigned int ms = %d;
setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);`, ms)},
		{Where: "Go", Snippet: fmt.Sprintf(`rc, _ := conn.(*net.TCPConn).SyscallConn()
rc.Control(func(fd uintptr) {
	unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, %d)
})`, ms)},
		{Where: "gRPC Go", Snippet: "keepalive.ClientParameters{Time: ..., Timeout: 20 * time.Second}\n// grpc-go also sets TCP_USER_TIMEOUT to Timeout when keepalive is on"},
		{Where: "gRPC Java (Netty epoll)", Snippet: fmt.Sprintf(`.withOption(EpollChannelOption.TCP_USER_TIMEOUT, %d)`, ms)},
		{Where: "Envoy cluster", Snippet: fmt.Sprintf(`upstream_bind_config:
  socket_options:
  - {level: 6, name: 18, int_value: %d, state: STATE_PREBIND}  # IPPROTO_TCP, TCP_USER_TIMEOUT`, ms)},
	}
	rt, ok := NewRetransmission(ns, 0)
	if eight := ModelTimeout(8, rt.RTOMax); ok && rt.Retries2 > 8 {
		fixes = append(fixes, Fix{Where: "namespace sysctl (not a safe sysctl: the kubelet must allow it with --allowed-unsafe-sysctls)",
			Snippet: fmt.Sprintf("net.ipv4.tcp_retries2 = 8   # ~%.0f s instead of ~%.0f s (tcp_retries2=%d)", eight.Seconds(), rt.AbortAfter(rtoMin).Seconds(), rt.Retries2)})
	}
	return fixes
}
