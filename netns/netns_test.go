package netns

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/internal/testnet"
)

func TestOpenRejectsWhatIsNotANetworkNamespace(t *testing.T) {
	tests := []struct {
		name    string
		open    func() (*NS, error)
		wantErr string
	}{
		{"missing file", func() (*NS, error) { return FromPath("/run/netns/does-not-exist") }, "no such file"},
		{"regular file", func() (*NS, error) { return FromPath("/etc/hostname") }, "is not a namespace file"},
		{"mount namespace", func() (*NS, error) { return FromPath("/proc/self/ns/mnt") }, "not a network namespace"},
		{"negative PID", func() (*NS, error) { return FromPID(-4) }, "invalid PID -4"},
		{"no such PID", func() (*NS, error) { return FromPID(1 << 30) }, "no process with PID 1073741824"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, err := tt.open()
			if err == nil {
				ns.Close()
				t.Fatal("opened without error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSelfAndPIDAgree(t *testing.T) {
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	byPID, err := FromPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer byPID.Close()
	if !self.Same(byPID) || self.Inode == 0 || byPID.PID != os.Getpid() {
		t.Errorf("self %+v and own PID %+v differ", self, byPID)
	}
}

// TestDoRunsInsideAndLeavesNothingBehind enters a foreign namespace many
// times at once and then checks that every thread of the process, and
// every new goroutine, is still in tcpvet's own namespace.
func TestDoRunsInsideAndLeavesNothingBehind(t *testing.T) {
	n := testnet.New(t)
	n.Sysctl(t, "net.ipv4.tcp_keepalive_time", "321")
	target, err := FromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if target.Same(self) {
		t.Fatal("test namespace is our own")
	}

	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := target.Do(func() error {
				if ino := threadNetns(t); ino != target.Inode {
					t.Errorf("inside Do the thread is in netns %d, want %d", ino, target.Inode)
				}
				b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_time")
				if err != nil || strings.TrimSpace(string(b)) != "321" {
					t.Errorf("inside Do tcp_keepalive_time = %q, %v; want the target's 321", b, err)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("list threads: %v", err)
	}
	for _, task := range tasks {
		fi, err := os.Stat(task)
		if err != nil {
			continue // the thread just exited
		}
		if ino := inode(fi); ino != self.Inode {
			t.Errorf("%s is in netns %d after Do, want our own %d", task, ino, self.Inode)
		}
	}
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ino := threadNetns(t); ino != self.Inode {
				t.Errorf("a goroutine runs in netns %d, want our own %d", ino, self.Inode)
			}
		}()
	}
	wg.Wait()
}

// TestPtraceCapAgreesWithProc compares capget(2) with what the kernel
// prints in /proc/self/status.
func TestPtraceCapAgreesWithProc(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var eff uint64
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			if eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := eff&(1<<unix.CAP_SYS_PTRACE) != 0
	if got := hasPtraceCap(); got != want {
		t.Errorf("hasPtraceCap() = %v, /proc/self/status CapEff %x says %v", got, eff, want)
	}
	scope, _ := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if hint, wantHint := DeniedHint(), deniedHint(want, strings.TrimSpace(string(scope))); hint != wantHint {
		t.Errorf("DeniedHint() = %q, want %q", hint, wantHint)
	}
}

func TestDeniedHint(t *testing.T) {
	tests := []struct {
		ptraceCap bool
		yamaScope string
		want      string
	}{
		{false, "", "run as root or with CAP_SYS_PTRACE"},
		{false, "1", "run as root or with CAP_SYS_PTRACE"},
		{true, "", "despite CAP_SYS_PTRACE"},
		{true, "2", "despite CAP_SYS_PTRACE"},
		{true, "3", "ptrace_scope=3"},
		{false, "3", "ptrace_scope=3"},
	}
	for _, tt := range tests {
		got := deniedHint(tt.ptraceCap, tt.yamaScope)
		if !strings.Contains(got, tt.want) {
			t.Errorf("deniedHint(%v, %q) = %q, want it to say %q", tt.ptraceCap, tt.yamaScope, got, tt.want)
		}
		if tt.yamaScope != "3" && strings.Contains(got, "yama") {
			t.Errorf("deniedHint(%v, %q) = %q blames Yama, which is not set to refuse", tt.ptraceCap, tt.yamaScope, got)
		}
	}
}
