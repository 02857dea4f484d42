package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/node"
	"github.com/tcpvet/tcpvet/rules"
)

// Source takes one snapshot and evaluates it. The model calls it from a
// tea.Cmd, never from Update.
type Source func(ctx context.Context) (*diag.Snapshot, rules.Report, error)

// NodeSource sweeps every network namespace of the machine. The model
// calls it from a tea.Cmd, never from Update.
type NodeSource func(ctx context.Context) (*node.Sweep, error)

// Options configure the interface.
type Options struct {
	Source Source
	// Sweep, when set, makes the interface a view of the whole node: it
	// starts in the node view, one row per namespace, and Source is not
	// used.
	Sweep NodeSource
	// Interval between refreshes.
	Interval time.Duration
	// ExportDir is where e writes snapshots.
	ExportDir string
	// NoColor is set when the user asked for no colours (NO_COLOR).
	NoColor bool
}

type mode int

const (
	modeTable mode = iota
	modeNode
	modeFilter
	modeDetails
	modeFindings
	modeHelp
	modeClosed
)

// Messages the model receives from its commands.
type (
	snapshotMsg struct {
		snap *diag.Snapshot
		rep  rules.Report
		err  error
	}
	sweepMsg struct {
		sweep *node.Sweep
		err   error
	}
	tickMsg     struct{}
	exportedMsg struct {
		path string
		err  error
		// notWritable is why the export directory was not used, when the
		// snapshot went to the temporary directory instead.
		notWritable error
	}
)

// Model is the root model of the interface.
type Model struct {
	opts   Options
	keys   KeyMap
	styles Styles
	help   help.Model
	filter textinput.Model
	// nodeFilter filters the node view; filter, the connection table.
	nodeFilter textinput.Model

	width, height int
	mode          mode
	// stack holds the modes under the current one: back returns to the last.
	stack []mode

	snap   *diag.Snapshot
	report rules.Report
	table  table
	// closed lists the connections that ended while the view watched.
	closed closedList

	// sweep is the node's last sweep, nodes its table; inNS is the inode
	// of the namespace the connection view shows, 0 when it shows none
	// (back in the node view) or there is no node.
	sweep *node.Sweep
	nodes nodeTable
	inNS  uint64
	// inWas is the namespace shown as the latest sweep that read it knew
	// it (its path and pod, not its snapshot), and inCookie its cookie:
	// what tells it from another given its inode number since (another).
	inWas    node.Namespace
	inCookie uint64
	podName  string // the pod of the namespace shown, "" for none
	// nsNotes are what the sweep says of the namespace shown, beside its
	// snapshot's own notes.
	nsNotes []diag.Note

	details   viewport.Model
	detailsID diag.Cookie // socket shown in details, 0 for a namespace finding
	// detailsClosed is the closed connection shown in details, "" when
	// details show a socket or a finding.
	detailsClosed diag.Cookie
	finding       int    // finding shown in details when detailsID is ""
	findItems     []int  // findings in the findings view's order, built on entering it
	procNames     string // the header's process list
	findCur       int
	// helpOffset is the first line of help drawn.
	helpOffset int

	paused, loading bool
	lastErr         error
	flash           string
	flashErr        bool
}

// New returns the model; run it with tea.NewProgram.
func New(opts Options) Model {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	ti := textinput.New()
	ti.Prompt = "/"
	ti.Placeholder = "address, port, process, state or rule"
	nti := textinput.New()
	nti.Prompt = "/"
	nti.Placeholder = "pod, netns, rule or process"
	m := Model{
		nodeFilter: nti,
		opts:       opts,
		keys:       DefaultKeyMap(),
		styles:     NewStyles(true, opts.NoColor),
		help:       help.New(),
		filter:     ti,
		details:    viewport.New(),
		table:      newTable(),
		loading:    true,
	}
	if opts.Sweep != nil {
		m.mode = modeNode
		m.keys.Table.Back.SetEnabled(true)
	}
	return m
}

