package watch

import (
	"slices"
	"strings"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

const (
	// sameMoment is how far apart two readings of one event's time may
	// be: last_* are jiffies turned to milliseconds, and a sample's time is
	// taken a little before the kernel is asked.
	sameMoment = 50 * time.Millisecond
	// ackDelay is how long after data a bare ACK of it may still come:
	// the kernel delays an ACK 200 ms at most (TCP_DELACK_MAX). A bare
	// segment later than that is a probe; keepalive never probes sooner
	// than a second after the last segment received.
	ackDelay = 250 * time.Millisecond
	// maxPing is the largest payload still taken for a ping: an HTTP/2
	// PING frame is 17 bytes, 39 to 46 in a TLS record.
	maxPing = 64
	// pingAnswer is how soon after a ping its answer comes: a sample that
	// falls between the two sees each in a different interval.
	pingAnswer = 500 * time.Millisecond
)

// Observer follows the sockets of a series of snapshots of one namespace,
// by socket cookie, and says what it saw of each.
type Observer struct {
	socks       map[diag.Cookie]*tracker
	samples     int
	first, last time.Time
	// seen keeps each connection's last sample, kept past its disappearance
	// from the dump: the kernel announces a death when the application
	// lets go of the socket, which may be long after it left the table.
	// Only a Deaths collector reads it, and it is kept only for one.
	seen     map[diag.Cookie]*lastSeen
	keepSeen bool
	// gone lists the connections the last snapshot added no longer had.
	gone []diag.Cookie
}

// lastSeen is a connection's last sample.
//
// While the dump lists the connection, sock points at its socket in the
// last snapshot added, which its taker holds anyway (the live view shows
// it): a copy of every connection would be a second snapshot's worth of
// memory. Add copies it out (detach) once a snapshot no longer lists it,
// so that no older snapshot is kept alive for it. Snapshots are never
// written after they are added but for Attach, so the pointer reads what
// the sample said.
type lastSeen struct {
	sock *diag.Socket
	// sample is the Observer's sample count when sock was last set.
	sample      int
	detached    bool
	first, last time.Time
	// told is set once the connection's end was told from its owner's
	// descriptor, before the kernel announced it: the announcement, when
	// it comes, is not told again.
	told bool
	// entries are the conntrack entries of the last sample that saw any,
	// taken at entriesAt: a forgotten flow's entry is gone from the
	// samples after it ran out. entriesInfo is the socket's tcp_info as
	// of that sample, nil while that sample is the last (sock's is it): a
	// copy only for the few connections whose entry went.
	entries     []diag.Flow
	entriesAt   time.Time
	entriesInfo *diag.TCPInfo
}

// entriesTCPInfo is the socket's tcp_info as of the sample its entries
// are from.
func (ls *lastSeen) entriesTCPInfo() *diag.TCPInfo {
	if ls.entriesInfo != nil {
		return ls.entriesInfo
	}
	return ls.sock.TCPInfo
}

// ownSample is what a connection's last sample keeps of it once copied
// out of its snapshot.
type ownSample struct {
	sock diag.Socket
	info diag.TCPInfo
}

// detach copies the last sample out of its snapshot: what Classify reads
// is the socket's own, and who held it, to ask them if it leaves the dump
// unannounced. Its tcp_info, which a told death keeps, is copied too.
func (ls *lastSeen) detach() {
	if ls.detached {
		return
	}
	own := &ownSample{sock: *ls.sock, info: *ls.sock.TCPInfo}
	own.sock.TCPInfo, own.sock.IPVS, own.sock.Observed, own.sock.Conntrack = &own.info, nil, nil, nil
	// The owners share one array of the snapshot (ownersOf), and the
	// options point into another (attachOptions): copies of both.
	own.sock.Processes = slices.Clone(own.sock.Processes)
	k := &own.sock.Keepalive
	k.Enabled, k.IdleS, k.IntervalS, k.Probes = own1(k.Enabled), own1(k.IdleS), own1(k.IntervalS), own1(k.Probes)
	own.sock.UserTimeoutMS, own.sock.SynRetries = own1(own.sock.UserTimeoutMS), own1(own.sock.SynRetries)
	ls.sock, ls.detached = &own.sock, true
}

// Add reads one more snapshot, taken after those added before.
func (o *Observer) Add(snap *diag.Snapshot) {
	if o.socks == nil {
		o.socks = make(map[diag.Cookie]*tracker)
		o.first = snap.TakenAt
	}
	o.samples++
	o.last = snap.TakenAt
	seen := make(map[diag.Cookie]bool, len(snap.Sockets))
	read := readTables(snap)
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if s.TCPInfo == nil || s.State == diag.Listen {
			continue
		}
		seen[s.ID] = true
		t := o.socks[s.ID]
		if t == nil {
			t = &tracker{}
			o.socks[s.ID] = t
		}
		t.update(snap.TakenAt.Sub(o.first), s.TCPInfo)
		t.noteEntries(snap.TakenAt.Sub(o.first), s.Conntrack, read)
		if o.keepSeen && s.Remote.Port() != 0 {
			o.remember(s, snap.TakenAt)
		}
	}
	// A connection's last sample must not keep an older snapshot alive.
	for _, ls := range o.seen {
		if ls.sample != o.samples {
			ls.detach()
		}
	}
	// A socket gone is closed; its cookie is never used again.
	o.gone = o.gone[:0]
	for id := range o.socks {
		if !seen[id] {
			delete(o.socks, id)
			if ls := o.seen[id]; ls != nil && !ls.told {
				o.gone = append(o.gone, id)
			}
		}
	}
}

