package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/internal/testnet"
)

// quickStart returns the commands of the README's Quick start block.
func quickStart(t *testing.T, readme string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "## Quick start")
	if !ok {
		t.Fatal("README has no Quick start section")
	}
	_, block, _ := strings.Cut(rest, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	var cmds []string
	for _, l := range strings.Split(block, "\n") {
		if cmd, _, _ := strings.Cut(l, "#"); strings.TrimSpace(cmd) != "" {
			cmds = append(cmds, strings.TrimSpace(cmd))
		}
	}
	return cmds
}

// TestQuickStart clones the repository and runs the README's two Quick start
// commands as a new user would: the first under tmux, until sockets show;
// the second, the whole test suite, to completion (in which this test,
// seeing it is the inner run, steps aside).
func TestQuickStart(t *testing.T) {
	// sudo resets the environment, so the inner run is marked by a file the
	// outer run leaves in the clone rather than by a variable.
	if _, err := os.Stat(innerMarker); err == nil {
		t.Skip("inside the quick start's own test run")
	}
	if testing.Short() {
		t.Skip("runs the whole suite again; not with -short")
	}
	testnet.RequireRoot(t)
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	clone := filepath.Join(t.TempDir(), "tcpvet")
	testnet.Run(t, "git", "clone", "-q", strings.TrimSpace(string(top)), clone)
	readme, err := os.ReadFile(filepath.Join(clone, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := quickStart(t, string(readme))
	if len(cmds) != 2 {
		t.Fatalf("Quick start has %d commands, want exactly two (run, test): %q", len(cmds), cmds)
	}

	// A listener of our own, so there is a socket to see in any namespace.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	tm := testnet.NewTmux(t, 160, 40, []string{"TERM=xterm-256color"}, "sh", "-c", "cd "+clone+" && "+cmds[0])
	screen := tm.WaitFor(5*time.Minute, "STATE", "sockets", ":"+port)
	t.Logf("%s shows:\n%s", cmds[0], screen)
	tm.Keys("q")

	start := time.Now()
	cmd := exec.Command("sh", "-c", cmds[1])
	cmd.Dir = clone
	if err := os.WriteFile(filepath.Join(clone, innerMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmds[1], err, tail(string(out), 60))
	}
	t.Logf("%s passed in %v", cmds[1], time.Since(start).Round(time.Second))
}

// innerMarker, in a clone's top directory, marks the quick start's own run.
const innerMarker = ".quickstart-inner"

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