// baseMode is the screen under every other: the node view for a node,
// else the connection table.
func (m *Model) baseMode() mode {
	if m.opts.Sweep != nil {
		return modeNode
	}
	return modeTable
}

// Init takes the first snapshot and asks the terminal for its background.
func (m Model) Init() tea.Cmd {
	return tea.Batch(m.fetch(), tea.RequestBackgroundColor)
}

// sweepTimeout bounds one sweep of the node: every namespace, read side
// by side, takes longer than one.
const sweepTimeout = 2 * time.Minute

func (m Model) fetch() tea.Cmd {
	if sweep := m.opts.Sweep; sweep != nil {
		return func() tea.Msg {
			ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
			defer cancel()
			sw, err := sweep(ctx)
			if err == nil && sw == nil {
				err = errors.New("the sweep returned nothing")
			}
			return sweepMsg{sweep: sw, err: err}
		}
	}
	src := m.opts.Source
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		snap, rep, err := src(ctx)
		return snapshotMsg{snap: snap, rep: rep, err: err}
	}
}

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.opts.Interval, func(time.Time) tea.Msg { return tickMsg{} })
}

// Update handles one message.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	tm, cmd := m.update(msg)
	if nm, ok := tm.(Model); ok && nm.flash != m.flash {
		// The status grew or shrank: so does what is above it.
		nm.resizeDetails()
		nm.clampCursor()
		tm = nm
	}
	return tm, cmd
}

func (m Model) update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.SetWidth(msg.Width)
		m.resizeDetails()
		m.clampCursor()
		return m, nil
	case tea.BackgroundColorMsg:
		m.styles = NewStyles(msg.IsDark(), m.opts.NoColor)
		m.help.Styles = help.DefaultStyles(msg.IsDark())
		return m, nil
	case snapshotMsg:
		m.loading = false
		if msg.err != nil {
			// The error stays until the next key, refreshes or not.
			m.lastErr = msg.err
			m.flash, m.flashErr = "refresh failed: "+msg.err.Error(), true
		} else {
			m.lastErr = nil
			m.apply(msg.snap, msg.rep)
		}
		if m.paused {
			return m, nil
		}
		return m, m.tick()
	case sweepMsg:
		m.loading = false
		if msg.err != nil || msg.sweep == nil {
			err := msg.err
			if err == nil {
				err = errors.New("the sweep returned nothing")
			}
			m.lastErr = err
			m.flash, m.flashErr = "sweep failed: "+err.Error(), true
		} else {
			m.lastErr = nil
			m.applySweep(msg.sweep)
		}
		if m.paused {
			return m, nil
		}
		return m, m.tick()
	case tickMsg:
		if m.paused || m.loading {
			return m, nil
		}
		m.loading = true
		return m, m.fetch()
	case exportedMsg:
		switch {
		case msg.err != nil:
			m.flash, m.flashErr = "export failed: "+msg.err.Error(), true
		case msg.notWritable != nil:
			m.flash, m.flashErr = "snapshot written to "+msg.path+" ("+msg.notWritable.Error()+")", true
		default:
			m.flash, m.flashErr = "snapshot written to "+msg.path, false
		}
		return m, nil
	case tea.KeyPressMsg:
		return m.handleKey(msg)
	}
	if m.mode == modeDetails {
		var cmd tea.Cmd
		m.details, cmd = m.details.Update(msg)
		return m, cmd
	}
	return m, nil
}

