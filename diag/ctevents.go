package diag

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// nfnlgrpConntrackDestroy is NFNLGRP_CONNTRACK_DESTROY
// (include/uapi/linux/netfilter/nfnetlink.h).
const nfnlgrpConntrackDestroy = 3

// ErrCTEventsUnavailable reports that ctnetlink is not loaded: joining its
// groups would load it, which tcpvet never does; and with it absent nobody
// reads conntrack, so a table is not there to be followed.
var ErrCTEventsUnavailable = errors.New("nf_conntrack_netlink is not loaded (tcpvet does not load it)")

// ErrCTEventsDenied reports that the kernel refused conntrack's destroy
// events (joining the ctnetlink group takes CAP_NET_ADMIN).
var ErrCTEventsDenied = errors.New("the kernel refused conntrack destroy events (CAP_NET_ADMIN needed)")

// FlowEnd is a TCP conntrack entry the kernel destroyed: timed out, or
// deleted by a rule, a flush or conntrack -D. An entry whose TCP state
// was ESTABLISHED when it went was forgotten while its connection may
// still have been open: the path forgot it.
type FlowEnd struct {
	// OrigSrc → OrigDst is the direction of the entry's first packet;
	// ReplySrc → ReplyDst the answer's, after any NAT.
	OrigSrc, OrigDst   netip.AddrPort
	ReplySrc, ReplyDst netip.AddrPort
	// Status is the entry's IPS_* bits (seen reply, assured, NAT...).
	Status conntrack.Status
	// TCPState is conntrack's TCP state when the entry went, such as
	// ESTABLISHED or TIME_WAIT; empty when the kernel sent none.
	TCPState string
	// Start and Stop are the entry's life as the kernel timed it; zero
	// unless net.netfilter.nf_conntrack_timestamp is on.
	Start, Stop time.Time
	// At is when tcpvet read the event.
	At time.Time
}

// Tracks reports whether the entry tracked the connection a socket at
// local sees to remote: a client by the entry's original direction, a
// server behind DNAT by its reply direction.
func (f *FlowEnd) Tracks(local, remote netip.AddrPort) bool {
	k := keyOf(local, remote)
	return k == keyOf(f.OrigSrc, f.OrigDst) || k == keyOf(f.ReplySrc, f.ReplyDst)
}

// Forgotten reports whether the entry went while its connection was
// established, rather than after conntrack saw it close.
func (f *FlowEnd) Forgotten() bool { return f.TCPState == "ESTABLISHED" }

// flowEnd turns a destroy event's flow into a FlowEnd.
func flowEnd(fl *conntrack.Flow, at time.Time) FlowEnd {
	ap := func(t conntrack.Tuple, src bool) netip.AddrPort {
		if src {
			return netip.AddrPortFrom(t.IP.SourceAddress, t.Proto.SourcePort)
		}
		return netip.AddrPortFrom(t.IP.DestinationAddress, t.Proto.DestinationPort)
	}
	e := FlowEnd{
		OrigSrc: ap(fl.TupleOrig, true), OrigDst: ap(fl.TupleOrig, false),
		ReplySrc: ap(fl.TupleReply, true), ReplyDst: ap(fl.TupleReply, false),
		Status: fl.Status,
		Start:  fl.Timestamp.Start, Stop: fl.Timestamp.Stop,
		At: at,
	}
	// The kernel sends the TCP state of a destroyed entry with its
	// protocol info; a zero ProtoInfo means it sent none.
	if tcp := fl.ProtoInfo.TCP; tcp != nil && int(tcp.State) < len(conntrackStates) {
		e.TCPState = conntrackStates[tcp.State]
	}
	return e
}

// CTWatch receives the TCP conntrack entries one namespace's table
// destroys, from the moment WatchFlowEnds returns until Close or the end
// of its context. Its Lost counts the events of every protocol the kernel
// dropped: a dropped event's protocol is unknown.
type CTWatch struct{ *groupWatch[FlowEnd] }

// WatchFlowEnds subscribes to the destroy events of the conntrack table
// of ns, keeping the TCP ones. It returns an error wrapping
// ErrCTEventsDenied when the kernel refuses.
//
// The events are read here rather than by ti-mo/conntrack's Listen, whose
// workers stop at the first receive error: an overflow (ENOBUFS) would end
// the watch instead of being counted, as Lost counts it here. tcpvet does
// not ask for NETLINK_BROADCAST_ERROR, so the kernel never holds a dying
// entry back to deliver its end again (as it does for conntrackd): an end
// lost is lost, and counted once.
//
// A table that tracks an entry only sends its destroy event if the entry
// has conntrack's event extension, which net.netfilter.nf_conntrack_events
// decides when the entry is created: with 1 every entry has it; with 2,
// the default since Linux 6.0, only entries created while some program
// listened for events. Entries older than the watch may go unannounced.
func WatchFlowEnds(ctx context.Context, ns *netns.NS) (*CTWatch, error) {
	if !modulePresent("nf_conntrack_netlink") {
		// Binding to a group of an absent subsystem makes nfnetlink
		// request its module.
		return nil, ErrCTEventsUnavailable
	}
	w, err := watchGroups(ctx, ns, groupSpec[FlowEnd]{
		family: unix.NETLINK_NETFILTER,
		groups: []uint32{nfnlgrpConntrackDestroy},
		what:   "ctnetlink", events: "conntrack events", denied: ErrCTEventsDenied,
		decode: func(m netlink.Message, at time.Time) (FlowEnd, bool, error) {
			var e conntrack.Event
			if err := e.Unmarshal(m); err != nil {
				return FlowEnd{}, false, fmt.Errorf("%w: %v", errCTAnswer, err)
			}
			if e.Type != conntrack.EventDestroy || e.Flow == nil || e.Flow.TupleOrig.Proto.Protocol != unix.IPPROTO_TCP {
				return FlowEnd{}, false, nil
			}
			return flowEnd(e.Flow, at), true, nil
		},
	})
	if err != nil {
		return nil, err
	}
	return &CTWatch{w}, nil
}

// Ends delivers each TCP entry destroyed. It is closed after Close, the
// end of the context, or an error (Err says which).
func (w *CTWatch) Ends() <-chan FlowEnd { return w.out }
