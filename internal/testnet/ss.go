package testnet

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// SSSocket is one socket as `ss -tanoie` prints it: the reference tcpvet is
// held to.
type SSSocket struct {
	State  string // kernel name, e.g. ESTABLISHED
	Local  string
	Remote string
	RecvQ  uint32
	SendQ  uint32
	Timer  string // off when ss prints none
	Count  int    // the timer's retransmit or probe count
	Inode  uint32
	Cookie string // hex, as after "sk:"
}

// ssStates maps ss's state names to the kernel's.
var ssStates = map[string]string{
	"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
	"FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
	"UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK",
	"LISTEN": "LISTEN", "CLOSING": "CLOSING",
}

var (
	ssTimer  = regexp.MustCompile(`timer:\((\w+),[^,]*,(\d+)\)`)
	ssInode  = regexp.MustCompile(`ino:(\d+)`)
	ssCookie = regexp.MustCompile(`sk:([0-9a-f]+)`)
)

// SS runs `ss -tanoie` inside n and returns its sockets by cookie.
func (n *NS) SS(t testing.TB) map[string]SSSocket {
	t.Helper()
	return ParseSS(t, n.Run(t, "ss", "-tanoie"))
}

// ParseSS parses the output of `ss -tanoie`.
func ParseSS(t testing.TB, out string) map[string]SSSocket {
	t.Helper()
	socks := make(map[string]SSSocket)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || strings.HasPrefix(line, "\t") || f[0] == "State" {
			continue
		}
		state, ok := ssStates[f[0]]
		if !ok {
			t.Fatalf("ss: unknown state in %q", line)
		}
		s := SSSocket{State: state, Local: ssAddr(f[3]), Remote: ssAddr(f[4]), Timer: "off"}
		s.RecvQ = atou(t, f[1])
		s.SendQ = atou(t, f[2])
		if m := ssTimer.FindStringSubmatch(line); m != nil {
			s.Timer = m[1]
			s.Count, _ = strconv.Atoi(m[2])
		}
		if m := ssInode.FindStringSubmatch(line); m != nil {
			s.Inode = atou(t, m[1])
		}
		m := ssCookie.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("ss printed no sk: cookie in %q", line)
		}
		s.Cookie = m[1]
		socks[s.Cookie] = s
	}
	return socks
}

// ssAddr turns ss's "*" wildcards and "%iface" scopes into what
// netip.AddrPort prints.
func ssAddr(a string) string {
	i := strings.LastIndex(a, ":")
	host, port := a[:i], a[i+1:]
	if port == "*" {
		port = "0"
	}
	if host == "*" {
		// ss's name for the IPv6 wildcard of a dual-stack socket.
		host = "[::]"
	}
	if strings.HasPrefix(host, "[") && strings.Contains(host, "%") {
		host = host[:strings.Index(host, "%")] + "]"
	}
	return host + ":" + port
}

func atou(t testing.TB, s string) uint32 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("ss: bad number %q", s)
	}
	return uint32(v)
}
