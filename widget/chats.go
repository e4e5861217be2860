package widget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// Request and response bodies of the visitor API (SPEC §6).
type (
	startChatRequest struct {
		Name    string `json:"name"`
		Email   string `json:"email"`
		Message string `json:"message"`
		visitorContext
		// Consent is the pre-chat form's checkbox (required when the property has a consent text).
		Consent bool `json:"consent"`
	}
	startChatResponse struct {
		ChatID       bridge.ChatID `json:"chat_id"`
		VisitorToken string        `json:"visitor_token"`
	}
	postMessageRequest struct {
		Text string `json:"text"`
	}
	postMessageResponse struct {
		ID string `json:"id"`
		// Attachment is the stored file (POST /v1/chats/{c}/files).
		Attachment *bridge.Attachment `json:"attachment,omitempty"`
	}
	transcriptResponse struct {
		Messages []bridge.Message `json:"messages"`
	}
	offlineRequest struct {
		Name    string `json:"name"`
		Email   string `json:"email"`
		Text    string `json:"text"`
		Consent bool   `json:"consent"`
		visitorContext
	}
	closeResponse struct {
		ChatID bridge.ChatID    `json:"chat_id"`
		State  bridge.ChatState `json:"state"`
	}
)

// Field limits beyond the message text.
const (
	maxNameRunes    = 200
	maxEmailBytes   = 254
	maxPageURLBytes = 2048
	transcriptLimit = 500
)

// visitorAPI is the visitor API of SPEC §6 and §9: the widget status and
// its stream (status.go), chats, messages, files, transcripts and the
// visitor's event stream, offline messages, ratings, transcripts by email
// and the continue page (email.go). Requests are checked against the
// property's allowed origins (cors); those that create something are
// counted against the per-client limits (limits).
type visitorAPI struct {
	props    map[presence.PropertyID]PropertyConfig
	dir      *presence.Directory
	watcher  *presence.Watcher
	chats    Bridge
	statuses *hotStatuses
	cors     *corsPolicies
	limits   *limiter
	streams  *streamer
	log      *slog.Logger
}

// property is the property of the route's {p}, if it is configured.
func property(c *fiber.Ctx, dir *presence.Directory) (presence.PropertyID, error) {
	p := presence.PropertyID(strings.Clone(c.Params("p")))
	if _, ok := dir.Property(p); !ok {
		return "", errUnknownProperty
	}
	return p, nil
}

// propertyPost begins a visitor POST to a property: the property, its CORS
// policy, then the JSON body decoded into in.
func (va *visitorAPI) propertyPost(c *fiber.Ctx, in any) (presence.PropertyID, error) {
	p, err := property(c, va.dir)
	if err != nil {
		return "", err
	}
	if _, err := va.cors.property(c, p); err != nil {
		return "", err
	}
	return p, decodeJSON(c, in)
}

// startChat answers POST /v1/properties/{p}/chats.
func (va *visitorAPI) startChat(c *fiber.Ctx) error {
	var in startChatRequest
	p, err := va.propertyPost(c, &in)
	if err != nil {
		return err
	}
	pre := va.prechat(p)
	if err := firstErr(
		checkPrechat(pre, in.Name, in.Email, in.Consent),
		checkText("message", in.Message),
		checkName(in.Name),
		checkEmail(in.Email, false),
	); err != nil {
		return err
	}
	v := visitorFrom(pre, in.Name, in.Email, in.Consent, "")
	if err := va.applyContext(c, va.props[p], in.visitorContext, &v); err != nil {
		return err
	}
	ip, err := va.limits.clientIP(c)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	if err := va.limits.limit(ctx, limitChats, ip, va.limits.rates.ChatsPerMinute); err != nil {
		return err
	}
	v.IP = ip
	chat, token, err := va.chats.StartChat(ctx, p, v, in.Message)
	if err != nil {
		return fromBridge(err)
	}
	// Counted by the bridge (metrics.ChatsStarted), not here: once per chat.
	return c.Status(http.StatusCreated).JSON(startChatResponse{ChatID: chat.ID, VisitorToken: token})
}

