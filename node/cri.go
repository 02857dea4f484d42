package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRISockets are where the container runtimes listen by default, tried in
// this order when no socket is given: containerd's, then CRI-O's.
var CRISockets = []string{"/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}

// criTimeout bounds the whole conversation with the runtime: a runtime that
// hangs must not hold the sweep.
const criTimeout = 5 * time.Second

// sandbox is a pod sandbox as the runtime describes it.
type sandbox struct {
	pod Pod
	// netns is the path of the sandbox's network namespace; "" for a pod
	// on the node's network.
	netns string
	// settled is true when the status said all it ever will: the
	// namespace's path, or that the pod is on the node's network. A
	// sandbox still being set up may name no path yet, and is asked
	// again next sweep.
	settled bool
}

// findCRISocket picks the socket to ask: explicit when given, otherwise the
// first of CRISockets that exists. It returns "" when none does.
func findCRISocket(explicit string) string {
	if explicit != "" {
		return explicit
	}
	for _, p := range CRISockets {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p
		}
	}
	return ""
}

// statusWorkers bounds the PodSandboxStatus calls in flight at once. The
// verbose status is the runtime's dearest answer (it marshals the
// sandbox's whole OCI spec): a few at once hide the round trips of a node
// of a hundred pods without a burst that takes the runtime's CPU from the
// kubelet.
const statusWorkers = 4

// SandboxCache keeps, by sandbox ID, what each pod sandbox's verbose status
// said: its network namespace's path and its pod's namespace, name and UID,
// none of which changes in a sandbox's life. Held across sweeps, it spares
// every sweep after the first a status call per pod; the containers' names,
// which do change, are still listed every sweep. A sandbox the runtime no
// longer lists is forgotten. The zero value is an empty cache; a nil one
// caches nothing. Sweeps may share one concurrently.
type SandboxCache struct {
	mu   sync.Mutex
	byID map[string]sandbox
}

// get is what the cache knows of sandbox id.
func (c *SandboxCache) get(id string) (sandbox, bool) {
	if c == nil {
		return sandbox{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.byID[id]
	return s, ok
}

// keep adds to the cache the sandboxes of items known now (got, by item;
// nil when not read) and drops those no longer listed. A sandbox listed
// but not read is kept if it was known: sweeps sharing the cache each add
// what they read rather than undo one another's.
func (c *SandboxCache) keep(items []*cri.PodSandbox, got []*sandbox) {
	if c == nil {
		return
	}
	listed := make(map[string]bool, len(items))
	for _, sb := range items {
		listed[sb.GetId()] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = make(map[string]sandbox, len(items))
	}
	for id := range c.byID {
		if !listed[id] {
			delete(c.byID, id)
		}
	}
	for i, sb := range items {
		if s := got[i]; s != nil && s.settled {
			s := *s
			s.pod.Container = ""
			c.byID[sb.GetId()] = s
		}
	}
}

// listSandboxes asks the runtime listening on socket for every pod sandbox,
// its network namespace and its containers' names, in the runtime's order.
// The status of each sandbox cache does not know is asked, at most workers
// at once; a sandbox removed since the list is skipped. When the runtime
// fails a status, no status is asked after it, and what was read is
// returned with an error that says how much that is.
func listSandboxes(ctx context.Context, socket string, cache *SandboxCache, workers int) ([]sandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, criTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI socket %s: %w", socket, err)
	}
	defer conn.Close()
	rs := cri.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("CRI ListPodSandbox on %s: %w", socket, err)
	}
	// The names of the running containers by sandbox (not an init
	// container long exited); a runtime that will not list them still
	// names its pods.
	names := map[string][]string{}
	running := &cri.ContainerFilter{State: &cri.ContainerStateValue{State: cri.ContainerState_CONTAINER_RUNNING}}
	if cs, err := rs.ListContainers(ctx, &cri.ListContainersRequest{Filter: running}); err == nil {
		for _, c := range cs.GetContainers() {
			if n := c.GetMetadata().GetName(); n != "" && !slices.Contains(names[c.GetPodSandboxId()], n) {
				names[c.GetPodSandboxId()] = append(names[c.GetPodSandboxId()], n)
			}
		}
	}
	items := list.GetItems()
	got, err := statuses(ctx, rs, items, cache, workers)
	cache.keep(items, got)
	var out []sandbox
	for i, s := range got {
		if s == nil {
			continue
		}
		cs := names[items[i].GetId()]
		slices.Sort(cs)
		s.pod.Container = strings.Join(cs, ",")
		out = append(out, *s)
	}
	if err != nil {
		// The runtime is slow or failing: the pods not named here are
		// named from their cgroups, if a process holds them, and the
		// note says so.
		return out, fmt.Errorf("CRI PodSandboxStatus on %s, %d of %d sandboxes read: %w", socket, len(out), len(items), err)
	}
	return out, nil
}

