package widget

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// rawStream is a status stream read on a bare TCP connection, with no
// goroutine of the test's own.
type rawStream struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// dialStream opens path on base (host:port) and reads the response head.
// rcvbuf, when not zero, is the client socket's receive buffer.
func dialStream(t testing.TB, addr, path string, rcvbuf int, headers ...string) *rawStream {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
			if err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	for i := 0; i+1 < len(headers); i += 2 {
		req += headers[i] + ": " + headers[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	s := &rawStream{t: t, conn: conn, br: bufio.NewReader(conn)}
	// The deadline only keeps a broken test from hanging.
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	line, err := s.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("stream %s: %q %v", path, line, err)
	}
	for line != "\r\n" {
		if line, err = s.br.ReadString('\n'); err != nil {
			t.Fatalf("stream head: %v", err)
		}
	}
	return s
}

// next reads the next event or comment (Name ":").
func (s *rawStream) next() sseEvent {
	s.t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(testTimeout))
	var ev sseEvent
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("read event: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				return ev
			}
		case strings.HasPrefix(line, ":"):
			ev.Name = ":"
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.Data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// nextStatus skips heartbeats and returns the next status event.
func (s *rawStream) nextStatus() sseEvent {
	s.t.Helper()
	for {
		if ev := s.next(); ev.Name != ":" {
			if ev.Name != "status" {
				s.t.Fatalf("want a status event, got %+v", ev)
			}
			return ev
		}
	}
}

// TestHubHoldsStreams: held status streams have no goroutine of their own
// (fasthttp's KeepHijackedConns), each gets the status with the ETag as
// its id, and a change reaches every one of them.
func TestHubHoldsStreams(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits = Limits{ConnectionsPerIP: -1, StreamsPerIP: -1, Streams: -1} })
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	addr := strings.TrimPrefix(e.serve(), "http://")
	wait.For(t, "watcher sees online", func() bool {
		snap, _ := e.watcher.Snapshot(propDemo)
		return strings.Contains(string(snap.Body), `"status":"online"`)
	})
	n := 300
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && int(lim.Cur) < 2*n+200 {
		n = max(20, (int(lim.Cur)-200)/2)
	}
	first := dialStream(t, addr, "/v1/properties/demo/status/stream", 0)
	first.nextStatus()
	before := runtime.NumGoroutine()
	streams := make([]*rawStream, n)
	for i := range streams {
		streams[i] = dialStream(t, addr, "/v1/properties/demo/status/stream", 0)
		ev := streams[i].nextStatus()
		snap, _ := e.watcher.Snapshot(propDemo)
		if ev.ID != snap.ETag || ev.Data != string(snap.Body) {
			t.Fatalf("stream %d: first event %+v, want id %s data %s", i, ev, snap.ETag, snap.Body)
		}
	}
	wait.For(t, "all held", func() bool { return e.srv.OpenStreams() == int64(n+1) && e.srv.hub.held() == n+1 })
	// fasthttp's idle workers linger for a while; what must not be there is
	// anything near one goroutine per stream.
	if grew := runtime.NumGoroutine() - before; grew > n/10 {
		t.Errorf("%d goroutines more for %d held streams", grew, n)
	}
	e.setStatus(agentAlice, presence.Away)
	for i, s := range append(streams, first) {
		ev := s.nextStatus()
		if !strings.Contains(ev.Data, `"status":"away"`) {
			t.Fatalf("stream %d after the change: %+v", i, ev)
		}
		snap, _ := e.watcher.Snapshot(propDemo)
		if ev.ID != snap.ETag {
			t.Errorf("stream %d: id %s, want %s", i, ev.ID, snap.ETag)
		}
	}
}

