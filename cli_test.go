package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
)

// TestBadInputOneLine holds every bad command line to one clear line on
// stderr, nothing on stdout and a non-zero exit.
func TestBadInputOneLine(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--pid", "abc"}, `invalid value "abc" for flag -pid`},
		{[]string{"--pid", "0"}, "a PID is a positive number"},
		{[]string{"--pid", "-3"}, "a PID is a positive number"},
		{[]string{"--pid", "2147483647"}, "no process with PID 2147483647"},
		{[]string{"--netns", "/run/netns/tcpvet-missing"}, "no such file"},
		{[]string{"--netns", "/etc/hostname"}, "/etc/hostname is not a namespace file"},
		{[]string{"--netns", "/proc/self/ns/uts"}, "not a network namespace"},
		{[]string{"--pid", "1", "--netns", "/proc/1/ns/net"}, "--pid and --netns both name a target"},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--host-netns", "/nonexistent"}, "host namespace (--host-netns)"},
		{[]string{"--middlebox", "nlb"}, "not a preset (aws-nlb, "},
		{[]string{"--middlebox", "fw=5m,rst"}, "want ,reset or ,drop"},
		{[]string{"--middlebox", "fw=never"}, "positive duration"},
		{[]string{"--fail-on", "bad"}, `unknown severity "bad"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"--json"}, tt.args...), &stdout, &stderr)
			if code == 0 {
				t.Errorf("exit 0, want non-zero")
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tcpvet: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("stderr = %q, want one line with %q", msg, tt.want)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "--version"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, &stdout, &stderr); code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "tcpvet") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, stdout.String(), stderr.String())
		}
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds tcpvet once for tests that must run it as its own process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tcpvet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755) // other users run it too
		binPath = filepath.Join(dir, "tcpvet")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestUnprivileged runs tcpvet as nobody: in its own namespace it still
// lists every socket, with options marked unknown and why, but for
// SO_KEEPALIVE where the kernel's timer tells it; another user's
// namespace is refused in one line.
func TestUnprivileged(t *testing.T) {
	ns := testnet.New(t)
	a := ns.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:9001", Mode: testnet.Hold}},
		Dial: []testnet.Dial{{Name: "c", To: "127.0.0.1:9001"}, {Name: "ka", To: "127.0.0.1:9001", Keepalive: &testnet.KA{Idle: 600, Interval: 60, Count: 5}}}})
	bin := binary(t)
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}

	var out []byte
	var snap diag.Snapshot
	// Until the listener has accepted both: a socket in the accept queue
	// has no file yet.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		out, err = exec.Command("ip", append(append([]string{"netns", "exec", ns.Name}, nobody...), bin, "--json")...).Output()
		if err != nil {
			t.Fatalf("tcpvet as nobody in its own namespace: %v", err)
		}
		snap = diag.Snapshot{}
		if err := json.Unmarshal(out, &snap); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(snap.Sockets, func(s diag.Socket) bool { return s.State == diag.Established && s.Inode == 0 }) || time.Now().After(deadline) {
			break
		}
	}
	if len(snap.Sockets) != 5 { // listener, two clients, two accepted
		t.Fatalf("nobody sees %d sockets, want 5:\n%s", len(snap.Sockets), out)
	}
	kaPort := a.Local["ka"]
	for _, s := range snap.Sockets {
		if s.Keepalive.IdleS != nil || s.UserTimeoutMS != nil || !strings.Contains(s.Keepalive.Reason, "CAP_SYS_PTRACE") {
			t.Errorf("socket %s: keepalive %+v, user timeout %v; want unknown, saying what privilege is missing", s.ID, s.Keepalive, s.UserTimeoutMS)
		}
		// The kernel's timer tells SO_KEEPALIVE of an established
		// socket: on for the client that set it, off for the rest.
		var want *bool
		if s.State == diag.Established {
			on := s.Local.String() == kaPort
			want = &on
		}
		if got := s.Keepalive.Enabled; (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("socket %s %s -> %s: SO_KEEPALIVE %v, want %v from the kernel's timer (%s)", s.State, s.Local, s.Remote, ptrText(got), ptrText(want), s.Timer.Kind)
		}
	}

	var stderr bytes.Buffer
	cmd := exec.Command(nobody[0], append(nobody[1:], bin, "--json", "--pid", strconv.Itoa(a.PID))...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("nobody read root's namespace")
	}
	if msg := stderr.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "permission denied (run as root or with CAP_SYS_PTRACE)") {
		t.Errorf("stderr = %q, want one line saying permission denied and what to do", msg)
	}

	// A namespace nobody may open (a bound one) but not enter: the
	// refusal says what it takes.
	stderr.Reset()
	cmd = exec.Command(nobody[0], append(nobody[1:], bin, "--json", "--netns", ns.Path)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("nobody entered another namespace")
	}
	if msg := stderr.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "takes root or CAP_SYS_ADMIN") {
		t.Errorf("stderr = %q, want one line saying entering the namespace takes root or CAP_SYS_ADMIN", msg)
	}

	// A sweep of the machine that cannot read the test's namespace says so
	// in one line, and a gate (--fail-on) does not pass over it.
	for _, tt := range []struct {
		args []string
		code int
	}{{[]string{"--all-netns", "--json"}, 0}, {[]string{"--all-netns", "--json", "--fail-on", "critical"}, 1}} {
		stderr.Reset()
		cmd = exec.Command(nobody[0], append(nobody[1:], append([]string{bin}, tt.args...)...)...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if msg := stderr.String(); code != tt.code || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "namespaces could not be read, so their connections are not inspected") {
			t.Errorf("nobody, tcpvet %v: exit %d, stderr %q; want %d and one line saying namespaces could not be read", tt.args, code, msg, tt.code)
		}
	}
}

// ptrText is *p as text, or "unknown" for nil.
func ptrText(p *bool) string {
	if p == nil {
		return "unknown"
	}
	return strconv.FormatBool(*p)
}