// offlineMessage answers POST /v1/properties/{p}/offline-messages.
func (va *visitorAPI) offlineMessage(c *fiber.Ctx) error {
	var in offlineRequest
	p, err := va.propertyPost(c, &in)
	if err != nil {
		return err
	}
	pre := va.prechat(p)
	if err := firstErr(
		checkPrechat(pre, in.Name, in.Email, in.Consent),
		checkEmail(in.Email, true),
		checkText("text", in.Text),
		checkName(in.Name),
	); err != nil {
		return err
	}
	// The form always asks for an address: it is where the answer goes.
	pre.Email = presence.FieldRequired
	v := visitorFrom(pre, in.Name, in.Email, in.Consent, "")
	if err := va.applyContext(c, va.props[p], in.visitorContext, &v); err != nil {
		return err
	}
	ip, err := va.limits.clientIP(c)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	if err := va.limits.limit(ctx, limitChats, ip, va.limits.rates.ChatsPerMinute); err != nil {
		return err
	}
	v.IP = ip
	chat, token, err := va.chats.LeaveOfflineMessage(ctx, p, v, in.Text)
	if err != nil {
		return fromBridge(err)
	}
	return c.Status(http.StatusCreated).JSON(startChatResponse{ChatID: chat.ID, VisitorToken: token})
}

// postMessage answers POST /v1/chats/{c}/messages.
func (va *visitorAPI) postMessage(c *fiber.Ctx) error {
	chat, _, err := va.authChat(c, false)
	if err != nil {
		return err
	}
	var in postMessageRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if err := checkText("text", in.Text); err != nil {
		return err
	}
	if chat.State == bridge.Closed {
		return errChatClosed
	}
	ip, err := va.limits.clientIP(c)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	if err := va.limits.limit(ctx, limitMessages, ip, va.limits.rates.MessagesPerMinute); err != nil {
		return err
	}
	m, err := va.chats.PostVisitorMessage(ctx, chat.ID, in.Text, nil)
	if err != nil {
		return fromBridge(err)
	}
	return c.Status(http.StatusAccepted).JSON(postMessageResponse{ID: m.ID})
}

// uploadFile answers POST /v1/chats/{c}/files: a multipart form with the file
// (field "file", up to MaxUploadBytes) and an optional caption ("text"). The
// file is stored, then sent to the agents as the visitor's message.
//
// Everything that can refuse the upload (the token, the chat's state, the
// rate limit and the upload quotas) is checked before the body is read; the
// body is then read from the connection, bounded, as it arrives.
func (va *visitorAPI) uploadFile(c *fiber.Ctx) error {
	chat, _, err := va.authChat(c, false)
	if err != nil {
		return err
	}
	if chat.State == bridge.Closed {
		return errChatClosed
	}
	errForm := newErr(http.StatusBadRequest, "missing_file", "send a multipart form with the file in the field \"file\"")
	mt, params, err := mime.ParseMediaType(string(c.Request().Header.ContentType()))
	if err != nil || mt != fiber.MIMEMultipartForm || params["boundary"] == "" {
		return errForm
	}
	ip, err := va.limits.clientIP(c)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	if err := va.limits.limit(ctx, limitMessages, ip, va.limits.rates.MessagesPerMinute); err != nil {
		return err
	}
	if err := va.limits.uploadQuota(ctx, chat, ip); err != nil {
		return err
	}
	var body io.Reader = bytes.NewReader(c.Request().Body())
	if rs := c.Context().RequestBodyStream(); rs != nil {
		body = rs
	}
	up, err := readUpload(io.LimitReader(body, uploadBodyBytes+1), params["boundary"])
	if err != nil {
		return err
	}
	if up.name == "" && up.data == nil {
		return errForm
	}
	if len(up.data) == 0 {
		return newErr(http.StatusBadRequest, "empty_file", "the file is empty")
	}
	if up.text != "" {
		if err := checkText("text", up.text); err != nil {
			return err
		}
	}
	att, err := va.chats.PutFile(ctx, chat.ID, up.name, uploadMIME(up.mime, up.data), up.data)
	if err != nil {
		return fromBridge(err)
	}
	m, err := va.chats.PostVisitorMessage(ctx, chat.ID, up.text, &att)
	if err != nil {
		return fromBridge(err)
	}
	return c.Status(http.StatusAccepted).JSON(postMessageResponse{ID: m.ID, Attachment: &att})
}

// upload is what readUpload found in a multipart form.
type upload struct {
	name, mime, text string
	data             []byte // nil: no file part
}

