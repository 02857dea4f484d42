package diag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
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
	// Opaque names the chains with a rule whose iptables-nft target
	// (an xt extension tcpvet does not know) may translate or untrack
	// flows unseen. The targets kube-proxy and most CNIs use (DNAT,
	// MASQUERADE, MARK, ...) are known; an xt match only narrows a rule,
	// so one tcpvet does not read (statistic, a mark) makes it
	// conditional, never opaque.
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
	// output, postrouting). For a chain only a jump reaches (kube-proxy's
	// KUBE-FORWARD), it is the hook of the base chain the jumps start
	// from, named in Via; "" when no base chain reaches it.
	Hook string `json:"hook,omitempty"`
	// Via is the base chain ("FAMILY TABLE CHAIN") whose jumps lead to
	// Chain; empty when Chain is itself hooked.
	Via string `json:"via,omitempty"`
	// Conditional is set when the rule, or a jump on the way to it,
	// matches more than the state (an interface, an address, a mark): it
	// may not apply to a given flow.
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
	g := chainGraph{}
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
		name := chainName(family, ch.Table.Name, ch.Name)
		g.hooks.set(name, hookWord(ch.Hooknum))
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
			for _, to := range k.jumps {
				g.jumps = append(g.jumps, jump{from: name, to: chainName(family, ch.Table.Name, to), conditional: k.conditional})
			}
		}
	}
	fw.InvalidDrops = g.resolve(fw.InvalidDrops)
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
// is set for a packet conntrack could not place in a flow. xt_conntrack's
// XT_CONNTRACK_STATE_INVALID and xt_state's XT_STATE_INVALID are the same
// bit of their own state masks.
const ctStateInvalid = 1

// ruleKind is what tcpvet makes of one rule.
type ruleKind struct {
	dropsInvalid, conditional, translates, opaque, untracks bool
	// jumps names the chains of the same table the rule jumps or goes to.
	jumps []string
}

// classify reads a rule's expressions. nft compiles "ct state invalid
// drop" to a ct load of the state, a bitwise and with the state's mask, a
// compare with zero and a drop verdict; iptables-nft compiles "-m conntrack
// --ctstate INVALID -j DROP" to an xt match and a drop verdict. Any other
// load or match (an interface, an address, a mark, a set lookup) makes the
// rule conditional. The register holds the state in host order.
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
			switch e.Kind {
			case expr.VerdictDrop:
				drops = true
			case expr.VerdictJump, expr.VerdictGoto:
				k.jumps = append(k.jumps, e.Chain)
			}
		case *expr.Counter, *expr.Immediate, *expr.Log:
		case *expr.NAT, *expr.Masq, *expr.Redir:
			k.translates = true
		case *expr.Match:
			state, other := xtMatch(e)
			if state != nil {
				loadsState = true
				testsInvalid = testsInvalid || *state
			}
			k.conditional = k.conditional || other
		case *expr.Target:
			switch xtTarget(e) {
			case xtTranslates:
				k.translates = true
			case xtUntracks:
				k.untracks = true
			case xtRejects:
				drops = true
			case xtUnknown:
				k.opaque = true
			}
		case *expr.Notrack:
			k.untracks = true
		default:
			k.conditional = true
		}
	}
	k.dropsInvalid = loadsState && testsInvalid && drops
	return k
}

// xtMatch reads one of iptables-nft's xt matches: whether a conntrack
// state test in it lets an invalid packet through (nil when it tests no
// state), and whether it tests anything else. A match tcpvet does not know
// only narrows the rule, so it makes the rule conditional, never opaque.
func xtMatch(m *expr.Match) (matchesInvalid *bool, other bool) {
	switch m.Name {
	case "comment", "nfacct":
		// Always true: a note, and a counter (kube-proxy's count of the
		// invalid packets it drops).
		return nil, false
	case "state":
		// struct xt_state_info: one int, the mask of states.
		u, ok := m.Info.(*xt.Unknown)
		if !ok || len(*u) < 4 {
			return nil, true
		}
		invalid := binary.NativeEndian.Uint32(*u)&ctStateInvalid != 0
		return &invalid, false
	case "conntrack":
		var base *xt.ConntrackMtinfoBase
		var mask uint16
		switch i := m.Info.(type) {
		case *xt.ConntrackMtinfo1:
			base, mask = &i.ConntrackMtinfoBase, uint16(i.StateMask)
		case *xt.ConntrackMtinfo2:
			base, mask = &i.ConntrackMtinfoBase, i.StateMask
		case *xt.ConntrackMtinfo3:
			base, mask = &i.ConntrackMtinfoBase, i.StateMask
		default:
			return nil, true
		}
		flags, invert := xt.ConntrackFlags(base.MatchFlags), xt.ConntrackFlags(base.InvertFlags)
		other = flags&^(xt.ConntrackState|xt.ConntrackStateAlias) != 0
		if flags&xt.ConntrackState == 0 {
			return nil, other
		}
		// xt_conntrack: a packet conntrack could not place has only the
		// invalid bit, and "!" inverts the whole state test.
		invalid := (mask&ctStateInvalid != 0) != (invert&xt.ConntrackState != 0)
		return &invalid, other
	}
	return nil, true
}