// remember copies s, sampled at at, into seen.
func (o *Observer) remember(s *diag.Socket, at time.Time) {
	if o.seen == nil {
		o.seen = make(map[diag.Cookie]*lastSeen)
	}
	ls := o.seen[s.ID]
	if ls == nil {
		ls = &lastSeen{first: at}
		o.seen[s.ID] = ls
	}
	switch {
	case len(s.Conntrack) > 0:
		// Each socket's own small slice, not the snapshot's.
		ls.entries, ls.entriesAt, ls.entriesInfo = s.Conntrack, at, nil
	case ls.entries != nil && ls.entriesInfo == nil:
		// The entries are the last sample's, whose tcp_info sock is about
		// to stop pointing at: keep it.
		info := *ls.sock.TCPInfo
		ls.entriesInfo = &info
	}
	ls.sock, ls.sample, ls.detached, ls.last = s, o.samples, false, at
}

// forgetSeen drops the last samples of connections gone from the dump for
// longer than keep: an application holding a dead socket that long is
// announced without one, as a death no sample saw.
func (o *Observer) forgetSeen(now time.Time, keep time.Duration) {
	for id, ls := range o.seen {
		if now.Sub(ls.last) > keep {
			delete(o.seen, id)
		}
	}
}

// Attach sets Observed on each socket of snap seen in two samples or more:
// snap is the last snapshot added.
func (o *Observer) Attach(snap *diag.Snapshot) {
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if t := o.socks[s.ID]; t != nil && t.samples >= 2 {
			s.Observed = t.observed()
		}
	}
}

// tracker is what is known of one socket across samples. Its moments are
// durations since the Observer's first sample (a time.Time is three times
// the size, and a watch keeps a tracker for each of tens of thousands of
// connections); before it, they are negative.
type tracker struct {
	samples     int
	firstAt, at time.Duration
	// prev is what the last sample's tcp_info said of what the next
	// is compared with.
	prev         counters
	lastSeg      time.Duration // the last segment either way known
	lastData     time.Duration // the last data segment either way known
	lastAck      time.Duration // last_ack_recv as of the last sample
	longestQuiet time.Duration
	// watchedQuiet is longestQuiet counted from the first sample on.
	watchedQuiet time.Duration

	exchanges int
	// Pings: the size of each, the first seen, the last, how many after
	// the first, and in all. varied is set by data that is no ping.
	pingSize              uint64
	firstPing, lastPing   time.Duration
	pingsAfter, pingCount uint32
	// pingsOut and pingsIn count ping segments each way: a ping is
	// answered, or it is no ping.
	pingsOut, pingsIn uint32
	// halfPing is 1 when the last interval with pings saw one sent and
	// none received, -1 the other way round: its answer is yet to come.
	halfPing int8
	varied   bool
	// entries says, for each conntrack table (as tables orders them),
	// what the samples saw of the connection's entry there (entry* bits),
	// and missingAt since when that table, read, has held none.
	entries   [2]uint8
	missingAt [2]time.Duration

	probesSent, probesAnswered, peerProbes, windowProbes int
}

