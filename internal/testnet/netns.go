package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// NS is a named network namespace made for one test.
type NS struct {
	Name string
	// Path is the namespace file, /run/netns/NAME.
	Path string
}

// RequireRoot skips the test unless it runs as root with ip and ss at hand:
// tcpvet's kernel tests need to create namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (iproute2)", tool)
		}
	}
}

// New creates an empty namespace with loopback up and removes it when the
// test ends.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	var b [4]byte
	rand.Read(b[:])
	n := &NS{Name: "tcpvet-" + hex.EncodeToString(b[:])}
	n.Path = "/run/netns/" + n.Name
	Run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command inside n and returns its standard output; a failure fails the test.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Sysctl sets a sysctl inside n.
func (n *NS) Sysctl(t testing.TB, name, value string) {
	t.Helper()
	n.Run(t, "sysctl", "-qw", name+"="+value)
}

// Run runs a command and returns its standard output; a failure fails the
// test and shows what the command said on standard error.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// Link joins a and b with a veth pair. a gets 198.18.N.1 and fd00:7c:N::1, b
// gets 198.18.N.2 and fd00:7c:N::2, where N is subnet.
func Link(t testing.TB, a, b *NS, subnet int) (aAddr, bAddr Addrs) {
	t.Helper()
	ifa, ifb := "va"+a.Name[7:13], "vb"+b.Name[7:13]
	Run(t, "ip", "link", "add", ifa, "netns", a.Name, "type", "veth", "peer", "name", ifb, "netns", b.Name)
	aAddr, bAddr = addrs(subnet, 1), addrs(subnet, 2)
	for _, side := range []struct {
		ns   *NS
		ifc  string
		addr Addrs
	}{{a, ifa, aAddr}, {b, ifb, bAddr}} {
		side.ns.Run(t, "ip", "addr", "add", side.addr.V4+"/24", "dev", side.ifc)
		side.ns.Run(t, "ip", "-6", "addr", "add", side.addr.V6+"/64", "dev", side.ifc, "nodad")
		side.ns.Run(t, "ip", "link", "set", side.ifc, "up")
	}
	return aAddr, bAddr
}

// Addrs are one end's addresses on a link.
type Addrs struct{ V4, V6 string }

func addrs(subnet, host int) Addrs {
	return Addrs{
		V4: fmt.Sprintf("198.18.%d.%d", subnet, host),
		V6: fmt.Sprintf("fd00:7c:%d::%d", subnet, host),
	}
}

// DropInbound makes n silently drop every TCP segment arriving for port, as
// a dead host or a black-holing firewall would.
func (n *NS) DropInbound(t testing.TB, port int) {
	t.Helper()
	n.Run(t, "nft", "add table inet tcpvet")
	n.Run(t, "nft", "add chain inet tcpvet input { type filter hook input priority 0 ; }")
	n.Run(t, "nft", fmt.Sprintf("add rule inet tcpvet input tcp dport %d drop", port))
}

// Path is a client and a server namespace that reach each other through a
// router namespace, which forwards: the shape of a pod, a node and a
// backend, or of a client behind a NAT.
type Path struct {
	Client, Router, Server *NS
	// ClientAddr and ServerAddr are the ends'; RouterClient and
	// RouterServer the router's on each link.
	ClientAddr, RouterClient, RouterServer, ServerAddr Addrs
}

// NewPath builds a Path on subnets 198.18.clientNet.0/24 and
// 198.18.serverNet.0/24, with each end routing through the router.
func NewPath(t testing.TB, clientNet, serverNet int) *Path {
	t.Helper()
	p := &Path{Client: New(t), Router: New(t), Server: New(t)}
	p.ClientAddr, p.RouterClient = Link(t, p.Client, p.Router, clientNet)
	p.RouterServer, p.ServerAddr = Link(t, p.Router, p.Server, serverNet)
	p.Client.Run(t, "ip", "route", "add", "default", "via", p.RouterClient.V4)
	p.Server.Run(t, "ip", "route", "add", "default", "via", p.RouterServer.V4)
	p.Router.Sysctl(t, "net.ipv4.ip_forward", "1")
	return p
}

// ServiceVIP makes the router a service's node, as kube-proxy makes one:
// it tracks every flow it forwards, holds vip on its loopback, and
// translates vip's ports 7000-7099 to the server (DNAT). With
// nf_conntrack_tcp_loose=0 a flow whose entry timed out is no longer
// translated and meets the router's own stack at vip, which resets it.
func (p *Path) ServiceVIP(t testing.TB, vip string) {
	t.Helper()
	r := p.Router
	r.Run(t, "nft", "add table inet fw")
	r.Run(t, "nft", "add chain inet fw forward_filter { type filter hook forward priority 0 ; }")
	// Any ct expression hooks conntrack into the router.
	r.Run(t, "nft", "add rule inet fw forward_filter ct state new counter")
	r.Run(t, "ip", "addr", "add", vip+"/32", "dev", "lo")
	r.Run(t, "nft", "add table ip svc")
	r.Run(t, "nft", "add chain ip svc pre { type nat hook prerouting priority -100 ; }")
	r.Run(t, "nft", fmt.Sprintf("add rule ip svc pre ip daddr %s tcp dport 7000-7099 dnat to %s", vip, p.ServerAddr.V4))
}
