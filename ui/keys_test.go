package ui

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/tcpvet/tcpvet/diag"
)

// keyMsg turns a key name as bindings spell it ("ctrl+r", "pgdown", "G")
// into the message the terminal would send.
func keyMsg(s string) tea.KeyPressMsg {
	var mod tea.KeyMod
	for {
		switch {
		case strings.HasPrefix(s, "ctrl+"):
			mod |= tea.ModCtrl
			s = s[len("ctrl+"):]
			continue
		case strings.HasPrefix(s, "shift+"):
			mod |= tea.ModShift
			s = s[len("shift+"):]
			continue
		}
		break
	}
	named := map[string]rune{
		"up": tea.KeyUp, "down": tea.KeyDown, "pgup": tea.KeyPgUp, "pgdown": tea.KeyPgDown,
		"home": tea.KeyHome, "end": tea.KeyEnd, "esc": tea.KeyEscape, "enter": tea.KeyEnter, "space": tea.KeySpace,
	}
	if c, ok := named[s]; ok {
		m := tea.KeyPressMsg{Code: c, Mod: mod}
		if c == tea.KeySpace {
			m.Text = " "
		}
		return m
	}
	r := []rune(s)[0]
	if mod != 0 {
		return tea.KeyPressMsg{Code: r, Mod: mod}
	}
	return tea.KeyPressMsg{Code: r, Text: s}
}

// manyDeaths are the closed fixture's deaths n times over, with distinct
// ids: more than a screen holds.
func manyDeaths(n int) []diag.Closed {
	base := deaths()
	out := make([]diag.Closed, n)
	for i := range out {
		out[i] = base[i%len(base)]
		out[i].ID = diag.Cookie(0x9000 + i)
	}
	return out
}

// many is the fixture's sockets n times over, on distinct ports: more rows
// and findings than a screen holds, so page keys differ from top and bottom.
func many(n int) *diag.Snapshot {
	snap := fixture()
	base := snap.Sockets
	snap.Sockets = nil
	for i := range n {
		s := base[i%len(base)]
		s.ID = diag.Cookie(0x1000 + i)
		s.Local = netip.AddrPortFrom(s.Local.Addr(), uint16(20000+i))
		snap.Sockets = append(snap.Sockets, s)
	}
	return snap
}

func step(m Model, msg tea.Msg) (Model, tea.Cmd) {
	tm, cmd := m.Update(msg)
	return tm.(Model), cmd
}

func quits(cmd tea.Cmd) bool {
	if cmd == nil {
		return false
	}
	_, ok := cmd().(tea.QuitMsg)
	return ok
}

// keyCheck says whether a key did what its help says, given the model
// before and after it and the command it returned.
type keyCheck func(before, after Model, cmd tea.Cmd) error

