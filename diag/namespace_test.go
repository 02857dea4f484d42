package diag

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSnapshotJSONMirrorsSnapshot: snapshotJSON has Snapshot's fields, in
// order, and the sysctls beside: a field added to Snapshot alone would
// never reach the JSON.
func TestSnapshotJSONMirrorsSnapshot(t *testing.T) {
	var snap, mirror []string
	for f := range reflect.TypeFor[Snapshot]().Fields() {
		snap = append(snap, f.Name)
	}
	for f := range reflect.TypeFor[snapshotJSON]().Fields() {
		if f.Name != "Sysctls" {
			mirror = append(mirror, f.Name)
		}
	}
	if !slices.Equal(snap, mirror) {
		t.Errorf("Snapshot has fields %v, snapshotJSON %v", snap, mirror)
	}
}

// TestNamespaceJSON: the target and the host keep the layouts tcpvet/v1
// gave them as two types (key order, which keys are left out), the
// sysctls go under "sysctls", and what is written reads back the same.
func TestNamespaceJSON(t *testing.T) {
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	snap := Snapshot{
		Schema:  Schema,
		TakenAt: time.Unix(1700000000, 0).UTC(),
		Target: Namespace{Role: Target, NetnsInode: 7, Path: "/proc/42/ns/net", PID: 42, Addresses: lo,
			Sysctls: Sysctls{KeepaliveTime: 7200}, IPVS: &IPVS{}, Conntrack: &Conntrack{Read: true}},
		Host: Namespace{Role: Host, Visible: true, NetnsInode: 1, Path: "/proc/1/ns/net", Addresses: lo,
			Sysctls: Sysctls{KeepaliveTime: 600}, Firewall: &Firewall{Read: true}},
		Sockets: []Socket{},
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var o map[string]json.RawMessage
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	ipvs, _ := json.Marshal(snap.Target.IPVS)
	ct, _ := json.Marshal(snap.Target.Conntrack)
	fw, _ := json.Marshal(snap.Host.Firewall)
	for key, want := range map[string]string{
		"target":  `{"netns_inode":7,"path":"/proc/42/ns/net","pid":42,"addresses":["127.0.0.1"],"ipvs":` + string(ipvs) + `,"conntrack":` + string(ct) + `}`,
		"host":    `{"visible":true,"netns_inode":1,"path":"/proc/1/ns/net","addresses":["127.0.0.1"],"firewall":` + string(fw) + `}`,
		"sysctls": `{"target":{"net.ipv4.tcp_keepalive_time":7200},"host":{"net.ipv4.tcp_keepalive_time":600}}`,
	} {
		if got := string(o[key]); got != want {
			t.Errorf("%s:\n got %s\nwant %s", key, got, want)
		}
	}
	// Each is written by its place, whatever a hand-built one's Role: an
	// empty host is a host not visible, with no addresses key.
	if b, _ := json.Marshal(Snapshot{}); !strings.Contains(string(b), `"target":{"netns_inode":0,"path":"","addresses":null},"host":{"visible":false,"netns_inode":0,"path":""},"sysctls":{"target":null,"host":null}`) {
		t.Errorf("empty snapshot: %s", b)
	}

	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, snap) {
		t.Errorf("read back\n%+v\nwrote\n%+v", back, snap)
	}
	// Alone, a namespace says its role by its keys.
	var host, target Namespace
	if err := json.Unmarshal(o["host"], &host); err != nil || host.Role != Host || !host.Visible {
		t.Errorf("host read alone: %+v, %v", host, err)
	}
	if err := json.Unmarshal(o["target"], &target); err != nil || target.Role != Target || target.PID != 42 {
		t.Errorf("target read alone: %+v, %v", target, err)
	}
}
