package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
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

// listSandboxes asks the runtime listening on socket for every pod sandbox,
// its network namespace and its containers' names.
func listSandboxes(ctx context.Context, socket string) ([]sandbox, error) {
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
	var out []sandbox
	for _, sb := range list.GetItems() {
		st, err := rs.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: sb.GetId(), Verbose: true})
		switch {
		case status.Code(err) == codes.NotFound:
			// Removed since the list: nothing to name.
			continue
		case err != nil:
			// The runtime is slow or failing: the pods not asked yet are
			// named from their cgroups, if a process holds them, and
			// the note says so.
			return out, fmt.Errorf("CRI PodSandboxStatus on %s, %d of %d sandboxes read: %w", socket, len(out), len(list.GetItems()), err)
		}
		md := st.GetStatus().GetMetadata()
		if md == nil {
			md = sb.GetMetadata()
		}
		cs := names[sb.GetId()]
		slices.Sort(cs)
		s := sandbox{pod: Pod{Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid(), Container: strings.Join(cs, ","), Source: "cri"}}
		if st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() != cri.NamespaceMode_NODE {
			s.netns = netnsFromInfo(st.GetInfo())
		}
		out = append(out, s)
	}
	return out, nil
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
