package ui

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/tcpvet/tcpvet/rules"
)

// exportWith drives a model exporting to dir, runs the export command as
// bubbletea would and hands its message back to the model.
func exportWith(t *testing.T, dir string, w, h int) Model {
	t.Helper()
	var m tea.Model = New(Options{Interval: time.Second, ExportDir: dir})
	m, _ = m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	snap := fixture()
	m, _ = m.Update(snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)})
	m, cmd := m.Update(keyMsg("e"))
	if cmd == nil {
		t.Fatal("e returned no command")
	}
	m, _ = m.Update(cmd())
	return m.(Model)
}

// notADir is a path no one can write a file under, root included: a file.
func notADir(t *testing.T) string {
	p := filepath.Join(shortDir(t), "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// shortDir is a new directory right under /tmp: the messages these tests
// read must fit the screen whatever TMPDIR the suite runs under.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("/tmp", "tv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestExportFallsBackToTempDir: when the export directory cannot be
// written, the snapshot goes to the temporary directory and the screen
// says where, and why, whole even on 80 columns.
func TestExportFallsBackToTempDir(t *testing.T) {
	tmp := shortDir(t)
	t.Setenv("TMPDIR", tmp)
	bad := notADir(t)
	m := exportWith(t, bad, 80, 24)
	files, _ := filepath.Glob(filepath.Join(tmp, "tcpvet-*.json"))
	if len(files) != 1 {
		t.Fatalf("want one export in %s, got %v", tmp, files)
	}
	var doc map[string]any
	if b, err := os.ReadFile(files[0]); err != nil || json.Unmarshal(b, &doc) != nil || doc["findings"] == nil {
		t.Errorf("export %s unreadable or without findings (%v)", files[0], err)
	}
	flat := strings.Join(strings.Fields(screen(m)), "")
	for _, want := range []string{files[0], bad + "isnotwritable:notadirectory"} {
		if !strings.Contains(flat, strings.Join(strings.Fields(want), "")) {
			t.Errorf("the screen does not say %q:\n%s", want, screen(m))
		}
	}
	if n := strings.Count(screen(m), "\n") + 1; n != 24 {
		t.Errorf("%d lines with a long message, want 24", n)
	}
}

// TestErrorsStayUntilAKey: a failed export or refresh stays on screen
// across refreshes and ticks, and goes at the next key.
func TestErrorsStayUntilAKey(t *testing.T) {
	t.Setenv("TMPDIR", notADir(t))
	m := exportWith(t, notADir(t), 160, 40)
	refreshErr := snapshotMsg{err: fmt.Errorf("read sock_diag: no such process")}
	snap := fixture()
	for _, c := range []struct {
		name string
		m    Model
		want string
	}{
		{"export", m, "export failed"},
		{"refresh", drive(t, 160, 40, fixture(), refreshErr), "refresh failed"},
	} {
		m := c.m
		if !strings.Contains(screen(m), c.want) {
			t.Fatalf("%s: no %q:\n%s", c.name, c.want, screen(m))
		}
		for _, msg := range []tea.Msg{snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)}, tickMsg{}, snapshotMsg{snap: snap, rep: rules.Evaluate(snap, nil)}} {
			m, _ = step(m, msg)
		}
		if !strings.Contains(screen(m), c.want) {
			t.Errorf("%s: the error went before a key was pressed:\n%s", c.name, screen(m))
		}
		m, _ = step(m, keyMsg("down"))
		if strings.Contains(screen(m), c.want) {
			t.Errorf("%s: the error outlived a key:\n%s", c.name, screen(m))
		}
	}
}
