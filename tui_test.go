package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/internal/testnet"
)

// TestTUIInTmux drives the real binary in a real namespace as a person
// would: the table, the filter, a half-open connection's details, help and
// a clean quit.
func TestTUIInTmux(t *testing.T) {
	s := newScenario(t)
	bin := binary(t)
	tm := testnet.NewTmux(t, 160, 40, []string{"TERM=xterm-256color"}, bin, "--netns", s.target.Path, "--interval", "500ms")

	screen := tm.WaitFor(10*time.Second, "tcpvet", "STATE", "REMOTE", "half-open", "CLOSE_WAIT", "LISTEN")
	t.Logf("table:\n%s", screen)
	if !strings.Contains(screen, "critical") || !strings.Contains(screen, "keepalive_time") {
		t.Errorf("header lacks findings counts or sysctls:\n%s", screen)
	}

	tm.Keys("/")
	tm.Keys("-l", ":7005")
	screen = tm.WaitFor(5*time.Second, "/:7005")
	if strings.Contains(screen, "CLOSE_WAIT") || !strings.Contains(screen, "half-open") {
		t.Errorf("filter :7005 should leave only the dead peer:\n%s", screen)
	}
	tm.Keys("Enter")
	tm.Keys("Enter")
	screen = tm.WaitFor(5*time.Second, "Own options", "CRITICAL half-open", "gives_up_in_s", "TCP_USER_TIMEOUT")
	t.Logf("details:\n%s", screen)

	// Two escapes in a row read as alt+esc: wait for each to land.
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE", "/:7005")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "CLOSE_WAIT")
	tm.Keys("?")
	tm.WaitFor(5*time.Second, "Keys", "sort by state", "filter")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")

	tm.Keys("q")
	deadline := time.Now().Add(5 * time.Second)
	for {
		exited, status := tm.Exited()
		if exited {
			if status != "0" {
				t.Errorf("exit status %q, want 0", status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpvet did not quit on q:\n%s", tm.Screen(false))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The alternate screen is gone: nothing of the table is left behind.
	if after := tm.Screen(false); strings.Contains(after, "REMOTE") {
		t.Errorf("terminal not restored after quit:\n%s", after)
	}
}
