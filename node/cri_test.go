package node

import "testing"

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