// TestHubDropsSlowClient: a stream whose client stops reading is closed
// once a write to it does not finish within StreamWriteTimeout; the others
// keep getting their events, and the slot is free again.
func TestHubDropsSlowClient(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Limits = Limits{ConnectionsPerIP: -1, StreamsPerIP: -1, Streams: 2}
		c.Heartbeat = time.Hour
		c.StreamWriteTimeout = time.Second
	})
	e.runWatcher()
	addr := strings.TrimPrefix(e.serve(), "http://")
	slow := dialStream(t, addr, "/v1/properties/demo/status/stream", 4096)
	slow.nextStatus()
	fast := dialStream(t, addr, "/v1/properties/demo/status/stream", 0)
	fast.nextStatus()
	wait.For(t, "two held", func() bool { return e.srv.hub.held() == 2 })
	dropped := droppedStreams(t)

	// The fast client reads everything; the slow one nothing. A status
	// event is small: a backlog is built with large writes to both.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	read := make(chan error, 1)
	go func() {
		_ = fast.conn.SetReadDeadline(time.Time{})
		buf := make([]byte, 64<<10)
		for ctx.Err() == nil {
			if _, err := fast.br.Read(buf); err != nil {
				read <- err
				return
			}
		}
		read <- nil
	}()
	chunk := []byte(": " + strings.Repeat("x", 64<<10) + "\n\n")
	set := e.srv.hub.sets[propDemo]
	for i := 0; e.srv.hub.held() == 2; i++ {
		if i == 1000 { // 64 MB: far over any socket buffer
			t.Fatal("the slow client was never dropped")
		}
		e.srv.hub.fanOut(set.snapshot(), chunk, "")
	}
	cancel()
	// One last write ends the reader's loop.
	e.srv.hub.fanOut(set.snapshot(), heartbeat, "")
	if err := <-read; err != nil {
		t.Fatalf("fast client: %v", err)
	}
	if got := droppedStreams(t) - dropped; got != 1 {
		t.Errorf("dropped counter grew by %v, want 1", got)
	}
	if e.srv.OpenStreams() != 1 {
		t.Errorf("%d open streams, want 1", e.srv.OpenStreams())
	}
	// The slow client's slot is free again (the cap is 2).
	again := dialStream(t, addr, "/v1/properties/demo/status/stream", 0)
	again.nextStatus()
	// The slow client sees its stream end once it reads its backlog.
	_ = slow.conn.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.Copy(io.Discard, slow.conn); err != nil && !isConnReset(err) {
		t.Errorf("slow client: %v", err)
	}
}

// droppedStreams reads metrics.StreamsDropped.
func droppedStreams(t testing.TB) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.StreamsDropped.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// isConnReset reports whether err is a reset (a closed socket with unread
// data is reset, not ended).
func isConnReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestStatusStreamResume: a client that names the current ETag
// (Last-Event-ID as EventSource sends it on reconnecting, last_event_id,
// or If-None-Match) is not sent the status it has; one naming another gets
// the status at once; both get the next change.
func TestStatusStreamResume(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits = Limits{ConnectionsPerIP: -1, StreamsPerIP: -1} })
	e.runWatcher()
	addr := strings.TrimPrefix(e.serve(), "http://")
	snap, _ := e.watcher.Snapshot(propDemo)
	cur := snap.ETag
	path := "/v1/properties/demo/status/stream"
	for _, tc := range []struct {
		name    string
		path    string
		headers []string
		resumed bool
	}{
		{"Last-Event-ID current", path, []string{"Last-Event-ID", cur}, true},
		{"last_event_id current", path + "?last_event_id=" + strings.Trim(cur, `"`), nil, false},
		{"If-None-Match current", path, []string{"If-None-Match", "W/" + cur}, true},
		{"Last-Event-ID stale", path, []string{"Last-Event-ID", `"stale"`}, false},
		{"If-None-Match stale", path, []string{"If-None-Match", `"stale"`}, false},
		{"none", path, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := dialStream(t, addr, tc.path, 0, tc.headers...)
			ev := s.next()
			if tc.resumed {
				// The first thing on a resumed stream is the heartbeat.
				if ev.Name != ":" {
					t.Fatalf("resumed stream was sent %+v", ev)
				}
			} else if ev.Name != "status" || ev.ID != cur {
				t.Fatalf("first event %+v, want the status with id %s", ev, cur)
			}
		})
	}
	t.Run("quoted last_event_id", func(t *testing.T) {
		s := dialStream(t, addr, path+"?last_event_id="+strings.ReplaceAll(cur, `"`, "%22"), 0)
		if ev := s.next(); ev.Name != ":" {
			t.Fatalf("resumed stream was sent %+v", ev)
		}
		e.setStatus(agentAlice, presence.Online)
		ev := s.nextStatus()
		snap, _ := e.watcher.Snapshot(propDemo)
		if ev.ID == cur || ev.ID != snap.ETag || !strings.Contains(ev.Data, `"status":"online"`) {
			t.Errorf("after the change: %+v (was %s)", ev, cur)
		}
	})
}

// TestHeartbeatShares: the ten shares of a heartbeat period cover every
// held stream exactly once.
func TestHeartbeatShares(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 25} {
		set := &heldSet{}
		for i := range n {
			set.list = append(set.list, &heldConn{idx: i})
		}
		seen := make(map[*heldConn]int)
		for k := range heartbeatSlices {
			for _, hc := range set.share(k, heartbeatSlices) {
				seen[hc]++
			}
		}
		for _, hc := range set.list {
			if seen[hc] != 1 {
				t.Errorf("%d streams: stream %d in %d shares", n, hc.idx, seen[hc])
			}
		}
		if len(seen) != n {
			t.Errorf("%d streams: %d in the shares", n, len(seen))
		}
	}
}
