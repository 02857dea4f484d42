package diag

import (
	"fmt"
	"strings"
)

// Note says what tcpvet could not read or do, and so what it shows as
// unknown or may have missed. Code says which kind of note it is, for a
// script to tell one from another; Text says it to people, with the
// error's own words where there was one.
type Note struct {
	Code NoteCode `json:"code"`
	// Netns is which of the snapshot's namespaces the note is about,
	// where it is about one: the same code is given of the target and of
	// the host, and a script must not mistake one for the other.
	Netns Role   `json:"netns,omitempty"`
	Text  string `json:"text"`
}

// Notef makes a note of kind code, its text formatted as fmt.Sprintf does.
func Notef(code NoteCode, format string, args ...any) Note {
	return Note{Code: code, Text: fmt.Sprintf(format, args...)}
}

// notef makes a note of kind code about the namespace of role r, its text
// formatted as fmt.Sprintf does.
func (r Role) notef(code NoteCode, format string, args ...any) Note {
	n := Notef(code, format, args...)
	n.Netns = r
	return n
}

// as is the note said of the namespace of role r instead: what a host's
// view noted, shown as the target's when the target is the host. A note's
// text names its namespace by role first, as every note of a namespace's
// readers does. A note of no namespace stays one.
func (n Note) as(r Role) Note {
	if n.Netns == "" {
		return n
	}
	if strings.HasPrefix(n.Text, string(n.Netns)+" ") {
		n.Text = string(r) + strings.TrimPrefix(n.Text, string(n.Netns))
	}
	n.Netns = r
	return n
}

// String is the note's text: what people read of it.
func (n Note) String() string { return n.Text }

// NoteCode names a kind of note. Codes are stable: a script may match on
// them, where the text may be reworded. Every code is a constant below,
// and schema/tcpvet.schema.json lists them all.
type NoteCode string

// The notes of a snapshot: what could not be read of the target or the host
// namespace (the text says which).
const (
	// NotePIDGone is given when the process the target was named by has
	// exited or left the namespace: tcpvet shows the namespace it was in.
	NotePIDGone NoteCode = "pid-gone"
	// NoteOwnersHidden is given when processes of the namespace could not
	// be inspected (permission denied, or gone mid-scan), so sockets may
	// show no owner and unknown options.
	NoteOwnersHidden NoteCode = "owners-hidden"
	// NoteSysctlsUnreadable is given when a namespace's sysctls could not
	// be read, so the defaults a socket inherits are unknown.
	NoteSysctlsUnreadable NoteCode = "sysctls-unreadable"
	// NoteAddressesUnreadable is given when a namespace's own addresses
	// could not be listed, so which connections stay inside it is unknown.
	NoteAddressesUnreadable NoteCode = "addresses-unreadable"
	// NoteIPVSConnectionsUnread is given when IPVS is loaded but its
	// connection table could not be read, so how long IPVS keeps each
	// connection is unknown.
	NoteIPVSConnectionsUnread NoteCode = "ipvs-connections-unread"
	// NoteConntrackUnread is given when a namespace's conntrack tracks
	// flows but its table could not be read (no CAP_NET_ADMIN, too large),
	// so what it translates and how long each flow has left is unknown.
	NoteConntrackUnread NoteCode = "conntrack-unread"
	// NoteFirewallUnread is given when a namespace's firewall could not be
	// read, so whether it drops a forgotten flow's packets is unknown.
	NoteFirewallUnread NoteCode = "firewall-unread"
	// NoteIPVSUnreadable is given when a namespace's IPVS configuration
	// could not be read (without CAP_NET_ADMIN, or an error).
	NoteIPVSUnreadable NoteCode = "ipvs-unreadable"
	// NoteHostNotVisible is given when the host's namespace could not be
	// opened, so the node's sysctls, conntrack and IPVS are unknown.
	NoteHostNotVisible NoteCode = "host-not-visible"
)

// The notes of a watch (--watch, and the live view) and of following the
// connections that end.
const (
	// NoteDeathsUnwatched is given when the kernel refused to announce the
	// connections that close: closed is then absent.
	NoteDeathsUnwatched NoteCode = "deaths-unwatched"
	// NoteDeathsLost is given when the kernel's queue of connection deaths
	// overflowed: closed lists the others.
	NoteDeathsLost NoteCode = "deaths-lost"
	// NoteDeathsStopped is given when following connection deaths failed
	// part way: closed lists those seen until then.
	NoteDeathsStopped NoteCode = "deaths-stopped"
	// NoteDeathsOverflow is given when more deaths or conntrack entry ends
	// came between two samples than tcpvet holds, and the rest were let go.
	NoteDeathsOverflow NoteCode = "deaths-overflow"
	// NoteFlowEndsUnwatched is given when a conntrack table's entry ends
	// cannot be followed, so a closed connection's cause cannot say
	// whether the path forgot it first.
	NoteFlowEndsUnwatched NoteCode = "flow-ends-unwatched"
	// NoteFlowEndsStopped is given when following a conntrack table's
	// entry ends failed part way.
	NoteFlowEndsStopped NoteCode = "flow-ends-stopped"
	// NoteFlowEndsLost is given when the kernel's queue of conntrack entry
	// ends overflowed, so a cause may miss that the path forgot a
	// connection.
	NoteFlowEndsLost NoteCode = "flow-ends-lost"
	// NoteWatchTargetGone is given when the watched target went away (its
	// process exited) before the watch's end: the document is what the
	// watch saw until then.
	NoteWatchTargetGone NoteCode = "watch-target-gone"
	// NoteWatchInterrupted is given when the watch was stopped (a signal, a
	// deadline) before its end: the document is what it saw until then.
	NoteWatchInterrupted NoteCode = "watch-interrupted"
	// NoteWatchSampleFailed is given when a sample after the first failed:
	// the watch stopped there, and the document is what it saw until then.
	NoteWatchSampleFailed NoteCode = "watch-sample-failed"
)

// The notes of a sweep of every namespace (--all-netns, --serve), and of
// its namespaces.
const (
	// NoteNetnsDirUnreadable is given when the directory of bound
	// namespaces (/run/netns) could not be listed: namespaces bound only
	// there are missing.
	NoteNetnsDirUnreadable NoteCode = "netns-dir-unreadable"
	// NoteNamespacesHidden is given when the network namespace of some
	// processes could not be read (permission denied): a namespace only
	// they hold is missing.
	NoteNamespacesHidden NoteCode = "namespaces-hidden"
	// NoteCRISocketMissing is given when no container runtime socket was
	// found: pods are named from their processes' cgroups.
	NoteCRISocketMissing NoteCode = "cri-socket-missing"
	// NoteCRIUnreachable is given when the container runtime did not
	// answer: pods are named from their processes' cgroups.
	NoteCRIUnreachable NoteCode = "cri-unreachable"
	// NoteCRIIncomplete is given when the container runtime stopped
	// answering part way: the pods it did not name are named from cgroups.
	NoteCRIIncomplete NoteCode = "cri-incomplete"
	// NoteNamespaceVanished is given when a namespace vanished between
	// being found and being read: it is skipped.
	NoteNamespaceVanished NoteCode = "namespace-vanished"
	// NoteNamespaceUnreadable is given when a namespace was found but could
	// not be opened or read: it is listed without a snapshot.
	NoteNamespaceUnreadable NoteCode = "namespace-unreadable"
)

// NoteTexts are the texts of notes, in order: what people read of them.
func NoteTexts(notes []Note) []string {
	texts := make([]string, len(notes))
	for i, n := range notes {
		texts[i] = n.Text
	}
	return texts
}
