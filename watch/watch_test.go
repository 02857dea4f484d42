package watch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// counting is a Take that hands out numbered snapshots of one socket, and
// fails with fail from call failAt on.
func counting(calls *int, failAt int, fail error) Take {
	return func(ctx context.Context) (*diag.Snapshot, error) {
		*calls++
		if failAt > 0 && *calls >= failAt {
			return nil, fail
		}
		return &diag.Snapshot{TakenAt: time.Now(), Sockets: []diag.Socket{{ID: 0x1, State: diag.Established, TCPInfo: &diag.TCPInfo{Size: 248}}}}, nil
	}
}

func TestRunSamples(t *testing.T) {
	var calls int
	snap, err := Run(context.Background(), counting(&calls, 0, nil), Options{Duration: 350 * time.Millisecond, Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// At 0, 100, 200, 300 ms and at the end.
	if calls != 5 || snap.Watch == nil || snap.Watch.Samples != 5 || snap.Watch.IntervalS != 0.1 {
		t.Fatalf("%d calls, watch %+v: want 5 samples", calls, snap.Watch)
	}
	if d := snap.Watch.DurationS; d < 0.35 || d > 0.5 {
		t.Errorf("duration %v s, want 0.35", d)
	}
	if o := snap.Sockets[0].Observed; o == nil || o.Samples != 5 || o.RefreshedBy != diag.RefreshedByNone {
		t.Errorf("observed %+v, want 5 quiet samples", o)
	}
	if len(snap.Notes) != 0 {
		t.Errorf("notes %q, want none", snap.Notes)
	}
}

func TestRunEndsEarly(t *testing.T) {
	gone := errors.New("pid 42: no such process")
	for _, tt := range []struct {
		name string
		fail error
		code diag.NoteCode
		want string
	}{
		{"target gone", errors.Join(ErrTargetGone, gone), diag.NoteWatchTargetGone, "the target went away"},
		{"sample failed", gone, diag.NoteWatchSampleFailed, "a sample failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls int
			snap, err := Run(context.Background(), counting(&calls, 4, tt.fail), Options{Duration: time.Hour, Interval: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if snap.Watch.Samples != 3 || len(snap.Notes) != 1 || snap.Notes[0].Code != tt.code || !strings.Contains(snap.Notes[0].Text, tt.want) || !strings.Contains(snap.Notes[0].Text, "no such process") {
				t.Errorf("watch %+v, notes %q: want 3 samples and a note saying %q", snap.Watch, snap.Notes, tt.want)
			}
		})
	}
	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 180*time.Millisecond)
		defer cancel()
		var calls int
		snap, err := Run(ctx, counting(&calls, 0, nil), Options{Duration: time.Hour, Interval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Watch.Samples < 3 || len(snap.Notes) != 1 || snap.Notes[0].Code != diag.NoteWatchInterrupted || !strings.Contains(snap.Notes[0].Text, "stopped") {
			t.Errorf("watch %+v, notes %q: want a few samples and a note", snap.Watch, snap.Notes)
		}
	})
	t.Run("first sample fails", func(t *testing.T) {
		var calls int
		if _, err := Run(context.Background(), counting(&calls, 1, gone), Options{Duration: time.Second, Interval: 50 * time.Millisecond}); !errors.Is(err, gone) {
			t.Errorf("err %v, want %v", err, gone)
		}
	})
}