func (m Model) handleKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	// What was flashed has been seen once a key is pressed.
	m.flash, m.flashErr = "", false
	switch m.mode {
	case modeFilter:
		return m.filterKey(msg)
	case modeHelp:
		k := m.keys.Help
		switch {
		case key.Matches(msg, k.Quit):
			return m, tea.Quit
		case key.Matches(msg, k.Back):
			m.back()
		default:
			m.helpOffset, _ = k.move(msg, m.helpOffset, m.helpHeight(), m.helpLast())
		}
		m.helpOffset = max(0, min(m.helpOffset, m.helpLast()))
		return m, nil
	case modeDetails:
		return m.detailsKey(msg)
	case modeFindings:
		return m.findingsKey(msg)
	case modeClosed:
		return m.closedKey(msg)
	case modeNode:
		return m.nodeKey(msg)
	}
	return m.tableKey(msg)
}

// open shows mode over the current one; back returns to where it was opened.
func (m *Model) open(md mode) {
	if m.mode != md {
		m.stack = append(m.stack, m.mode)
		m.mode = md
	}
}

func (m *Model) back() {
	if n := len(m.stack); n > 0 {
		m.mode, m.stack = m.stack[n-1], m.stack[:n-1]
	} else {
		m.mode = m.baseMode()
	}
	if m.mode == modeDetails {
		m.renderDetails()
	}
	if m.mode == modeNode {
		// The connection view is closed: sweeps no longer refresh it.
		m.inNS, m.podName, m.nsNotes = 0, "", nil
	}
}

// liveKey handles the keys every screen over the table shares, and says
// whether msg was one of them.
func (m *Model) liveKey(msg tea.KeyPressMsg, k Live) (tea.Cmd, bool) {
	switch {
	case key.Matches(msg, k.Help):
		m.open(modeHelp)
		m.helpOffset = 0
	case key.Matches(msg, k.Pause):
		m.paused = !m.paused
		m.keys.setPaused(m.paused)
		if !m.paused && !m.loading {
			m.loading = true
			return m.fetch(), true
		}
	case key.Matches(msg, k.Refresh):
		if !m.loading {
			m.loading = true
			return m.fetch(), true
		}
	case key.Matches(msg, k.Export):
		if m.mode == modeNode {
			return m.exportSweep(), true
		}
		return m.export(), true
	default:
		return nil, false
	}
	return nil, true
}

func (m Model) filterKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.keys.Filter
	in := m.filterInput()
	switch {
	case key.Matches(msg, k.Quit):
		return m, tea.Quit
	case key.Matches(msg, k.Apply):
		in.Blur()
		m.back()
		return m, nil
	case key.Matches(msg, k.Clear):
		in.Blur()
		in.SetValue("")
		m.refilter()
		m.back()
		return m, nil
	}
	var cmd tea.Cmd
	*in, cmd = in.Update(msg)
	m.refilter()
	return m, cmd
}

// inNode says whether the screens shown are the node's, not a
// namespace's opened from it.
func (m *Model) inNode() bool { return m.opts.Sweep != nil && m.inNS == 0 }

// filterInput is the filter of what is shown: the node view's or the
// connection table's.
func (m *Model) filterInput() *textinput.Model {
	if m.inNode() {
		return &m.nodeFilter
	}
	return &m.filter
}

func (m Model) detailsKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.keys.Details
	if cmd, ok := m.liveKey(msg, k.Live); ok {
		return m, cmd
	}
	switch {
	case key.Matches(msg, k.Quit):
		return m, tea.Quit
	case key.Matches(msg, k.Back):
		m.back()
	case key.Matches(msg, k.Up):
		m.details.ScrollUp(1)
	case key.Matches(msg, k.Down):
		m.details.ScrollDown(1)
	case key.Matches(msg, k.PageUp):
		m.details.PageUp()
	case key.Matches(msg, k.PageDown):
		m.details.PageDown()
	case key.Matches(msg, k.Top):
		m.details.GotoTop()
	case key.Matches(msg, k.Bottom):
		m.details.GotoBottom()
	}
	return m, nil
}

