package node

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet/crifake"
)

// TestNetnsFromInfo: the namespace's path is read from the runtime spec
// under "info", whatever else the runtime puts beside it; anything else
// names none.
func TestNetnsFromInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		info map[string]string
		want string
	}{
		{"containerd", map[string]string{"info": `{"pid":12,"processStatus":"running","netNamespaceClosed":false,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}}`}, "/var/run/netns/cni-1"},
		{"CRI-O", map[string]string{"info": `{"image":"pause","runtimeSpec":{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"network","path":"/var/run/netns/2c1f"}]}}}`}, "/var/run/netns/2c1f"},
		{"host network: no path", map[string]string{"info": `{"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"}]}}}`}, ""},
		{"no info", map[string]string{"other": "{}"}, ""},
		{"not JSON", map[string]string{"info": `{"runtimeSpec":`}, ""},
		{"nil", nil, ""},
	} {
		if got := netnsFromInfo(tc.info); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// countingRuntime is crifake's runtime with a status call that takes
// delay, fails with codes.Unavailable for the IDs in fail and answers
// NotFound for those in gone, counting the calls it answers and the most
// in flight at once. Its state is read and changed under mu: the test
// changes it between sweeps while the server's goroutines read it.
type countingRuntime struct {
	*crifake.Runtime
	delay time.Duration

	mu            sync.Mutex
	fail, gone    map[string]bool
	calls         int
	inFlight, max int
}

func (r *countingRuntime) ListPodSandbox(ctx context.Context, req *cri.ListPodSandboxRequest) (*cri.ListPodSandboxResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Runtime.ListPodSandbox(ctx, req)
}

func (r *countingRuntime) ListContainers(ctx context.Context, req *cri.ListContainersRequest) (*cri.ListContainersResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Runtime.ListContainers(ctx, req)
}

func (r *countingRuntime) PodSandboxStatus(ctx context.Context, req *cri.PodSandboxStatusRequest) (*cri.PodSandboxStatusResponse, error) {
	r.mu.Lock()
	r.calls++
	r.inFlight++
	r.max = max(r.max, r.inFlight)
	fail, gone := r.fail[req.PodSandboxId], r.gone[req.PodSandboxId]
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()
	switch {
	case fail:
		return nil, grpcstatus.Error(codes.Unavailable, "runtime overloaded")
	case gone:
		return nil, grpcstatus.Errorf(codes.NotFound, "sandbox %q not found", req.PodSandboxId)
	}
	time.Sleep(r.delay)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Runtime.PodSandboxStatus(ctx, req)
}

// change changes the runtime's state under its lock.
func (r *countingRuntime) change(f func(rt *crifake.Runtime)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.Runtime)
}

// counted is how many status calls the runtime answered and the most in
// flight at once since the last counted, and starts counting afresh.
func (r *countingRuntime) counted() (calls, maxInFlight int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls, maxInFlight = r.calls, r.max
	r.calls, r.max = 0, 0
	return calls, maxInFlight
}

// podsRuntime is a runtime of n ready pods, pod i in sandbox "sb<i>" with
// its namespace at /var/run/netns/cni-<i> and one container "app-<i>".
func podsRuntime(t testing.TB, n int, delay time.Duration) *countingRuntime {
	t.Helper()
	rt := &countingRuntime{Runtime: &crifake.Runtime{}, delay: delay}
	for i := range n {
		rt.AddPod(t, &cri.PodSandboxMetadata{Namespace: "ns", Name: fmt.Sprintf("pod-%d", i), Uid: fmt.Sprintf("uid-%d", i)}, fmt.Sprintf("/var/run/netns/cni-%d", i), fmt.Sprintf("app-%d", i))
	}
	return rt
}

// ids are the sandboxes' pod names, in order.
func names(sbs []sandbox) []string {
	var out []string
	for _, s := range sbs {
		out = append(out, s.pod.Name)
	}
	return out
}

// cached are the IDs the cache holds, sorted.
func cached(c *SandboxCache) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.byID))
}