// readUpload reads the form's "file" (up to MaxUploadBytes) and "text" (up
// to MaxBodyBytes) parts and skips any other part.
func readUpload(r io.Reader, boundary string) (upload, error) {
	var up upload
	errFile := newErr(http.StatusBadRequest, "missing_file", "the file could not be read")
	errBig := newErr(http.StatusRequestEntityTooLarge, "file_too_large", fmt.Sprintf("files are limited to %d MiB", MaxUploadBytes>>20))
	mr := multipart.NewReader(r, boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return up, nil
		}
		if err != nil {
			return up, errFile
		}
		switch p.FormName() {
		case "file":
			if up.data != nil {
				return up, newErr(http.StatusBadRequest, "missing_file", "send one file per request")
			}
			data, err := io.ReadAll(io.LimitReader(p, MaxUploadBytes+1))
			switch {
			case len(data) > MaxUploadBytes:
				return up, errBig
			case err != nil:
				return up, errFile
			}
			up.name, up.mime, up.data = strings.Clone(p.FileName()), p.Header.Get(fiber.HeaderContentType), data
		case "text":
			data, err := io.ReadAll(io.LimitReader(p, MaxBodyBytes+1))
			switch {
			case len(data) > MaxBodyBytes:
				return up, errTooLong("text")
			case err != nil:
				return up, errFile
			}
			up.text = string(data)
		default:
			if _, err := io.Copy(io.Discard, io.LimitReader(p, MaxBodyBytes+1)); err != nil {
				return up, errFile
			}
		}
	}
}

// uploadMIME is the media type the browser gave a file part, if it is a
// well-formed one, else what the content looks like.
func uploadMIME(given string, data []byte) string {
	if mt, _, err := mime.ParseMediaType(given); err == nil && strings.Contains(mt, "/") && mt != "application/octet-stream" {
		return mt
	}
	return http.DetectContentType(data)
}

