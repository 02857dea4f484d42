package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// Outcome is what a connection meets once a middlebox on its path has
// forgotten it: what its next packet, a write or a keepalive probe, meets.
type Outcome string

// What the next packet of a forgotten flow meets.
const (
	// Survives: the flow is picked up again as it was, or never needed
	// the middlebox's memory.
	Survives Outcome = "survives"
	// Resets: the packet is answered with a reset, and the application
	// gets "connection reset by peer".
	Resets Outcome = "reset"
	// Drops: the packet is dropped without a word; the sender retransmits
	// until it gives up with "connection timed out".
	Drops Outcome = "drop"
	// Breaks: reset or dropped, depending on what tcpvet cannot see; the
	// connection is lost either way.
	Breaks Outcome = "reset-or-drop"
	// MayBreak: whether the connection survives depends on what tcpvet
	// cannot see; Because says what.
	MayBreak Outcome = "may-break"
)

// certain reports whether the outcome loses the connection whatever
// tcpvet cannot see.
func (o Outcome) certain() bool { return o == Resets || o == Drops || o == Breaks }

// forgetting is a middlebox on a connection's path: when it forgets the
// flow, and what the flow's next packet meets then.
type forgetting struct {
	hop
	// In is how long until it forgets the flow; 0 when it already has.
	In      time.Duration
	Already bool
	// gone is set when Already is seen, not estimated: the middlebox's own
	// table holds no entry of the flow.
	gone bool
	// Entry is the middlebox's own record of the flow, where tcpvet read it.
	Entry *diag.Flow
	// KeptAlive is set when the entry outlived the flow's quiet: packets
	// without data, keepalive probes from either end, refresh it.
	KeptAlive bool
	Meets     Outcome
	// Because says what the next packet meets and how tcpvet knows.
	Because string
}

// side says which end of its connection a socket is: the server end was
// accepted from one of the namespace's listeners.
type side struct{ server bool }

func (sd side) String() string {
	if sd.server {
		return "server"
	}
	return "client"
}

// listeners are the addresses the namespace listens on, by port.
type listeners map[uint16][]netip.Addr

func listenersOf(snap *diag.Snapshot) listeners {
	out := listeners{}
	for i := range snap.Sockets {
		if s := &snap.Sockets[i]; s.State == diag.Listen {
			out[s.Local.Port()] = append(out[s.Local.Port()], s.Local.Addr().Unmap())
		}
	}
	return out
}

// sideOf tells the server end of a connection by its local address: one a
// listener of the namespace accepts on.
func (l listeners) sideOf(s *diag.Socket) side {
	local := s.Local.Addr().Unmap()
	return side{server: slices.ContainsFunc(l[s.Local.Port()], func(a netip.Addr) bool { return a.IsUnspecified() || a == local })}
}

// forgettings lists every middlebox of path that carries s, with when it
// forgets the flow and what the next packet meets then, soonest first.
func forgettings(path []Middlebox, s *diag.Socket, sd side) []forgetting {
	idle, every := s.Idle(), ownKeepalive(s)
	var out []forgetting
	for _, m := range path {
		why, ok := "", m.carries == nil
		if !ok {
			why, ok = m.carries(s)
		}
		if !ok {
			continue
		}
		f := forgetting{hop: hop{Middlebox: m, why: why}}
		if m.tracker != nil {
			if !m.tracker.fate(&f, s, sd, idle, every) {
				continue
			}
		} else {
			f.In, f.Already = estimate(m.IdleTimeout, idle, every)
			if e := s.IPVS; m.ipvs && e != nil && !e.Template {
				// IPVS's own entry of the connection: its time left, and
				// fresh past the quiet when probes refresh it.
				f.In, f.Already, f.KeptAlive = time.Duration(e.ExpiresInS)*time.Second, false, idle > m.IdleTimeout
			}
			f.Meets, f.Because = declaredFate(m.OnExpiry)
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b forgetting) int { return int(a.In - b.In) })
	return out
}

// estimate is when a middlebox whose memory of the flow tcpvet cannot read
// forgets it: timeout after the last packet, data or the socket's own
// keepalive probe (every, when it comes first).
func estimate(timeout, idle, every time.Duration) (in time.Duration, already bool) {
	if every > 0 && every < timeout {
		return timeout - min(idle, every), false
	}
	return max(0, timeout-idle), idle >= timeout
}

// declaredFate is what a middlebox tcpvet cannot look into does, as its
// preset's documentation or the user's flag says.
func declaredFate(e Expiry) (Outcome, string) {
	switch e {
	case ExpiryReset:
		return Resets, "it answers a forgotten flow with a reset"
	case ExpiryDrop:
		return Drops, "it drops a forgotten flow's packets without a word"
	}
	return Breaks, "it resets or drops a forgotten flow's packets"
}