// TestSandboxCache: a sandbox's status is asked once in its life. A second
// sweep of the same sandboxes asks none and answers the same, the
// containers' names still listed afresh; a new sandbox costs one call; one
// no longer listed leaves the cache; one whose status names no namespace
// yet, or that is gone since the list, is asked again next sweep. Without
// a cache every sweep asks every sandbox, as before.
func TestSandboxCache(t *testing.T) {
	rt := podsRuntime(t, 5, 0)
	rt.change(func(r *crifake.Runtime) {
		// On the node's network: settled with no path.
		r.AddPod(t, &cri.PodSandboxMetadata{Namespace: "kube-system", Name: "kube-proxy", Uid: "uid-kp"}, "", "kube-proxy")
		r.HostNet = map[string]bool{"sb5": true}
	})
	sock := crifake.Serve(t, rt)
	ctx := context.Background()
	cache := &SandboxCache{}
	sweep := func(c *SandboxCache) []sandbox {
		t.Helper()
		sbs, err := listSandboxes(ctx, sock, c, statusWorkers)
		if err != nil {
			t.Fatal(err)
		}
		return sbs
	}

	first := sweep(cache)
	if calls, _ := rt.counted(); calls != 6 {
		t.Errorf("first sweep: %d status calls, want 6", calls)
	}
	want := []string{"pod-0", "pod-1", "pod-2", "pod-3", "pod-4", "kube-proxy"}
	if !slices.Equal(names(first), want) || first[2] != (sandbox{pod: Pod{Namespace: "ns", Name: "pod-2", UID: "uid-2", Container: "app-2", Source: "cri"}, netns: "/var/run/netns/cni-2", settled: true}) || first[5].netns != "" {
		t.Fatalf("first sweep: %+v", first)
	}

	// (a) The same sandboxes: no call, the same answer.
	second := sweep(cache)
	if calls, _ := rt.counted(); calls != 0 {
		t.Errorf("second sweep of the same sandboxes: %d status calls, want 0", calls)
	}
	if !slices.Equal(first, second) {
		t.Errorf("second sweep answers otherwise:\n got %+v\nwant %+v", second, first)
	}

	// The containers' names come from the list of the sweep.
	rt.change(func(r *crifake.Runtime) {
		r.Containers = append(r.Containers, &cri.Container{Id: "c-side", PodSandboxId: "sb1", Metadata: &cri.ContainerMetadata{Name: "envoy"}, State: cri.ContainerState_CONTAINER_RUNNING})
	})
	if got := sweep(cache); got[1].pod.Container != "app-1,envoy" {
		t.Errorf("a container started since: pod-1's containers %q", got[1].pod.Container)
	}
	rt.counted()

	// (b) One new, one gone: one call, and the gone one forgotten.
	rt.change(func(r *crifake.Runtime) {
		r.AddPod(t, &cri.PodSandboxMetadata{Namespace: "ns", Name: "pod-new", Uid: "uid-new"}, "/var/run/netns/cni-new", "app-new")
		r.Sandboxes = slices.DeleteFunc(r.Sandboxes, func(sb *cri.PodSandbox) bool { return sb.Id == "sb3" })
	})
	third := sweep(cache)
	if calls, _ := rt.counted(); calls != 1 {
		t.Errorf("one new sandbox: %d status calls, want 1", calls)
	}
	if want := []string{"pod-0", "pod-1", "pod-2", "pod-4", "kube-proxy", "pod-new"}; !slices.Equal(names(third), want) || third[5].netns != "/var/run/netns/cni-new" {
		t.Errorf("after one new, one gone: %+v", third)
	}
	if got, want := cached(cache), []string{"sb0", "sb1", "sb2", "sb4", "sb5", "sb6"}; !slices.Equal(got, want) {
		t.Errorf("cache holds %q, want %q", got, want)
	}

	// A status that names no namespace yet, and a sandbox gone since the
	// list: asked every sweep, never kept.
	rt.change(func(r *crifake.Runtime) {
		// AddPod numbers sandboxes by count, which sb3 gone would repeat.
		r.Sandboxes = append(r.Sandboxes, nil)
		r.AddPod(t, &cri.PodSandboxMetadata{Namespace: "ns", Name: "pod-early", Uid: "uid-early"}, "", "app-early")
		r.AddPod(t, &cri.PodSandboxMetadata{Namespace: "ns", Name: "pod-going", Uid: "uid-going"}, "/var/run/netns/cni-going", "app-going")
		r.Sandboxes = slices.DeleteFunc(r.Sandboxes, func(sb *cri.PodSandbox) bool { return sb == nil })
	})
	rt.mu.Lock()
	rt.gone = map[string]bool{"sb8": true}
	rt.mu.Unlock()
	for i := range 2 {
		got := sweep(cache)
		if calls, _ := rt.counted(); calls != 2 {
			t.Errorf("sweep %d: %d status calls, want 2 (the unsettled and the gone sandbox)", i, calls)
		}
		if n := names(got); slices.Contains(n, "pod-going") || !slices.Contains(n, "pod-early") {
			t.Errorf("sweep %d: %q", i, n)
		}
		if c := cached(cache); slices.Contains(c, "sb7") || slices.Contains(c, "sb8") {
			t.Errorf("sweep %d: cache holds %q", i, c)
		}
	}

	// No cache: every sandbox asked, every sweep.
	for range 2 {
		sweep(nil)
	}
	if calls, _ := rt.counted(); calls != 2*8 {
		t.Errorf("two sweeps without a cache: %d status calls, want 16", calls)
	}
}

