package loadtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// propagationTracker follows what every status stream last saw and times
// the current change.
type propagationTracker struct {
	mu      sync.Mutex
	latest  []string // per stream, the last widget status it saw
	target  string   // status the current change leads to; "" between changes
	start   time.Time
	seen    []bool
	left    int
	last    time.Time
	done    chan struct{}
	streams Histogram
}

func (t *propagationTracker) saw(i int, status string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latest[i] = status
	if t.target == "" || status != t.target || t.seen[i] {
		return
	}
	t.seen[i] = true
	t.streams.Record(at.Sub(t.start))
	t.last = at
	t.left--
	if t.left == 0 {
		close(t.done)
	}
}

// begin starts timing a change to target; it returns a channel closed when
// every stream has seen it.
func (t *propagationTracker) begin(target string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.target, t.start, t.left = target, time.Now(), len(t.latest)
	clear(t.seen)
	t.done = make(chan struct{})
	return t.done
}

// end stops timing: it returns when the last stream saw the change and how
// many streams did not.
func (t *propagationTracker) end() (time.Duration, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.target = ""
	return t.last.Sub(t.start), t.left
}

// propagation opens streams status streams spread over eps, then times
// changes status changes made by change (to "online" or "offline"): from
// the call until each stream, and until the last stream, had the event.
func propagation(ctx context.Context, cfg *Config, eps []endpoint, property string, change func(ctx context.Context, status string) error) (*PropagationResult, error) {
	n := cfg.Streams
	t := &propagationTracker{latest: make([]string, n), seen: make([]bool, n)}
	streams := make([]*sseStream, n)
	var readers sync.WaitGroup
	defer func() {
		for _, s := range streams {
			if s != nil {
				s.Close()
			}
		}
		readers.Wait()
	}()
	cfg.progress("propagation: opening %d status streams on %d instance(s)", n, len(eps))
	path := "/v1/properties/" + property + "/status/stream"
	err := parallel(ctx, n, 64, func(i int) error {
		s, err := openSSE(ctx, eps[i%len(eps)], path, "")
		if err != nil {
			return err
		}
		streams[i] = s
		// The first event is the status now.
		s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		ev, data, err := s.next()
		s.conn.SetReadDeadline(time.Time{})
		if err != nil || ev != "status" {
			return fmt.Errorf("loadtest: status stream: no first status event (%q): %v", ev, err)
		}
		t.saw(i, widgetStatus(data), time.Now())
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				ev, data, err := s.next()
				if err != nil {
					return
				}
				if ev == "status" {
					t.saw(i, widgetStatus(data), time.Now())
				}
			}
		}()
		return nil
	})
	if err != nil {
		return nil, err
	}
	cur := t.latest[0]
	initial := cur
	defer func() {
		// Leave the agent as found (the widget status it decided).
		if cur != initial && (initial == "online" || initial == "offline") {
			if err := change(context.WithoutCancel(ctx), initial); err != nil {
				cfg.progress("propagation: could not restore the status %s: %v", initial, err)
			}
		}
	}()
	res := &PropagationResult{Streams: n, Changes: cfg.Changes}
	var all Histogram
	cfg.progress("propagation: %d changes", cfg.Changes)
	for range cfg.Changes {
		next := "online"
		if cur == "online" {
			next = "offline"
		}
		done := t.begin(next)
		if err := change(ctx, next); err != nil {
			t.end()
			return nil, fmt.Errorf("loadtest: change status: %w", err)
		}
		timeout := time.NewTimer(10 * time.Second)
		select {
		case <-done:
		case <-timeout.C:
		case <-ctx.Done():
		}
		timeout.Stop()
		last, missed := t.end()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if missed == n {
			return nil, fmt.Errorf("loadtest: no stream saw the widget status become %s: does the change decide the property's status?", next)
		}
		res.Missed += missed
		all.Record(last)
		cur = next
	}
	t.mu.Lock()
	res.PerStream = t.streams.Summary()
	t.mu.Unlock()
	res.AllStreams = all.Summary()
	return res, nil
}

// widgetStatus reads "status" from a status event's compact JSON (cheaply:
// the load test shares the CPUs with the servers it measures).
func widgetStatus(data string) string {
	_, rest, ok := strings.Cut(data, `"status":"`)
	if !ok {
		return ""
	}
	st, _, _ := strings.Cut(rest, `"`)
	return st
}
