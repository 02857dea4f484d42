package diag

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// Firewall is what a namespace's packet filter does with a packet that
// conntrack marks invalid: the fate of a forgotten flow's next packet
// where conntrack does not pick flows up again (nf_conntrack_tcp_loose=0).
type Firewall struct {
	// Read is true when the nftables ruleset was read; Reason says why not.
	Read   bool   `json:"read"`
	Reason string `json:"reason,omitempty"`
	// DropsInvalid names the chain ("inet filter forward") of a rule that
	// drops packets in conntrack state invalid, as kube-proxy's KUBE-FORWARD
	// does; empty when no rule tcpvet can read does.
	DropsInvalid string `json:"drops_invalid,omitempty"`
	// Translates names the chains ("ip svc pre") whose rules translate
	// addresses (dnat, snat, masquerade, redirect): where there is none,
	// no flow here was translated.
	Translates []string `json:"translates,omitempty"`
	// Legacy lists iptables-legacy tables loaded here: their rules are not
	// in the nftables ruleset, so tcpvet cannot tell what they drop.
	Legacy []string `json:"legacy_tables,omitempty"`
}

// readFirewall reads the nftables ruleset of ns for a rule that drops
// invalid packets, and notes iptables-legacy tables it cannot see into.
// procNet is the thread's /proc/net, already inside ns.
func readFirewall(ns *netns.NS, legacy []string) *Firewall {
	fw := &Firewall{Legacy: legacy}
	if !modulePresent("nf_tables") {
		// Asking nfnetlink for nftables would load nf_tables.
		fw.Reason = "nf_tables is not loaded (tcpvet does not load it)"
		return fw
	}
	var opts []nftables.ConnOption
	if !ns.Own() {
		opts = append(opts, nftables.WithNetNSFd(ns.FD()))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		fw.Reason = nftErr(err)
		return fw
	}
	defer c.CloseLasting()
	chains, err := c.ListChains()
	if err != nil {
		fw.Reason = nftErr(err)
		return fw
	}
	for _, ch := range chains {
		if ch.Hooknum == nil || ch.Table == nil {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			fw.Reason = nftErr(err)
			return fw
		}
		name := fmt.Sprintf("%s %s %s", familyWord(ch.Table.Family), ch.Table.Name, ch.Name)
		for _, r := range rules {
			if dropsInvalid(r.Exprs) && fw.DropsInvalid == "" {
				fw.DropsInvalid = name
			}
			if translates(r.Exprs) && !slices.Contains(fw.Translates, name) {
				fw.Translates = append(fw.Translates, name)
			}
		}
	}
	fw.Read = true
	return fw
}

func nftErr(err error) string {
	if errors.Is(err, unix.EPERM) {
		return "nftables ruleset unreadable without CAP_NET_ADMIN"
	}
	return fmt.Sprintf("nftables ruleset unreadable: %v", err)
}

// ctStateInvalid is NF_CT_STATE_INVALID_BIT, the bit of "ct state" that
// is set for a packet conntrack could not place in a flow.
const ctStateInvalid = 1

// dropsInvalid reports whether a rule is "ct state invalid drop" or a rule
// of that shape: it loads the conntrack state, tests the invalid bit, and
// ends in drop. nft compiles "ct state invalid" to a ct load, a bitwise
// and with the state's mask, and a compare with zero.
func dropsInvalid(exprs []expr.Any) bool {
	var loadsState, testsInvalid, drops bool
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Ct:
			loadsState = loadsState || e.Key == expr.CtKeySTATE
		case *expr.Bitwise:
			testsInvalid = testsInvalid || loadsState && len(e.Mask) > 0 && e.Mask[0]&ctStateInvalid != 0
		case *expr.Cmp:
			testsInvalid = testsInvalid || loadsState && e.Op == expr.CmpOpEq && len(e.Data) == 4 && e.Data[0] == ctStateInvalid
		case *expr.Verdict:
			drops = e.Kind == expr.VerdictDrop
		}
	}
	return loadsState && testsInvalid && drops
}

// translates reports whether a rule rewrites addresses.
func translates(exprs []expr.Any) bool {
	for _, e := range exprs {
		switch e.(type) {
		case *expr.NAT, *expr.Masq, *expr.Redir:
			return true
		}
	}
	return false
}

func familyWord(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return fmt.Sprintf("family-%d", f)
}

// legacyTables lists the iptables-legacy tables loaded in the calling
// thread's namespace, from /proc/net/ip_tables_names and ip6_tables_names.
func legacyTables(procNet string) []string {
	var out []string
	for _, f := range []string{"ip_tables_names", "ip6_tables_names"} {
		b, err := os.ReadFile(procNet + "/" + f)
		if err != nil {
			continue
		}
		for _, name := range strings.Fields(string(b)) {
			out = append(out, strings.TrimSuffix(f, "_tables_names")+"/"+name)
		}
	}
	return out
}