// transcript answers GET /v1/chats/{c}/messages?after=ID.
func (va *visitorAPI) transcript(c *fiber.Ctx) error {
	chat, _, err := va.authChat(c, true)
	if err != nil {
		return err
	}
	after := strings.Clone(c.Query("after"))
	if after != "" {
		if _, ok := parseMessageID(after); !ok {
			return errInvalidAfter
		}
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	msgs, err := va.chats.Transcript(ctx, chat.ID, after, transcriptLimit)
	if err != nil {
		return fromBridge(err)
	}
	out := make([]bridge.Message, 0, len(msgs))
	for _, m := range msgs {
		if vm, ok := m.ForVisitor(); ok {
			out = append(out, vm)
		}
	}
	if len(msgs) > 0 {
		// Read in the widget: no email repeats it.
		va.markRead(ctx, chat, msgs[len(msgs)-1].ID)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(transcriptResponse{Messages: out})
}

// closeChat answers POST /v1/chats/{c}/close. Closing a closed chat is fine.
func (va *visitorAPI) closeChat(c *fiber.Ctx) error {
	chat, _, err := va.authChat(c, false)
	if err != nil {
		return err
	}
	if chat.State != bridge.Closed {
		ctx, cancel := opCtx(c)
		defer cancel()
		if err := va.chats.CloseByVisitor(ctx, chat.ID); err != nil && !isClosed(err) {
			return fromBridge(err)
		}
	}
	return c.JSON(closeResponse{ChatID: chat.ID, State: bridge.Closed})
}

func isClosed(err error) bool { return fromBridge(err) == errChatClosed }

// file answers GET /v1/chats/{c}/files/{key}: an attachment of the chat.
func (va *visitorAPI) file(c *fiber.Ctx) error {
	chat, _, err := va.authChat(c, true)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	att, data, err := va.chats.File(ctx, chat.ID, strings.Clone(c.Params("key")))
	if err != nil {
		if e := fromBridge(err); e != err {
			return e
		}
		return newErr(http.StatusNotFound, "unknown_file", "no such file")
	}
	c.Set(fiber.HeaderContentType, att.MIME)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+strings.ReplaceAll(sanitizeHeader(att.Name), `"`, "")+`"`)
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	c.Set(fiber.HeaderCacheControl, "private, no-store")
	return c.Send(data)
}

// visitorEvents answers GET /v1/chats/{c}/events: the visitor's event stream.
func (va *visitorAPI) visitorEvents(c *fiber.Ctx) error {
	chat, cr, err := va.authChat(c, true)
	if err != nil {
		return err
	}
	last := strings.Clone(c.Get("Last-Event-ID"))
	if last == "" {
		last = strings.Clone(c.Query("last_event_id"))
	}
	if _, ok := parseMessageID(last); !ok && last != "" {
		return newErr(http.StatusBadRequest, "invalid_last_event_id", "Last-Event-ID must be a message id")
	}
	tok := visitorToken(c, true)
	return va.streams.run(c, "visitor", cr, func(w *sseConn) {
		va.followChat(w, chat, tok, last)
	})
}

// followChat streams a chat's events: first what the client missed after
// last (when given), then live events, with the property's status now and at
// every change.
func (va *visitorAPI) followChat(w *sseConn, chat bridge.Chat, token, last string) {
	events, cancel := va.chats.SubscribeVisitor(chat.ID)
	defer cancel()
	// The chat was read before the client had its answer; what happened
	// between then and this subscription (an agent joining, a close) is in
	// a fresh read, and everything after it comes as an event.
	ctx, cancelRead := context.WithTimeout(va.streams.ctx, 10*time.Second)
	fresh, err := va.chats.AuthVisitor(ctx, chat.ID, token)
	cancelRead()
	if err != nil {
		va.log.Warn("visitor stream: reload chat", "chat_id", chat.ID, "err", err)
		return // the client reconnects
	}
	chat = fresh
	if chat.State == bridge.Closed {
		_ = w.event(string(bridge.EventChatClosed), "", mustJSON(bridge.VisitorEvent{Type: bridge.EventChatClosed, Chat: chat.ID, Reason: chat.ClosedBy}))
		return
	}
	// Subscribed first, then the replay: nothing falls between; live
	// messages already replayed are skipped by id. The replay reads pages
	// until one comes back short, so a long gap is replayed whole.
	for after := last; after != ""; {
		ctx, cancelT := context.WithTimeout(va.streams.ctx, 10*time.Second)
		msgs, err := va.chats.Transcript(ctx, chat.ID, after, transcriptLimit)
		cancelT()
		if err != nil {
			va.log.Warn("visitor stream: replay", "chat_id", chat.ID, "err", err)
			return // the client reconnects and asks again
		}
		for _, m := range msgs {
			after = m.ID
			vm, ok := m.ForVisitor()
			if !ok {
				continue
			}
			if w.event(string(bridge.EventMessage), m.ID, mustJSON(bridge.VisitorEvent{Type: bridge.EventMessage, Chat: chat.ID, Message: &vm})) != nil {
				return
			}
			last = m.ID
			va.streamRead(chat, m)
		}
		if len(msgs) < transcriptLimit {
			break
		}
	}
	if chat.Owner != "" {
		name := va.dir.AgentName(chat.Owner)
		if w.event(string(bridge.EventAgentJoined), "", mustJSON(bridge.VisitorEvent{Type: bridge.EventAgentJoined, Chat: chat.ID, Agent: name})) != nil {
			return
		}
	}

	hb := time.NewTicker(va.streams.heartbeat)
	defer hb.Stop()
	var st statusSent
	for {
		changed, err := st.send(va, w, chat.Property)
		if err != nil {
			return
		}
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Type {
			case bridge.EventMessage:
				if ev.Message == nil || (last != "" && !messageAfter(ev.Message.ID, last)) {
					continue
				}
				vm, ok := ev.Message.ForVisitor()
				if !ok {
					continue
				}
				ev.Message = &vm
				if w.event(string(ev.Type), ev.Message.ID, mustJSON(ev)) != nil {
					return
				}
				last = ev.Message.ID
				va.streamRead(chat, *ev.Message)
			case bridge.EventChatClosed:
				_ = w.event(string(ev.Type), "", mustJSON(ev))
				return
			default:
				if w.event(string(ev.Type), "", mustJSON(ev)) != nil {
					return
				}
			}
		case <-changed:
		case <-hb.C:
			if w.comment() != nil {
				return
			}
		case <-va.streams.stopped():
			return
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("{}")
	}
	return b
}

// authChat checks the chat id and the visitor's token, and applies the
// chat's property's CORS policy. queryToken allows ?token= (EventSource
// cannot send headers).
func (va *visitorAPI) authChat(c *fiber.Ctx, queryToken bool) (bridge.Chat, corsResult, error) {
	fail := func(err error) (bridge.Chat, corsResult, error) {
		// Let an allowed page read why it failed.
		va.cors.anyOrigin.check(c).apply(c)
		return bridge.Chat{}, corsResult{}, err
	}
	id := bridge.ChatID(strings.Clone(c.Params("c")))
	if !id.IsValid() {
		return fail(errUnknownChat)
	}
	tok := visitorToken(c, queryToken)
	if tok == "" {
		return fail(errMissingToken)
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	chat, err := va.chats.AuthVisitor(ctx, id, tok)
	if err != nil {
		return fail(fromBridge(err))
	}
	r := va.cors.chat(chat.Property).check(c)
	r.apply(c)
	if !r.ok && c.Method() != fiber.MethodGet {
		return bridge.Chat{}, r, errOrigin
	}
	return chat, r, nil
}

// visitorToken is the bearer token, or with queryToken ?token=.
func visitorToken(c *fiber.Ctx, queryToken bool) string {
	tok := bearer(c)
	if tok == "" && queryToken {
		tok = strings.Clone(c.Query("token"))
	}
	return tok
}

func bearer(c *fiber.Ctx) string {
	h := c.Get(fiber.HeaderAuthorization)
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.Clone(strings.TrimSpace(h[7:]))
	}
	return ""
}

// errInvalidAfter refuses an after= that is not a message id.
var errInvalidAfter = newErr(http.StatusBadRequest, "invalid_after", "after must be a message id")

// parseMessageID parses a message id ("1700000000000-0") a client may
// continue after: the largest possible id is refused, since nothing can
// come after it (Redis refuses it as the exclusive start of a range).
func parseMessageID(s string) (bridge.StreamID, bool) {
	id, ok := bridge.ParseStreamID(s, false)
	if !ok || id == (bridge.StreamID{MS: math.MaxUint64, Seq: math.MaxUint64}) {
		return bridge.StreamID{}, false
	}
	return id, true
}

// messageAfter reports whether id a comes after id b; unparsable ids count as new.
func messageAfter(a, b string) bool {
	x, ok1 := parseMessageID(a)
	y, ok2 := parseMessageID(b)
	if !ok1 || !ok2 {
		return true
	}
	return y.Less(x)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkText applies the bridge's rule for a message text (bridge.CheckText)
// and says in the API's terms what is wrong with the field.
func checkText(field, s string) error {
	switch err := bridge.CheckText(s); {
	case err == nil:
		return nil
	case errors.Is(err, bridge.ErrTextMissing):
		return newErr(http.StatusBadRequest, "missing_field", field+" is required")
	case errors.Is(err, bridge.ErrTextNotUTF8):
		return newErr(http.StatusBadRequest, "invalid_utf8", field+" is not valid UTF-8")
	case errors.Is(err, bridge.ErrTextBlank):
		return newErr(http.StatusBadRequest, "invalid_text", field+" is blank")
	case errors.Is(err, bridge.ErrTextTooLong):
		return errTooLong(field)
	}
	return errInvalidText
}

// errTooLong refuses a text field over bridge.MaxTextRunes characters.
func errTooLong(field string) error {
	return newErr(http.StatusBadRequest, "text_too_long", fmt.Sprintf("%s is over %d characters", field, bridge.MaxTextRunes))
}

func checkEmail(s string, required bool) error {
	bad := newErr(http.StatusBadRequest, "invalid_email", "email is not an email address")
	if hasControl(s) { // CR or LF could inject headers into an email
		return bad
	}
	s = strings.TrimSpace(s)
	if s == "" {
		if required {
			return newErr(http.StatusBadRequest, "missing_field", "email is required")
		}
		return nil
	}
	at := strings.LastIndexByte(s, '@')
	if len(s) > maxEmailBytes || at < 1 || !strings.Contains(s[at+1:], ".") {
		return bad
	}
	if a, err := mail.ParseAddress(s); err != nil || a.Address != s {
		return bad
	}
	return nil
}

// checkVisitorID checks the optional visitor_id the widget sends.
func checkVisitorID(s string) error {
	if s == "" || bridge.ValidVisitorID(s) {
		return nil
	}
	return newErr(http.StatusBadRequest, "invalid_visitor_id", "visitor_id must be 16 to 64 of A-Z a-z 0-9 _ -")
}