// tables are the conntrack tables a connection may have an entry in, in
// the order of tracker.entries.
var tables = [2]diag.Role{diag.Target, diag.Host}

// What tracker.entries says of one table.
const (
	entrySeen uint8 = 1 << iota
	entryDNAT
	entrySNAT
	// entryMissing: seen once, absent from the table since missingAt.
	entryMissing
)

// readTables says which of snap's conntrack tables were read (or hold
// nothing at all): only there is an entry that is absent gone.
func readTables(snap *diag.Snapshot) [2]bool {
	var out [2]bool
	for i, ns := range []*diag.Namespace{&snap.Target, &snap.Host} {
		out[i] = ns.Conntrack == nil || ns.Conntrack.Read
	}
	return out
}

// noteEntries reads the conntrack entries of the socket sampled at at,
// whose snapshot read the tables read says.
func (t *tracker) noteEntries(at time.Duration, flows []diag.Flow, read [2]bool) {
	for i, role := range tables {
		has := false
		for _, e := range flows {
			if e.Netns != role {
				continue
			}
			has = true
			t.entries[i] |= entrySeen
			if strings.Contains(e.NAT, "dnat") {
				t.entries[i] |= entryDNAT
			}
			if strings.Contains(e.NAT, "snat") {
				t.entries[i] |= entrySNAT
			}
		}
		switch b := t.entries[i]; {
		case has:
			t.entries[i] &^= entryMissing
		case b&entrySeen != 0 && b&entryMissing == 0 && read[i]:
			t.entries[i] |= entryMissing
			t.missingAt[i] = at
		}
	}
}

// entriesSeen says what the samples saw of the connection's entries,
// table by table.
func (t *tracker) entriesSeen() []diag.SeenEntry {
	var out []diag.SeenEntry
	for i, role := range tables {
		b := t.entries[i]
		if b&entrySeen == 0 {
			continue
		}
		e := diag.SeenEntry{Netns: role}
		switch {
		case b&entryDNAT != 0 && b&entrySNAT != 0:
			e.NAT = "dnat+snat"
		case b&entryDNAT != 0:
			e.NAT = "dnat"
		case b&entrySNAT != 0:
			e.NAT = "snat"
		}
		if b&entryMissing != 0 {
			missing := secs(t.at - t.missingAt[i])
			e.MissingS = &missing
		}
		out = append(out, e)
	}
	return out
}

// delta is how a socket's counters moved between two samples.
type delta struct {
	segsOut, segsIn, dataOut, dataIn uint32
	bytesOut, bytesIn                uint64
	// retrans counts the segments sent again (data or FIN) that went
	// unanswered for a while: no exchange, the connection is failing.
	retrans uint32
}

// counters are what a tracker keeps of a sample's tcp_info to compare
// the next with: a fifth of the whole, which a watch of tens of thousands
// of connections would otherwise keep a copy of each.
type counters struct {
	size                                               int
	segsOut, segsIn, dataSegsOut, dataSegsIn           uint32
	totalRetrans, sndWnd                               uint32
	bytesReceived, bytesSent, bytesRetrans, bytesAcked uint64
}

func countersOf(i *diag.TCPInfo) counters {
	return counters{
		size:    i.Size,
		segsOut: i.SegsOut, segsIn: i.SegsIn, dataSegsOut: i.DataSegsOut, dataSegsIn: i.DataSegsIn,
		totalRetrans: i.TotalRetrans, sndWnd: i.SndWnd,
		bytesReceived: i.BytesReceived, bytesSent: i.BytesSent, bytesRetrans: i.BytesRetrans, bytesAcked: i.BytesAcked,
	}
}