func (m Model) tableKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.keys.Table
	if cmd, ok := m.liveKey(msg, k.Live); ok {
		return m, cmd
	}
	if m.table.update(msg, k, m.tableHeight()) {
		return m, nil
	}
	switch {
	case key.Matches(msg, k.Quit):
		return m, tea.Quit
	case key.Matches(msg, k.Filter):
		m.open(modeFilter)
		return m, m.filter.Focus()
	case key.Matches(msg, k.ClearFilter) && m.filter.Value() != "":
		m.filter.SetValue("")
		m.refilter()
	case key.Matches(msg, k.Back):
		m.back()
	case key.Matches(msg, k.Details):
		if r := m.table.current(); r != nil {
			m.openDetails(r.s.ID)
		}
	case key.Matches(msg, k.Findings):
		m.openFindings()
	case key.Matches(msg, k.Closed):
		m.openClosed()
	}
	m.clampCursor()
	return m, nil
}

// openClosed shows the connections that ended. A namespace opened from a
// sweep of the node was read once, not watched: nobody followed its
// connections' deaths, and the flash says so rather than show an empty
// list.
func (m *Model) openClosed() {
	if m.opts.Sweep != nil {
		m.flash, m.flashErr = notFollowedInSweep, false
		return
	}
	m.open(modeClosed)
	m.closed.clamp(m.tableHeight())
}

// notFollowedInSweep says why a namespace of the node view lists no
// connection that ended.
const notFollowedInSweep = "connections that end are followed only when tcpvet watches one namespace, not in a sweep of the node, which reads each namespace once"

func (m Model) closedKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.keys.Closed
	if cmd, ok := m.liveKey(msg, k.Live); ok {
		return m, cmd
	}
	h := m.tableHeight()
	if cur, ok := k.move(msg, m.closed.cursor, max(1, h-1), max(0, len(m.closed.entries)-1)); ok {
		m.closed.cursor = cur
		m.closed.clamp(h)
		return m, nil
	}
	switch {
	case key.Matches(msg, k.Quit):
		return m, tea.Quit
	case key.Matches(msg, k.Back):
		m.back()
	case key.Matches(msg, k.Details):
		if e := m.closed.current(); e != nil {
			m.openClosedDetails(e.ID)
		}
	}
	return m, nil
}

// findingsPage is how many findings a page key moves over.
func (m Model) findingsPage() int { return max(1, m.tableHeight()-1) }

func (m Model) findingsKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.keys.Findings
	if cmd, ok := m.liveKey(msg, k.Live); ok {
		return m, cmd
	}
	last := max(0, len(m.findItems)-1)
	if cur, ok := k.move(msg, m.findCur, m.findingsPage(), last); ok {
		m.findCur = cur
		return m, nil
	}
	switch {
	case key.Matches(msg, k.Quit):
		return m, tea.Quit
	case key.Matches(msg, k.Back):
		m.back()
	case key.Matches(msg, k.Details):
		if m.findCur < len(m.findItems) {
			f := m.report.Findings[m.findItems[m.findCur]]
			if f.Socket != nil {
				m.table.selectSocket(*f.Socket, m.tableHeight())
				m.openDetails(*f.Socket)
			} else {
				m.finding = m.findItems[m.findCur]
				m.openDetails(0)
			}
		}
	}
	m.findCur = max(0, min(m.findCur, last))
	return m, nil
}

// apply takes in a new snapshot, keeping the cursor on the same socket.
func (m *Model) apply(snap *diag.Snapshot, rep rules.Report) {
	m.snap, m.report = snap, rep
	m.table.load(snap, rep, m.tableHeight())
	m.closed.load(snap)
	m.closed.clamp(m.tableHeight())
	m.procNames = strings.Join(processNames(snap, 4), ", ")
	m.findItems = nil
	if m.under(modeFindings) {
		m.findItems = m.findingsShown()
		m.findCur = min(m.findCur, max(0, len(m.findItems)-1))
	}
	if m.under(modeDetails) {
		m.renderDetails()
	}
}

