// Package crifake is a container runtime for tests: it answers the CRI
// calls tcpvet makes (ListPodSandbox, PodSandboxStatus with verbose info,
// ListContainers) over the real protocol on a unix socket, as containerd
// and CRI-O do, each sandbox's verbose status carrying its OCI runtime spec
// under "info". No machine here can run a real runtime's sandboxes: they
// need images pulled.
package crifake

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Runtime is the runtime's state: its sandboxes, each one's verbose info
// JSON by ID, those on the host's network, and the containers.
type Runtime struct {
	cri.UnimplementedRuntimeServiceServer
	Sandboxes  []*cri.PodSandbox
	Info       map[string]string
	HostNet    map[string]bool
	Containers []*cri.Container
}

// AddPod adds a ready sandbox whose network namespace is at netns, with one
// running container.
func (r *Runtime) AddPod(t testing.TB, meta *cri.PodSandboxMetadata, netns, container string) {
	t.Helper()
	id := fmt.Sprintf("sb%d", len(r.Sandboxes))
	r.Sandboxes = append(r.Sandboxes, &cri.PodSandbox{Id: id, Metadata: meta, State: cri.PodSandboxState_SANDBOX_READY})
	if r.Info == nil {
		r.Info = map[string]string{}
	}
	r.Info[id] = SpecInfo(t, netns, map[string]any{"pid": 1})
	r.Containers = append(r.Containers, &cri.Container{Id: "c-" + id, PodSandboxId: id,
		Metadata: &cri.ContainerMetadata{Name: container}, State: cri.ContainerState_CONTAINER_RUNNING})
}

// ListPodSandbox lists every sandbox.
func (r *Runtime) ListPodSandbox(context.Context, *cri.ListPodSandboxRequest) (*cri.ListPodSandboxResponse, error) {
	return &cri.ListPodSandboxResponse{Items: r.Sandboxes}, nil
}

// PodSandboxStatus answers as a runtime does, the spec in the verbose info.
func (r *Runtime) PodSandboxStatus(_ context.Context, req *cri.PodSandboxStatusRequest) (*cri.PodSandboxStatusResponse, error) {
	for _, sb := range r.Sandboxes {
		if sb.Id != req.PodSandboxId {
			continue
		}
		mode := cri.NamespaceMode_POD
		if r.HostNet[sb.Id] {
			mode = cri.NamespaceMode_NODE
		}
		resp := &cri.PodSandboxStatusResponse{Status: &cri.PodSandboxStatus{
			Id: sb.Id, Metadata: sb.Metadata, State: sb.State,
			Linux: &cri.LinuxPodSandboxStatus{Namespaces: &cri.Namespace{Options: &cri.NamespaceOption{Network: mode}}},
		}}
		if req.Verbose {
			resp.Info = map[string]string{"info": r.Info[sb.Id]}
		}
		return resp, nil
	}
	return nil, fmt.Errorf("no sandbox %q", req.PodSandboxId)
}

// ListContainers lists the containers the filter's state selects.
func (r *Runtime) ListContainers(_ context.Context, req *cri.ListContainersRequest) (*cri.ListContainersResponse, error) {
	var out []*cri.Container
	for _, c := range r.Containers {
		if st := req.GetFilter().GetState(); st == nil || st.State == c.State {
			out = append(out, c)
		}
	}
	return &cri.ListContainersResponse{Containers: out}, nil
}

// Serve serves r (a Runtime, or one that wraps it to watch its calls) on a
// unix socket in the test's directory, until the test ends, and returns the
// socket's path.
func Serve(t testing.TB, r cri.RuntimeServiceServer) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cri.RegisterRuntimeServiceServer(srv, r)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return sock
}

// SpecInfo is a sandbox's verbose info as the runtime writes it, with its
// network namespace at path; extra are the runtime's own other keys.
func SpecInfo(t testing.TB, path string, extra map[string]any) string {
	t.Helper()
	v := map[string]any{"runtimeSpec": map[string]any{"ociVersion": "1.2.0", "linux": map[string]any{"namespaces": []map[string]string{
		{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network", "path": path},
	}}}}
	for k, x := range extra {
		v[k] = x
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
