package widget

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

const identitySecret = "site-identity-secret"

// identityEnv is a server on the real bridge whose demo property has an
// identity_secret; the form property has none.
func identityEnv(t *testing.T) (*env, *bridge.Bridge) {
	t.Helper()
	e, b, _ := bridgeEnv(t, false)
	e.cfg.Properties = map[presence.PropertyID]PropertyConfig{propDemo: {IdentitySecret: identitySecret}}
	e.srv = New(e.cfg, e.watcher, e.store, b, e.redis.Client, e.log)
	return e, b
}

// chatCount is how many chats exist (chat → property keys).
func chatCount(t *testing.T, e *env) int {
	t.Helper()
	keys, err := e.redis.Client.Keys(context.Background(), e.redis.Prefix+"chatp:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// TestIdentity: a valid signature makes a verified identity, a wrong one
// is refused with 400 bad_signature and starts nothing, none (or a
// property without identity_secret) keeps the identity unverified; the
// same holds for offline messages.
func TestIdentity(t *testing.T) {
	e, b := identityEnv(t)
	good := bridge.SignIdentity(identitySecret, "u-42")
	ident := func(sig string) map[string]any {
		return map[string]any{"user_id": "u-42", "email": "ann@example.com", "name": "Ann", "attrs": map[string]string{"plan": "pro"}, "signature": sig}
	}
	tests := []struct {
		name         string
		path         string
		body         map[string]any
		code         int
		errCode      string
		wantVerified bool
	}{
		{"chat, valid", "/v1/properties/demo/chats", map[string]any{"message": "hi", "identity": ident(good)}, 201, "", true},
		{"chat, wrong", "/v1/properties/demo/chats", map[string]any{"message": "hi", "identity": ident(bridge.SignIdentity("guess", "u-42"))}, 400, "bad_signature", false},
		{"chat, none", "/v1/properties/demo/chats", map[string]any{"message": "hi", "identity": ident("")}, 201, "", false},
		{"chat, no secret", "/v1/properties/form/chats", map[string]any{"message": "hi", "name": "Ann", "consent": true, "identity": ident(good)}, 201, "", false},
		{"chat, claims verified", "/v1/properties/demo/chats", map[string]any{"message": "hi", "identity": map[string]any{"user_id": "u-42", "verified": true}}, 201, "", false},
		{"chat, bad identity email", "/v1/properties/demo/chats", map[string]any{"message": "hi", "identity": map[string]any{"user_id": "u-42", "email": "no\r\nBcc: x@y.z"}}, 400, "invalid_field", false},
		{"offline, valid", "/v1/properties/demo/offline-messages", map[string]any{"text": "hi", "email": "ann@example.com", "identity": ident(good)}, 201, "", true},
		{"offline, wrong", "/v1/properties/demo/offline-messages", map[string]any{"text": "hi", "email": "ann@example.com", "identity": ident("00")}, 400, "bad_signature", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := chatCount(t, e)
			r := e.do("POST", tt.path, tt.body)
			if r.code != tt.code || r.errCode() != tt.errCode {
				t.Fatalf("%d %s, want %d %q", r.code, r.body, tt.code, tt.errCode)
			}
			if tt.code != 201 {
				if n := chatCount(t, e); n != before {
					t.Errorf("refused, but %d chats were stored", n-before)
				}
				return
			}
			var out struct {
				ChatID       bridge.ChatID `json:"chat_id"`
				VisitorToken string        `json:"visitor_token"`
			}
			r.json(t, &out)
			c, err := b.AuthVisitor(context.Background(), out.ChatID, out.VisitorToken)
			if err != nil {
				t.Fatal(err)
			}
			id := c.Visitor.Identity
			if id == nil || id.UserID != "u-42" || id.Verified != tt.wantVerified || id.Signature != "" {
				t.Errorf("stored identity %+v, want u-42 verified=%v without signature", id, tt.wantVerified)
			}
		})
	}
}

// TestVisitorContextAccepted: the context fields and the User-Agent reach
// the chat; over-long or control-character fields are refused.
func TestVisitorContextAccepted(t *testing.T) {
	e, b := identityEnv(t)
	body := map[string]any{"message": "hi", "page_url": "https://acme.example/p", "referrer": "https://search.example/",
		"language": "de-DE", "time_zone": "Europe/Berlin", "visitor_id": "vid-1234567890abcdef"}
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36"
	r := e.do("POST", "/v1/properties/demo/chats", body, "User-Agent", ua)
	if r.code != 201 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var out struct {
		ChatID       bridge.ChatID `json:"chat_id"`
		VisitorToken string        `json:"visitor_token"`
	}
	r.json(t, &out)
	c, err := b.AuthVisitor(context.Background(), out.ChatID, out.VisitorToken)
	if err != nil {
		t.Fatal(err)
	}
	v := c.Visitor
	if v.PageURL != "https://acme.example/p" || v.Referrer != "https://search.example/" || v.Language != "de-DE" ||
		v.TimeZone != "Europe/Berlin" || v.ID != "vid-1234567890abcdef" || v.Browser != "Chrome 118" || v.OS != "Windows" {
		t.Errorf("visitor %+v", v)
	}
	if r := e.do("POST", "/v1/properties/demo/chats", body, "User-Agent", ua); r.code != 201 {
		t.Fatalf("%d %s", r.code, r.body)
	} else {
		r.json(t, &out)
		if c, _ := b.AuthVisitor(context.Background(), out.ChatID, out.VisitorToken); c.Visitor.Returning != 1 {
			t.Errorf("second chat of the same visitor id: returning %d, want 1", c.Visitor.Returning)
		}
	}
	bad := []struct{ field, value, code string }{
		{"page_url", strings.Repeat("x", maxPageURLBytes+1), "invalid_field"},
		{"referrer", strings.Repeat("x", maxReferrerBytes+1), "invalid_field"},
		{"language", strings.Repeat("x", maxLanguageBytes+1), "invalid_field"},
		{"time_zone", "Europe/\nBerlin", "invalid_field"},
		{"visitor_id", strings.Repeat("x", 65), "invalid_visitor_id"},
		{"visitor_id", "short", "invalid_visitor_id"},
	}
	for _, bb := range bad {
		for _, path := range []string{"/v1/properties/demo/chats", "/v1/properties/demo/offline-messages"} {
			r := e.do("POST", path, map[string]any{"message": "hi", "text": "hi", "email": "a@example.com", bb.field: bb.value})
			if r.code != http.StatusBadRequest || r.errCode() != bb.code || !strings.Contains(string(r.body), bb.field) {
				t.Errorf("%s %s: %d %s, want 400 %s naming it", path, bb.field, r.code, r.body, bb.code)
			}
		}
	}
}

// TestAdminErase: DELETE /v1/admin/visitors through the real bridge.
func TestAdminErase(t *testing.T) {
	e, b := identityEnv(t)
	auth := []string{"Authorization", "Bearer " + adminToken}
	var ids []bridge.ChatID
	for _, email := range []string{"gone@example.com", "gone@example.com", "stay@example.com"} {
		r := e.do("POST", "/v1/properties/demo/chats", map[string]any{"message": "hi", "email": email})
		var out struct {
			ChatID bridge.ChatID `json:"chat_id"`
		}
		r.json(t, &out)
		ids = append(ids, out.ChatID)
	}
	tests := []struct {
		name, query string
		headers     []string
		code        int
		body        string
	}{
		{"no token", "?email=gone@example.com", nil, 401, ""},
		{"neither", "", auth, 400, "missing_field"},
		{"both", "?email=gone@example.com&chat_id=" + string(ids[2]), auth, 400, "missing_field"},
		{"bad email", "?email=nobody", auth, 400, "invalid_email"},
		{"bad chat id", "?chat_id=a%20b", auth, 400, "invalid_field"},
		{"by email", "?email=gone@example.com", auth, 200, `{"deleted_chats":2}`},
		{"again", "?email=gone@example.com", auth, 200, `{"deleted_chats":0}`},
		{"by chat id", "?chat_id=" + string(ids[2]), auth, 200, `{"deleted_chats":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("DELETE", "/v1/admin/visitors"+tt.query, nil, tt.headers...)
			if r.code != tt.code || !strings.Contains(string(r.body), tt.body) {
				t.Errorf("%d %s, want %d %s", r.code, r.body, tt.code, tt.body)
			}
		})
	}
	for _, id := range ids {
		if _, err := b.PropertyOf(context.Background(), id); err == nil {
			t.Errorf("chat %s still exists", id)
		}
	}
}

// TestBrowserIdentify: a page that calls window.onduty.identify() after
// the widget loaded starts a chat whose visitor is verified, with the
// browser's context; a page that set window.ondutyIdentity before loading
// it with a wrong signature starts none and shows the error.
func TestBrowserIdentify(t *testing.T) {
	e, b := identityEnv(t)
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	ln := listen(t)
	base := "http://" + ln.Addr().String()
	stop := serveOn(t, e.srv, ln)
	t.Cleanup(func() { stop() })
	ctx := newBrowser(t)
	sig := bridge.SignIdentity(identitySecret, "u-42")

	run(t, ctx, "load the demo page", chromedp.Navigate(base+"/"))
	waitJS(t, ctx, "widget loaded, online", `!!(window.onduty && window.onduty.identify) && !!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
	run(t, ctx, "identify, open the panel and write",
		chromedp.Evaluate[chromedp.Void](`window.onduty.identify({user_id: "u-42", email: "ann@example.com", name: "Ann", attrs: {plan: "pro"}, signature: "`+sig+`"})`),
		chromedp.Click(chromedp.CSS("#onduty-launcher")),
		chromedp.WaitVisible(chromedp.CSS("#onduty-input")),
		chromedp.SendKeys(chromedp.CSS("#onduty-input"), "Hello, it's Ann"),
		chromedp.Click(chromedp.CSS("#onduty-send")),
	)
	waitJS(t, ctx, "chat started", `!!window.onduty.chat()`)
	saved, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("onduty:demo") || localStorage.getItem("onduty:demo") || ""`))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ ID, Token string }
	if err := json.Unmarshal([]byte(saved), &st); err != nil {
		t.Fatalf("stored chat %q: %v", saved, err)
	}
	c, err := b.AuthVisitor(context.Background(), bridge.ChatID(st.ID), st.Token)
	if err != nil {
		t.Fatal(err)
	}
	v := c.Visitor
	if v.Identity == nil || !v.Identity.Verified || v.Identity.UserID != "u-42" || v.Identity.Attrs["plan"] != "pro" || v.Name != "Ann" || v.Email != "ann@example.com" {
		t.Errorf("visitor %+v identity %+v: want verified u-42", v, v.Identity)
	}
	if !strings.HasPrefix(v.PageURL, base) || !strings.HasPrefix(v.Browser, "Chrome") || v.OS != "Linux" || v.Language == "" || v.TimeZone == "" || v.ID == "" {
		t.Errorf("context not gathered: %+v", v)
	}

	// A site page on another origin that sets the identity before the widget loads.
	before := chatCount(t, e)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><html lang="en"><body><script>window.ondutyIdentity = {user_id: "u-42", signature: "`+
			strings.Repeat("0", 64)+`"};</script><script src="`+base+`/widget.js" data-property="demo" async></script></body></html>`)
	}))
	t.Cleanup(site.Close)
	run(t, ctx, "load the site page", chromedp.Navigate(site.URL+"/"))
	waitJS(t, ctx, "widget loaded, online", `!!(window.onduty && window.onduty.identify) && !!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
	run(t, ctx, "write with a wrong signature",
		chromedp.Click(chromedp.CSS("#onduty-launcher")),
		chromedp.WaitVisible(chromedp.CSS("#onduty-input")),
		chromedp.SendKeys(chromedp.CSS("#onduty-input"), "Hello, I am u-42"),
		chromedp.Click(chromedp.CSS("#onduty-send")),
	)
	waitJS(t, ctx, "error shown", `[...document.querySelectorAll('.onduty-error')].some(e => e.textContent.trim() !== '')`)
	if n := chatCount(t, e); n != before {
		t.Errorf("a wrong signature started %d chats", n-before)
	}
}
