package widget

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// The visitor API of SPEC §9: pre-chat form rules, transcripts by email,
// ratings, read marks and the continue page.

type (
	rateRequest struct {
		Score   *int   `json:"score"`
		Comment string `json:"comment"`
	}
	transcriptEmailResponse struct {
		ChatID bridge.ChatID `json:"chat_id"`
		Status string        `json:"status"`
	}
)

var (
	errNoEmail    = newErr(http.StatusConflict, "no_email", "the chat has no email address")
	errEmailOff   = newErr(http.StatusConflict, "email_disabled", "this server sends no email")
	errChatOpen   = newErr(http.StatusConflict, "chat_open", "a chat can be rated once it is closed")
	errBadRating  = newErr(http.StatusBadRequest, "invalid_score", "score must be a whole number from 1 to 5, comment at most 1000 characters")
	errBadNameFld = newErr(http.StatusBadRequest, "invalid_name", "name must be one line of at most 200 characters")
)

// prechat is the property's pre-chat form.
func (va *visitorAPI) prechat(p presence.PropertyID) presence.Prechat {
	prop, _ := va.dir.Property(p)
	return prop.Prechat.WithDefaults()
}

// checkPrechat refuses a form without a field the property requires,
// naming the field.
func checkPrechat(pre presence.Prechat, name, email string, consent bool) error {
	missing := func(field string) error {
		return newErr(http.StatusBadRequest, "missing_field", field+" is required")
	}
	switch {
	case pre.Name == presence.FieldRequired && strings.TrimSpace(name) == "":
		return missing("name")
	case pre.Email == presence.FieldRequired && strings.TrimSpace(email) == "":
		return missing("email")
	case pre.Consent != "" && !consent:
		return missing("consent")
	}
	return nil
}

// checkName refuses names that are too long or hold control characters: a
// name may end up in an email header, where CR or LF would inject headers.
func checkName(s string) error {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxNameRunes || hasControl(s) {
		return errBadNameFld
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// visitorFrom is what the visitor told us, without the fields the form hides.
func visitorFrom(pre presence.Prechat, name, email string, consent bool, ip string) bridge.Visitor {
	v := bridge.Visitor{Name: strings.TrimSpace(name), Email: strings.TrimSpace(email), IP: ip, Consent: consent && pre.Consent != ""}
	if pre.Name == presence.FieldHidden {
		v.Name = ""
	}
	if pre.Email == presence.FieldHidden {
		v.Email = ""
	}
	return v
}

// markRead tells the bridge the visitor has seen the chat up to msgID. Only
// chats with an email address need it; a failure costs at most an email.
func (va *visitorAPI) markRead(ctx context.Context, chat bridge.Chat, msgID string) {
	if chat.Visitor.Email == "" {
		return
	}
	if err := va.chats.MarkRead(ctx, chat.ID, msgID); err != nil {
		va.log.Warn("mark read", "chat_id", chat.ID, "err", err)
	}
}

// streamRead marks an agent's message read once it went out on the
// visitor's open event stream.
func (va *visitorAPI) streamRead(chat bridge.Chat, m bridge.Message) {
	if m.From != bridge.FromAgent || chat.Visitor.Email == "" {
		return
	}
	ctx, cancel := context.WithTimeout(va.streams.ctx, 5*time.Second)
	defer cancel()
	va.markRead(ctx, chat, m.ID)
}

// emailTranscript answers POST /v1/chats/{c}/transcript: the transcript is
// emailed to the chat's address (202), through the outbox.
func (va *visitorAPI) emailTranscript(c *fiber.Ctx) error {
	chat, _, err := va.authChat(c, false)
	if err != nil {
		return err
	}
	if chat.Visitor.Email == "" {
		return errNoEmail
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	ip, err := va.limits.clientIP(c)
	if err != nil {
		return err
	}
	if err := va.limits.limit(ctx, limitMessages, ip, va.limits.rates.MessagesPerMinute); err != nil {
		return err
	}
	if err := va.chats.EmailTranscript(ctx, chat.ID); err != nil {
		return fromBridge(err)
	}
	return c.Status(http.StatusAccepted).JSON(transcriptEmailResponse{ChatID: chat.ID, Status: "queued"})
}

// rate answers POST /v1/chats/{c}/rating {"score": 1..5, "comment"}.
func (va *visitorAPI) rate(c *fiber.Ctx) error {
	chat, _, err := va.authChat(c, false)
	if err != nil {
		return err
	}
	var in rateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Score == nil || *in.Score < bridge.MinScore || *in.Score > bridge.MaxScore ||
		!utf8.ValidString(in.Comment) || utf8.RuneCountInString(in.Comment) > bridge.MaxRatingCommentRunes {
		return errBadRating
	}
	if chat.State != bridge.Closed {
		return errChatOpen
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	rt, err := va.chats.Rate(ctx, chat.ID, *in.Score, in.Comment)
	if err != nil {
		return fromBridge(err)
	}
	return c.JSON(rt)
}

// continuePage answers GET /c/{chat}: a page that opens the chat in the
// widget. The visitor token is in the link's fragment, which browsers keep
// to themselves: it never reaches this server or its logs.
func (va *visitorAPI) continuePage(c *fiber.Ctx) error {
	id := bridge.ChatID(strings.Clone(c.Params("c")))
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	if !id.IsValid() {
		c.Status(http.StatusNotFound)
		return c.Send(notFoundPage)
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	p, err := va.chats.PropertyOf(ctx, id)
	if errors.Is(err, bridge.ErrUnknownChat) {
		c.Status(http.StatusNotFound)
		return c.Send(notFoundPage)
	}
	if err != nil {
		return fromBridge(err)
	}
	name := va.dir.PropertyName(p)
	var b strings.Builder
	if err := continueTmpl.Execute(&b, struct {
		Name     string
		Property presence.PropertyID
		Chat     bridge.ChatID
	}{name, p, id}); err != nil {
		return err
	}
	return c.SendString(b.String())
}

var continueTmpl = template.Must(template.New("continue").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Name}}: your conversation</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:40rem;padding:0 1rem;color:#222}</style>
</head>
<body>
<h1>{{.Name}}</h1>
<p id="onduty-continue">Your conversation opens in the chat window. If it does not, check that this is the whole link from your email.</p>
<script src="/widget.js" data-property="{{.Property}}" data-chat="{{.Chat}}" data-open="true" async></script>
</body>
</html>
`))

var notFoundPage = []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conversation not found</title></head>
<body><p>This conversation no longer exists.</p></body></html>
`)
