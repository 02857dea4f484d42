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
// the second for real, install step and all, but with the tests narrowed to
// one and the fuzzing to a few runs, since this test is part of the suite the
// command runs. A dry run of the second shows that, left alone, it runs the
// whole suite.
func TestQuickStart(t *testing.T) {
	t.Parallel() // make in a clone compiles and waits, beside tests that wait
	if testing.Short() {
		t.Skip("builds and runs make in a clone; not with -short")
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
	// MAKEFLAGS emptied: under make check it carries the outer make's
	// command line (-n, TESTFLAGS=...), which a new user's make would not see.
	tm := testnet.NewTmux(t, 160, 40, []string{"TERM=xterm-256color", "MAKEFLAGS="}, "sh", "-c", "cd "+clone+" && "+cmds[0])
	screen := tm.WaitFor(5*time.Minute, "STATE", "sockets", ":"+port)
	t.Logf("%s shows:\n%s", cmds[0], screen)
	tm.Keys("q")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if done, status := tm.Exited(); done {
			if status != "0" {
				t.Fatalf("%s exited %s after q:\n%s", cmds[0], status, tm.Screen(false))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still runs 30s after q:\n%s", cmds[0], tm.Screen(false))
		}
	}

	plan := runQuickStart(t, clone, cmds[1], "MAKEFLAGS=n")
	for _, want := range []string{"scripts/deps.sh", "gofmt", "staticcheck", "-fuzz", "goreleaser"} {
		if !strings.Contains(plan, want) {
			t.Errorf("%s does not run %s; it would run:\n%s", cmds[1], want, plan)
		}
	}
	suite := false
	for _, l := range strings.Split(plan, "\n") {
		if strings.Contains(l, "-race") && strings.HasSuffix(l, " ./...") && !strings.Contains(l, "-run") {
			suite = true
		}
	}
	if !suite {
		t.Errorf("%s does not run every test with -race; it would run:\n%s", cmds[1], plan)
	}

	start := time.Now()
	out := runQuickStart(t, clone, cmds[1], "TESTFLAGS=-run=TestHelpAndVersion -v", "FUZZTIME=100x", "MODEL_FUZZTIME=10x")
	if !strings.Contains(out, "--- PASS: TestHelpAndVersion") {
		t.Errorf("%s did not run the test it was given:\n%s", cmds[1], tail(out, 60))
	}
	t.Logf("%s, narrowed, passed in %v", cmds[1], time.Since(start).Round(time.Second))
}

// runQuickStart runs command in dir with the environment of a new user's
// shell plus env, and returns its output; a failure fails the test.
func runQuickStart(t *testing.T, dir, command string, env ...string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = dir
	for _, e := range os.Environ() {
		// What make passes down to the tests running under it, and the
		// knobs that narrow a run: none of it is in a new user's shell.
		switch name, _, _ := strings.Cut(e, "="); name {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS", "TESTFLAGS", "FUZZTIME", "MODEL_FUZZTIME":
			continue
		}
		cmd.Env = append(cmd.Env, e)
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s (with %q): %v\n%s", command, env, err, tail(string(out), 60))
	}
	return string(out)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
