package widget

import (
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Every route goes through handle: bodies bounded before they are read,
// errors answered as the API's JSON, panics recovered, responses counted.

// Limits of the HTTP API (SPEC §6).
const (
	// MaxBodyBytes caps the body of every /v1 request.
	MaxBodyBytes = 16 << 10
	// MaxUploadBytes caps a file a visitor sends (POST /v1/chats/{c}/files).
	MaxUploadBytes = 5 << 20
	// uploadBodyBytes caps the whole multipart body of an upload: the file,
	// a caption and the form's framing.
	uploadBodyBytes = MaxUploadBytes + 64<<10
	// callbackBodyBytes caps a platform callback (Telegram webhook, Slack
	// events): a Telegram update with a 4096-character message of emoji is
	// over 16 KiB.
	callbackBodyBytes = 1 << 20
	// headerBytes bounds the request line and headers together (fasthttp's
	// read buffer). Longer requests get a 431; one much longer may see its
	// connection closed before the client has finished sending it.
	headerBytes = 8 << 10
)

// refusedLength marks (on the request header) a request whose announced
// body is over its route's limit. headerReceived sets it and empties the
// Content-Length, so fasthttp reads none of the body; handle refuses the
// request with 413 and closes the connection. A client cannot set it
// itself: it is deleted from every request first.
const refusedLength = "X-Onduty-Refused-Length"

// headerReceived runs when a request's header has been read, before any of
// its body: with streamed bodies fasthttp would otherwise wait for the
// first 8 KiB of a body it is going to refuse.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	h.Del(refusedLength)
	if cl := h.ContentLength(); cl > 0 && cl > s.bodyLimit(h.Method(), h.RequestURI()) {
		h.Set(refusedLength, strconv.Itoa(cl))
		h.SetContentLength(0)
	}
	return fasthttp.RequestConfig{}
}

// bodyLimit is the body limit of the route of method and uri: the upload
// and the platform callbacks have their own; every other route has
// MaxBodyBytes. Paths are compared as registered, so a differently spelled
// path gets the smaller limit.
func (s *Server) bodyLimit(method, uri []byte) int {
	path := string(uri)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if string(method) == fiber.MethodPost {
		if rest, ok := strings.CutPrefix(path, "/v1/chats/"); ok {
			if id, ok := strings.CutSuffix(rest, "/files"); ok && !strings.Contains(id, "/") {
				return uploadBodyBytes
			}
		}
	}
	for _, m := range s.mounts {
		if path == m || strings.HasPrefix(path, m+"/") {
			return callbackBodyBytes
		}
	}
	return MaxBodyBytes
}

// routeOpts are per-route behaviours of handle.
type routeOpts struct {
	// maxBody replaces MaxBodyBytes as the route's body limit when not zero.
	maxBody int
	// streamBody leaves the body unread for the handler, which reads it from
	// c.Context().RequestBodyStream() (bounded by maxBody); handle only
	// refuses a Content-Length over maxBody.
	streamBody bool
}

// handle registers a route whose handler's errors become the JSON error body
// and whose responses are counted in metrics.HTTPRequests by route pattern.
// The body is bounded before it is read: a Content-Length over the route's
// limit is refused at once, and a body without one is read up to the limit.
func (s *Server) handle(method, path string, o routeOpts, h fiber.Handler) {
	rm := &routeMetrics{route: path}
	limit := MaxBodyBytes
	if o.maxBody > 0 {
		limit = o.maxBody
	}
	s.app.Add(method, path, func(c *fiber.Ctx) error {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panicked", "method", c.Method(), "route", path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				s.writeError(c, errInternal)
				rm.inc(c.Response().StatusCode())
			}
		}()
		var err error
		switch {
		case c.Request().Header.Peek(refusedLength) != nil || c.Request().Header.ContentLength() > limit:
			c.Context().SetConnectionClose()
			err = tooLarge(limit)
		case o.streamBody:
			err = h(c)
		default:
			if err = readBody(c, limit); err == nil {
				err = h(c)
			}
		}
		if err != nil {
			s.writeError(c, err)
		}
		if c.Context().RequestBodyStream() != nil {
			// Part of the body may be unread (refused, or a handler that
			// stopped early): the connection cannot carry another request.
			c.Context().SetConnectionClose()
		}
		rm.inc(c.Response().StatusCode())
		return nil
	})
}

// readBody reads the request body, up to limit bytes, from the stream
// fasthttp left and makes it the request's body.
func readBody(c *fiber.Ctx, limit int) error {
	rs := c.Context().RequestBodyStream()
	if rs == nil {
		if len(c.Request().Body()) > limit {
			return tooLarge(limit)
		}
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(rs, int64(limit)+1))
	switch {
	case len(data) > limit:
		return tooLarge(limit)
	case err != nil:
		return newErr(http.StatusBadRequest, "bad_body", "the request body could not be read")
	}
	c.Request().SetBodyRaw(data)
	return nil
}

// tooLarge is the 413 of a body over limit.
func tooLarge(limit int) error {
	if limit == MaxBodyBytes {
		return errTooLarge
	}
	return newErr(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is over %d KiB", limit>>10))
}
