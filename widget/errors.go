package widget

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
)

// apiError is an error with its HTTP status and the body of SPEC §6.
type apiError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, in seconds, is sent as a Retry-After header when positive.
	RetryAfter int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func newErr(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// Errors shared by several handlers.
var (
	errTooLarge        = newErr(http.StatusRequestEntityTooLarge, "too_large", "request body is over 16 KiB")
	errUnavailable     = newErr(http.StatusServiceUnavailable, "unavailable", "storage is unavailable, try again shortly")
	errUnknownProperty = newErr(http.StatusNotFound, "unknown_property", "no such property")
	errUnknownChat     = newErr(http.StatusNotFound, "unknown_chat", "no such chat")
	errUnknownAgent    = newErr(http.StatusNotFound, "unknown_agent", "no such agent")
	errMissingToken    = newErr(http.StatusUnauthorized, "missing_token", "a bearer token is required")
	errBadToken        = newErr(http.StatusForbidden, "forbidden", "the token does not grant access")
	errOrigin          = newErr(http.StatusForbidden, "origin_not_allowed", "this origin may not use the property")
	errChatClosed      = newErr(http.StatusConflict, "chat_closed", "the chat is closed")
	errInvalidText     = newErr(http.StatusBadRequest, "invalid_text", fmt.Sprintf("text must be 1..%d characters of valid UTF-8", bridge.MaxTextRunes))
	errNotFound        = newErr(http.StatusNotFound, "not_found", "no such endpoint")
	errInternal        = newErr(http.StatusInternalServerError, "internal", "internal error")
	errBlocked         = newErr(http.StatusForbidden, "blocked", "the support team has blocked this visitor")
)

// fromBridge maps a bridge error to the API's error.
func fromBridge(err error) error {
	switch {
	case errors.Is(err, bridge.ErrUnknownChat):
		return errUnknownChat
	case errors.Is(err, bridge.ErrUnknownProperty):
		return errUnknownProperty
	case errors.Is(err, bridge.ErrBadToken):
		return errBadToken
	case errors.Is(err, bridge.ErrChatClosed):
		return errChatClosed
	case errors.Is(err, bridge.ErrInvalidText):
		return errInvalidText
	case errors.Is(err, bridge.ErrBlocked):
		return errBlocked
	case errors.Is(err, bridge.ErrUnavailable):
		return errUnavailable
	case errors.Is(err, bridge.ErrNoEmail):
		return errNoEmail
	case errors.Is(err, bridge.ErrEmailOff):
		return errEmailOff
	case errors.Is(err, bridge.ErrChatOpen):
		return errChatOpen
	case errors.Is(err, bridge.ErrInvalidRating):
		return errBadRating
	}
	return err // logged and answered as 500 by writeError
}

// writeError answers with the JSON error body. Errors that are not apiErrors
// are logged and never shown.
func (s *Server) writeError(c *fiber.Ctx, err error) {
	var ae *apiError
	var fe *fiber.Error
	switch {
	case errors.As(err, &ae):
		if ae.Status >= 500 {
			s.log.Warn("request failed", "method", c.Method(), "route", c.Route().Path, "status", ae.Status, "code", ae.Code)
		}
	case errors.As(err, &fe):
		// Fiber's own: routing, body limit, or the connection failing.
		ae = fromFiber(fe)
	default:
		s.log.Error("request failed", "method", c.Method(), "route", c.Route().Path, "err", err)
		ae = errInternal
	}
	// Drop whatever a failed handler may have started (except CORS headers).
	c.Response().ResetBody()
	c.Response().Header.Del(fiber.HeaderETag)
	if ae.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(ae.RetryAfter))
	}
	c.Status(ae.Status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-store")
	body, _ := json.Marshal(map[string]map[string]string{"error": {"code": ae.Code, "message": ae.Message}})
	_ = c.Send(body)
}

// fromFiber maps Fiber's own errors (routing, body limit, parse errors) to
// API errors with fixed wording, so no internal text leaks.
func fromFiber(fe *fiber.Error) *apiError {
	switch fe.Code {
	case http.StatusNotFound:
		return errNotFound
	case http.StatusRequestEntityTooLarge:
		return errTooLarge
	case http.StatusRequestHeaderFieldsTooLarge:
		return newErr(fe.Code, "request_too_long", "the URL or headers are too long")
	}
	code := strings.ToLower(strings.ReplaceAll(http.StatusText(fe.Code), " ", "_"))
	if code == "" {
		code = "error"
	}
	msg := http.StatusText(fe.Code)
	if msg == "" {
		msg = "error"
	}
	return newErr(fe.Code, code, strings.ToLower(msg[:1])+msg[1:])
}

// errorHandler is Fiber's ErrorHandler: it sees what no route handled
// (unknown paths, bodies over the server-wide limit, malformed requests,
// and connections that failed while a request was read).
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	s.writeError(c, err)
	route := "unmatched"
	var fe *fiber.Error
	if errors.As(err, &fe) && (fe.Code == http.StatusBadGateway || fe.Code == http.StatusRequestTimeout) {
		// fasthttp reports a client's connection failing mid-request this
		// way; it is not a server error, so it is not counted as one.
		return nil
	}
	if fe == nil || (fe.Code != http.StatusNotFound && fe.Code != http.StatusMethodNotAllowed) {
		route = "server"
	}
	metrics.HTTPRequests.WithLabelValues(route, strconv.Itoa(c.Response().StatusCode())).Inc()
	return nil
}

// decodeJSON reads a JSON object from the request body into v.
func decodeJSON(c *fiber.Ctx, v any) error {
	body := c.BodyRaw()
	if len(bytes.TrimSpace(body)) == 0 {
		return newErr(http.StatusBadRequest, "malformed_json", "the body must be a JSON object")
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(body) {
		return newErr(http.StatusBadRequest, "invalid_utf8", "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return newErr(http.StatusBadRequest, "invalid_field", te.Field+" has the wrong type")
		}
		return newErr(http.StatusBadRequest, "malformed_json", "the body must be a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return newErr(http.StatusBadRequest, "malformed_json", "the body must be one JSON object")
	}
	return nil
}
