package netns

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// DeniedHint says what to do about the kernel refusing access to another
// process's namespace or descriptors. Root is not always enough: inside a
// container or a user namespace root may lack CAP_SYS_PTRACE over the
// target, and Yama or an LSM can refuse even a process that has it.
func DeniedHint() string {
	scope, _ := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	return deniedHint(hasPtraceCap(), strings.TrimSpace(string(scope)))
}

// deniedHint names only causes this machine can have: Yama's scope 3
// refuses everyone, so it is named alone when set.
func deniedHint(ptraceCap bool, yamaScope string) string {
	switch {
	case yamaScope == "3":
		return "kernel.yama.ptrace_scope=3 forbids reading other processes' sockets, even to root"
	case ptraceCap:
		return "refused despite CAP_SYS_PTRACE: the target is in another user namespace, or an LSM (AppArmor, SELinux) forbids it"
	}
	return "run as root or with CAP_SYS_PTRACE"
}

func hasPtraceCap() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capget(&hdr, &data[0]) == nil && data[0].Effective&(1<<unix.CAP_SYS_PTRACE) != 0
}
