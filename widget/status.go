package widget

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// HeaderStale marks a status served while the watcher has lost Redis.
const HeaderStale = "X-Onduty-Stale"

// status answers GET /v1/properties/{p}/status from the watcher's prebuilt
// snapshot. This is the hot path: no Redis, no encoding, no allocation
// beyond Fiber's own.
func (s *Server) status(c *fiber.Ctx) error {
	p := presence.PropertyID(c.Params("p"))
	hs := s.hotStatus(p)
	if hs == nil {
		return errUnknownProperty
	}
	if _, err := s.corsProperty(c, p); err != nil {
		return err
	}
	h := &c.Response().Header
	h.SetCanonical(keyETag, hs.etag)
	h.SetCanonical(keyCacheControl, valNoCache)
	if s.watcher.Stale() {
		h.SetCanonical(keyStale, valTrue)
	}
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), hs.snap.ETag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	h.SetContentTypeBytes(valJSON)
	return c.Send(hs.body)
}

// Canonical header keys and values of the hot path, set without Fiber's
// normalising Set.
var (
	keyETag         = []byte(fiber.HeaderETag)
	keyCacheControl = []byte(fiber.HeaderCacheControl)
	keyStale        = []byte(HeaderStale)
	valNoCache      = []byte("no-cache")
	valTrue         = []byte("true")
	valJSON         = []byte(fiber.MIMEApplicationJSON)
)

// hot is a property's current snapshot with what is sent of it, encoded
// once per snapshot: the ETag as bytes, the status body (GET .../status and
// the visitor stream's status event) and the status stream's event.
type hot struct {
	snap  *presence.Snapshot
	etag  []byte
	body  []byte
	event []byte
}

// newHot encodes snap once for every client: the status body is the one
// place that decides what a widget status looks like on the wire.
func newHot(snap *presence.Snapshot) *hot {
	body := snap.Body
	return &hot{snap: snap, etag: []byte(snap.ETag), body: body, event: statusEvent(snap.ETag, body)}
}

// statusEvent is the status stream's event for body: its id is the ETag,
// so a reconnecting EventSource sends it back as Last-Event-ID and is not
// sent a status it has.
func statusEvent(etag string, body []byte) []byte {
	return appendEvent(nil, "status", etag, body)
}

// hotStatus returns p's current snapshot, refreshing the cached ETag bytes
// when the watcher has published a new one; nil for an unknown property.
func (s *Server) hotStatus(p presence.PropertyID) *hot {
	ptr, ok := s.hot[p]
	if !ok {
		return nil
	}
	snap, _ := s.watcher.Snapshot(p)
	if snap == nil {
		return nil
	}
	h := ptr.Load()
	if h == nil || h.snap != snap {
		h = newHot(snap)
		ptr.Store(h)
	}
	return h
}

