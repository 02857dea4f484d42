package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/internal/testnet/crifake"
	"github.com/tcpvet/tcpvet/node"
)

// sweepDoc is what tcpvet --all-netns --json prints, as far as the tests
// read it.
type sweepDoc struct {
	Schema     string                      `json:"schema"`
	Host       struct{ NetnsInode uint64 } `json:"host"`
	Namespaces []nsDoc                     `json:"namespaces"`
	Notes      []diag.Note                 `json:"notes"`
}

// nsDoc is one namespace of sweepDoc.
type nsDoc struct {
	Target struct {
		NetnsInode uint64 `json:"netns_inode"`
		Path       string `json:"path"`
	} `json:"target"`
	Pod      *struct{ Namespace, Name, UID, Container, Source string } `json:"pod"`
	Sockets  []struct{ State string }                                  `json:"sockets"`
	Findings []struct{ Rule, Severity string }                         `json:"findings"`
	Notes    []diag.Note                                               `json:"notes"`
}

// nsInode is the inode of the namespace file at path.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return statIno(fi)
}

// holding is an agent spec holding 1 listener and n connections to it
// over loopback: 1+2n sockets.
func holding(port, n int) testnet.Spec {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: addr, Mode: testnet.Hold}}, Bulk: map[string]int{addr: n}}
}

// TestAllNetnsFindsEveryNamespaceOnce: 20 namespaces bound under
// /run/netns and 5 held only by processes are each listed once, with
// their own sockets; no namespace of the machine is listed twice; one
// whose connection sits in CLOSE_WAIT comes before the test's clean ones
// and trips --fail-on warning; the plain table has a row for each.
func TestAllNetnsFindsEveryNamespaceOnce(t *testing.T) {
	testnet.RequireRoot(t)
	bin := binary(t)
	want := map[uint64]int{} // inode: sockets
	var bound []*testnet.NS
	for i := range 20 {
		ns := testnet.New(t)
		n := i%4 + 1
		ns.Start(t, holding(7000+i, n))
		want[nsInode(t, ns.Path)] = 1 + 2*n
		bound = append(bound, ns)
	}
	var held []int
	for i := range 5 {
		n := i + 2
		pid := testnet.StartUnshared(t, holding(7100+i, n)).PID
		ino := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid))
		if _, dup := want[ino]; dup {
			t.Fatalf("unshare -n reused a namespace")
		}
		want[ino] = 1 + 2*n
		held = append(held, pid)
	}
	// A connection the application never closes: a warning.
	leak := testnet.New(t)
	leak.Start(t, testnet.Spec{
		Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7200", Mode: testnet.CloseAtOnce}},
		Dial:   []testnet.Dial{{Name: "cw", To: "127.0.0.1:7200", NoReadBack: true}},
	})
	leakIno := nsInode(t, leak.Path)
	// Run in a pod (CI on Kubernetes), the agents are in its cgroup, and
	// so named by it.
	self, _ := os.ReadFile("/proc/self/cgroup")
	_, _, testInPod := node.PodFromCgroup(self)

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "--all-netns", "--json", "--fail-on", "warning")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("--all-netns --fail-on warning with a CLOSE_WAIT namespace: %v, want exit 3; stderr %s", err, stderr.String())
	}
	var doc sweepDoc
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%.2000s", err, stdout.String())
	}
	if doc.Schema != "tcpvet/node/v1" {
		t.Errorf("schema %q", doc.Schema)
	}
	seen := map[uint64]int{}
	pos := map[uint64]int{}
	for i, n := range doc.Namespaces {
		seen[n.Target.NetnsInode]++
		pos[n.Target.NetnsInode] = i
	}
	for ino, c := range seen {
		if c > 1 {
			t.Errorf("namespace %d listed %d times", ino, c)
		}
	}
	for ino, socks := range want {
		i, ok := pos[ino]
		if !ok {
			t.Errorf("namespace %d not listed (notes %q)", ino, doc.Notes)
			continue
		}
		n := doc.Namespaces[i]
		if len(n.Sockets) != socks {
			t.Errorf("namespace %d (%s): %d sockets, want %d", ino, n.Target.Path, len(n.Sockets), socks)
		}
		if n.Pod != nil && !testInPod {
			t.Errorf("namespace %d belongs to no pod, yet %+v", ino, n.Pod)
		}
		if n.Findings == nil || n.Notes == nil {
			t.Errorf("namespace %d: findings and notes must be lists", ino)
		}
	}
	for _, ns := range bound {
		if p := doc.Namespaces[pos[nsInode(t, ns.Path)]].Target.Path; p != ns.Path {
			t.Errorf("%s read through %s, want its bind mount", ns.Name, p)
		}
	}
	for _, pid := range held {
		if p := doc.Namespaces[pos[nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid))]].Target.Path; !strings.HasPrefix(p, "/proc/") {
			t.Errorf("pid %d's namespace read through %s", pid, p)
		}
	}
	li, ok := pos[leakIno]
	if !ok || !slices.ContainsFunc(doc.Namespaces[li].Findings, func(f struct{ Rule, Severity string }) bool { return f.Rule == "close-wait" }) {
		t.Fatalf("the CLOSE_WAIT namespace: listed %v, findings %+v", ok, doc.Namespaces[li].Findings)
	}
	for ino := range want {
		if pos[ino] < li {
			t.Errorf("clean namespace %d ordered before the one with a warning", ino)
		}
	}

	// The plain table: one row per namespace, named by its path.
	out, err := exec.Command(bin, "--all-netns").Output()
	if err != nil {
		t.Fatalf("tcpvet --all-netns: %v", err)
	}
	for _, ns := range bound {
		if !regexpLine(string(out), ns.Path, strconv.FormatUint(nsInode(t, ns.Path), 10)) {
			t.Errorf("no row for %s in:\n%s", ns.Path, out)
		}
	}
	if !regexpLine(string(out), leak.Path, "WARNING close-wait") {
		t.Errorf("no warning row for %s in:\n%s", leak.Path, out)
	}
}

