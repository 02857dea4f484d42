package netns

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/internal/testnet"
)

func inodeAt(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// entry is what l found of the namespace with inode ino.
func entry(l *Listing, ino uint64) *Found {
	for _, f := range l.Found {
		if f.Inode == ino {
			return f
		}
	}
	return nil
}

// TestListEachNamespaceOnce: a namespace both bound under a directory and
// held by a process is listed once with both ways in; a file there that is
// no namespace is left out; a namespace whose every way in is gone fails to
// open with ErrVanished.
func TestListEachNamespaceOnce(t *testing.T) {
	ns := testnet.New(t)
	dir := t.TempDir()
	// A process in ns: `ip netns exec` runs sleep inside it.
	sleep := exec.Command("ip", "netns", "exec", ns.Name, "sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	ino := inodeAt(t, ns.Path)
	for i := 0; inodeAt(t, "/proc/"+strconv.Itoa(sleep.Process.Pid)+"/ns/net") != ino; i++ {
		if i == 500 {
			t.Fatal("sleep never entered the namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The directory: a bind mount of ns and a plain file.
	bound := filepath.Join(dir, "bound")
	if err := os.WriteFile(bound, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testnet.Run(t, "mount", "--bind", ns.Path, bound)
	t.Cleanup(func() { exec.Command("umount", bound).Run() })
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	l, err := List("", dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, f := range l.Found {
		seen[f.Inode]++
	}
	for ino, n := range seen {
		if n != 1 {
			t.Errorf("namespace %d listed %d times", ino, n)
		}
	}
	f := entry(l, ino)
	if f == nil || !slices.Equal(f.Bound, []string{bound}) || !slices.Contains(f.PIDs, sleep.Process.Pid) {
		t.Fatalf("namespace %d: %+v, want bound at %s and pid %d in it", ino, f, bound, sleep.Process.Pid)
	}
	if _, ok := l.Bind(filepath.Join(dir, "plain")); ok {
		t.Error("a plain file bound as a namespace")
	}
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if l.Lookup(self) == nil {
		t.Error("tcpvet's own namespace is not listed")
	}

	opened, err := f.Open("")
	if err != nil || opened.Path != bound {
		t.Fatalf("Open = %v, %v; want through %s", opened, err, bound)
	}
	opened.Close()

	// Every way in gone: the bind mounts removed, the process exited.
	sleep.Process.Kill()
	sleep.Wait()
	testnet.Run(t, "umount", bound)
	testnet.Run(t, "ip", "netns", "del", ns.Name)
	f.Bound = append(f.Bound, ns.Path)
	if ns, err := f.Open(""); !errors.Is(err, ErrVanished) {
		ns.Close()
		t.Errorf("Open of a vanished namespace: %v, want ErrVanished", err)
	}
}

// TestOpenSkipsAReusedPath: a file that now opens another namespace (a PID
// reused) is not the namespace found; the next way in is tried.
func TestOpenSkipsAReusedPath(t *testing.T) {
	a, b := testnet.New(t), testnet.New(t)
	f := &Found{Inode: inodeAt(t, b.Path), Bound: []string{a.Path, b.Path}}
	var st unix.Stat_t
	if err := unix.Stat(b.Path, &st); err != nil {
		t.Fatal(err)
	}
	f.Dev = st.Dev
	ns, err := f.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if ns.Path != b.Path {
		t.Errorf("opened %s, want %s", ns.Path, b.Path)
	}
}
