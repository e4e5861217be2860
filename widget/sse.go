package widget

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/presence"
)

// streamer is the transport of the server-sent event streams and their
// life. It takes a stream's connection from fasthttp once the handler
// returns (hijack), writes the response head, events and heartbeats
// (sseConn), and at shutdown tells every stream to stop and waits for the
// ones it runs. Held status streams live in the hub, which it starts and
// closes. Streams are counted against the caps by conns.
type streamer struct {
	conns   *connTracker
	clients *limiter
	hub     *statusHub
	log     *slog.Logger
	// heartbeat is how often an idle stream gets a comment line.
	heartbeat time.Duration

	// stopping is set once, under mu, before stop is closed; no stream
	// starts after that, so wg.Wait is safe.
	mu       sync.Mutex
	stopping bool
	stop     chan struct{}
	ctx      context.Context // cancelled with stop: bounds work a stream does
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func newStreamer(conns *connTracker, clients *limiter, hub *statusHub, heartbeat time.Duration, log *slog.Logger) *streamer {
	st := &streamer{conns: conns, clients: clients, hub: hub, heartbeat: heartbeat, log: log, stop: make(chan struct{})}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	return st
}

// start runs the hub's goroutines, unless the streams were already told to stop.
func (st *streamer) start() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.stopping {
		st.hub.start(st.stop, &st.wg)
	}
}

// shutdown tells every event stream to end; no new stream starts after it.
func (st *streamer) shutdown() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.stopping {
		st.stopping = true
		close(st.stop)
		st.cancel()
		st.hub.close()
	}
}

// wait waits until every stream (and the hub) has ended, or ctx is done;
// it reports whether they all ended.
func (st *streamer) wait(ctx context.Context) bool {
	drained := make(chan struct{})
	go func() { st.wg.Wait(); close(drained) }()
	select {
	case <-drained:
		return true
	case <-ctx.Done():
		return false
	}
}

// stopped is closed when the streams are told to stop.
func (st *streamer) stopped() <-chan struct{} { return st.stop }

// begin registers a stream unless the server is stopping.
func (st *streamer) begin() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopping {
		return false
	}
	st.wg.Add(1)
	return true
}

// clientKey is the key of c's client IP in the stream caps. A first check
// of the caps answers most refusals as an ordinary error; the one that
// counts is taken on the hijacked connection.
func (st *streamer) clientKey(c *fiber.Ctx) (string, error) {
	ip, err := st.clients.clientIP(c)
	if err != nil {
		return "", err
	}
	ip = limitKey(ip)
	if err := st.conns.room(ip, false); err != nil {
		return "", err
	}
	return ip, nil
}

// run takes the connection from fasthttp once the handler returns and runs
// the stream in that one goroutine; the request worker is released.
// Hijacked connections are invisible to fasthttp's shutdown, so the
// streamer tracks them itself. A stream over the caps of Config.Limits is
// refused: 503 when the instance holds its maximum, 429 when the client's
// IP does, both with Retry-After, so a client falls back to polling.
func (st *streamer) run(c *fiber.Ctx, kind string, cr corsResult, stream func(w *sseConn)) error {
	ip, err := st.clientKey(c)
	if err != nil {
		return err
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(conn net.Conn) {
		// fasthttp keeps hijacked connections (for the status hub): close it.
		defer conn.Close()
		if err := st.conns.room(ip, true); err != nil {
			writeRefusal(conn, err, cr)
			return
		}
		if !st.begin() {
			st.conns.release(ip)
			return
		}
		defer st.wg.Done()
		st.conns.opened(kind)
		// The slot is free before the stream stops counting as open.
		defer func() { _ = conn.Close(); st.conns.release(ip); st.conns.closed(kind) }()
		w := &sseConn{conn: conn}
		if w.write([]byte(sseHead(cr))) != nil {
			return
		}
		stream(w)
	})
	return nil
}

// hold hands the connection to the status hub once the handler returns:
// a status stream of p has no goroutine of its own. resume reports
// whether the client already has the status of an ETag.
func (st *streamer) hold(c *fiber.Ctx, p presence.PropertyID, cr corsResult, resume func(etag string) bool) error {
	ip, err := st.clientKey(c)
	if err != nil {
		return err
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(conn net.Conn) {
		if err := st.conns.room(ip, true); err != nil {
			writeRefusal(conn, err, cr)
			_ = conn.Close()
			return
		}
		// The hub keeps the connection itself: fasthttp's wrapper would
		// read through a buffer it frees when this handler returns.
		if u, ok := conn.(interface{ UnsafeConn() net.Conn }); ok {
			conn = u.UnsafeConn()
		}
		if !st.hub.hold(conn, p, ip, []byte(sseHead(cr)), resume) {
			_ = conn.Close()
			st.conns.release(ip)
		}
	})
	return nil
}

// sseHead is the response head of an event stream. The connection is
// hijacked, so the head is written by hand and the body ends with the
// connection.
func sseHead(cr corsResult) string {
	return "HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-cache, no-store\r\n" +
		"Connection: close\r\n" +
		"X-Accel-Buffering: no\r\n" +
		cr.header() +
		"\r\n" +
		"retry: 3000\n\n"
}

// writeRefusal answers a hijacked connection with err's status, Retry-After
// and JSON body.
func writeRefusal(conn net.Conn, err *apiError, cr corsResult) {
	body := mustJSON(map[string]map[string]string{"error": {"code": err.Code, "message": err.Message}})
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = io.WriteString(conn, "HTTP/1.1 "+strconv.Itoa(err.Status)+" "+http.StatusText(err.Status)+"\r\n"+
		"Retry-After: "+strconv.Itoa(err.RetryAfter)+"\r\n"+
		"Content-Type: application/json; charset=utf-8\r\n"+
		"Cache-Control: no-store\r\n"+
		"Connection: close\r\n"+
		cr.header()+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+string(body))
}

// sseConn writes server-sent events to a hijacked connection.
type sseConn struct {
	conn net.Conn
	buf  []byte
}

// writeTimeout bounds one write: a client that stops reading is dropped.
const writeTimeout = 10 * time.Second

func (w *sseConn) write(b []byte) error {
	if err := w.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err := w.conn.Write(b)
	return err
}

// event writes one event; data must not contain newlines (compact JSON).
func (w *sseConn) event(name, id string, data []byte) error {
	w.buf = appendEvent(w.buf[:0], name, id, data)
	return w.write(w.buf)
}

// appendEvent appends one server-sent event to b; data must not contain
// newlines (compact JSON).
func appendEvent(b []byte, name, id string, data []byte) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// comment writes a heartbeat: a gone client is noticed by its failing.
func (w *sseConn) comment() error { return w.write(heartbeat) }
