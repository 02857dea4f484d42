package main

import (
	"regexp"
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
	tm := testnet.NewTmux(t, 160, 45, []string{"TERM=xterm-256color"}, bin, "--netns", s.target.Path, "--interval", "500ms", "--middlebox", forgetsFast)

	screen := tm.WaitFor(10*time.Second, "tcpvet", "STATE", "REMOTE", "half-open", "CLOSE_WAIT", "LISTEN")
	t.Logf("table:\n%s", screen)
	mostUrgentFirst(t, tm)
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
	tm.WaitFor(5*time.Second, "Keys in the table", "sort by state", "filter")
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")

	// Colours mean severity: a critical finding is drawn red and in
	// another colour than a warning (the selection, drawn apart, moved to
	// the last row).
	tm.Keys("G")
	time.Sleep(300 * time.Millisecond)
	colours := tm.Screen(true)
	half, cw := sgrBefore(colours, "half-open"), sgrBefore(colours, "close-wait")
	if half == "" || cw == "" || half == cw {
		t.Errorf("half-open drawn %q, close-wait %q: want two colours", half, cw)
	}

	// Findings: its own keys; details opened from it go back to it; q
	// closes what is open and quits from the table alone.
	tm.Keys("f")
	tm.WaitFor(5*time.Second, "half-open (", "esc/q back")
	tm.Keys("G")
	tm.Keys("g")
	tm.Keys("Enter")
	tm.WaitFor(5*time.Second, "Own options")
	tm.Keys("q")
	tm.WaitFor(5*time.Second, "half-open (", "esc/q back")
	tm.Keys("Space")
	tm.WaitFor(5*time.Second, "space resume")
	tm.Keys("Space")
	tm.WaitFor(5*time.Second, "space pause")
	tm.Keys("q")
	tm.WaitFor(5*time.Second, "STATE", "q quit")

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

// sgrBefore is the escape sequences tmux drew right before the first text.
func sgrBefore(screen, text string) string {
	i := strings.Index(screen, text)
	if i < 0 {
		return ""
	}
	j := i
	for j > 0 && screen[j-1] == 'm' {
		k := strings.LastIndex(screen[:j], "\x1b[")
		if k < 0 {
			break
		}
		j = k
	}
	return screen[j:i]
}

// TestTUIInTmuxSmall: on 80x24 without colour (TERM=dumb) the selected row
// is still marked and the snapshot's time is whole.
func TestTUIInTmuxSmall(t *testing.T) {
	s := newScenario(t)
	tm := testnet.NewTmux(t, 80, 24, []string{"TERM=dumb"}, binary(t), "--netns", s.target.Path, "--interval", "500ms", "--middlebox", forgetsFast)
	tm.WaitFor(10*time.Second, "STATE", "half-open", "taken ")
	mostUrgentFirst(t, tm)
	screen := tm.Screen(false)
	var titles string
	for _, l := range strings.Split(screen, "\n") {
		if strings.Contains(l, "STATE") && strings.Contains(l, "REMOTE") {
			titles = l
		}
	}
	for _, col := range []string{"STATE", "REMOTE", "KEEPALIVE", "FINDING"} {
		if !strings.Contains(titles, col) {
			t.Errorf("80x24 lacks the %s column, which keeps the verdict readable: %q", col, titles)
		}
	}
	marked := 0
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(l, "›") {
			marked++
		}
	}
	if marked != 1 {
		t.Errorf("%d rows marked selected, want 1:\n%s", marked, screen)
	}
	if !regexp.MustCompile(`taken \d\d:\d\d:\d\d UTC`).MatchString(screen) {
		t.Errorf("the snapshot's time is cut at 80 columns:\n%s", screen)
	}
}

// forgetsFast is a middlebox that forgets a flow after a second quiet, so
// that the scenario's quiet connections are flow-forgotten, critical: a
// rule named before half-open, failing only at the next write.
const forgetsFast = "quick=1s,reset"

// mostUrgentFirst holds the view to its order: the dead peer, failing now,
// is the table's first row and the findings list's first group, whatever
// else is critical. The table refreshes, so it may take a moment to settle.
func mostUrgentFirst(t *testing.T, tm *testnet.Tmux) {
	t.Helper()
	var first string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if first = lineAfter(tm.Screen(false), "STATE"); strings.Contains(first, "half-open") {
			break
		}
	}
	if !strings.Contains(first, "half-open") {
		t.Errorf("the table's first row is %q, want the half-open connection", first)
	}
	tm.Keys("f")
	screen := tm.WaitFor(5*time.Second, "half-open (")
	if g := lineAfterGroups(screen); !strings.HasPrefix(g, "half-open (") {
		t.Errorf("the findings list's first group is %q, want half-open:\n%s", g, screen)
	}
	tm.Keys("Escape")
	tm.WaitFor(5*time.Second, "STATE")
}

// lineAfter is the line after the first one holding marker.
func lineAfter(screen, marker string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.Contains(l, marker) && i+1 < len(lines) {
			return lines[i+1]
		}
	}
	return ""
}

// lineAfterGroups is the findings list's first group heading: the first
// line, past the header and the notes, that names a rule and a count.
func lineAfterGroups(screen string) string {
	group := regexp.MustCompile(`^[a-z-]+ \(\d+\)`)
	for _, l := range strings.Split(screen, "\n") {
		if l = strings.TrimSpace(l); group.MatchString(l) && !strings.HasPrefix(l, "notes") {
			return l
		}
	}
	return ""
}
