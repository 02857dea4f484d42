package diag

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestSocketInode(t *testing.T) {
	tests := []struct {
		link string
		want uint32
		ok   bool
	}{
		{"socket:[13437]", 13437, true},
		{"socket:[4294967295]", 4294967295, true},
		{"socket:[4294967296]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[13437]", 0, false},
		{"/dev/null", 0, false},
		{"anon_inode:[eventpoll]", 0, false},
	}
	for _, tt := range tests {
		got, ok := socketInode(tt.link)
		if got != tt.want || ok != tt.ok {
			t.Errorf("socketInode(%q) = %d, %v; want %d, %v", tt.link, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzSocketInode(f *testing.F) {
	f.Add("socket:[13437]")
	f.Add("socket:[-1]")
	f.Fuzz(func(t *testing.T, link string) {
		n, ok := socketInode(link)
		// What it parsed before it read bytes: strings and strconv.
		var want uint64
		rest, wantOK := strings.CutPrefix(link, "socket:[")
		if rest, suffixed := strings.CutSuffix(rest, "]"); wantOK && suffixed {
			var err error
			want, err = strconv.ParseUint(rest, 10, 32)
			wantOK = err == nil
		} else {
			wantOK = false
		}
		if ok != wantOK || uint64(n) != want && ok {
			t.Errorf("socketInode(%q) = %d, %v; want %d, %v", link, n, ok, want, wantOK)
		}
		if !ok {
			return
		}
		digits := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
		if v, err := strconv.ParseUint(digits, 10, 64); err != nil || v != uint64(n) {
			t.Errorf("socketInode(%q) = %d", link, n)
		}
	})
}

func TestParseCgroups(t *testing.T) {
	const header = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
	tests := []struct {
		name, in, want string
	}{
		{"cgroup v2 only", header + "cpu\t0\t1\t1\nnet_cls\t0\t1\t1\nnet_prio\t0\t1\t1\n", ""},
		{"v1 net_cls", header + "net_cls\t9\t3\t1\nnet_prio\t0\t1\t1\n", "cgroup v1 net_cls is in use"},
		{"v1 both", header + "net_cls\t9\t3\t1\nnet_prio\t9\t3\t1\n", "cgroup v1 net_cls and net_prio is in use"},
		{"mounted but disabled", header + "net_cls\t9\t3\t0\n", ""},
		{"garbage", "net_cls", ""},
	}
	for _, tt := range tests {
		if got := parseCgroups(tt.in); got != tt.want {
			t.Errorf("%s: parseCgroups = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func FuzzParseCgroups(f *testing.F) {
	f.Add("net_cls\t9\t3\t1\n")
	f.Fuzz(func(t *testing.T, s string) { parseCgroups(s) })
}

func TestDescribeProcesses(t *testing.T) {
	proc := t.TempDir()
	for pid, comm := range map[int]string{1: "systemd", 20: "sshd", 31: "containerd", 40: "kubelet"} {
		dir := proc + "/" + strconv.Itoa(pid)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/comm", []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		pids []int
		want string
	}{
		{[]int{1}, "1 process (pid 1 systemd)"},
		{[]int{1, 20}, "2 processes (pid 1 systemd, pid 20 sshd)"},
		{[]int{1, 20, 31, 40, 99}, "5 processes (pid 1 systemd, pid 20 sshd, pid 31 containerd and 2 more)"},
		{[]int{99}, "1 process (pid 99 ?)"},
	}
	for _, tt := range tests {
		if got := describeProcesses(proc, tt.pids); got != tt.want {
			t.Errorf("describeProcesses(%v) = %q, want %q", tt.pids, got, tt.want)
		}
	}
}
