package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/internal/testnet/crifake"
	"github.com/tcpvet/tcpvet/netns"
	"github.com/tcpvet/tcpvet/rules"
)

func TestMain(m *testing.M) {
	testnet.MaybeRunAgent()
	os.Exit(m.Run())
}

// inodeOf is the inode of the namespace file at path.
func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// lookup is what discovery found of the namespace at path; nil if nothing.
func lookup(t *testing.T, d *discovery, path string) *found {
	t.Helper()
	ino := inodeOf(t, path)
	for i := range d.list {
		if d.list[i].Inode == ino {
			return &d.list[i]
		}
	}
	return nil
}

// only keeps in d the namespaces of inodes: the machine has others
// (other tests', the host's), which a test need not read.
func only(d *discovery, inodes ...uint64) {
	d.list = slices.DeleteFunc(d.list, func(f found) bool { return !slices.Contains(inodes, f.Inode) })
}

// TestVanishedMidSweep: a namespace removed between discovery and its
// reading is skipped with a note naming it; the rest of the sweep stands.
func TestVanishedMidSweep(t *testing.T) {
	stays, goes := testnet.New(t), testnet.New(t)
	stays.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}}})
	ks, kg := inodeOf(t, stays.Path), inodeOf(t, goes.Path)
	// A file where the runtime's socket should be, and nothing listening.
	silent := filepath.Join(t.TempDir(), "cri.sock")
	if err := os.WriteFile(silent, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := discover(context.Background(), "/proc", "/run/netns", silent)
	if err != nil {
		t.Fatal(err)
	}
	only(d, ks, kg)
	if len(d.list) != 2 {
		t.Fatalf("discovery found %d of the test's 2 namespaces", len(d.list))
	}
	testnet.Run(t, "ip", "netns", "del", goes.Name)

	sw, err := sweepFound(context.Background(), d, Options{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	if len(sw.Namespaces) != 1 || sw.Namespaces[0].Inode != ks || sw.Namespaces[0].Sockets() != 1 {
		t.Fatalf("want only %s with its 1 socket, got %+v", stays.Name, sw.Namespaces)
	}
	if sw.Errors != 0 {
		t.Errorf("a vanished namespace is no error: Errors = %d", sw.Errors)
	}
	want := fmt.Sprintf("network namespace %d vanished mid-sweep", kg)
	if !slices.ContainsFunc(sw.Notes, func(n diag.Note) bool { return n.Code == diag.NoteNamespaceVanished && strings.Contains(n.Text, want) }) {
		t.Errorf("no note %q in %q", want, sw.Notes)
	}
	if !slices.ContainsFunc(sw.Notes, func(n diag.Note) bool {
		return n.Code == diag.NoteCRIUnreachable && strings.Contains(n.Text, "did not answer")
	}) {
		t.Errorf("a CRI socket that does not answer must be noted: %q", sw.Notes)
	}
}

// TestNoRuntimeSocket: a runtime socket that does not exist is said in a
// note, and discovery goes on.
func TestNoRuntimeSocket(t *testing.T) {
	d, err := discover(context.Background(), "/proc", "/run/netns", filepath.Join(t.TempDir(), "nobody.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.list) == 0 || !slices.ContainsFunc(d.notes, func(n diag.Note) bool {
		return n.Code == diag.NoteCRISocketMissing && strings.Contains(n.Text, "no container runtime socket (stat ")
	}) {
		t.Errorf("%d namespaces, notes %q", len(d.list), d.notes)
	}
}

// cgroupRoot is a cgroup hierarchy the test may make directories in: the
// unified one on cgroup v2, else v1's pids controller.
func cgroupRoot(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids"} {
		if _, err := os.Stat(dir + "/cgroup.procs"); err == nil {
			if _, err := os.Stat(dir + "/cgroup.controllers"); err == nil || strings.HasSuffix(dir, "/pids") {
				return dir
			}
		}
	}
	t.Skip("no writable cgroup hierarchy")
	return ""
}

// inCgroup makes the kubelet-style cgroup rel under root, moves pid into
// it, and undoes both when the test ends.
func inCgroup(t *testing.T, root, rel string, pid int) {
	t.Helper()
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot make cgroup %s: %v", dir, err)
	}
	t.Cleanup(func() {
		// The process may be gone; either way the cgroups must go, the
		// deepest first.
		os.WriteFile(root+"/cgroup.procs", []byte(strconv.Itoa(pid)), 0)
		for d := dir; d != root; d = filepath.Dir(d) {
			for range 50 {
				if os.Remove(d) == nil || os.IsNotExist(os.Remove(d)) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if err := os.WriteFile(dir+"/cgroup.procs", []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("move %d into %s: %v", pid, dir, err)
	}
}

// TestPodFromKubeletCgroups: with no container runtime to ask, a
// namespace is named by the pod UID and container ID of the cgroup its
// process is in, in kubelet's cgroupfs and systemd layouts alike.
func TestPodFromKubeletCgroups(t *testing.T) {
	root := cgroupRoot(t)
	const (
		uid1 = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
		uid2 = "11111111-2222-4333-8444-555555555555"
		cid1 = "aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeee0001"
		cid2 = "aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeee0002"
	)
	a, b, plain := testnet.New(t), testnet.New(t), testnet.New(t)
	spec := testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}}}
	pa, pb := a.Start(t, spec), b.Start(t, spec)
	plain.Start(t, spec)
	// Directories of the test's own: a machine running kubelet keeps its
	// real kubepods hierarchy untouched.
	tag := a.Name[len("tcpvet-"):]
	inCgroup(t, root, "tcpvet-"+tag+"/kubepods/burstable/pod"+uid1+"/"+cid1, pa.PID)
	inCgroup(t, root, "tcpvet-"+tag+".slice/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+strings.ReplaceAll(uid2, "-", "_")+".slice/cri-containerd-"+cid2+".scope", pb.PID)

	d, err := discover(context.Background(), "/proc", "/run/netns", filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	d.nameFromCgroups("/proc", nil)
	for _, tc := range []struct {
		ns       *testnet.NS
		uid, cid string
	}{{a, uid1, cid1}, {b, uid2, cid2}} {
		f := lookup(t, d, tc.ns.Path)
		if f == nil || f.pod == nil {
			t.Fatalf("%s: not named from its cgroup: %+v", tc.ns.Name, f)
		}
		if *f.pod != (Pod{UID: tc.uid, Container: tc.cid, Source: "cgroup"}) {
			t.Errorf("%s: pod %+v, want uid %s container %s", tc.ns.Name, *f.pod, tc.uid, tc.cid)
		}
	}
	// Run in a pod (CI on Kubernetes), every process is in its cgroup.
	self, _ := os.ReadFile("/proc/self/cgroup")
	if _, _, inPod := PodFromCgroup(self); inPod {
		return
	}
	if f := lookup(t, d, plain.Path); f == nil || f.pod != nil {
		t.Errorf("%s holds no pod's process, yet: %+v", plain.Name, f)
	}
}

// pinned makes a network namespace that no process holds and no file under
// /run/netns binds, as a runtime pins a sandbox's: a bind mount elsewhere
// of a namespace whose process has exited.
func pinned(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-n", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// unshare has entered the namespace once /proc shows it differ from ours.
	for i := 0; ; i++ {
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &st) == nil && st.Ino != inodeOf(t, "/proc/self/ns/net") {
			break
		}
		if i == 200 {
			t.Fatal("unshare -n never entered a new namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	testnet.Run(t, "mount", "--bind", fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), path)
	t.Cleanup(func() { exec.Command("umount", path).Run() })
	return path
}

// TestCRINamesPods: a runtime speaking the CRI protocol names the pods of
// the namespaces it knows (containerd's and CRI-O's verbose info alike),
// finds the one pinned without a process or /run/netns file, and leaves
// a host-network pod's namespace to the node.
func TestCRINamesPods(t *testing.T) {
	testnet.RequireRoot(t)
	withProc := testnet.New(t)
	withProc.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}}})
	alone := pinned(t)
	md := func(ns, name, uid string) *cri.PodSandboxMetadata {
		return &cri.PodSandboxMetadata{Namespace: ns, Name: name, Uid: uid}
	}
	rt := &crifake.Runtime{
		Sandboxes: []*cri.PodSandbox{
			{Id: "sb-api", Metadata: md("shop", "api-7d9", "uid-api"), State: cri.PodSandboxState_SANDBOX_READY},
			{Id: "sb-idle", Metadata: md("batch", "idle-0", "uid-idle"), State: cri.PodSandboxState_SANDBOX_NOTREADY},
			{Id: "sb-hostnet", Metadata: md("kube-system", "kube-proxy-x", "uid-kp"), State: cri.PodSandboxState_SANDBOX_READY},
			{Id: "sb-gone", Metadata: md("shop", "gone", "uid-gone"), State: cri.PodSandboxState_SANDBOX_NOTREADY},
		},
		Info: map[string]string{
			// containerd's keys beside the spec...
			"sb-api": crifake.SpecInfo(t, withProc.Path, map[string]any{"pid": 4242, "processStatus": "running", "netNamespaceClosed": false, "snapshotter": "overlayfs"}),
			// ...and CRI-O's.
			"sb-idle":    crifake.SpecInfo(t, alone, map[string]any{"image": "registry.k8s.io/pause:3.10", "pid": 0}),
			"sb-hostnet": crifake.SpecInfo(t, "", nil),
			"sb-gone":    crifake.SpecInfo(t, "/run/netns/cni-gone-"+withProc.Name, nil),
		},
		HostNet: map[string]bool{"sb-hostnet": true},
		Containers: []*cri.Container{
			{Id: "c0", PodSandboxId: "sb-api", Metadata: &cri.ContainerMetadata{Name: "init-db"}, State: cri.ContainerState_CONTAINER_EXITED},
			{Id: "c1", PodSandboxId: "sb-api", Metadata: &cri.ContainerMetadata{Name: "envoy"}, State: cri.ContainerState_CONTAINER_RUNNING},
			{Id: "c2", PodSandboxId: "sb-api", Metadata: &cri.ContainerMetadata{Name: "api"}, State: cri.ContainerState_CONTAINER_RUNNING},
			{Id: "c3", PodSandboxId: "sb-hostnet", Metadata: &cri.ContainerMetadata{Name: "kube-proxy"}, State: cri.ContainerState_CONTAINER_RUNNING},
		},
	}
	sock := crifake.Serve(t, rt)

	d, err := discover(context.Background(), "/proc", "/run/netns", sock)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.notes) > 0 && slices.ContainsFunc(d.notes, func(n diag.Note) bool { return strings.HasPrefix(string(n.Code), "cri-") }) {
		t.Errorf("the runtime answered, yet: %q", d.notes)
	}
	kp, ka := inodeOf(t, withProc.Path), inodeOf(t, alone)
	if f := lookup(t, d, withProc.Path); f == nil || f.pod == nil || *f.pod != (Pod{Namespace: "shop", Name: "api-7d9", UID: "uid-api", Container: "api,envoy", Source: "cri"}) {
		t.Errorf("%s: %+v", withProc.Name, f)
	}
	f := lookup(t, d, alone)
	if f == nil || f.pod == nil || f.pod.Name != "idle-0" || f.pod.Namespace != "batch" || len(f.PIDs) != 0 || !slices.Equal(f.Bound, []string{alone}) {
		t.Fatalf("the pinned namespace: %+v", f)
	}
	for _, f := range d.list {
		if f.pod != nil && (f.pod.Name == "kube-proxy-x" || f.pod.Name == "gone") {
			t.Errorf("%s named a namespace it does not have: %+v", f.pod.Name, f)
		}
	}

	// Read the two through the sweep: the pinned one by its bind mount.
	only(d, kp, ka)
	sw, err := sweepFound(context.Background(), d, Options{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*Namespace{}
	for i := range sw.Namespaces {
		got[sw.Namespaces[i].Inode] = &sw.Namespaces[i]
	}
	if n := got[ka]; n == nil || n.Path != alone || n.Snapshot == nil || n.Sockets() != 0 || n.Name() != "batch/idle-0" {
		t.Errorf("pinned namespace read as %+v", n)
	}
	if n := got[kp]; n == nil || n.Sockets() != 1 || n.Name() != "shop/api-7d9" {
		t.Errorf("%s read as %+v", withProc.Name, n)
	}
}

// TestOrderAndWorst: namespaces sort most urgent first, and --fail-on's
// worst spans every namespace.
func TestOrderAndWorst(t *testing.T) {
	in := func(s float64) *float64 { return &s }
	ns := func(ino uint64, socks int, fs ...rules.Finding) Namespace {
		return Namespace{Inode: ino, Snapshot: &diag.Snapshot{Sockets: make([]diag.Socket, socks)}, Report: rules.Report{Findings: fs}}
	}
	sw := &Sweep{Namespaces: []Namespace{
		ns(1, 50),
		ns(2, 1, rules.Finding{Severity: rules.Warning, FailsInS: in(10)}),
		ns(3, 1, rules.Finding{Severity: rules.Critical, FailsInS: in(900)}),
		ns(4, 1, rules.Finding{Severity: rules.Critical, Failing: rules.FailingNow}),
		ns(5, 1, rules.Finding{Severity: rules.Critical, FailsInS: in(60)}),
		ns(6, 1, rules.Finding{Severity: rules.Critical, FailsInS: in(60)}, rules.Finding{Severity: rules.Critical, FailsInS: in(70)}),
		ns(7, 100),
		{Inode: 8, Notes: []diag.Note{{Code: diag.NoteNamespaceUnreadable, Text: "unreadable: gone"}}},
	}}
	slices.SortStableFunc(sw.Namespaces, func(a, b Namespace) int { return CompareUrgency(&a, &b) })
	var order []uint64
	for _, n := range sw.Namespaces {
		order = append(order, n.Inode)
	}
	// An unreadable namespace comes before the healthy: something is amiss.
	if want := []uint64{4, 6, 5, 3, 2, 8, 7, 1}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if w, ok := sw.Worst(); !ok || w != rules.Critical {
		t.Errorf("worst %v %v", w, ok)
	}
	if _, ok := (&Sweep{Namespaces: []Namespace{ns(1, 1)}}).Worst(); ok {
		t.Error("no findings, yet a worst")
	}
}

// TestSweepJSONStreams: the document written a socket at a time is the
// document encoding/json makes of the same sweep.
func TestSweepJSONStreams(t *testing.T) {
	ns := testnet.New(t)
	ns.Start(t, testnet.Spec{
		Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}},
		Bulk:   map[string]int{"127.0.0.1:7000": 700}, // past one flush
	})
	target, err := netns.FromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	snap, err := diag.Take(context.Background(), diag.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	sw := &Sweep{TakenAt: time.Unix(1700000000, 0).UTC(), Duration: 1500 * time.Millisecond, Notes: []diag.Note{{Code: diag.NoteCRISocketMissing, Text: "n"}}, Namespaces: []Namespace{
		{Inode: target.Inode, Path: ns.Path, Pod: &Pod{UID: testUID, Source: "cgroup"}, Snapshot: snap, Report: rules.Evaluate(snap, nil), Notes: []diag.Note{{Code: diag.NoteCRIUnreachable, Text: "named from cgroup"}}},
		{Inode: 7, Path: "/proc/9/ns/net", Notes: []diag.Note{{Code: diag.NoteNamespaceUnreadable, Text: "unreadable: x"}}},
	}}
	var streamed strings.Builder
	if err := WriteJSON(&streamed, sw); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(streamed.String()), &got); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	// What the same document is when encoding/json builds it whole.
	whole := map[string]any{"schema": Schema, "taken_at": sw.TakenAt, "duration_ms": 1500, "host": hostJSON{}, "errors": 0, "notes": sw.Notes}
	var nss []any
	for _, n := range sw.Namespaces {
		o := map[string]any{"target": diag.Namespace{Role: diag.Target, NetnsInode: n.Inode, Path: n.Path}, "pod": n.Pod, "sysctls": nil, "processes": 0,
			"sockets": []diag.Socket{}, "middleboxes": []rules.Middlebox{}, "findings": []rules.Finding{}, "notes": n.Notes}
		if n.Snapshot != nil {
			o["target"], o["sysctls"], o["processes"], o["sockets"] = n.Snapshot.Target, n.Snapshot.Target.Sysctls, n.Snapshot.Processes, n.Snapshot.Sockets
			o["middleboxes"], o["findings"] = nonNil(n.Report.Middleboxes), n.Report.Findings
			o["notes"] = append(append([]diag.Note{}, n.Snapshot.Notes...), n.Notes...)
		}
		nss = append(nss, o)
	}
	whole["namespaces"] = nss
	b, err := json.Marshal(whole)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	json.Unmarshal(b, &want)
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("streamed document differs from encoding/json's:\n got %.600s\nwant %.600s", gb, wb)
	}
	if n := len(got["namespaces"].([]any)[0].(map[string]any)["sockets"].([]any)); n != 1401 {
		t.Errorf("%d sockets in the document, want 1401", n)
	}
}