// xtEffect is what an iptables-nft target does to tcpvet's question.
type xtEffect int

const (
	xtHarmless xtEffect = iota
	xtTranslates
	xtUntracks
	xtRejects
	xtUnknown
)

// xtTarget reads one of iptables-nft's xt targets.
func xtTarget(t *expr.Target) xtEffect {
	switch t.Name {
	case "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP":
		return xtTranslates
	case "NOTRACK":
		return xtUntracks
	case "CT":
		// struct xt_ct_target_info starts with a u16 of flags, the first
		// XT_CT_NOTRACK; any other CT target (a zone, a helper) changes
		// how flows are tracked in ways tcpvet does not model.
		if u, ok := t.Info.(*xt.Unknown); ok && len(*u) >= 2 && binary.NativeEndian.Uint16(*u)&1 != 0 {
			return xtUntracks
		}
		return xtUnknown
	case "REJECT":
		return xtRejects
	case "MARK", "CONNMARK", "LOG", "NFLOG", "TCPMSS", "CHECKSUM", "CLASSIFY", "DSCP", "TOS", "TRACE", "AUDIT":
		// Marks and logs: they neither drop, translate nor untrack.
		return xtHarmless
	}
	return xtUnknown
}

// chainName is a chain as nft list ruleset names it: "FAMILY TABLE CHAIN".
func chainName(family, table, chain string) string {
	return family + " " + table + " " + chain
}

// jump is one rule's jump (or goto) from one chain to another.
type jump struct {
	from, to    string
	conditional bool
}

// hookOf maps each chain to its hook, "" for a regular chain.
type hookOf map[string]string

func (h *hookOf) set(chain, hook string) {
	if *h == nil {
		*h = hookOf{}
	}
	(*h)[chain] = hook
}

// chainGraph is how a namespace's chains reach one another.
type chainGraph struct {
	hooks hookOf
	jumps []jump
}

// resolve places each invalid-drop rule of a regular chain at the hooks of
// the base chains whose jumps reach it, one entry a hook: kube-proxy's
// "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" is reached from
// FORWARD, and so drops on the forward hook. A conditional jump on the
// way makes the entry conditional. Rules no base chain reaches stay as
// they were, with no hook.
func (g chainGraph) resolve(drops []InvalidDrop) []InvalidDrop {
	var out []InvalidDrop
	for _, d := range drops {
		if d.Hook != "" {
			out = append(out, d)
			continue
		}
		bases := g.bases(d.Chain)
		// In the bases' order, so the same ruleset reads the same twice.
		for _, base := range slices.Sorted(maps.Keys(bases)) {
			e := d
			e.Hook, e.Via, e.Conditional = g.hooks[base], base, d.Conditional || bases[base]
			out = append(out, e)
		}
		if len(bases) == 0 {
			out = append(out, d)
		}
	}
	return out
}

// bases lists the base chains from which jumps reach chain, each with
// whether every way from it passes a conditional jump.
func (g chainGraph) bases(chain string) map[string]bool {
	out := map[string]bool{}
	// conditional[c] is whether the best way found from c to chain so far
	// is conditional; a chain is revisited only when an unconditional way
	// to it turns up after a conditional one.
	conditional := map[string]bool{chain: false}
	queue := []string{chain}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		for _, j := range g.jumps {
			if j.to != c {
				continue
			}
			cond := conditional[c] || j.conditional
			if seen, ok := conditional[j.from]; ok && (seen == cond || !seen) {
				continue
			}
			conditional[j.from] = cond
			if g.hooks[j.from] != "" {
				out[j.from] = cond
				continue
			}
			queue = append(queue, j.from)
		}
	}
	return out
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