// notes are what tcpvet could not see of the namespace shown: its
// snapshot's notes, then the sweep's about it.
func (m *Model) notes() []diag.Note {
	if m.snap == nil {
		return nil
	}
	if len(m.nsNotes) == 0 {
		return m.snap.Notes
	}
	return append(slices.Clip(m.snap.Notes), m.nsNotes...)
}

// under says whether md is the current mode or one back will return to.
func (m *Model) under(md mode) bool {
	return m.mode == md || slices.Contains(m.stack, md)
}

// openFindings shows the findings view; its order is built only when shown.
func (m *Model) openFindings() {
	m.open(modeFindings)
	if m.findItems == nil {
		m.findItems = m.findingsShown()
	}
	m.findCur = min(m.findCur, max(0, len(m.findItems)-1))
}

// refilter applies the filter as typed so far.
func (m *Model) refilter() {
	if m.inNode() {
		m.nodes.setFilter(m.nodeFilter.Value(), m.tableHeight())
		return
	}
	m.table.setFilter(m.filter.Value(), m.tableHeight())
	// The findings view follows the filter: built again when next shown.
	m.findItems = nil
}

func (m *Model) clampCursor() {
	m.table.clamp(m.tableHeight())
	m.nodes.clamp(m.tableHeight())
	m.closed.clamp(m.tableHeight())
}

func (m *Model) openDetails(id diag.Cookie) {
	m.detailsID, m.detailsClosed = id, 0
	m.open(modeDetails)
	m.resizeDetails()
	m.details.SetYOffset(0)
	m.renderDetails()
}

// openClosedDetails shows the details of the connection id that ended.
func (m *Model) openClosedDetails(id diag.Cookie) {
	m.openDetails(0)
	m.detailsClosed = id
	m.renderDetails()
}

func (m *Model) resizeDetails() {
	m.details.SetWidth(max(20, m.width))
	m.details.SetHeight(max(3, m.height-1-m.statusHeight()))
}

// export writes the current snapshot and report as JSON, off the UI loop,
// to the export directory or, when that cannot be written, to the
// temporary directory.
func (m Model) export() tea.Cmd { return m.exportDoc(m.snap, m.report) }

func (m Model) exportDoc(snap *diag.Snapshot, rep rules.Report) tea.Cmd {
	if snap == nil {
		return nil
	}
	name := fmt.Sprintf("tcpvet-%d-%s.json", snap.Target.NetnsInode, snap.TakenAt.Format("20060102T150405"))
	// The same document as --json, indented as it is for a terminal.
	return m.writeExport(name, Document{snap, rep}.WriteIndentedJSON)
}

// writeExport writes a document, as render renders it, to name in the
// export directory, or the temporary directory when that is not writable.
func (m Model) writeExport(name string, render func(io.Writer) error) tea.Cmd {
	dir := m.opts.ExportDir
	return func() tea.Msg {
		if dir == "" {
			dir = "."
		}
		var buf bytes.Buffer
		if err := render(&buf); err != nil {
			return exportedMsg{err: err}
		}
		b := buf.Bytes()
		write := func(dir string) (string, error) {
			path := filepath.Join(dir, name)
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			return path, os.WriteFile(path, b, 0o600)
		}
		path, err := write(dir)
		if err == nil {
			return exportedMsg{path: path}
		}
		shown := dir
		if abs, aerr := filepath.Abs(dir); aerr == nil {
			shown = abs
		}
		notWritable := fmt.Errorf("%s is not writable: %w", shown, cause(err))
		tmp, terr := write(os.TempDir())
		if terr != nil {
			return exportedMsg{path: path, err: fmt.Errorf("%w; nor is %s: %w", notWritable, os.TempDir(), cause(terr))}
		}
		return exportedMsg{path: tmp, notWritable: notWritable}
	}
}

// cause drops the operation and path a *PathError repeats, which the
// message around it already says.
func cause(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}
