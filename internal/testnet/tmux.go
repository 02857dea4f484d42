package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tmux is a detached tmux session running one command in a fixed-size
// terminal, to drive a full-screen program as a person would.
type Tmux struct {
	t    testing.TB
	name string
	// sock is the session's own server socket, in the test's temporary
	// directory, so that nothing stays behind in /tmp.
	sock string
}

// tmux is a tmux command line against the session's own server.
func (tm *Tmux) tmux(args ...string) []string {
	return append([]string{"tmux", "-S", tm.sock}, args...)
}

// NewTmux starts command in a new width x height tmux session and kills it
// when the test ends.
func NewTmux(t testing.TB, width, height int, env []string, command ...string) *Tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("needs tmux")
	}
	tm := &Tmux{t: t, name: fmt.Sprintf("tcpvet-%d", time.Now().UnixNano()), sock: filepath.Join(t.TempDir(), "tmux")}
	args := []string{"new-session", "-d", "-s", tm.name, "-x", fmt.Sprint(width), "-y", fmt.Sprint(height)}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	// The shell around the command prints its exit status where the test
	// can read it (tmux 3.3 does not report a dead pane's status), then
	// keeps the pane open so the screen left behind can be inspected.
	wrapper := []string{"sh", "-c", `"$@"; echo "` + exitMarker + `$?"; exec sleep 3600`, "sh"}
	Run(t, append(append(tm.tmux(append(args, "--")...), wrapper...), command...)...)
	t.Cleanup(func() { exec.Command("tmux", "-S", tm.sock, "kill-server").Run() })
	return tm
}

// Keys sends tmux key names (Enter, Escape, Space, C-c) or literal text.
func (tm *Tmux) Keys(keys ...string) {
	tm.t.Helper()
	Run(tm.t, tm.tmux(append([]string{"send-keys", "-t", tm.name}, keys...)...)...)
}

// Screen returns the visible screen as text; with escapes, with its colours.
func (tm *Tmux) Screen(escapes bool) string {
	tm.t.Helper()
	args := []string{"capture-pane", "-p", "-t", tm.name}
	if escapes {
		args = append(args, "-e")
	}
	return Run(tm.t, tm.tmux(args...)...)
}

// WaitFor polls the screen until it contains every one of want, and fails
// the test showing the last screen after timeout.
func (tm *Tmux) WaitFor(timeout time.Duration, want ...string) string {
	tm.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := tm.Screen(false)
		missing := ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return s
		}
		if strings.Contains(s, exitMarker) {
			tm.t.Fatalf("the command exited before the screen showed %q:\n%s", missing, s)
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("screen never showed %q within %v:\n%s", missing, timeout, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const exitMarker = "tcpvet-testnet-exit:"

// Exited reports whether the command has exited, and its exit status.
func (tm *Tmux) Exited() (bool, string) {
	tm.t.Helper()
	s := tm.Screen(false)
	i := strings.Index(s, exitMarker)
	if i < 0 {
		return false, ""
	}
	status, _, _ := strings.Cut(s[i+len(exitMarker):], "\n")
	return true, strings.TrimSpace(status)
}

// CommandPID returns the PID of the command the session runs (the child of
// the shell that wraps it), or 0 while it has not started.
func (tm *Tmux) CommandPID() int {
	tm.t.Helper()
	shell := strings.TrimSpace(Run(tm.t, tm.tmux("display-message", "-p", "-t", tm.name, "#{pane_pid}")...))
	b, err := os.ReadFile("/proc/" + shell + "/task/" + shell + "/children")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}
