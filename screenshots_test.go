package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/internal/testnet"
)

// TestScreenshots captures the screens users judge tcpvet by from a real
// scenario (a dead peer, a stalled reader, connections without keepalive),
// as ANSI text in $TCPVET_SCREENSHOTS. `make screenshots` turns them into
// the PNGs in screenshots/.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("TCPVET_SCREENSHOTS")
	if dir == "" {
		t.Skip("set TCPVET_SCREENSHOTS to a directory (make screenshots)")
	}
	s := newScenario(t)
	tm := testnet.NewTmux(t, 140, 36, []string{"TERM=xterm-256color", "COLORTERM=truecolor"},
		binary(t), "--netns", s.target.Path, "--middlebox", "aws-nlb", "--interval", "1s")
	save := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name+".ans"), []byte(tm.Screen(true)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tm.WaitFor(10*time.Second, "half-open", "CLOSE_WAIT")
	time.Sleep(1500 * time.Millisecond) // let a refresh mark what changed
	save("table")

	tm.Keys("/")
	tm.Keys("-l", ":7005")
	tm.Keys("Enter")
	tm.WaitFor(5*time.Second, "1/1 of")
	tm.Keys("Enter")
	tm.WaitFor(5*time.Second, "Own options")
	save("details")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "CLOSE_WAIT")

	tm.Keys("f")
	tm.WaitFor(5*time.Second, "half-open (")
	save("findings")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")

	tm.Keys("?")
	tm.WaitFor(5*time.Second, "sort by state")
	save("help")
	tm.Keys("q")
}
