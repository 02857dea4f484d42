package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/internal/testnet/crifake"
)

// shotTimeout is the router's nf_conntrack_tcp_timeout_established in the
// screenshots' scenario: short, so that a flow is forgotten while the test
// waits, as the kernel's five days never would.
const shotTimeout = 20

// TestScreenshots captures the screens users judge tcpvet by from a real
// scenario, as ANSI text in $TCPVET_SCREENSHOTS. `make screenshots` turns
// them into the PNGs in screenshots/.
//
// An app's namespace reaches a service address through a router whose
// conntrack translates it (DNAT, as kube-proxy does) and forgets a quiet
// flow after shotTimeout seconds, without picking it up mid-stream again.
// The app holds a dead peer, a stalled reader, a connection its peer
// closed, connections with no keepalive or one too slow for the router,
// one the router has already forgotten, and one it is about to forget,
// which the details screen shows.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("TCPVET_SCREENSHOTS")
	if dir == "" {
		t.Skip("set TCPVET_SCREENSHOTS to a directory (make screenshots)")
	}
	app, router, server := testnet.New(t), testnet.New(t), testnet.New(t)
	appAddr, rAddr := testnet.Link(t, app, router, 1)
	rAddr2, sAddr := testnet.Link(t, router, server, 2)
	app.Run(t, "ip", "route", "add", "default", "via", rAddr.V4)
	app.Run(t, "ip", "-6", "route", "add", "default", "via", rAddr.V6)
	server.Run(t, "ip", "route", "add", "default", "via", rAddr2.V4)
	server.Run(t, "ip", "-6", "route", "add", "default", "via", rAddr2.V6)
	const vip = "198.18.100.1"
	router.Sysctl(t, "net.ipv4.ip_forward", "1")
	router.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	router.Run(t, "ip", "addr", "add", vip+"/32", "dev", "lo")
	router.Run(t, "nft", "add table inet fw")
	router.Run(t, "nft", "add chain inet fw forward { type filter hook forward priority 0 ; }")
	router.Run(t, "nft", "add rule inet fw forward ct state new counter")
	router.Run(t, "nft", "add table ip svc")
	router.Run(t, "nft", "add chain ip svc pre { type nat hook prerouting priority -100 ; }")
	router.Run(t, "nft", fmt.Sprintf("add rule ip svc pre ip daddr %s tcp dport 7000-7099 dnat to %s", vip, sAddr.V4))
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established", fmt.Sprint(shotTimeout))
	// A forgotten flow's next segment reaches the router's own stack, which
	// answers with a reset.
	router.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")

	server.Start(t, testnet.Spec{Listen: []testnet.Listener{
		{Name: "hold", Addr: ":7001", Mode: testnet.Hold},
		{Name: "noread", Addr: ":7002", Mode: testnet.NoRead, RcvBuf: 4096},
		{Name: "close", Addr: ":7003", Mode: testnet.CloseAtOnce},
		{Name: "noclose", Addr: ":7004", Mode: testnet.NoClose},
		{Name: "drop", Addr: ":7005", Mode: testnet.Hold},
	}})
	// The app's processes are named as an app's are, not tcpvet.test: its
	// agent runs the test binary through a link called orders.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	orders := filepath.Join(t.TempDir(), "orders")
	if err := os.Symlink(self, orders); err != nil {
		t.Fatal(err)
	}
	arg0 := os.Args[0]
	t.Cleanup(func() { os.Args[0] = arg0 })
	os.Args[0] = orders
	svc := func(port int) string { return fmt.Sprintf("%s:%d", vip, port) }
	client := app.Start(t, testnet.Spec{
		Listen: []testnet.Listener{{Name: "api", Addr: ":8001", Mode: testnet.Hold, Keepalive: &testnet.KA{Idle: 300}}},
		Dial: []testnet.Dial{
			{Name: "idle", To: svc(7001)},
			{Name: "soon", To: svc(7001)},
			{Name: "ka", To: svc(7001), Keepalive: &testnet.KA{Idle: 10, Interval: 5, Count: 3}},
			{Name: "ka-default", To: svc(7001), Keepalive: &testnet.KA{}},
			{Name: "user-timeout", To: svc(7001), UserTimeoutMS: 5000},
			{Name: "v6", To: fmt.Sprintf("[%s]:7001", sAddr.V6), Keepalive: &testnet.KA{Idle: 30}},
			{Name: "stalled", To: svc(7002), SndBuf: 4096},
			{Name: "close-wait", To: svc(7003), NoReadBack: true},
			{Name: "fin-wait2", To: svc(7004), CloseFirst: true},
			{Name: "time-wait", To: svc(7001), CloseFirst: true},
			{Name: "dead-peer", To: svc(7005)},
		},
	})
	os.Args[0] = arg0
	start := time.Now()
	server.Start(t, testnet.Spec{Dial: []testnet.Dial{
		{Name: "in", To: fmt.Sprintf("%s:8001", appAddr.V4)},
	}})
	// The server now silently drops everything sent to 7005, then the app
	// writes: its retransmit timer runs. The stalled reader's window
	// closes once both buffers are full.
	server.DropInbound(t, 7005)
	client.Write(t, "dead-peer", 1000)
	client.Write(t, "stalled", 1<<20)

	tm := testnet.NewTmux(t, 140, 36, []string{"TERM=xterm-256color", "COLORTERM=truecolor"},
		binary(t), "--netns", app.Path, "--host-netns", router.Path, "--interval", "1s")
	save := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name+".ans"), []byte(tm.Screen(true)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tm.WaitFor(10*time.Second, "half-open", "CLOSE_WAIT", "zero-window")
	// Half way to the router's timeout, "soon" speaks: the router forgets
	// "idle" first, and "soon" a few seconds after the shots.
	time.Sleep(time.Until(start.Add(shotTimeout / 2 * time.Second)))
	client.Write(t, "soon", 100)
	tm.WaitFor(2*shotTimeout*time.Second, "flow-forgotten")
	// The cursor follows its socket as the rows resort: back to the top.
	tm.Keys("g")
	time.Sleep(1500 * time.Millisecond) // let a refresh mark what changed
	save("table")

	tm.Keys("/")
	tm.Keys("-l", client.Local["soon"])
	tm.Keys("Enter")
	tm.WaitFor(5*time.Second, "1/1 of")
	tm.Keys("Enter")
	if s := tm.WaitFor(5*time.Second, "Own options"); !strings.Contains(s, "What the path remembers") {
		t.Fatalf("the details of a flow through the router show no conntrack entry:\n%s", s)
	}
	save("details")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "CLOSE_WAIT")

	tm.Keys("f")
	tm.WaitFor(5*time.Second, "half-open (")
	save("findings")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")

	tm.Keys("?")
	tm.WaitFor(5*time.Second, "sort by state")
	save("help")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")

	// Connections end: the forgotten one meets the router's reset, one
	// closes with a FIN, and the dead peer's is let go of.
	client.Write(t, "idle", 100)
	client.Close(t, "ka")
	client.Close(t, "dead-peer")
	client.Close(t, "idle")
	tm.WaitFor(10*time.Second, "closed: ")
	tm.Keys("c")
	tm.WaitFor(10*time.Second, "reset")
	save("closed")
	tm.Keys("q")

	// The node: every namespace of the machine, the app's and the server's
	// named as the pods a container runtime says they are.
	var rt crifake.Runtime
	rt.AddPod(t, &cri.PodSandboxMetadata{Namespace: "shop", Name: "orders-7d9f4", Uid: "0f3c6a52-5d7e-4f0b-9c1e-3a6b2d8e9f10"}, app.Path, "orders")
	rt.AddPod(t, &cri.PodSandboxMetadata{Namespace: "shop", Name: "inventory-0", Uid: "8e2d41b7-2c9a-4e55-b7d3-61f0c2a4e8b9"}, server.Path, "inventory")
	sock := crifake.Serve(t, &rt)
	nodeTm := testnet.NewTmux(t, 140, 36, []string{"TERM=xterm-256color", "COLORTERM=truecolor"},
		binary(t), "--all-netns", "--cri-socket", sock, "--host-netns", router.Path, "--interval", "2s")
	nodeTm.WaitFor(20*time.Second, "shop/orders-7d9f4", "shop/inventory-0")
	save2 := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name+".ans"), []byte(nodeTm.Screen(true)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	save2("node")
	nodeTm.Keys("q")
}