func want(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// moveChecks are the moves' checks for a cursor read by pos, which pages
// by page and ends at last.
func moveChecks(pos, page, last func(Model) int) map[string]keyCheck {
	moved := func(name string, to func(b Model) int) keyCheck {
		return func(b, a Model, _ tea.Cmd) error {
			if pos(b) == to(b) {
				return fmt.Errorf("the test starts where %s would go (%d)", name, pos(b))
			}
			return want(pos(a) == to(b), "cursor %d -> %d, want %d (%s)", pos(b), pos(a), to(b), name)
		}
	}
	return map[string]keyCheck{
		"up":        moved("one up", func(b Model) int { return pos(b) - 1 }),
		"down":      moved("one down", func(b Model) int { return pos(b) + 1 }),
		"page up":   moved("a page up", func(b Model) int { return max(0, pos(b)-page(b)) }),
		"page down": moved("a page down", func(b Model) int { return min(last(b), pos(b)+page(b)) }),
		"top":       moved("the top", func(Model) int { return 0 }),
		"bottom":    moved("the bottom", last),
	}
}

func liveChecks(md mode) map[string]keyCheck {
	return map[string]keyCheck{
		"pause": func(b, a Model, _ tea.Cmd) error {
			if !a.paused || a.mode != md {
				return fmt.Errorf("paused %v mode %v, want paused in %v", a.paused, a.mode, md)
			}
			return want(strings.Contains(screen(a), "space resume"), "paused, yet the footer does not say space resume:\n%s", screen(a))
		},
		"refresh": func(b, a Model, cmd tea.Cmd) error {
			return want(cmd != nil && a.loading && a.mode == md, "no refresh started (cmd %v, loading %v)", cmd != nil, a.loading)
		},
		"export": func(b, a Model, cmd tea.Cmd) error {
			if cmd == nil {
				return fmt.Errorf("no export command")
			}
			msg, ok := cmd().(exportedMsg)
			if !ok || msg.err != nil {
				return fmt.Errorf("export: %#v", msg)
			}
			_, err := os.Stat(msg.path)
			return err
		},
		"help": func(b, a Model, _ tea.Cmd) error {
			if a.mode != modeHelp || !strings.Contains(screen(a), "Keys in "+modeNames[md]) {
				return fmt.Errorf("mode %v, want the help of %v:\n%s", a.mode, modeNames[md], screen(a))
			}
			return nil
		},
	}
}

func merge(ms ...map[string]keyCheck) map[string]keyCheck {
	out := map[string]keyCheck{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func inMode(md mode) keyCheck {
	return func(b, a Model, cmd tea.Cmd) error {
		return want(a.mode == md && !quits(cmd), "mode %v (quit %v), want %v", a.mode, quits(cmd), md)
	}
}

func quitCheck(b, a Model, cmd tea.Cmd) error { return want(quits(cmd), "does not quit") }

// TestEveryHelpKeyDoesWhatItSays presses every key of every binding each
// mode's help lists, in that mode, and checks it did what its help says.
// A binding without a check fails: help cannot list a key nobody tried.
func TestEveryHelpKeyDoesWhatItSays(t *testing.T) {
	const w, h = 80, 24
	snap := many(60)
	snap.Closed = manyDeaths(60)
	t.Chdir(t.TempDir()) // exports land here
	modes := []struct {
		md    mode
		setup []tea.Msg // from the table
		start func(Model) Model
		keys  help.KeyMap
		check map[string]keyCheck
	}{
		{modeTable, nil, func(m Model) Model { m.table.cursor = 20; m.clampCursor(); return m }, DefaultKeyMap().Table, tableChecks()},
		{modeFilter, []tea.Msg{keyMsg("/"), keyMsg("c"), keyMsg("l"), keyMsg("o")}, nil, DefaultKeyMap().Filter, map[string]keyCheck{
			"apply filter": func(b, a Model, _ tea.Cmd) error {
				return want(a.mode == modeTable && a.filter.Value() == "clo" && len(a.table.visible) < len(a.table.rows), "mode %v filter %q", a.mode, a.filter.Value())
			},
			"clear filter": func(b, a Model, _ tea.Cmd) error {
				return want(a.mode == modeTable && a.filter.Value() == "" && len(a.table.visible) == len(a.table.rows), "mode %v filter %q", a.mode, a.filter.Value())
			},
			"quit": quitCheck,
		}},
		{modeFindings, []tea.Msg{keyMsg("f")}, func(m Model) Model { m.findCur = 10; return m }, DefaultKeyMap().Findings, merge(
			moveChecks(func(m Model) int { return m.findCur }, Model.findingsPage, func(m Model) int { return len(m.findItems) - 1 }), liveChecks(modeFindings),
			map[string]keyCheck{
				"details": inMode(modeDetails),
				"back":    inMode(modeTable),
				"quit":    quitCheck,
			})},
		{modeDetails, []tea.Msg{keyMsg("f"), keyMsg("enter")}, func(m Model) Model { m.details.SetYOffset(20); return m }, DefaultKeyMap().Details, merge(
			moveChecks(func(m Model) int { return m.details.YOffset() }, func(m Model) int { return m.details.Height() },
				func(m Model) int { return m.details.TotalLineCount() - m.details.Height() }), liveChecks(modeDetails),
			map[string]keyCheck{
				"back": inMode(modeFindings), // where it was opened from
				"quit": quitCheck,
			})},
		{modeClosed, []tea.Msg{keyMsg("c")}, func(m Model) Model { m.closed.cursor = 20; m.clampCursor(); return m }, DefaultKeyMap().Closed, merge(
			moveChecks(func(m Model) int { return m.closed.cursor }, func(m Model) int { return m.tableHeight() - 1 }, func(m Model) int { return len(m.closed.entries) - 1 }),
			liveChecks(modeClosed),
			map[string]keyCheck{
				"details": func(b, a Model, _ tea.Cmd) error {
					id := b.closed.current().ID
					return want(a.mode == modeDetails && strings.Contains(screen(a), "closed "+id.String()), "mode %v, want the details of %s:\n%s", a.mode, id, screen(a))
				},
				"back": inMode(modeTable),
				"quit": quitCheck,
			})},
		{modeDetails, []tea.Msg{keyMsg("c"), keyMsg("enter")}, func(m Model) Model { m.details.SetYOffset(20); return m }, DefaultKeyMap().Details, merge(
			moveChecks(func(m Model) int { return m.details.YOffset() }, func(m Model) int { return m.details.Height() },
				func(m Model) int { return m.details.TotalLineCount() - m.details.Height() }), liveChecks(modeDetails),
			map[string]keyCheck{
				"back": inMode(modeClosed), // where it was opened from
				"quit": quitCheck,
			})},
		{modeHelp, []tea.Msg{keyMsg("c"), keyMsg("?")}, func(m Model) Model {
			m, _ = step(m, tea.WindowSizeMsg{Width: minWidth, Height: minHeight})
			m.helpOffset = 3
			return m
		}, DefaultKeyMap().Help, merge(
			moveChecks(func(m Model) int { return m.helpOffset }, Model.helpHeight, Model.helpLast),
			map[string]keyCheck{
				"close help": inMode(modeClosed),
				"quit":       quitCheck,
			})},
		{modeHelp, []tea.Msg{keyMsg("f"), keyMsg("?")}, func(m Model) Model {
			// A small screen, where help scrolls.
			m, _ = step(m, tea.WindowSizeMsg{Width: minWidth, Height: minHeight})
			m.helpOffset = 8
			return m
		}, DefaultKeyMap().Help, merge(
			moveChecks(func(m Model) int { return m.helpOffset }, Model.helpHeight, Model.helpLast),
			map[string]keyCheck{
				"close help": inMode(modeFindings),
				"quit":       quitCheck,
			})},
	}
	for _, md := range modes {
		start := drive(t, w, h, snap, md.setup...)
		if start.mode != md.md {
			t.Fatalf("setup reached mode %v, want %v", start.mode, md.md)
		}
		if md.start != nil {
			start = md.start(start)
		}
		checkKeys(t, start, md.keys, md.check)
	}
}

// enabled drops the bindings help does not show: those disabled.
func enabled(bs []key.Binding) []key.Binding {
	return slices.DeleteFunc(slices.Clone(bs), func(b key.Binding) bool { return !b.Enabled() })
}

// checkKeys presses, in start's mode, every key of every binding keys'
// help lists and checks it with check, by the binding's description; and
// checks the footer lists the short help.
func checkKeys(t *testing.T, start Model, keys help.KeyMap, check map[string]keyCheck) {
	t.Helper()
	md := start.mode
	var full []key.Binding
	for _, g := range keys.FullHelp() {
		full = append(full, enabled(g)...)
	}
	short := enabled(keys.ShortHelp())
	for _, b := range short {
		if !slices.ContainsFunc(full, func(f key.Binding) bool { return f.Help() == b.Help() }) {
			t.Errorf("%v: footer lists %q, which its help does not", modeNames[md], b.Help().Key)
		}
	}
	for _, b := range full {
		desc := b.Help().Desc
		check, ok := check[desc]
		if !ok {
			t.Errorf("%v: no check for %q (%s)", modeNames[md], b.Help().Key, desc)
			continue
		}
		for _, k := range b.Keys() {
			after, cmd := step(start, keyMsg(k))
			if err := check(start, after, cmd); err != nil {
				t.Errorf("%v: %s (%s): %v", modeNames[md], k, desc, err)
			}
		}
	}
	// The footer lists this mode's keys.
	footer := screen(start)
	footer = footer[strings.LastIndex(footer, "\n")+1:]
	for _, b := range short {
		if !strings.Contains(footer, b.Help().Key+" "+b.Help().Desc) {
			t.Errorf("%v: footer %q lacks %q", modeNames[md], footer, b.Help().Key+" "+b.Help().Desc)
		}
	}
}

// TestBackReturnsWhereItCameFrom: esc and q close what was opened last and
// return to what was under it; only the table's q quits.
func TestBackReturnsWhereItCameFrom(t *testing.T) {
	for _, back := range []string{"esc", "q"} {
		m := drive(t, 80, 24, fixture(), keyMsg("f"), keyMsg("enter"), keyMsg("?"))
		for _, wantMode := range []mode{modeDetails, modeFindings, modeTable} {
			var cmd tea.Cmd
			m, cmd = step(m, keyMsg(back))
			if m.mode != wantMode || quits(cmd) {
				t.Fatalf("%s: mode %v (quit %v), want %v", back, m.mode, quits(cmd), wantMode)
			}
		}
		if _, cmd := step(m, keyMsg(back)); quits(cmd) != (back == "q") {
			t.Errorf("%s in the table: quit %v", back, quits(cmd))
		}
	}
}

// TestPausedSaysResume: the footer and help say what space does now.
func TestPausedSaysResume(t *testing.T) {
	m := drive(t, 80, 24, fixture(), keyMsg("space"))
	if s := screen(m); !strings.Contains(s, "space resume") || strings.Contains(s, "space pause") {
		t.Errorf("paused view:\n%s", s)
	}
	m, _ = step(m, keyMsg("?"))
	if s := screen(m); !strings.Contains(s, "resume") {
		t.Errorf("paused help:\n%s", s)
	}
	m, _ = step(m, keyMsg("esc"))
	m, _ = step(m, keyMsg("space"))
	if s := screen(m); !strings.Contains(s, "space pause") {
		t.Errorf("resumed view:\n%s", s)
	}
}

// tableChecks are the checks of the connection table's keys.
func tableChecks() map[string]keyCheck {
	sortCheck := func(c column) keyCheck {
		return func(b, a Model, _ tea.Cmd) error {
			title := columns[c].title + map[bool]string{true: "↓", false: "↑"}[a.table.sortDesc]
			return want(a.table.sortCol == c && strings.Contains(screen(a), title), "sorted by %v, want %v and %q on screen", a.table.sortCol, c, title)
		}
	}
	return merge(
		moveChecks(func(m Model) int { return m.table.cursor }, func(m Model) int { return m.tableHeight() - 1 }, func(m Model) int { return len(m.table.visible) - 1 }), liveChecks(modeTable),
		map[string]keyCheck{
			"filter":   inMode(modeFilter),
			"details":  inMode(modeDetails),
			"findings": inMode(modeFindings),
			"closed connections": func(b, a Model, _ tea.Cmd) error {
				return want(a.mode == modeClosed && strings.Contains(screen(a), "ENDED"), "mode %v, want the closed connections:\n%s", a.mode, screen(a))
			},
			"quit": quitCheck,
			"clear filter": func(b, a Model, _ tea.Cmd) error {
				return want(a.filter.Value() == "" && len(a.table.visible) == len(a.table.rows) && a.mode == modeTable, "filter %q, %d of %d rows", a.filter.Value(), len(a.table.visible), len(a.table.rows))
			},
			"sort by state": sortCheck(colState), "sort by remote": sortCheck(colRemote), "sort by process": sortCheck(colProcess),
			"sort by queue": sortCheck(colQueues), "sort by retransmits": sortCheck(colRetrans), "sort by idle": sortCheck(colIdle),
			"sort by finding": func(b, a Model, _ tea.Cmd) error {
				return want(a.table.sortCol == colFinding && a.table.sortDesc != b.table.sortDesc, "F from the default sort should turn it around")
			},
		})
}