// fate fills f for the flow of s through this conntrack. It reports false
// when the conntrack is not on the flow's path after all: it tracks no
// flow of the socket's family.
func (t *tracker) fate(f *forgetting, s *diag.Socket, sd side, idle, every time.Duration) bool {
	timeout := f.IdleTimeout
	read := t.table != nil && t.table.Read
	for i := range s.Conntrack {
		if s.Conntrack[i].Netns == t.where {
			f.Entry = &s.Conntrack[i]
		}
	}
	if read && f.Entry == nil && !t.table.Tracks(s.Local.Addr()) {
		return false
	}
	switch {
	case f.Entry != nil:
		if f.Entry.TimeoutS > 0 {
			// The entry's own timeout: a timeout policy's, or the sysctl's.
			timeout = time.Duration(f.Entry.TimeoutS) * time.Second
			f.IdleTimeout, f.IdleTimeoutS = timeout, timeout.Seconds()
		}
		f.In = time.Duration(f.Entry.ExpiresInS) * time.Second
		// Fresher than the flow's quiet: packets without data keep it, a
		// keepalive's probes from either end. Not this end's own where
		// they come too late to keep it: its probe may have made the
		// entry anew (loose=1 picks a flow up), as it will each time.
		f.KeptAlive = idle > timeout && (every == 0 || every < timeout)
	case read:
		// The table tracks this socket's other flows, yet holds no entry
		// of this one: forgotten, deleted, or older than the rule that
		// hooked conntrack in. Its next packet meets the same.
		f.Already, f.gone = true, true
	default:
		f.In, f.Already = estimate(timeout, idle, every)
	}
	f.Meets, f.Because = t.nextPacket(s, sd, f.Entry)
	if fw := t.firewall; read && f.Entry == nil && f.Meets.certain() && (!fw.Complete() || len(fw.Untracks) > 0) {
		if e, seen := s.Observed.EntrySeen(t.where); seen && goneUnanswered(e, s) {
			// The watch saw the entry go, and nothing answered since:
			// a tracked flow, forgotten.
			f.Because = "the watch saw an entry of it that is gone now, and nothing has answered it since, so this flow was tracked and nothing lets it by untracked; " + f.Because
		} else {
			// A rule here may exempt the flow from tracking altogether.
			f.Meets, f.Because = MayBreak, "tcpvet finds no entry of it, but a rule here may exempt flows from tracking (notrack, or one it cannot decode), so it may never have had one; if it had, "+f.Because
		}
	}
	return true
}

// goneUnanswered reports whether the entry e a watch saw of s is gone and
// no ACK has come since the samples first found the table without it. A
// flow answered with no entry is let by untracked (a notrack rule added
// since the entry was seen), not dropped.
func goneUnanswered(e diag.SeenEntry, s *diag.Socket) bool {
	return e.MissingS != nil && s.TCPInfo != nil && s.TCPInfo.SinceAckRecv().Seconds() >= *e.MissingS
}

// nat says how this conntrack translates the flow of s: "dnat", "snat",
// "dnat+snat", "" for not at all, or "unknown". Its entry says so, or the
// entry a watch saw of it before it went. Without either, for a client end,
// the other flows it tracks between the same two addresses, or to the same
// service address, or from a masqueraded source; for either end, a ruleset
// with no translating rule at all. A server end's other flows from the same
// client prove nothing: a client reaches a pod both through a Service and
// straight (a headless Service, a scrape of the pod's address), and the
// replies of both come from the same two addresses.
func (t *tracker) nat(s *diag.Socket, sd side, entry *diag.Flow) string {
	if entry != nil {
		return entry.NAT
	}
	if e, ok := s.Observed.EntrySeen(t.where); ok {
		return e.NAT
	}
	if t.table == nil || !t.table.Read {
		return "unknown"
	}
	if !sd.server {
		if nat, ok := t.table.Between(s.Local.Addr(), s.Remote.Addr()); ok {
			return nat
		}
		switch {
		case len(t.table.Services[unmap(s.Remote)]) > 0:
			return "dnat"
		case slices.Contains(t.table.Masqueraded, s.Local.Addr().Unmap()):
			return "snat"
		}
	}
	if fw := t.firewall; fw.Complete() && len(fw.Translates) == 0 {
		// No rule here translates anything: no flow was translated.
		return ""
	}
	return "unknown"
}

