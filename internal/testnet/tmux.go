package testnet

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Tmux is a detached tmux session running one command in a fixed-size
// terminal, to drive a full-screen program as a person would.
type Tmux struct {
	t    testing.TB
	name string
}

// NewTmux starts command in a new width x height tmux session and kills it
// when the test ends.
func NewTmux(t testing.TB, width, height int, env []string, command ...string) *Tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("needs tmux")
	}
	tm := &Tmux{t: t, name: fmt.Sprintf("tcpvet-%d", time.Now().UnixNano())}
	args := []string{"new-session", "-d", "-s", tm.name, "-x", fmt.Sprint(width), "-y", fmt.Sprint(height)}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	Run(t, append(append([]string{"tmux"}, append(args, "--")...), command...)...)
	Run(t, "tmux", "set-option", "-t", tm.name, "remain-on-exit", "on")
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", tm.name).Run() })
	return tm
}

// Keys sends tmux key names (Enter, Escape, Space, C-c) or literal text.
func (tm *Tmux) Keys(keys ...string) {
	tm.t.Helper()
	Run(tm.t, append([]string{"tmux", "send-keys", "-t", tm.name}, keys...)...)
}

// Screen returns the visible screen as text; with escapes, with its colours.
func (tm *Tmux) Screen(escapes bool) string {
	tm.t.Helper()
	args := []string{"capture-pane", "-p", "-t", tm.name}
	if escapes {
		args = append(args, "-e")
	}
	return Run(tm.t, append([]string{"tmux"}, args...)...)
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
		if time.Now().After(deadline) {
			tm.t.Fatalf("screen never showed %q within %v:\n%s", missing, timeout, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Dead reports whether the command has exited, and its status.
func (tm *Tmux) Dead() (bool, string) {
	tm.t.Helper()
	out := Run(tm.t, "tmux", "display-message", "-p", "-t", tm.name, "#{pane_dead} #{pane_dead_status}")
	f := strings.Fields(out)
	// tmux marks the pane dead a moment before it records the status.
	return len(f) > 1 && f[0] == "1", strings.Join(f[1:], " ")
}
