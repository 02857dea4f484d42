package diag

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// ctMatch is iptables-nft's "-m conntrack [!] --ctstate MASK".
func ctMatch(mask uint16, invert bool) *expr.Match {
	info := &xt.ConntrackMtinfo3{}
	info.MatchFlags = uint16(xt.ConntrackState)
	info.StateMask = mask
	if invert {
		info.InvertFlags = uint16(xt.ConntrackState)
	}
	return &expr.Match{Name: "conntrack", Rev: 3, Info: info}
}

// The xt_conntrack state bits: invalid, then one per ctinfo (established
// 1<<1, related 1<<2, new 1<<3), then snat, dnat.
const (
	xtInvalid     = 1 << 0
	xtEstablished = 1 << 1
	xtRelated     = 1 << 2
	xtDNAT        = 1 << 7
)

func TestClassifyIptablesNft(t *testing.T) {
	comment := &expr.Match{Name: "comment", Info: &xt.Unknown{}}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	// "-d 127.0.0.0/8" is native: a payload load, then a compare.
	daddr := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 1}},
	}
	state := func(mask uint32) *expr.Match {
		b := xt.Unknown(binary.NativeEndian.AppendUint32(nil, mask))
		return &expr.Match{Name: "state", Info: &b}
	}
	ctTarget := func(flags uint16) *expr.Target {
		b := xt.Unknown(binary.NativeEndian.AppendUint16(nil, flags))
		return &expr.Target{Name: "CT", Info: &b}
	}
	for _, tc := range []struct {
		name  string
		exprs []expr.Any
		want  ruleKind
	}{
		{"kube-proxy KUBE-FORWARD invalid drop", []expr.Any{ctMatch(xtInvalid, false), &expr.Counter{}, drop},
			ruleKind{dropsInvalid: true}},
		{"with kube-proxy's nfacct counter", []expr.Any{ctMatch(xtInvalid, false), &expr.Match{Name: "nfacct", Info: &xt.Unknown{}}, drop},
			ruleKind{dropsInvalid: true}},
		{"KUBE-FIREWALL: not related, established or dnat, to 127/8", append(daddr, comment, ctMatch(xtRelated|xtEstablished|xtDNAT, true), drop),
			ruleKind{dropsInvalid: true, conditional: true}},
		{"established accept", []expr.Any{comment, ctMatch(xtRelated|xtEstablished, false), accept}, ruleKind{}},
		{"established drop is no invalid drop", []expr.Any{ctMatch(xtEstablished, false), drop}, ruleKind{}},
		{"invalid drop on a mark", []expr.Any{ctMatch(xtInvalid, false), &expr.Match{Name: "mark", Info: &xt.Unknown{}}, drop},
			ruleKind{dropsInvalid: true, conditional: true}},
		{"-m state --state INVALID -j DROP", []expr.Any{state(xtInvalid), drop}, ruleKind{dropsInvalid: true}},
		{"invalid REJECT", []expr.Any{ctMatch(xtInvalid, false), &expr.Target{Name: "REJECT", Info: &xt.Unknown{}}},
			ruleKind{dropsInvalid: true}},
		{"jump to a chain", []expr.Any{comment, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: "KUBE-FORWARD"}},
			ruleKind{jumps: []string{"KUBE-FORWARD"}}},
		{"DNAT", []expr.Any{comment, &expr.Match{Name: "statistic", Info: &xt.Unknown{}}, &expr.Target{Name: "DNAT", Info: &xt.Unknown{}}},
			ruleKind{translates: true, conditional: true}},
		{"MASQUERADE", []expr.Any{&expr.Target{Name: "MASQUERADE", Info: &xt.Unknown{}}}, ruleKind{translates: true}},
		{"MARK", []expr.Any{&expr.Target{Name: "MARK", Info: &xt.Unknown{}}}, ruleKind{}},
		{"CT --notrack", []expr.Any{ctTarget(1)}, ruleKind{untracks: true}},
		{"CT --zone", []expr.Any{ctTarget(0)}, ruleKind{opaque: true}},
		{"an unknown target", []expr.Any{&expr.Target{Name: "TPROXY", Info: &xt.Unknown{}}}, ruleKind{opaque: true}},
		{"native ct state invalid drop", []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, ctStateInvalid), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}, drop,
		}, ruleKind{dropsInvalid: true}},
	} {
		got := classify(tc.exprs)
		if got.dropsInvalid != tc.want.dropsInvalid || got.conditional != tc.want.conditional || got.translates != tc.want.translates ||
			got.opaque != tc.want.opaque || got.untracks != tc.want.untracks || !slices.Equal(got.jumps, tc.want.jumps) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestChainGraphResolve(t *testing.T) {
	g := chainGraph{}
	for chain, hook := range map[string]string{
		"ip filter FORWARD": "forward", "ip filter INPUT": "input", "ip filter OUTPUT": "output",
		"ip filter KUBE-FORWARD": "", "ip filter KUBE-FIREWALL": "", "ip filter ORPHAN": "", "ip filter MID": "", "ip filter DEEP": "",
	} {
		g.hooks.set(chain, hook)
	}
	g.jumps = []jump{
		{from: "ip filter FORWARD", to: "ip filter KUBE-FORWARD"},
		{from: "ip filter INPUT", to: "ip filter KUBE-FIREWALL"},
		{from: "ip filter OUTPUT", to: "ip filter KUBE-FIREWALL"},
		// DEEP is reached from forward through MID, once only when a
		// packet matches, and once unconditionally: the latter decides.
		{from: "ip filter FORWARD", to: "ip filter MID", conditional: true},
		{from: "ip filter MID", to: "ip filter DEEP"},
		{from: "ip filter INPUT", to: "ip filter MID", conditional: true},
		{from: "ip filter FORWARD", to: "ip filter DEEP"},
		// A loop must not hang the walk.
		{from: "ip filter DEEP", to: "ip filter MID"},
	}
	got := g.resolve([]InvalidDrop{
		{Chain: "ip filter KUBE-FORWARD", Family: "ip"},
		{Chain: "ip filter KUBE-FIREWALL", Family: "ip", Conditional: true},
		{Chain: "ip filter ORPHAN", Family: "ip"},
		{Chain: "ip filter DEEP", Family: "ip"},
		{Chain: "ip filter FORWARD", Family: "ip", Hook: "forward"},
	})
	// In the order of the drops given, each at its bases in name order:
	// the same ruleset reads the same every time.
	want := []InvalidDrop{
		{Chain: "ip filter KUBE-FORWARD", Family: "ip", Hook: "forward", Via: "ip filter FORWARD"},
		{Chain: "ip filter KUBE-FIREWALL", Family: "ip", Hook: "input", Via: "ip filter INPUT", Conditional: true},
		{Chain: "ip filter KUBE-FIREWALL", Family: "ip", Hook: "output", Via: "ip filter OUTPUT", Conditional: true},
		{Chain: "ip filter ORPHAN", Family: "ip"},
		{Chain: "ip filter DEEP", Family: "ip", Hook: "forward", Via: "ip filter FORWARD"},
		{Chain: "ip filter DEEP", Family: "ip", Hook: "input", Via: "ip filter INPUT", Conditional: true},
		{Chain: "ip filter FORWARD", Family: "ip", Hook: "forward"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("resolve:\n got %+v\nwant %+v", got, want)
	}
	fw := &Firewall{Read: true, InvalidDrops: got}
	if chain, certain, _ := fw.DropInvalid(false, "forward"); !certain || chain == "" {
		t.Errorf("a drop reached unconditionally from forward: certain %v (%q)", certain, chain)
	}
	if _, certain, maybe := fw.DropInvalid(false, "output"); certain || !maybe {
		t.Errorf("KUBE-FIREWALL's conditional drop on output: certain %v, maybe %v; want maybe only", certain, maybe)
	}
}