// etagMatch reports whether an If-None-Match header names etag.
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	if header == etag || header == "*" {
		return true
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// statusStream answers GET /v1/properties/{p}/status/stream: a status event
// now (unless Last-Event-ID, last_event_id or If-None-Match names the
// current ETag) and at every change, heartbeats in between. The stream is
// held by the status hub, with no goroutine of its own.
func (s *Server) statusStream(c *fiber.Ctx) error {
	p := presence.PropertyID(strings.Clone(c.Params("p")))
	if snap, ok := s.watcher.Snapshot(p); !ok || snap == nil {
		return errUnknownProperty
	}
	cr, err := s.corsProperty(c, p)
	if err != nil {
		return err
	}
	last := c.Get("Last-Event-ID")
	if last == "" {
		last = c.Query("last_event_id")
	}
	last = strings.Clone(last)
	inm := strings.Clone(c.Get(fiber.HeaderIfNoneMatch))
	resume := func(etag string) bool { return etagMatch(last, etag) || etagMatch(inm, etag) }
	ip, err := s.streamIP(c)
	if err != nil {
		return err
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(conn net.Conn) {
		if err := s.streamRoom(ip, true); err != nil {
			writeRefusal(conn, err, cr)
			_ = conn.Close()
			return
		}
		// The hub keeps the connection itself: fasthttp's wrapper would
		// read through a buffer it frees when this handler returns.
		if u, ok := conn.(interface{ UnsafeConn() net.Conn }); ok {
			conn = u.UnsafeConn()
		}
		if !s.hub.hold(conn, p, ip, []byte(sseHead(cr)), resume) {
			_ = conn.Close()
			s.streamDone(ip)
		}
	})
	return nil
}

// statusSent is the widget status a visitor stream last sent (its ETag).
type statusSent struct{ etag string }

// send writes p's status event unless the stream already has it, and returns
// the channel closed at the next change of the widget status. The channel is
// taken before the snapshot, so no change falls in between.
func (st *statusSent) send(s *Server, w *sseConn, p presence.PropertyID) (<-chan struct{}, error) {
	changed := s.watcher.StatusChanged(p)
	if hs := s.hotStatus(p); hs != nil && hs.snap.ETag != st.etag {
		if err := w.event("status", "", hs.body); err != nil {
			return nil, err
		}
		st.etag = hs.snap.ETag
	}
	return changed, nil
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

// hijackStream takes the connection from fasthttp once the handler returns
// and runs the stream in that one goroutine; the request worker is released.
// Hijacked connections are invisible to fasthttp's shutdown, so the server
// tracks them itself. A stream over the caps of Config.Limits is refused:
// 503 when the instance holds its maximum, 429 when the client's IP does,
// both with Retry-After, so a client falls back to polling.
func (s *Server) hijackStream(c *fiber.Ctx, kind string, cr corsResult, run func(w *sseConn)) error {
	ip, err := s.streamIP(c)
	if err != nil {
		return err
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(conn net.Conn) {
		// fasthttp keeps hijacked connections (for the status hub): close it.
		defer conn.Close()
		if err := s.streamRoom(ip, true); err != nil {
			writeRefusal(conn, err, cr)
			return
		}
		if !s.streamStart() {
			s.streamDone(ip)
			return
		}
		defer s.streams.Done()
		g := metrics.OpenStreams.WithLabelValues(kind)
		g.Inc()
		s.open.Add(1)
		// The slot is free before the stream stops counting as open.
		defer func() { _ = conn.Close(); s.streamDone(ip); g.Dec(); s.open.Add(-1) }()
		w := &sseConn{conn: conn}
		if w.write([]byte(sseHead(cr))) != nil {
			return
		}
		run(w)
	})
	return nil
}

// streamIP is the key of c's client IP in the stream caps. A first check
// of the caps answers most refusals as an ordinary error; the one that
// counts is taken on the hijacked connection.
func (s *Server) streamIP(c *fiber.Ctx) (string, error) {
	ip, err := s.clientIP(c)
	if err != nil {
		return "", err
	}
	ip = limitKey(ip)
	if err := s.streamRoom(ip, false); err != nil {
		return "", err
	}
	return ip, nil
}

// Retry-After of a refused stream, in seconds.
const (
	streamsFullRetry  = 10
	streamsPerIPRetry = 30
)

var (
	errStreamsFull  = &apiError{Status: http.StatusServiceUnavailable, Code: "too_many_streams", Message: "the server holds all the event streams it can, poll the status or try again later", RetryAfter: streamsFullRetry}
	errStreamsPerIP = &apiError{Status: http.StatusTooManyRequests, Code: "too_many_streams", Message: "too many event streams from your address, poll the status or try again later", RetryAfter: streamsPerIPRetry}
)

// streamRoom reports whether ip may open one more stream; with take it
// also counts it (give it back with streamDone).
func (s *Server) streamRoom(ip string, take bool) *apiError {
	lim := s.cfg.Limits
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	switch {
	case lim.Streams > 0 && s.streamsAll >= lim.Streams:
		metrics.Refused.WithLabelValues("streams").Inc()
		return errStreamsFull
	case lim.StreamsPerIP > 0 && s.streamsByIP[ip] >= lim.StreamsPerIP:
		metrics.Refused.WithLabelValues("streams_per_ip").Inc()
		return errStreamsPerIP
	}
	if take {
		if s.streamsByIP == nil {
			s.streamsByIP = make(map[string]int)
		}
		s.streamsAll++
		s.streamsByIP[ip]++
	}
	return nil
}

func (s *Server) streamDone(ip string) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	s.streamsAll--
	if s.streamsByIP[ip]--; s.streamsByIP[ip] <= 0 {
		delete(s.streamsByIP, ip)
	}
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

// streamStart registers a stream unless the server is stopping.
func (s *Server) streamStart() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.streams.Add(1)
	return true
}

// OpenStreams is the number of event streams open now.
func (s *Server) OpenStreams() int64 { return s.open.Load() }

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

func (w *sseConn) comment() error { return w.write([]byte(": keep-alive\n\n")) }
