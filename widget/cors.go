package widget

import (
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/presence"
)

// originPolicy is which page origins may call a property's visitor API.
// The API uses bearer tokens, never cookies, so credentials are never allowed.
type originPolicy struct {
	any     bool
	allowed map[string]struct{}
}

const (
	corsMethods = "GET, POST, OPTIONS"
	corsHeaders = "Content-Type, Authorization, Last-Event-ID"
	corsExpose  = "ETag, Retry-After, X-Onduty-Stale"
)

// corsPolicies are the origin policies of the visitor API: each property's
// (fixed keys: read without a lock), and the union of them all, which
// applies to chat routes before the chat's token is checked.
type corsPolicies struct {
	byProperty map[presence.PropertyID]originPolicy
	anyOrigin  originPolicy
}

// newCORS builds the policy of each of props from its settings in cfg.
func newCORS(props []presence.PropertyID, cfg map[presence.PropertyID]PropertyConfig) *corsPolicies {
	cp := &corsPolicies{byProperty: make(map[presence.PropertyID]originPolicy), anyOrigin: originPolicy{allowed: map[string]struct{}{}}}
	for _, p := range props {
		pc := cfg[p]
		pol := originPolicy{any: len(pc.AllowedOrigins) == 0, allowed: map[string]struct{}{}}
		for _, o := range pc.AllowedOrigins {
			o = strings.TrimRight(strings.ToLower(o), "/")
			pol.allowed[o] = struct{}{}
			cp.anyOrigin.allowed[o] = struct{}{}
		}
		if pol.any {
			cp.anyOrigin.any = true
		}
		cp.byProperty[p] = pol
	}
	return cp
}

// chat is the policy of a chat's property (any origin for a property
// without one).
func (cp *corsPolicies) chat(p presence.PropertyID) originPolicy {
	pol, ok := cp.byProperty[p]
	if !ok {
		pol = originPolicy{any: true}
	}
	return pol
}

// corsResult is what a request's origin gets.
type corsResult struct {
	allowOrigin string // Access-Control-Allow-Origin value; "" means none
	vary        bool
	ok          bool // false: the origin is not allowed
}

// check decides the CORS answer for the request's origin. A request without
// Origin, or from the server's own origin (the demo page), is always allowed.
func (pol originPolicy) check(c *fiber.Ctx) corsResult {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" {
		return corsResult{ok: true, vary: !pol.any}
	}
	if pol.any {
		return corsResult{allowOrigin: "*", ok: true}
	}
	o := strings.ToLower(origin)
	if _, ok := pol.allowed[o]; ok || sameOrigin(o, c.Get(fiber.HeaderHost)) {
		return corsResult{allowOrigin: strings.Clone(origin), vary: true, ok: true}
	}
	return corsResult{vary: true}
}

func sameOrigin(origin, host string) bool {
	host = strings.ToLower(host)
	return host != "" && (origin == "http://"+host || origin == "https://"+host)
}

// apply sets the CORS headers of res on the response.
func (r corsResult) apply(c *fiber.Ctx) {
	if r.vary {
		c.Vary(fiber.HeaderOrigin)
	}
	if r.allowOrigin != "" {
		c.Set(fiber.HeaderAccessControlAllowOrigin, r.allowOrigin)
		c.Set(fiber.HeaderAccessControlExposeHeaders, corsExpose)
	}
}

// header renders the CORS headers for a hijacked response.
func (r corsResult) header() string {
	var b strings.Builder
	if r.vary {
		b.WriteString("Vary: Origin\r\n")
	}
	if r.allowOrigin != "" {
		b.WriteString("Access-Control-Allow-Origin: " + sanitizeHeader(r.allowOrigin) + "\r\n")
		b.WriteString("Access-Control-Expose-Headers: " + corsExpose + "\r\n")
	}
	return b.String()
}

func sanitizeHeader(v string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, v)
}

// property applies property p's policy. Requests that change something
// (POST) from an origin that is not allowed are refused with 403; reads are
// answered without Access-Control-Allow-Origin, so a browser hides them.
func (cp *corsPolicies) property(c *fiber.Ctx, p presence.PropertyID) (corsResult, error) {
	r := cp.byProperty[p].check(c)
	r.apply(c)
	if !r.ok && c.Method() != fiber.MethodGet {
		return r, errOrigin
	}
	return r, nil
}

func preflight(c *fiber.Ctx, pol originPolicy) error {
	r := pol.check(c)
	r.apply(c)
	if !r.ok {
		return errOrigin
	}
	c.Set(fiber.HeaderAccessControlAllowMethods, corsMethods)
	c.Set(fiber.HeaderAccessControlAllowHeaders, corsHeaders)
	c.Set(fiber.HeaderAccessControlMaxAge, "600")
	return c.SendStatus(http.StatusNoContent)
}

// preflightProperty answers OPTIONS /v1/properties/{p}/*.
func (cp *corsPolicies) preflightProperty(c *fiber.Ctx) error {
	p := presence.PropertyID(c.Params("p"))
	pol, ok := cp.byProperty[p]
	if !ok {
		return errUnknownProperty
	}
	return preflight(c, pol)
}

// preflightChat cannot know the chat's property (preflights carry no token):
// it allows any origin some property allows; the request itself is checked
// against the chat's property once its token is verified.
func (cp *corsPolicies) preflightChat(c *fiber.Ctx) error {
	return preflight(c, cp.anyOrigin)
}
