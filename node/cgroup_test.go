package node

import (
	"strings"
	"testing"
)

const (
	testUID       = "4f1c2a3b-5d6e-4f70-8a9b-0c1d2e3f4a5b"
	testContainer = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func TestPodFromCgroup(t *testing.T) {
	under := strings.ReplaceAll(testUID, "-", "_")
	for _, tc := range []struct {
		name, file     string
		uid, container string
		ok             bool
	}{
		{"cgroupfs v1, burstable", "12:pids:/kubepods/burstable/pod" + testUID + "/" + testContainer + "\n11:memory:/kubepods/burstable/pod" + testUID + "/" + testContainer + "\n", testUID, testContainer, true},
		{"cgroupfs v1, guaranteed (no QoS level)", "4:cpu,cpuacct:/kubepods/pod" + testUID + "/" + testContainer + "\n", testUID, testContainer, true},
		{"cgroupfs v2", "0::/kubepods/besteffort/pod" + testUID + "/" + testContainer + "\n", testUID, testContainer, true},
		{"systemd v2, containerd", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice/cri-containerd-" + testContainer + ".scope\n", testUID, testContainer, true},
		{"systemd v1, CRI-O", "1:name=systemd:/kubepods.slice/kubepods-pod" + under + ".slice/crio-" + testContainer + ".scope\n", testUID, testContainer, true},
		{"systemd v2, docker", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice/docker-" + testContainer + ".scope\n", testUID, testContainer, true},
		{"kind: kubelet nested under its own slice", "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + under + ".slice/cri-containerd-" + testContainer + ".scope\n", testUID, testContainer, true},
		{"the pod's own cgroup, no container", "0::/kubepods/burstable/pod" + testUID + "\n", testUID, "", true},
		{"conmon is no container", "0::/kubepods.slice/kubepods-pod" + under + ".slice/crio-conmon-" + testContainer + ".scope\n", testUID, "", true},
		{"a v1 line without the pod before a v2 line with it", "1:name=systemd:/user.slice\n0::/kubepods/pod" + testUID + "/" + testContainer + "\n", testUID, testContainer, true},
		{"not a pod", "0::/system.slice/containerd.service\n", "", "", false},
		{"a pod-like name that is no UID", "0::/kubepods/podnot-a-uid/" + testContainer + "\n", "", "", false},
		{"a user's own pod directory", "0::/home/pod" + testUID[:30] + "\n", "", "", false},
		{"empty", "", "", "", false},
		{"no colons", "garbage\n", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, c, ok := PodFromCgroup([]byte(tc.file))
			if uid != tc.uid || c != tc.container || ok != tc.ok {
				t.Errorf("PodFromCgroup(%q) = %q, %q, %v; want %q, %q, %v", tc.file, uid, c, ok, tc.uid, tc.container, tc.ok)
			}
		})
	}
}

// FuzzPodFromCgroup: whatever a cgroup file holds, a pod found has a
// well-formed UID and container ID, and the same pod written back in either
// of kubelet's layouts is read the same.
func FuzzPodFromCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods/burstable/pod" + testUID + "/" + testContainer + "\n"))
	f.Add([]byte("1:name=systemd:/kubepods.slice/kubepods-pod" + strings.ReplaceAll(testUID, "-", "_") + ".slice/crio-" + testContainer + ".scope\n"))
	f.Add([]byte("0::/kubepods.slice/kubepods-podx.slice\n"))
	f.Add([]byte("::\n:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		uid, c, ok := PodFromCgroup(b)
		if !ok {
			if uid != "" || c != "" {
				t.Fatalf("no pod, yet %q %q", uid, c)
			}
			return
		}
		if !isUID(uid) || c != "" && !isContainerID(c) {
			t.Fatalf("malformed pod %q container %q from %q", uid, c, b)
		}
		for _, path := range []string{
			"0::/kubepods/burstable/pod" + uid + "/" + c,
			"0::/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-" + c + ".scope",
		} {
			u2, c2, ok2 := PodFromCgroup([]byte(path))
			if !ok2 || u2 != uid || c2 != c {
				t.Fatalf("%q read back as %q %q %v, want %q %q", path, u2, c2, ok2, uid, c)
			}
		}
	})
}
