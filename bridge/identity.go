package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/presence"
)

// Identity is who the site says a logged-in visitor is (SPEC §10):
// window.onduty.identify({user_id, email, name, attrs, signature}).
type Identity struct {
	UserID string            `json:"user_id,omitempty"`
	Email  string            `json:"email,omitempty"`
	Name   string            `json:"name,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	// Signature is the hex HMAC-SHA256 of UserID under the property's
	// identity_secret. It is checked, then dropped: never stored.
	Signature string `json:"signature,omitempty"`
	// Verified is set by VerifyIdentity, never taken from the visitor.
	Verified bool `json:"verified"`
}

// Limits on an identity.
const (
	MaxIdentityField = 200 // runes of user_id, email, name
	MaxAttrs         = 20
	MaxAttrKey       = 64  // bytes
	MaxAttrValue     = 500 // runes
)

// Identity errors: the widget answers 400 with their code.
var (
	// ErrBadSignature: the identity's signature is not that of its user_id
	// under the property's identity_secret.
	ErrBadSignature = errors.New("bridge: identity signature does not match user_id")
	// ErrBadIdentity: a field is too long, not UTF-8, or the attrs too many.
	ErrBadIdentity = errors.New("bridge: identity is malformed")
)

// SignIdentity is the signature a site computes for userID under secret:
// hex HMAC-SHA256.
func SignIdentity(secret, userID string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(userID))
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyIdentity checks an identity for a property with the given secret
// and returns it ready to store: Verified set, Signature dropped. With no
// secret the identity is kept unverified; with one, a signature that does
// not match (compared in constant time) is ErrBadSignature, and an
// identity without signature is kept unverified. A malformed identity is
// ErrBadIdentity (wrapped with the field).
func VerifyIdentity(secret string, id Identity) (Identity, error) {
	for _, f := range []struct{ name, v string }{{"user_id", id.UserID}, {"email", id.Email}, {"name", id.Name}} {
		if !utf8.ValidString(f.v) || utf8.RuneCountInString(f.v) > MaxIdentityField || hasCRLF(f.v) {
			return Identity{}, fmt.Errorf("%w: %s is not valid UTF-8 of at most %d characters on one line", ErrBadIdentity, f.name, MaxIdentityField)
		}
	}
	if len(id.Attrs) > MaxAttrs {
		return Identity{}, fmt.Errorf("%w: at most %d attrs", ErrBadIdentity, MaxAttrs)
	}
	for k, v := range id.Attrs {
		if k == "" || len(k) > MaxAttrKey || !utf8.ValidString(k) || !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxAttrValue {
			return Identity{}, fmt.Errorf("%w: attrs keys are 1..%d bytes, values at most %d characters of UTF-8", ErrBadIdentity, MaxAttrKey, MaxAttrValue)
		}
	}
	sig := strings.ToLower(strings.TrimSpace(id.Signature))
	id.Signature, id.Verified = "", false
	if secret == "" || sig == "" {
		return id, nil
	}
	want := SignIdentity(secret, id.UserID)
	if id.UserID == "" || !hmac.Equal([]byte(sig), []byte(want)) {
		return Identity{}, ErrBadSignature
	}
	id.Verified = true
	return id, nil
}

func hasCRLF(s string) bool { return strings.ContainsAny(s, "\r\n") }

// ContextLine is one labelled line of visitor context for agents.
type ContextLine struct {
	Label string
	Value string // plain text on one line; the adapter escapes it
}

// maxContextValue caps one line's value (runes): an offer must stay within
// the platforms' message limits whatever the visitor sent.
const maxContextValue = 300

// VisitorContext lists what agents are shown about a visitor with a new
// chat or offline message (SPEC §10), in a fixed order, each value on one
// line and cut to a bounded length. Name and email are not in it: every
// surface shows them in its heading. Labels are the bridge's own words,
// except the attrs' keys, which always start with "attrs.", so no value
// can pass for the verified-user line.
func VisitorContext(v Visitor) []ContextLine {
	var out []ContextLine
	add := func(label, value string) {
		value = OneLine(value)
		if value == "" {
			return
		}
		if utf8.RuneCountInString(value) > maxContextValue {
			value = string([]rune(value)[:maxContextValue-1]) + "…"
		}
		out = append(out, ContextLine{Label: label, Value: value})
	}
	if id := v.Identity; id != nil {
		who := id.UserID
		if who == "" {
			who = "(no user id)"
		}
		// The verdict is in the label: the value is the site's text.
		if id.Verified {
			add("Verified user", who)
		} else {
			add("Unverified user", who)
		}
	}
	add("Page", v.PageURL)
	add("Referrer", v.Referrer)
	browser := v.Browser
	if v.OS != "" {
		if browser != "" {
			browser += " on " + v.OS
		} else {
			browser = v.OS
		}
	}
	add("Browser", browser)
	add("Language", v.Language)
	add("Time zone", v.TimeZone)
	switch {
	case v.Returning == 1:
		add("Returning", "yes, 1 chat before")
	case v.Returning > 1:
		add("Returning", "yes, "+strconv.Itoa(v.Returning)+" chats before")
	}
	if id := v.Identity; id != nil && len(id.Attrs) > 0 {
		keys := make([]string, 0, len(id.Attrs))
		for k := range id.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			add("attrs."+OneLine(k), id.Attrs[k])
		}
	}
	return out
}

// seenTTL is how long a visitor's chat count is kept after their last chat.
const seenTTL = 365 * 24 * time.Hour

// visitorMarks are the hashed identifiers a visitor is recognised by on
// their next chat: the widget's visitor id, the verified user id, the email.
func visitorMarks(v Visitor) []string {
	var out []string
	if v.ID != "" {
		out = append(out, "v|"+v.ID)
	}
	if v.Identity != nil && v.Identity.Verified && v.Identity.UserID != "" {
		out = append(out, "u|"+v.Identity.UserID)
	}
	if v.Email != "" {
		out = append(out, "e|"+strings.ToLower(strings.TrimSpace(v.Email)))
	}
	return out
}

func markHash(m string) string {
	h := sha256.Sum256([]byte(m))
	return hex.EncodeToString(h[:12])
}

// countVisit counts this chat against each of the visitor's identifiers in
// the chat's creating pipeline; the returned func, called after Exec, says
// how many chats the visitor started before (the most any identifier
// counted; 0 if the counts failed: counting is best effort).
func (b *Bridge) countVisit(ctx context.Context, pipe redis.Pipeliner, p presence.PropertyID, v Visitor) func() int {
	marks := visitorMarks(v)
	cmds := make([]*redis.IntCmd, len(marks))
	for i, m := range marks {
		k := b.keys.Seen(p, markHash(m))
		cmds[i] = pipe.Incr(ctx, k)
		pipe.Expire(ctx, k, seenTTL)
	}
	return func() int {
		n := int64(0)
		for _, c := range cmds {
			n = max(n, c.Val())
		}
		return int(max(n-1, 0))
	}
}

// keepReturning stores the returning count on the chat hash ("returning")
// in the batch that announces the chat: the visitor JSON was written
// before the count was known.
func (b *Bridge) keepReturning(o *batch, cv *chatView) {
	if n := cv.Visitor.Returning; n > 0 {
		key := b.keys.Chat(cv.Property, cv.ID)
		o.op(func(ctx context.Context, p redis.Pipeliner) { p.HSet(ctx, key, "returning", n) })
	}
}
