package diag

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

func openNS(t *testing.T, path string) *netns.NS {
	t.Helper()
	ns, err := netns.FromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// TestHostViewTakesTheSameSnapshot: a snapshot taken with the host read
// once (ReadHost, as a sweep does) and with the process list a sweep made
// is the snapshot Take makes on its own, but for the host's notes, which
// the view carries once for every snapshot.
func TestHostViewTakesTheSameSnapshot(t *testing.T) {
	target, host := testnet.New(t), testnet.New(t)
	testnet.Link(t, target, host, 41)
	// The host tracks connections, so its conntrack and firewall are read.
	host.Run(t, "nft", "add table ip nat")
	host.Run(t, "nft", "add chain ip nat post { type nat hook postrouting priority 100 ; }")
	host.Run(t, "nft", "add rule ip nat post masquerade")
	host.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: ":7000", Mode: testnet.Hold}}})
	agent := target.Start(t, testnet.Spec{
		Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7001", Mode: testnet.Hold}},
		Dial:   []testnet.Dial{{Name: "out", To: "198.18.41.2:7000"}},
		Bulk:   map[string]int{"127.0.0.1:7001": 3},
	})
	tn, hn := openNS(t, target.Path), openNS(t, host.Path)
	waitAccepted(t, tn)

	// Stable across both snapshots: no time, and timers and tcp_info tick.
	norm := func(s *Snapshot) string {
		c := *s
		c.TakenAt = time.Time{}
		// The view carries the host's notes once for every snapshot; a
		// process whose namespace is unreadable is the sweep's note, not
		// each namespace's, since it is in none that the sweep knows.
		c.Notes = slices.DeleteFunc(slices.Clone(c.Notes), func(n Note) bool {
			return strings.HasPrefix(n.Text, "host ") || n.Code == NoteOwnersHidden
		})
		c.Sockets = slices.Clone(c.Sockets)
		for i := range c.Sockets {
			c.Sockets[i].TCPInfo, c.Sockets[i].Timer = nil, Timer{}
			c.Sockets[i].Conntrack = slices.Clone(c.Sockets[i].Conntrack)
			for j := range c.Sockets[i].Conntrack {
				c.Sockets[i].Conntrack[j].ExpiresInS, c.Sockets[i].Conntrack[j].TimeoutS = 0, 0
			}
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	alone, err := Take(context.Background(), Options{Target: tn, Host: hn})
	if err != nil {
		t.Fatal(err)
	}
	view := ReadHost(hn, "")
	swept, err := Take(context.Background(), Options{Target: tn, HostView: view, PIDs: []int{agent.PID}})
	if err != nil {
		t.Fatal(err)
	}
	if !swept.Host.Visible || swept.Host.Conntrack == nil || !swept.Host.Conntrack.Read {
		t.Fatalf("the host's conntrack through the view: %+v", swept.Host)
	}
	if a, b := norm(alone), norm(swept); a != b {
		t.Errorf("with the host read once:\n%s\nread by Take:\n%s", b, a)
	}
	if len(swept.Sockets) != 8 || len(swept.Sockets[0].Processes) == 0 {
		t.Errorf("%d sockets, owners %v", len(swept.Sockets), swept.Sockets[0].Processes)
	}

	// The host itself through the view: not visible, as with Take alone.
	self, err := Take(context.Background(), Options{Target: hn, HostView: view})
	if err != nil {
		t.Fatal(err)
	}
	if self.Host.Visible || self.Host.Sysctls != nil || self.Host.NetnsInode != hn.Inode {
		t.Errorf("the host seen from itself: %+v", self.Host)
	}
	// Its target is what the view read, not read again, and is what Take
	// alone reads of it: the same sysctls, addresses, firewall, and
	// conntrack entries, which name the target's table.
	selfAlone, err := Take(context.Background(), Options{Target: hn, Host: hn})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := norm(selfAlone), norm(self); a != b {
		t.Errorf("the host through the view:\n%s\nread by Take:\n%s", b, a)
	}
	tracked := 0
	for _, s := range self.Sockets {
		for _, f := range s.Conntrack {
			tracked++
			if f.Netns != Target {
				t.Errorf("the host as target: %s's entry is the %s's", s.Local, f.Netns)
			}
		}
	}
	if tracked == 0 || self.Target.Conntrack == nil || !self.Target.Conntrack.Read || self.Target.Sysctls == nil {
		t.Errorf("the host as target through the view: %d entries, conntrack %+v", tracked, self.Target.Conntrack)
	}
}

// TestNetnsCookie: a snapshot knows its namespace's cookie, the same every
// time, and another namespace's differs: what tells a namespace from a
// later one given its inode number.
func TestNetnsCookie(t *testing.T) {
	a, b := testnet.New(t), testnet.New(t)
	an, bn := openNS(t, a.Path), openNS(t, b.Path)
	take := func(ns *netns.NS) uint64 {
		t.Helper()
		snap, err := Take(context.Background(), Options{Target: ns})
		if err != nil {
			t.Fatal(err)
		}
		return snap.Target.NetnsCookie
	}
	first, again, other := take(an), take(an), take(bn)
	if first == 0 || first != again || other == first || other == 0 {
		t.Errorf("cookies: %d then %d for one namespace, %d for another; want the same, not 0, and a different one", first, again, other)
	}
}
