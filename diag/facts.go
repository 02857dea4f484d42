package diag

import (
	"errors"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// Facts are what tcpvet reads about the machine rather than about a
// namespace: the same for every namespace of a node, so a sweep reads them
// once (ReadFacts) and hands them to every Take through Options.Facts.
//
// Which kernel modules are loaded is not among them. It is one stat, and
// it is asked just before the question that would otherwise make the
// kernel load the module: an answer kept from earlier (the module unloaded
// since) would let tcpvet load it. What cannot change while tcpvet runs
// (the modules built into the kernel) is read once per run
// (thisKernel).
type Facts struct {
	// DeniedHint says what to do about the kernel refusing tcpvet a
	// process's descriptors (netns.DeniedHint).
	DeniedHint string
	// Classifiers names the cgroup-v1 net_cls or net_prio hierarchies
	// mounted, "" when none is: with those, duplicating a socket would
	// re-tag it (cgroupV1Classifiers).
	Classifiers string
}

// ReadFacts reads the machine's facts.
func ReadFacts() *Facts {
	return &Facts{DeniedHint: netns.DeniedHint(), Classifiers: cgroupV1Classifiers()}
}

// kernelBuild is what the running kernel's build says of modules.
type kernelBuild struct {
	// loadsNone is true on a kernel built without module support: then
	// everything it has is built in, and nothing can be loaded.
	loadsNone bool
	// builtin is modules.builtin, one "kernel/…/name.ko" a line.
	builtin string
}

// builtIn reports whether module name is part of the kernel itself.
func (k kernelBuild) builtIn(name string) bool {
	return k.loadsNone || strings.Contains(k.builtin, "/"+name+".ko")
}

// thisKernel is read once per run: it changes only with a reboot.
var thisKernel = sync.OnceValue(func() (k kernelBuild) {
	if _, err := os.Stat("/proc/modules"); errors.Is(err, os.ErrNotExist) {
		k.loadsNone = true
		return k
	}
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return k
	}
	if b, err := os.ReadFile("/lib/modules/" + unix.ByteSliceToString(uts.Release[:]) + "/modules.builtin"); err == nil {
		k.builtin = string(b)
	}
	return k
})

// modulePresent reports whether the kernel module name can be used without
// loading it: it is loaded or built in, or the kernel loads no modules.
func modulePresent(name string) bool {
	if _, err := os.Stat("/sys/module/" + name); err == nil {
		return true
	}
	return thisKernel().builtIn(name)
}

// cgroupV1Classifiers says which cgroup-v1 net_cls or net_prio hierarchies
// are mounted, or "" when none is. pidfd_getfd re-tags a socket with the
// caller's net_cls class id and net_prio index, so with those in use a
// duplicate would change the app's traffic classification.
func cgroupV1Classifiers() string {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return ""
	}
	return parseCgroups(string(b))
}

// parseCgroups reads /proc/cgroups: a controller with a non-zero hierarchy
// ID is mounted as cgroup v1.
func parseCgroups(s string) string {
	var inUse []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && (f[0] == "net_cls" || f[0] == "net_prio") && f[1] != "0" && f[3] == "1" {
			inUse = append(inUse, f[0])
		}
	}
	if len(inUse) == 0 {
		return ""
	}
	return "cgroup v1 " + strings.Join(inUse, " and ") + " is in use"
}
