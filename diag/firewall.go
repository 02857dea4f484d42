package diag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tcpvet/tcpvet/netns"
)

// Firewall is what a namespace's packet filter does with a packet that
// conntrack marks invalid, the fate of a forgotten flow's next packet where
// conntrack does not pick flows up again (nf_conntrack_tcp_loose=0), and
// whether its rules translate addresses at all.
type Firewall struct {
	// Read is true when the nftables ruleset was read; Reason says why not.
	Read   bool   `json:"read"`
	Reason string `json:"reason,omitempty"`
	// InvalidDrops are the rules that drop packets in conntrack state
	// invalid, such as "ct state invalid drop".
	InvalidDrops []InvalidDrop `json:"invalid_drops,omitempty"`
	// Translates names the chains ("ip svc pre") whose rules translate
	// addresses (dnat, snat, masquerade, redirect).
	Translates []string `json:"translates,omitempty"`
	// Untracks names the chains with a "notrack" rule: flows it matches
	// have no conntrack entry, ever.
	Untracks []string `json:"untracks,omitempty"`
	// Opaque names the chains whose rules use iptables-nft's xt matches or
	// targets (kube-proxy's, Calico's), which tcpvet does not decode: they
	// may drop invalid packets or translate flows unseen.
	Opaque []string `json:"opaque_chains,omitempty"`
	// Legacy lists iptables-legacy tables loaded here, or why they could
	// not be listed: their rules are not in the nftables ruleset at all.
	Legacy []string `json:"legacy_tables,omitempty"`
}

// InvalidDrop is a rule that drops packets in conntrack state invalid.
type InvalidDrop struct {
	// Chain is "FAMILY TABLE CHAIN", as nft list ruleset shows it.
	Chain string `json:"chain"`
	// Family is the table's: ip and ip6 see one family, inet both.
	Family string `json:"family"`
	// Hook is where the chain is hooked in (prerouting, input, forward,
	// output, postrouting), "" for a chain only a jump reaches.
	Hook string `json:"hook,omitempty"`
	// Conditional is set when the rule matches more than the state (an
	// interface, an address): it may not apply to a given flow.
	Conditional bool `json:"conditional,omitempty"`
}

// Complete reports whether every rule of the namespace was read and
// understood, so that what tcpvet did not find is not there.
func (fw *Firewall) Complete() bool {
	return fw != nil && fw.Read && len(fw.Opaque) == 0 && len(fw.Legacy) == 0
}

// DropInvalid says whether a rule drops an invalid packet of a v4 or v6
// flow through one of hooks: certainly (an unconditional rule in a chain
// hooked there, named), or maybe (a rule with more matches, or in a chain
// only a jump reaches), or not at all.
func (fw *Firewall) DropInvalid(v6 bool, hooks ...string) (chain string, certain, maybe bool) {
	if fw == nil {
		return "", false, false
	}
	for _, d := range fw.InvalidDrops {
		if d.Family == "ip" && v6 || d.Family == "ip6" && !v6 || d.Family == "bridge" {
			continue
		}
		switch {
		case d.Hook == "":
			maybe = true
		case !slices.Contains(hooks, d.Hook):
		case d.Conditional:
			maybe = true
		default:
			return d.Chain, true, true
		}
	}
	return "", false, maybe
}

// readFirewall reads the nftables ruleset of ns: rules that drop invalid
// packets, chains that translate, and chains tcpvet cannot decode. legacy
// is what legacyTables found there.
func readFirewall(ns *netns.NS, legacy []string) *Firewall {
	fw := &Firewall{Legacy: legacy}
	if !modulePresent("nf_tables") {
		// Asking nfnetlink for nftables would load nf_tables.
		fw.Reason = "nf_tables is not loaded (tcpvet does not load it)"
		return fw
	}
	// One lasting socket for every listing, opened inside ns.
	opts := []nftables.ConnOption{nftables.AsLasting()}
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
		if ch.Table == nil {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			fw.Reason = nftErr(err)
			return fw
		}
		family := familyWord(ch.Table.Family)
		name := fmt.Sprintf("%s %s %s", family, ch.Table.Name, ch.Name)
		for _, r := range rules {
			k := classify(r.Exprs)
			if k.dropsInvalid {
				fw.InvalidDrops = append(fw.InvalidDrops, InvalidDrop{Chain: name, Family: family, Hook: hookWord(ch.Hooknum), Conditional: k.conditional})
			}
			if k.translates && !slices.Contains(fw.Translates, name) {
				fw.Translates = append(fw.Translates, name)
			}
			if k.opaque && !slices.Contains(fw.Opaque, name) {
				fw.Opaque = append(fw.Opaque, name)
			}
			if k.untracks && !slices.Contains(fw.Untracks, name) {
				fw.Untracks = append(fw.Untracks, name)
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

// ruleKind is what tcpvet makes of one rule.
type ruleKind struct {
	dropsInvalid, conditional, translates, opaque, untracks bool
}

// classify reads a rule's expressions. nft compiles "ct state invalid
// drop" to a ct load of the state, a bitwise and with the state's mask, a
// compare with zero and a drop verdict; any other load (an interface, an
// address, a set lookup) makes the rule conditional. The register holds
// the state in host order.
func classify(exprs []expr.Any) ruleKind {
	var k ruleKind
	var loadsState, testsInvalid, drops bool
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Ct:
			if e.Key == expr.CtKeySTATE {
				loadsState = true
			} else {
				k.conditional = true
			}
		case *expr.Bitwise:
			testsInvalid = testsInvalid || loadsState && len(e.Mask) == 4 && binary.NativeEndian.Uint32(e.Mask)&ctStateInvalid != 0
		case *expr.Cmp:
			testsInvalid = testsInvalid || loadsState && e.Op == expr.CmpOpEq && len(e.Data) == 4 && binary.NativeEndian.Uint32(e.Data) == ctStateInvalid
		case *expr.Verdict:
			drops = e.Kind == expr.VerdictDrop
		case *expr.Counter, *expr.Immediate, *expr.Log:
		case *expr.NAT, *expr.Masq, *expr.Redir:
			k.translates = true
		case *expr.Match, *expr.Target:
			k.opaque = true
		case *expr.Notrack:
			k.untracks = true
		default:
			k.conditional = true
		}
	}
	k.dropsInvalid = loadsState && testsInvalid && drops
	return k
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

// hookWord names a base chain's hook; "" for a regular chain.
func hookWord(h *nftables.ChainHook) string {
	if h == nil {
		return ""
	}
	switch *h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook-%d", *h)
}

// legacyTables lists the iptables-legacy tables loaded in the calling
// thread's namespace, from /proc/net/ip_tables_names and ip6_tables_names
// (procNet is the thread's own /proc/net). A file that is there but cannot
// be read is listed as unknown: absence is what it must prove.
func legacyTables(procNet string) []string {
	var out []string
	for _, f := range []string{"ip_tables_names", "ip6_tables_names"} {
		b, err := os.ReadFile(procNet + "/" + f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			out = append(out, f+" unreadable")
			continue
		}
		for _, name := range strings.Fields(string(b)) {
			out = append(out, strings.TrimSuffix(f, "_tables_names")+"/"+name)
		}
	}
	return out
}