// TestHostReadOnce: the sweep reads the host once and gives it to every
// other namespace's snapshot; the host's own namespace is marked and sees
// no host beyond itself.
func TestHostReadOnce(t *testing.T) {
	hostNS, pod := testnet.New(t), testnet.New(t)
	host, err := netns.FromPath(hostNS.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	d, err := discover(context.Background(), "/proc", "/run/netns", filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	only(d, host.Inode, inodeOf(t, pod.Path))
	sw, err := sweepFound(context.Background(), d, Options{Host: host}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	if !sw.Host.Visible || sw.Host.NetnsInode != host.Inode || sw.Host.Sysctls == nil {
		t.Fatalf("the sweep's host: %+v, sysctls %v", sw.Host, sw.Host.Sysctls)
	}
	if len(sw.Namespaces) != 2 {
		t.Fatalf("%d namespaces", len(sw.Namespaces))
	}
	for _, n := range sw.Namespaces {
		switch n.Inode {
		case host.Inode:
			if !n.IsHost || n.Snapshot.Host.Visible || !strings.HasPrefix(n.Name(), "host ") {
				t.Errorf("the host's namespace: host %v, sees a host %v, named %q", n.IsHost, n.Snapshot.Host.Visible, n.Name())
			}
		default:
			if n.IsHost || !n.Snapshot.Host.Visible || n.Snapshot.Host.NetnsInode != host.Inode || n.Snapshot.Host.Sysctls == nil {
				t.Errorf("%s: host %v, its host %+v", n.Path, n.IsHost, n.Snapshot.Host)
			}
		}
	}
}
