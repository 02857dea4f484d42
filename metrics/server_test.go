package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/node"
)

// syncBuf is a log both the loop and the test touch.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestRunSlowSweep: /healthz says 503 until a sweep completes; while a
// sweep hangs, /metrics answers at once with the last one; a failed sweep is
// counted and logged; cancelling the context ends a hung sweep and Run.
func TestRunSlowSweep(t *testing.T) {
	release := make(chan struct{})
	calls := make(chan int, 10)
	n := 0
	sweep := func(ctx context.Context) (*node.Sweep, error) {
		n++
		calls <- n
		switch n {
		case 1: // the first sweep waits for the test
			<-release
			return &node.Sweep{TakenAt: time.Now(), Namespaces: []node.Namespace{{Inode: 42, Report: findings("half-open:critical")}}}, nil
		case 2:
			return nil, errors.New("netlink: the kernel said no")
		}
		<-ctx.Done() // then one that never finishes on its own
		return nil, ctx.Err()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuf
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, ln, Options{Sweep: sweep, Interval: 10 * time.Millisecond, Timeout: time.Hour, Log: &log})
	}()

	<-calls
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no sweep") {
		t.Errorf("healthz before any sweep: %d %q", code, body)
	}
	if _, body := get(t, base+"/metrics"); strings.Contains(body, "tcpvet_findings") || !strings.Contains(body, "tcpvet_sweeps_total 0") {
		t.Errorf("metrics before any sweep:\n%s", body)
	}
	close(release)
	<-calls // the failing one
	<-calls // the one that hangs
	// The third sweep never ends until Run's context does: a scrape that
	// waited for it would never answer.
	code, body := get(t, base+"/metrics")
	for _, want := range []string{
		`tcpvet_findings{netns="42",pod="",pod_namespace="",pod_uid="",rule="half-open",severity="critical"} 1`,
		"tcpvet_sweeps_total 1",
		"tcpvet_sweep_errors_total 1",
		"tcpvet_last_sweep_age_seconds",
		"process_resident_memory_bytes",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics during a hung sweep (%d) lack %q", code, want)
		}
	}
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.HasPrefix(body, "ok: last sweep") {
		t.Errorf("healthz after a sweep: %d %q", code, body)
	}
	if !strings.Contains(log.String(), "sweep failed: netlink: the kernel said no") {
		t.Errorf("log = %q", log.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still listening after Run returned")
	}
}

// TestHealthzGoesStale: /healthz fails once the last sweep is older than a
// working loop would let it be, so a liveness probe restarts an exporter
// whose sweeps stopped; Handler alone never goes stale.
func TestHealthzGoesStale(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	now := t0
	c := NewCollector()
	c.now = func() time.Time { return now }
	c.Update(&node.Sweep{TakenAt: t0})
	ask := func(h http.Handler) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	now = t0.Add(50 * time.Second)
	if code, body := ask(handler(c, time.Minute)); code != http.StatusOK {
		t.Errorf("50 s after a sweep, with a minute allowed: %d %q", code, body)
	}
	now = t0.Add(61 * time.Second)
	if code, body := ask(handler(c, time.Minute)); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "stale:") {
		t.Errorf("61 s after a sweep, with a minute allowed: %d %q", code, body)
	}
	if code, _ := ask(Handler(c)); code != http.StatusOK {
		t.Errorf("Handler went stale: %d", code)
	}
}