// statuses is each sandbox of items as its status describes it, by item:
// from cache when it knows the sandbox, else asked of rs, at most workers
// calls in flight, taken in the items' order. Once a status fails no
// sandbox after it is asked, every one before it still is, and the first
// failure in the items' order is returned. An item is nil when its sandbox
// was removed since the list, its status failed, or it was not asked.
func statuses(ctx context.Context, rs cri.RuntimeServiceClient, items []*cri.PodSandbox, cache *SandboxCache, workers int) ([]*sandbox, error) {
	got := make([]*sandbox, len(items))
	var ask []int
	for i, sb := range items {
		if s, ok := cache.get(sb.GetId()); ok {
			got[i] = &s
			continue
		}
		ask = append(ask, i)
	}
	errs := make([]error, len(items))
	var (
		mu sync.Mutex
		// failed is the first item whose status failed; len(items)
		// while none has.
		failed = len(items)
	)
	stopped := func(i int) bool {
		mu.Lock()
		defer mu.Unlock()
		return i > failed
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(max(workers, 1), len(ask)) {
		wg.Go(func() {
			for i := range jobs {
				// Items before a failure are still read, as a
				// runtime asked one at a time would have.
				if stopped(i) {
					continue
				}
				got[i], errs[i] = readStatus(ctx, rs, items[i])
				if errs[i] != nil {
					mu.Lock()
					failed = min(failed, i)
					mu.Unlock()
				}
			}
		})
	}
	for _, i := range ask {
		if stopped(i) {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// readStatus asks rs for sb's verbose status; nil and no error when the
// sandbox is gone since the list.
func readStatus(ctx context.Context, rs cri.RuntimeServiceClient, sb *cri.PodSandbox) (*sandbox, error) {
	st, err := rs.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: sb.GetId(), Verbose: true})
	switch {
	case status.Code(err) == codes.NotFound:
		// Removed since the list: nothing to name.
		return nil, nil
	case err != nil:
		return nil, err
	}
	md := st.GetStatus().GetMetadata()
	if md == nil {
		md = sb.GetMetadata()
	}
	s := &sandbox{pod: Pod{Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid(), Source: "cri"}}
	if st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() == cri.NamespaceMode_NODE {
		s.settled = true
	} else {
		s.netns = netnsFromInfo(st.GetInfo())
		s.settled = s.netns != ""
	}
	return s, nil
}

// sandboxInfo is the part of a sandbox's verbose status tcpvet reads. Both
// containerd and CRI-O put a JSON object under the key "info" whose
// "runtimeSpec" is the sandbox's OCI runtime spec: its Linux namespaces
// name the network namespace's path (/var/run/netns/cni-..., pinned by the
// runtime even when no process holds it).
type sandboxInfo struct {
	RuntimeSpec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

// netnsFromInfo finds the network namespace's path in a sandbox's verbose
// info; "" when it names none.
func netnsFromInfo(info map[string]string) string {
	raw, ok := info["info"]
	if !ok {
		return ""
	}
	var si sandboxInfo
	if err := json.Unmarshal([]byte(raw), &si); err != nil {
		return ""
	}
	for _, ns := range si.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			return ns.Path
		}
	}
	return ""
}
