package diag

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/netns"
)

// TestNoteWhenTheTargetProcessExits: tcpvet's handle keeps a namespace
// alive after the process it was taken from exits; the snapshot must say
// the process is gone rather than show the namespace as if it were there.
func TestNoteWhenTheTargetProcessExits(t *testing.T) {
	ns := testnet.New(t)
	agent := ns.Start(t, testnet.Spec{Listen: []testnet.Listener{{Name: "l", Addr: "127.0.0.1:7000", Mode: testnet.Hold}}})
	target, err := netns.FromPID(agent.PID)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	exited := func(snap *Snapshot) bool {
		return slices.ContainsFunc(snap.Notes, func(n string) bool { return strings.Contains(n, "has exited or left this namespace") })
	}

	snap, err := Take(context.Background(), Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if exited(snap) || len(snap.Sockets) != 1 {
		t.Fatalf("while pid %d runs: %d sockets, notes %q", agent.PID, len(snap.Sockets), snap.Notes)
	}
	agent.Stop()
	snap, err = Take(context.Background(), Options{Target: target})
	if err != nil {
		t.Fatalf("the namespace outlives the process, so must the snapshot: %v", err)
	}
	if !exited(snap) || len(snap.Sockets) != 0 {
		t.Errorf("after pid %d exited: %d sockets, notes %q", agent.PID, len(snap.Sockets), snap.Notes)
	}
}