func deltaOf(a, b counters) delta {
	d := delta{
		segsOut: b.segsOut - a.segsOut, segsIn: b.segsIn - a.segsIn,
		dataOut: b.dataSegsOut - a.dataSegsOut, dataIn: b.dataSegsIn - a.dataSegsIn,
		bytesIn: b.bytesReceived - a.bytesReceived,
		retrans: b.totalRetrans - a.totalRetrans,
	}
	if b.size >= 216 {
		// bytes_sent counts retransmissions too, as data_segs_out does
		// not: take them out, so a ping sent twice is not two pings.
		d.bytesOut = (b.bytesSent - a.bytesSent) - (b.bytesRetrans - a.bytesRetrans)
	} else {
		d.bytesOut = b.bytesAcked - a.bytesAcked
	}
	return d
}

// windowClosed reports whether the peer's receive window was closed, where
// the kernel says (tcpi_snd_wnd, since Linux 5.4).
func (c counters) windowClosed() bool { return c.size >= 232 && c.sndWnd == 0 }

// update reads the socket's tcp_info i as of the sample taken at at.
func (t *tracker) update(at time.Duration, i *diag.TCPInfo) {
	dataAt := max(at-i.SinceDataSent(), at-i.SinceDataRecv())
	ackAt := at - i.SinceAckRecv()
	segAt := max(dataAt, ackAt)
	if t.samples == 0 {
		t.samples, t.firstAt, t.at, t.prev = 1, at, at, countersOf(i)
		t.lastSeg, t.lastData, t.lastAck = segAt, dataAt, ackAt
		return
	}
	now := countersOf(i)
	d := deltaOf(t.prev, now)
	prev := t.prev
	prevAt := t.at
	t.samples++
	t.at, t.prev = at, now

	// When the last segment went or came: the kernel stamps data either
	// way and every ACK received; bare segments sent (probes, and the
	// answers to a peer's) go unstamped, and are put halfway between
	// the samples.
	bare := d.dataOut == 0 && d.dataIn == 0 && (d.segsOut > 0 || d.segsIn > 0)
	// Bare ACKs of data sent or received just before the last sample
	// follow that data within the ACK delay: they end no quiet of note.
	acksOfData := bare && t.lastData > prevAt-ackDelay
	activity, active := time.Duration(0), false
	switch {
	case segAt > t.lastSeg+sameMoment:
		activity, active = segAt, true
	case bare && !acksOfData:
		activity, active = prevAt+(at-prevAt)/2, true
	}
	if active && activity > t.lastSeg {
		t.longestQuiet = max(t.longestQuiet, activity-t.lastSeg)
		t.watchedQuiet = max(t.watchedQuiet, activity-max(t.lastSeg, t.firstAt))
		t.lastSeg = activity
	}
	ackMoved := ackAt > t.lastAck+sameMoment
	t.lastAck = max(t.lastAck, ackAt)

	switch {
	case d.dataIn == 0 && d.segsIn == 0 && d.retrans > 0 && d.segsOut <= d.retrans:
		// Only retransmissions, of data or of a FIN, and nothing back: no
		// exchange, nor keepalive, however many segments went.
	case d.dataOut > 0 || d.dataIn > 0:
		t.exchanges++
		t.noteData(dataAt, d)
		t.lastData = max(t.lastData, dataAt)
	case !bare, acksOfData:
	case d.segsOut > 0 && (prev.windowClosed() || now.windowClosed()):
		// The persist timer's probes: the same bare segment, sent by
		// tcp_write_wakeup while the peer's window is closed.
		t.windowProbes += int(d.segsOut)
	case ackMoved:
		// This end's probes, answered: the answer went through tcp_ack.
		t.probesSent += int(d.segsOut)
		t.probesAnswered += int(min(d.segsIn, d.segsOut))
	case d.segsOut > 0 && d.segsIn > 0:
		// The peer's probes, answered here with a duplicate ACK: a probe
		// below rcv_nxt never reaches tcp_ack.
		t.peerProbes += int(d.segsIn)
	case d.segsOut > 0:
		t.probesSent += int(d.segsOut)
	default:
		t.peerProbes += int(d.segsIn)
	}
}