// nextPacket is what the next packet of s meets once this conntrack has
// forgotten its flow, and why. With nf_conntrack_tcp_loose=1 (the kernel's
// default) any packet of the flow starts a new entry, which NAT rules treat
// as a new connection: an untranslated flow goes on, a translated one is
// translated anew from the client's side and not at all from the server's.
// With loose=0 the packet is invalid: never translated, and dropped only
// where a rule drops invalid packets.
func (t *tracker) nextPacket(s *diag.Socket, sd side, entry *diag.Flow) (Outcome, string) {
	nat := t.nat(s, sd, entry)
	loose, ok := t.sysctls.Get(diag.ConntrackLoose)
	natWhy := map[string]string{
		"dnat": "it translates this flow's destination",
		"snat": "it translates this flow's source",
	}[nat]
	if nat == "dnat+snat" {
		nat, natWhy = "dnat", "it translates this flow's source and destination"
	}
	switch {
	case !ok:
		return MayBreak, fmt.Sprintf("%s's nf_conntrack_tcp_loose is unknown, so whether it picks the flow up again is too", t.where)
	case loose != 0 && nat == "":
		return Survives, "with nf_conntrack_tcp_loose=1 its next packet is picked up as a new entry, and nothing here translates it, so it goes on (unless a rule drops new packets without SYN)"
	case loose != 0 && nat == "unknown":
		return MayBreak, "with nf_conntrack_tcp_loose=1 its next packet is picked up again; had a rule here translated it (a Service, masquerade), that packet is translated anew or not at all, and tcpvet sees no entry of the flow to tell"
	case loose != 0 && nat == "dnat" && !sd.server:
		// A FIN or a reset from no state is invalid even with loose=1
		// (nf_conntrack_proto_tcp's table): only data and ACKs are
		// picked up.
		const closeLost = " (and a close after the quiet is never picked up: its FIN goes untranslated, and the server never learns the connection ended)"
		switch backends := t.table.Services[unmap(s.Remote)]; len(backends) {
		case 0:
			return MayBreak, fmt.Sprintf("with nf_conntrack_tcp_loose=1 its next packet is picked up and balanced again over the backends behind %s, of which no flow tracked now shows one: the one it had goes on, any other never had the connection and answers with a reset%s", s.Remote, closeLost)
		case 1:
			return MayBreak, fmt.Sprintf("with nf_conntrack_tcp_loose=1 its next packet is picked up and balanced again, to the one backend behind %s seen now: the one it had, unless the backends have changed since (a rolling update), when the new one never had the connection and answers with a reset%s", s.Remote, closeLost)
		default:
			return MayBreak, fmt.Sprintf("with nf_conntrack_tcp_loose=1 its next packet is picked up and balanced again over the %d backends behind %s seen now: one that never had the connection answers with a reset%s", len(backends), s.Remote, closeLost)
		}
	case loose != 0 && nat == "snat" && !sd.server:
		return MayBreak, "with nf_conntrack_tcp_loose=1 its next packet is picked up and masqueraded again, to the same port only if it is free: else the server answers with a reset"
	case loose != 0 && sd.server:
		// Who speaks first decides: the client's packet is picked up and
		// translated anew, the server's goes back untranslated.
		return MayBreak, fmt.Sprintf("%s; with nf_conntrack_tcp_loose=1, if the client speaks first its packet is picked up and translated anew, but if this server does, its packet is picked up as a new flow that nothing translates back, reaches %s from the wrong address, and is answered with a reset", natWhy, s.Remote)
	}
	// loose=0: the next packet is invalid and goes untranslated.
	fw := t.firewall
	chain, drops, mayDrop := fw.DropInvalid(!s.Remote.Addr().Unmap().Is4(), t.hooks...)
	switch {
	case drops:
		return Drops, fmt.Sprintf("with nf_conntrack_tcp_loose=0 its next packet is invalid, and the rule in %s %s drops invalid packets", t.where, chain)
	case nat == "unknown":
		return MayBreak, "with nf_conntrack_tcp_loose=0 its next packet is invalid: it goes on untranslated unless a rule drops it, and tcpvet sees no entry of the flow to tell whether it was translated"
	case nat == "":
		if mayDrop || !fw.Complete() {
			return MayBreak, "with nf_conntrack_tcp_loose=0 its next packet is invalid: it goes on untranslated unless a rule drops invalid packets, and a rule here may (one with more matches, one only a jump reaches, or one tcpvet cannot decode)"
		}
		return Survives, "with nf_conntrack_tcp_loose=0 its next packet is invalid, but nothing here translates the flow and no rule drops invalid packets, so it goes on"
	case nat == "dnat" && !sd.server && slices.Contains(t.addresses, s.Remote.Addr().Unmap()) && !mayDrop && fw.Complete():
		return Resets, fmt.Sprintf("%s; with nf_conntrack_tcp_loose=0 its next packet is invalid and not translated: it reaches %s, an address of the %s itself, whose stack answers with a reset", natWhy, s.Remote, t.where)
	}
	return Breaks, fmt.Sprintf("%s; with nf_conntrack_tcp_loose=0 its next packet is invalid and not translated, and never reaches the other end", natWhy)
}
