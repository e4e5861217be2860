package loadtest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// follower is the client end of held status streams: it opens them from
// given source addresses, reads every one in its own goroutine and, once
// armed with a widget status, notes when each stream's event with it
// arrived (wall clock, so that another process can compare it with the
// moment it made the change).
type follower struct {
	mu       sync.Mutex
	streams  []*sseStream
	readers  sync.WaitGroup
	target   string
	arrived  []int64 // Unix nanoseconds, per stream; 0 not yet
	left     int
	done     chan struct{}
	nextFrom int // round-robin over source addresses
}

// open opens n status streams of path on ep from the local addresses
// (round robin; none: the system's choice), waits for each one's first
// status event and follows it.
func (f *follower) open(ctx context.Context, ep endpoint, path string, n int, local []string) (int, error) {
	dialers := []*net.Dialer{&dialer}
	if len(local) > 0 {
		dialers = dialers[:0]
		for _, a := range local {
			ip := net.ParseIP(a)
			if ip == nil {
				return f.held(), fmt.Errorf("loadtest: source address %q is not an IP", a)
			}
			dialers = append(dialers, &net.Dialer{Timeout: dialer.Timeout, LocalAddr: &net.TCPAddr{IP: ip}})
		}
	}
	f.mu.Lock()
	from := f.nextFrom
	f.nextFrom += n
	f.mu.Unlock()
	return f.held(), parallel(ctx, n, 64, func(i int) error {
		s, err := openSSEVia(ctx, dialers[(from+i)%len(dialers)], ep, path, "")
		if err != nil {
			return err
		}
		s.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		ev, _, err := s.next()
		s.conn.SetReadDeadline(time.Time{})
		if err != nil || ev != "status" {
			s.Close()
			return fmt.Errorf("loadtest: status stream: no first status event (%q): %v", ev, err)
		}
		f.mu.Lock()
		idx := len(f.streams)
		f.streams = append(f.streams, s)
		f.arrived = append(f.arrived, 0)
		f.mu.Unlock()
		f.readers.Add(1)
		go func() {
			defer f.readers.Done()
			for {
				ev, data, err := s.next()
				if err != nil {
					return
				}
				if ev == "status" {
					f.saw(idx, widgetStatus(data), time.Now().UnixNano())
				}
			}
		}()
		return nil
	})
}

func (f *follower) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

func (f *follower) saw(i int, status string, at int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.target == "" || status != f.target || f.arrived[i] != 0 {
		return
	}
	f.arrived[i] = at
	if f.left--; f.left == 0 {
		close(f.done)
	}
}

// arm starts noting arrivals of the widget status target.
func (f *follower) arm(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target, f.left, f.done = target, len(f.streams), make(chan struct{})
	clear(f.arrived)
	if f.left == 0 {
		close(f.done)
	}
}

// collect waits until every stream had the armed status, or wait passed,
// and returns the arrivals (0: missed).
func (f *follower) collect(wait time.Duration) []int64 {
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	if done != nil {
		t := time.NewTimer(wait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = ""
	return append([]int64(nil), f.arrived...)
}

func (f *follower) close() {
	f.mu.Lock()
	for _, s := range f.streams {
		s.Close()
	}
	f.streams = nil
	f.mu.Unlock()
	f.readers.Wait()
}