// pingSize is the payload of each data segment of d when every one is the
// same small size both ways, as pings and their answers are.
func pingSize(d delta) (uint64, bool) {
	var size uint64
	for _, dir := range []struct {
		segs  uint32
		bytes uint64
	}{{d.dataOut, d.bytesOut}, {d.dataIn, d.bytesIn}} {
		if dir.segs == 0 {
			continue
		}
		s := dir.bytes / uint64(dir.segs)
		if s == 0 || s > maxPing || s*uint64(dir.segs) != dir.bytes || size != 0 && s != size {
			return 0, false
		}
		size = s
	}
	return size, size != 0
}

// noteData records the data that crossed in one interval, the last of it
// at at: pings while every exchange is one small size, else data.
func (t *tracker) noteData(at time.Duration, d delta) {
	if t.varied {
		return
	}
	size, ok := pingSize(d)
	if !ok || t.pingSize != 0 && size != t.pingSize {
		t.varied = true
		return
	}
	t.pingSize = size
	n := max(d.dataOut, d.dataIn)
	half := int8(0) // a ping one way only: sent, or received, not yet answered
	switch {
	case d.dataIn == 0:
		half = 1
	case d.dataOut == 0:
		half = -1
	}
	if t.pingCount > 0 && half != 0 && half == -t.halfPing && at-t.lastPing < pingAnswer {
		// The answer to the last ping, which a sample fell between: the
		// same exchange, not another ping.
		t.pingsOut += d.dataOut
		t.pingsIn += d.dataIn
		t.halfPing = 0
		return
	}
	t.halfPing = half
	if t.pingCount == 0 {
		// Only the last ping of an interval has its time: the period is
		// reckoned from it.
		t.firstPing = at
	} else {
		t.pingsAfter += n
	}
	t.pingCount += n
	t.pingsOut += d.dataOut
	t.pingsIn += d.dataIn
	t.lastPing = at
}

func (t *tracker) observed() *diag.Observed {
	quiet := max(t.longestQuiet, t.at-t.lastSeg)
	watchedQuiet := max(t.watchedQuiet, t.at-max(t.lastSeg, t.firstAt))
	o := &diag.Observed{
		WatchedS:                secs(t.at - t.firstAt),
		Samples:                 t.samples,
		LongestQuietS:           secs(quiet),
		LongestQuietWatchedS:    secs(watchedQuiet),
		DataExchanges:           t.exchanges,
		KeepaliveProbesSent:     t.probesSent,
		KeepaliveProbesAnswered: t.probesAnswered,
		PeerProbes:              t.peerProbes,
		WindowProbes:            t.windowProbes,
		EntriesSeen:             t.entriesSeen(),
	}
	switch {
	case t.varied || t.pingCount > 0 && (t.pingCount == 1 || t.pingsOut == 0 || t.pingsIn == 0):
		// One small exchange is no period, and writes never answered are
		// no pings.
		o.RefreshedBy = diag.RefreshedByData
	case t.pingCount >= 2 && t.pingsAfter > 0:
		o.RefreshedBy = diag.RefreshedByAppPings
		o.Pings = &diag.Pings{
			PeriodS:   secs((t.lastPing - t.firstPing) / time.Duration(t.pingsAfter)),
			SizeBytes: int(t.pingSize),
			Count:     int(t.pingCount),
		}
	case t.pingCount >= 2:
		// Several pings within one interval, and no more: too fast to time.
		o.RefreshedBy = diag.RefreshedByData
	case t.probesSent+t.peerProbes+t.windowProbes > 0:
		o.RefreshedBy = diag.RefreshedByKeepalive
	default:
		o.RefreshedBy = diag.RefreshedByNone
	}
	return o
}

// own1 is a pointer to a copy of *p; nil for nil.
func own1[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
