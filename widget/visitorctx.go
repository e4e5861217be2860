package widget

import (
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	useragent "github.com/medama-io/go-useragent"

	"github.com/onduty/onduty/bridge"
)

// visitorContext is what the widget sends about the visitor with a new
// chat or offline message (SPEC §10), beside the form's fields.
type visitorContext struct {
	PageURL   string           `json:"page_url"`
	Referrer  string           `json:"referrer"`
	Language  string           `json:"language"`
	TimeZone  string           `json:"time_zone"`
	VisitorID string           `json:"visitor_id"`
	Identity  *bridge.Identity `json:"identity"`
}

// Limits on the context fields (bytes).
const (
	maxReferrerBytes  = 2048
	maxLanguageBytes  = 35 // a BCP 47 tag
	maxTimeZoneBytes  = 64 // an IANA zone name
	maxUserAgentBytes = 512
)

// uaParser is shared: Parse is safe for concurrent use (the trie is read
// only), and building it is cheap (the data is embedded).
var uaParser = useragent.NewParser()

// parseUserAgent names the browser (with its major version) and the OS.
func parseUserAgent(s string) (browser, os string) {
	if s == "" || len(s) > maxUserAgentBytes || !utf8.ValidString(s) {
		return "", ""
	}
	ua := uaParser.Parse(s)
	browser = string(ua.Browser())
	if browser != "" {
		if v := ua.BrowserVersionMajor(); v != "" {
			browser += " " + v
		}
	}
	return browser, string(ua.OS())
}

// check validates the context: lengths, UTF-8, and no control characters
// in the one-line fields.
func (vc *visitorContext) check() error {
	if err := checkVisitorID(vc.VisitorID); err != nil {
		return err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"page_url", vc.PageURL, maxPageURLBytes},
		{"referrer", vc.Referrer, maxReferrerBytes},
		{"language", vc.Language, maxLanguageBytes},
		{"time_zone", vc.TimeZone, maxTimeZoneBytes},
	} {
		switch {
		case len(f.v) > f.max:
			return newErr(http.StatusBadRequest, "invalid_field", f.name+" is too long")
		case !utf8.ValidString(f.v):
			return newErr(http.StatusBadRequest, "invalid_utf8", f.name+" is not valid UTF-8")
		case hasControl(f.v):
			return newErr(http.StatusBadRequest, "invalid_field", f.name+" holds control characters")
		}
	}
	return nil
}

// apply verifies the identity with the property's secret and puts the
// context, and the browser and OS from the request's User-Agent, on v.
func (va *visitorAPI) applyContext(c *fiber.Ctx, p PropertyConfig, vc visitorContext, v *bridge.Visitor) error {
	if err := vc.check(); err != nil {
		return err
	}
	if vc.Identity != nil {
		id, err := bridge.VerifyIdentity(p.IdentitySecret, *vc.Identity)
		switch {
		case errors.Is(err, bridge.ErrBadSignature):
			return newErr(http.StatusBadRequest, "bad_signature", "identity.signature is not the HMAC-SHA256 of user_id under the property's identity_secret")
		case err != nil:
			return newErr(http.StatusBadRequest, "invalid_field", "identity: "+strings.TrimPrefix(err.Error(), bridge.ErrBadIdentity.Error()+": "))
		}
		if id.Email != "" {
			if err := checkEmail(id.Email, false); err != nil {
				return newErr(http.StatusBadRequest, "invalid_field", "identity.email is not an email address")
			}
		}
		v.Identity = &id
	}
	v.PageURL, v.Referrer, v.Language, v.TimeZone, v.ID = vc.PageURL, vc.Referrer, vc.Language, vc.TimeZone, vc.VisitorID
	v.Browser, v.OS = parseUserAgent(c.Get(fiber.HeaderUserAgent))
	return nil
}
