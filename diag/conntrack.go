package diag

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// conntrackDumpLimit bounds the conntrack tables tcpvet dumps on every
// refresh. A pod's table holds a few flows; a node's can hold a million,
// too many to read every second for what the dump is for: telling which
// connections a rule in the target redirects to a local proxy.
const conntrackDumpLimit = 20000

// flowKey is a TCP flow as its originating socket sees it.
type flowKey struct{ from, to netip.AddrPort }

func keyOf(from, to netip.AddrPort) flowKey { return flowKey{unmap(from), unmap(to)} }

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// readRedirects dumps the conntrack table of ns and returns, for each TCP
// flow whose destination a rule there rewrote (an Istio or Linkerd
// REDIRECT, a DNAT), where the flow really goes.
func readRedirects(ns *netns.NS) (map[flowKey]netip.AddrPort, error) {
	if !ctnetlinkPresent() {
		// Opening it would make the kernel load nf_conntrack_netlink,
		// and a read-only tool loads nothing into a node.
		return nil, errors.New("nf_conntrack_netlink is not loaded (tcpvet does not load it)")
	}
	c, err := conntrack.Dial(netlinkConfig(ns))
	if err != nil {
		return nil, fmt.Errorf("open conntrack netlink in %s: %w", ns.Path, err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("dump conntrack in %s: %w", ns.Path, err)
	}
	return redirects(flows), nil
}

// redirects maps each destination-NATed TCP flow to the address its reply
// comes from, which is where the flow really goes.
func redirects(flows []conntrack.Flow) map[flowKey]netip.AddrPort {
	out := make(map[flowKey]netip.AddrPort)
	for _, f := range flows {
		o, r := f.TupleOrig, f.TupleReply
		if o.Proto.Protocol != unix.IPPROTO_TCP || !f.Status.DstNAT() || !r.IP.SourceAddress.IsValid() {
			continue
		}
		from := netip.AddrPortFrom(o.IP.SourceAddress, o.Proto.SourcePort)
		to := netip.AddrPortFrom(o.IP.DestinationAddress, o.Proto.DestinationPort)
		out[keyOf(from, to)] = unmap(netip.AddrPortFrom(r.IP.SourceAddress, r.Proto.SourcePort))
	}
	return out
}

// ctnetlinkPresent reports whether conntrack's netlink interface can be
// opened without loading a module: it is loaded or built in, or the kernel
// loads no modules at all.
func ctnetlinkPresent() bool {
	if _, err := os.Stat("/sys/module/nf_conntrack_netlink"); err == nil {
		return true
	}
	if _, err := os.Stat("/proc/modules"); errors.Is(err, os.ErrNotExist) {
		return true
	}
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return false
	}
	builtin, err := os.ReadFile("/lib/modules/" + unix.ByteSliceToString(uts.Release[:]) + "/modules.builtin")
	return err == nil && strings.Contains(string(builtin), "/nf_conntrack_netlink.ko")
}
