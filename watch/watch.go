package watch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tcpvet/tcpvet/diag"
)

// ErrTargetGone is what a Take returns when the watched target is gone
// (its process exited): the watch ends there with what it saw so far.
var ErrTargetGone = errors.New("target gone")

// MaxDuration bounds a watch: longer ones are a monitoring job, and every
// observation is held in memory until the end.
const MaxDuration = 24 * time.Hour

// sampleTimeout bounds one sample, as a single snapshot is bounded.
const sampleTimeout = 30 * time.Second

// Take reads one snapshot of the watched target.
type Take func(ctx context.Context) (*diag.Snapshot, error)

// Options say how long to watch and how often to sample.
type Options struct {
	Duration time.Duration
	Interval time.Duration
	// Deaths, when set, follows the connections that end during the
	// watch: the result's Closed lists them, and its Notes what could not
	// be followed.
	Deaths *Deaths
}

// Run takes a snapshot every o.Interval for o.Duration (the first at once,
// the last at the end) and returns the last one, with Watch set and each
// socket seen in two samples or more carrying what was Observed of it.
//
// Only a failure of the first sample is an error. A later one ends the
// watch early: the result is then the last snapshot that was taken, with a
// note saying why the watch stopped; the same when ctx ends.
func Run(ctx context.Context, take Take, o Options) (*diag.Snapshot, error) {
	if o.Duration <= 0 || o.Interval <= 0 {
		return nil, fmt.Errorf("watch: duration %v and interval %v must be positive", o.Duration, o.Interval)
	}
	sample := func() (*diag.Snapshot, error) {
		sctx, cancel := context.WithTimeout(ctx, sampleTimeout)
		defer cancel()
		return take(sctx)
	}
	start := time.Now()
	last, err := sample()
	if err != nil {
		return nil, err
	}
	var obs Observer
	o.Deaths.Follow(&obs)
	obs.Add(last)
	closed := o.Deaths.Drain(&obs, time.Now(), Settle)
	end := start.Add(o.Duration)
	var stopped diag.Note
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 1; stopped.Code == ""; i++ {
		next := start.Add(time.Duration(i) * o.Interval)
		if next.After(end) {
			next = end
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			stopped = diag.Notef(diag.NoteWatchInterrupted, "the watch was stopped after %.1f s (%v)", time.Since(start).Seconds(), context.Cause(ctx))
			continue
		case <-timer.C:
		}
		snap, err := sample()
		switch {
		case errors.Is(err, ErrTargetGone):
			// Said of the sample that found it gone: the watch's own
			// duration ends at the last sample that found it there.
			stopped = diag.Notef(diag.NoteWatchTargetGone, "the target went away between %.1f s and %.1f s into the watch (%v)",
				obs.last.Sub(start).Seconds(), time.Since(start).Seconds(), err)
			stopped.Netns = diag.Target
			continue
		case err != nil && ctx.Err() != nil:
			stopped = diag.Notef(diag.NoteWatchInterrupted, "the watch was stopped after %.1f s (%v)", time.Since(start).Seconds(), context.Cause(ctx))
			continue
		case err != nil:
			stopped = diag.Notef(diag.NoteWatchSampleFailed, "a sample failed %.1f s into the watch, so it stopped there: %v", time.Since(start).Seconds(), err)
			continue
		}
		last = snap
		obs.Add(last)
		closed = append(closed, o.Deaths.Drain(&obs, time.Now(), Settle)...)
		if !next.Before(end) {
			break
		}
	}
	obs.Attach(last)
	if o.Deaths.Watching() {
		// The last deaths' flow ends may still be on their way.
		time.Sleep(Settle)
		last.Closed = append(closed, o.Deaths.Drain(&obs, time.Now(), 0)...)
	}
	last.Notes = append(last.Notes, o.Deaths.Notes()...)
	last.Watch = &diag.Watch{DurationS: secs(obs.last.Sub(obs.first)), Samples: obs.samples, IntervalS: secs(o.Interval)}
	if stopped.Code != "" {
		stopped.Text += "; this is what the watch saw until then"
		last.Notes = append(last.Notes, stopped)
	}
	return last, nil
}

// secs is d in seconds, to the millisecond.
func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }
