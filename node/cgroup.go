package node

import (
	"strings"
)

// PodFromCgroup finds the pod UID and container ID in the contents of a
// /proc/PID/cgroup file, as kubelet lays out its cgroups: with the cgroupfs
// driver .../kubepods[/<qos>]/pod<UID>/<ID>, with the systemd driver
// .../kubepods[-<qos>]-pod<UID_with_underscores>.slice/<runtime>-<ID>.scope
// (cri-containerd, crio or docker), on cgroup v1 and v2 lines alike. It
// reports false for a process in no pod's cgroup.
func PodFromCgroup(b []byte) (uid, container string, ok bool) {
	for line := range strings.SplitSeq(string(b), "\n") {
		// hierarchy-ID:controllers:path; the path may itself hold colons.
		_, rest, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		_, path, found := strings.Cut(rest, ":")
		if !found {
			continue
		}
		if uid, container, ok := podFromPath(path); ok {
			return uid, container, true
		}
	}
	return "", "", false
}

// podFromPath finds the pod UID and container ID in one cgroup path. The
// container ID is "" for a process in the pod's own cgroup (none of its
// containers').
func podFromPath(path string) (uid, container string, ok bool) {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		u, found := podSegment(s)
		if !found {
			continue
		}
		if i+1 < len(segs) {
			container = containerSegment(segs[i+1])
		}
		return u, container, true
	}
	return "", "", false
}

// podSegment reads the pod UID from a cgroup directory's name: pod<UID>
// (cgroupfs) or kubepods-...-pod<UID_underscored>.slice (systemd; kind
// nests it as kubelet-kubepods-...).
func podSegment(s string) (string, bool) {
	var u string
	switch {
	case strings.HasPrefix(s, "pod"):
		u = s[len("pod"):]
	case strings.Contains(s, "kubepods") && strings.HasSuffix(s, ".slice"):
		i := strings.LastIndex(s, "-pod")
		if i < 0 {
			return "", false
		}
		u = strings.ReplaceAll(s[i+len("-pod"):len(s)-len(".slice")], "_", "-")
	default:
		return "", false
	}
	return u, isUID(u)
}

// containerRuntimes are the prefixes of a container's systemd scope, by
// runtime.
var containerRuntimes = []string{"cri-containerd-", "crio-", "docker-", "containerd-"}

// containerSegment reads a container ID from the cgroup directory below a
// pod's: the bare ID (cgroupfs) or <runtime>-<ID>.scope (systemd). A
// runtime's helper scope (crio-conmon-<ID>.scope) is no container.
func containerSegment(s string) string {
	if id, ok := strings.CutSuffix(s, ".scope"); ok {
		for _, p := range containerRuntimes {
			if rest, ok := strings.CutPrefix(id, p); ok {
				id = rest
				break
			}
		}
		s = id
	}
	if !isContainerID(s) {
		return ""
	}
	return s
}

// isUID reports whether s is a pod UID: a UUID in its usual text form.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

// isContainerID reports whether s is a container ID: 64 lowercase hex
// digits as every CRI runtime makes them, or a shortened prefix of one.
func isContainerID(s string) bool {
	if len(s) < 12 || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