// regexpLine reports whether a line of out holds every one of parts.
func regexpLine(out string, parts ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

var testSandbox = &cri.PodSandboxMetadata{Namespace: "shop", Name: "cart-5f7", Uid: "6b0e8c1d-1111-4222-8333-944455556666"}

// TestAllNetnsCRISocket: --cri-socket names a namespace by the pod the
// runtime there says it is.
func TestAllNetnsCRISocket(t *testing.T) {
	ns := testnet.New(t)
	ns.Start(t, holding(7300, 2))
	var rt crifake.Runtime
	rt.AddPod(t, testSandbox, ns.Path, "cart")
	sock := crifake.Serve(t, &rt)

	out, err := exec.Command(binary(t), "--all-netns", "--json", "--cri-socket", sock).Output()
	if err != nil {
		t.Fatalf("--cri-socket %s: %v", sock, err)
	}
	if err := validate(compileNodeSchema(t), out); err != nil {
		t.Errorf("tcpvet --all-netns --json does not match schema/node.schema.json: %v", err)
	}
	var doc sweepDoc
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	ino := nsInode(t, ns.Path)
	i := slices.IndexFunc(doc.Namespaces, func(n nsDoc) bool { return n.Target.NetnsInode == ino })
	if i < 0 {
		t.Fatalf("%s not listed", ns.Name)
	}
	if p := doc.Namespaces[i].Pod; p == nil || p.Namespace != "shop" || p.Name != "cart-5f7" || p.UID != testSandbox.Uid || p.Container != "cart" || p.Source != "cri" {
		t.Errorf("pod %+v", p)
	}
	if len(doc.Namespaces[i].Sockets) != 5 {
		t.Errorf("%d sockets, want 5", len(doc.Namespaces[i].Sockets))
	}

}

// TestAllNetnsBadCommandLine: --all-netns takes no other target and no
// --watch, --cri-socket means nothing without it and must name a socket.
func TestAllNetnsBadCommandLine(t *testing.T) {
	for _, args := range [][]string{
		{"--all-netns", "--pid", "1"},
		{"--all-netns", "--netns", "/run/netns/x"},
		{"--cri-socket", "/run/x.sock"},
		{"--all-netns", "--cri-socket", "/nonexistent/cri.sock"},
		{"--all-netns", "--cri-socket", "/etc/passwd"},
		{"--all-netns", "--watch", "10s"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

// TestBenchAllNetnsScript runs the benchmark script small, to keep it
// working; its figures are for people, not assertions.
func TestBenchAllNetnsScript(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tool := range []string{"unshare", "nsenter", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	out, err := exec.Command("scripts/bench-allnetns.sh", "5", "20", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("bench-allnetns.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"5 namespaces, 105 TCP sockets in them; the sweep lists 6 namespaces", "ratio: "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

func statIno(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