// TestSandboxStatusConcurrent: the statuses are asked side by side, never
// more than statusWorkers at once, and the sweep asks and answers as one
// asking one at a time does: the same calls, the same sandboxes in the
// runtime's order, those gone since the list skipped.
func TestSandboxStatusConcurrent(t *testing.T) {
	rt := podsRuntime(t, 20, 50*time.Millisecond)
	rt.change(func(r *crifake.Runtime) { r.HostNet = map[string]bool{"sb4": true} })
	rt.gone = map[string]bool{"sb7": true, "sb13": true}
	sock := crifake.Serve(t, rt)
	ctx := context.Background()

	seq, err := listSandboxes(ctx, sock, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	seqCalls, seqMax := rt.counted()
	if seqCalls != 20 || seqMax != 1 || len(seq) != 18 {
		t.Fatalf("one at a time: %d calls, %d at once, %d sandboxes", seqCalls, seqMax, len(seq))
	}
	conc, err := listSandboxes(ctx, sock, &SandboxCache{}, statusWorkers)
	if err != nil {
		t.Fatal(err)
	}
	calls, most := rt.counted()
	if calls != seqCalls {
		t.Errorf("side by side: %d calls, one at a time %d", calls, seqCalls)
	}
	if most <= 1 || most > statusWorkers {
		t.Errorf("side by side: %d calls in flight at most, want 2..%d", most, statusWorkers)
	}
	if !slices.Equal(conc, seq) {
		t.Errorf("side by side answers otherwise:\n got %+v\nwant %+v", conc, seq)
	}
}

// TestSandboxStatusFails: a status the runtime fails (the 10th of 20, the
// first five known from the sweep before) stops the asking: the sandboxes
// read are returned in order, every one before the failure among them, the
// error names how many of how many were read and keeps the runtime's code,
// only those read are kept, and the next sweep asks only the rest. Asked one
// at a time, exactly those before the failure are read, as before the
// cache. The sweep's note says the runtime stopped answering.
func TestSandboxStatusFails(t *testing.T) {
	rt := podsRuntime(t, 5, 20*time.Millisecond)
	sock := crifake.Serve(t, rt)
	ctx := context.Background()
	cache := &SandboxCache{}
	if _, err := listSandboxes(ctx, sock, cache, statusWorkers); err != nil {
		t.Fatal(err)
	}
	rt.change(func(r *crifake.Runtime) {
		for i := 5; i < 20; i++ {
			r.AddPod(t, &cri.PodSandboxMetadata{Namespace: "ns", Name: fmt.Sprintf("pod-%d", i), Uid: fmt.Sprintf("uid-%d", i)}, fmt.Sprintf("/var/run/netns/cni-%d", i), fmt.Sprintf("app-%d", i))
		}
	})
	rt.mu.Lock()
	rt.fail = map[string]bool{"sb9": true}
	rt.mu.Unlock()
	rt.counted()

	got, err := listSandboxes(ctx, sock, cache, statusWorkers)
	calls, _ := rt.counted()
	if err == nil {
		t.Fatal("a failed status, no error")
	}
	if want := fmt.Sprintf("%d of 20 sandboxes read", len(got)); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if grpcstatus.Code(err) != codes.Unavailable {
		t.Errorf("error %q lost the runtime's code", err)
	}
	var at []int
	for _, s := range got {
		var i int
		fmt.Sscanf(s.pod.Name, "pod-%d", &i)
		at = append(at, i)
	}
	if !slices.IsSorted(at) || slices.Contains(at, 9) || len(at) < 9 || !slices.Equal(at[:9], []int{0, 1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("read %v: want 0..8 and maybe some after 9, in order, never 9", at)
	}
	// 15 not known: had the asking gone on, 15 calls.
	if calls >= 15 {
		t.Errorf("%d status calls after the failure: the asking did not stop", calls)
	}
	var ids []string
	for _, i := range at {
		ids = append(ids, fmt.Sprintf("sb%d", i))
	}
	slices.Sort(ids)
	if c := cached(cache); !slices.Equal(c, ids) {
		t.Errorf("cache holds %q, read were %q", c, ids)
	}

	// One at a time, as before: exactly those before the failure.
	seq, err := listSandboxes(ctx, sock, nil, 1)
	if want := "9 of 20 sandboxes read"; err == nil || !strings.Contains(err.Error(), want) || !slices.Equal(names(seq), names(got[:9])) {
		t.Errorf("one at a time: %q, %v; want %q and pods 0..8", names(seq), err, want)
	}

	// The sweep's note, from the same error.
	d, err := discoverWith(ctx, "/proc", "/run/netns", sock, &SandboxCache{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(d.notes, func(n diag.Note) bool {
		return n.Code == diag.NoteCRIIncomplete && strings.Contains(n.Text, "stopped answering") && strings.Contains(n.Text, " of 20 sandboxes read")
	}) {
		t.Errorf("notes %q", d.notes)
	}

	// Healed: only the sandboxes not read are asked.
	rt.mu.Lock()
	rt.fail = nil
	rt.mu.Unlock()
	rt.counted()
	all, err := listSandboxes(ctx, sock, cache, statusWorkers)
	if calls, _ := rt.counted(); err != nil || len(all) != 20 || calls != 20-len(ids) {
		t.Errorf("healed: %d sandboxes, %d calls (want %d), %v", len(all), calls, 20-len(ids), err)
	}
}

// BenchmarkListSandboxes: a node of 100 pods whose runtime takes 1 ms over
// each verbose status; the statuses asked one at a time (as before), side
// by side, and known from the sweep before.
func BenchmarkListSandboxes(b *testing.B) {
	rt := podsRuntime(b, 100, time.Millisecond)
	sock := crifake.Serve(b, rt)
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		workers int
		warm    bool
	}{{"cold/one-at-a-time", 1, false}, {"cold/side-by-side", statusWorkers, false}, {"warm", statusWorkers, true}} {
		b.Run(bc.name, func(b *testing.B) {
			var cache *SandboxCache
			if bc.warm {
				cache = &SandboxCache{}
				if _, err := listSandboxes(ctx, sock, cache, bc.workers); err != nil {
					b.Fatal(err)
				}
			}
			rt.counted()
			n := 0
			for b.Loop() {
				sbs, err := listSandboxes(ctx, sock, cache, bc.workers)
				if err != nil || len(sbs) != 100 {
					b.Fatalf("%d sandboxes, %v", len(sbs), err)
				}
				n++
			}
			calls, _ := rt.counted()
			b.ReportMetric(float64(calls)/float64(n), "status-calls/op")
		})
	}
}

// TestTakeKeepsSandboxes: a sweep given Options.Sandboxes asks the runtime
// only about sandboxes the sweeps before it did not see; one without asks
// about every one every time. (An empty /proc and /run/netns: nothing to
// read but the runtime.)
func TestTakeKeepsSandboxes(t *testing.T) {
	rt := podsRuntime(t, 3, 0)
	// A proc of no process but the sweep's own namespace, as netns.List
	// reads it.
	proc := t.TempDir()
	if err := os.Symlink("/proc/self", proc+"/self"); err != nil {
		t.Fatal(err)
	}
	opts := Options{ProcRoot: proc, NetnsDir: t.TempDir(), CRISocket: crifake.Serve(t, rt)}
	for _, tc := range []struct {
		sandboxes *SandboxCache
		want      []int
	}{{&SandboxCache{}, []int{3, 0}}, {nil, []int{3, 3}}} {
		opts.Sandboxes = tc.sandboxes
		for i, want := range tc.want {
			sw, err := Take(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if calls, _ := rt.counted(); calls != want || slices.ContainsFunc(sw.Notes, func(n diag.Note) bool { return strings.HasPrefix(string(n.Code), "cri-") }) {
				t.Errorf("cache %v, sweep %d: %d status calls (want %d), notes %q", tc.sandboxes != nil, i, calls, want, sw.Notes)
			}
		}
	}
}
