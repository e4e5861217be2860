package widget

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/onduty/onduty/internal/metrics"
)

// connTracker counts what the server holds open, against Config.Limits:
// every connection (so that shutdown can close those that never carried a
// request; the per-IP connection cap is the listener's, listener.go), and
// the event streams, in total and per client IP, with the open-streams
// gauge.
type connTracker struct {
	lim  Limits
	set  connSet
	open atomic.Int64 // event streams open now

	mu   sync.Mutex
	byIP map[string]int // event streams held per client IP
	all  int            // event streams held in total
}

func newConnTracker(lim Limits) *connTracker {
	return &connTracker{lim: lim, byIP: make(map[string]int)}
}

// listener wraps ln: Accept survives running out of file descriptors, caps
// each TCP peer's connections (exempt peers are not capped), and tracks
// every connection.
func (t *connTracker) listener(ln net.Listener, exempt func(netip.Addr) bool, log *slog.Logger) net.Listener {
	return &trackingListener{Listener: newGuardedListener(ln, t.lim.ConnectionsPerIP, exempt, log), set: &t.set}
}

// closeUnused closes the connections that never sent a byte.
func (t *connTracker) closeUnused() { t.set.closeUnused() }

// Retry-After of a refused stream, in seconds.
const (
	streamsFullRetry  = 10
	streamsPerIPRetry = 30
)

var (
	errStreamsFull  = &apiError{Status: http.StatusServiceUnavailable, Code: "too_many_streams", Message: "the server holds all the event streams it can, poll the status or try again later", RetryAfter: streamsFullRetry}
	errStreamsPerIP = &apiError{Status: http.StatusTooManyRequests, Code: "too_many_streams", Message: "too many event streams from your address, poll the status or try again later", RetryAfter: streamsPerIPRetry}
)

// room reports whether ip may open one more stream; with take it also
// counts it (give it back with release).
func (t *connTracker) room(ip string, take bool) *apiError {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.lim.Streams > 0 && t.all >= t.lim.Streams:
		metrics.Refused.WithLabelValues("streams").Inc()
		return errStreamsFull
	case t.lim.StreamsPerIP > 0 && t.byIP[ip] >= t.lim.StreamsPerIP:
		metrics.Refused.WithLabelValues("streams_per_ip").Inc()
		return errStreamsPerIP
	}
	if take {
		t.all++
		t.byIP[ip]++
	}
	return nil
}

// release gives back a stream slot taken by room.
func (t *connTracker) release(ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all--
	if t.byIP[ip]--; t.byIP[ip] <= 0 {
		delete(t.byIP, ip)
	}
}

// opened counts a stream of kind ("status", "visitor", "admin") as open;
// closed undoes it.
func (t *connTracker) opened(kind string) {
	metrics.OpenStreams.WithLabelValues(kind).Inc()
	t.open.Add(1)
}

func (t *connTracker) closed(kind string) {
	metrics.OpenStreams.WithLabelValues(kind).Dec()
	t.open.Add(-1)
}

// connSet tracks the server's connections so that shutdown can close those
// that never carried a request.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

func (cs *connSet) add(c *trackedConn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[*trackedConn]struct{})
	}
	cs.m[c] = struct{}{}
}

func (cs *connSet) remove(c *trackedConn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.m, c)
}

func (cs *connSet) closeUnused() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.m {
		if !c.used.Load() {
			_ = c.Conn.Close()
			delete(cs.m, c)
		}
	}
}

type trackingListener struct {
	net.Listener
	set *connSet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, set: l.set}
	l.set.add(tc)
	return tc, nil
}

// trackedConn notes whether the client ever sent anything.
type trackedConn struct {
	net.Conn
	set  *connSet
	used atomic.Bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.set.remove(c)
	return c.Conn.Close()
}
