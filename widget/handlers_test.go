package widget

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t)
	if r := e.do("GET", "/healthz", nil); r.code != 200 {
		t.Errorf("healthz: %d", r.code)
	}
	if r := e.do("GET", "/readyz", nil); r.code != 200 {
		t.Errorf("readyz: %d %s", r.code, r.body)
	}
	down := New(e.cfg, e.watcher, e.store, e.chats, downRedis(t), e.log)
	if r := doApp(t, down, "GET", "/readyz", nil); r.code != 503 || r.errCode() != "unavailable" {
		t.Errorf("readyz with redis down: %d %s", r.code, r.body)
	}
	if r := doApp(t, down, "GET", "/healthz", nil); r.code != 200 {
		t.Errorf("healthz with redis down: %d", r.code)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	e.runWatcher()
	wait.For(t, "watcher in sync", func() bool { return !e.watcher.Stale() })
	e.setStatus(agentAlice, presence.Online)
	e.reload()

	r := e.do("GET", "/v1/properties/demo/status", nil)
	if r.code != 200 {
		t.Fatalf("status: %d %s", r.code, r.body)
	}
	var st presence.WidgetStatus
	r.json(t, &st)
	if st.Property != propDemo || st.Status != presence.Online || st.Mode != presence.ModeLive || st.Greeting == "" {
		t.Errorf("status body: %s", r.body)
	}
	etag := r.header.Get("ETag")
	snap, _ := e.watcher.Snapshot(propDemo)
	if etag == "" || etag != snap.ETag || !bytes.Equal(r.body, snap.Body) {
		t.Errorf("etag %q body %s, want the snapshot's %q %s", etag, r.body, snap.ETag, snap.Body)
	}
	if r.header.Get(HeaderStale) != "" {
		t.Errorf("fresh status says stale")
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("content type %q", r.header.Get("Content-Type"))
	}

	t.Run("if-none-match", func(t *testing.T) {
		for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag} {
			r := e.do("GET", "/v1/properties/demo/status", nil, "If-None-Match", inm)
			if r.code != http.StatusNotModified || len(r.body) != 0 {
				t.Errorf("If-None-Match %s: %d %q", inm, r.code, r.body)
			}
		}
		if r := e.do("GET", "/v1/properties/demo/status", nil, "If-None-Match", `"nope"`); r.code != 200 {
			t.Errorf("other etag: %d", r.code)
		}
	})

	t.Run("changes with presence", func(t *testing.T) {
		e.setStatus(agentAlice, presence.Away)
		e.reload()
		r := e.do("GET", "/v1/properties/demo/status", nil, "If-None-Match", etag)
		if r.code != 200 || !strings.Contains(string(r.body), `"status":"away"`) || r.header.Get("ETag") == etag {
			t.Errorf("after change: %d %s etag %s", r.code, r.body, r.header.Get("ETag"))
		}
	})

	t.Run("offline modes", func(t *testing.T) {
		for p, mode := range map[presence.PropertyID]string{propQuiet: "hidden", propDemo: "form"} {
			if p == propDemo {
				e.setStatus(agentAlice, presence.Offline)
				e.reload()
			}
			r := e.do("GET", "/v1/properties/"+string(p)+"/status", nil)
			if !strings.Contains(string(r.body), `"status":"offline"`) || !strings.Contains(string(r.body), `"mode":"`+mode+`"`) {
				t.Errorf("%s: %s", p, r.body)
			}
		}
	})

	t.Run("unknown property", func(t *testing.T) {
		r := e.do("GET", "/v1/properties/nope/status", nil)
		if r.code != 404 || r.errCode() != "unknown_property" {
			t.Errorf("%d %s", r.code, r.body)
		}
	})

	t.Run("stale", func(t *testing.T) {
		w := presence.NewWatcher(e.store, e.log) // never loaded: stale
		srv := New(e.cfg, w, e.store, e.chats, e.redis.Client, e.log)
		r := doApp(t, srv, "GET", "/v1/properties/demo/status", nil)
		if r.code != 200 || r.header.Get(HeaderStale) != "true" {
			t.Errorf("stale: %d %v", r.code, r.header)
		}
	})
}

func TestCORS(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, method, path, origin string
		wantCode                   int
		wantACAO                   string
	}{
		{"any origin on a property without allowed_origins", "GET", "/v1/properties/demo/status", "https://anywhere.example", 200, "*"},
		{"allowed origin", "GET", "/v1/properties/acme/status", acmeOrigin, 200, acmeOrigin},
		{"foreign origin reads without the header", "GET", "/v1/properties/acme/status", "https://evil.example", 200, ""},
		{"foreign origin may not start a chat", "POST", "/v1/properties/acme/chats", "https://evil.example", 403, ""},
		{"allowed origin starts a chat", "POST", "/v1/properties/acme/chats", acmeOrigin, 201, acmeOrigin},
		{"same origin is always allowed", "POST", "http://example.com/v1/properties/acme/chats", "http://example.com", 201, "http://example.com"},
		{"preflight allowed", "OPTIONS", "/v1/properties/acme/chats", acmeOrigin, 204, acmeOrigin},
		{"preflight refused", "OPTIONS", "/v1/properties/acme/chats", "https://evil.example", 403, ""},
		{"preflight on chat routes", "OPTIONS", "/v1/chats/abc/messages", "https://evil.example", 204, "*"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.method == "POST" {
				body = map[string]string{"message": "hi"}
			}
			r := e.do(tc.method, tc.path, body, "Origin", tc.origin, "Access-Control-Request-Method", "POST")
			if r.code != tc.wantCode {
				t.Errorf("code %d, want %d (%s)", r.code, tc.wantCode, r.body)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != tc.wantACAO {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.wantACAO)
			}
			if r.header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("credentials allowed")
			}
			if tc.method == "OPTIONS" && tc.wantCode == 204 && !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Errorf("preflight headers: %v", r.header)
			}
		})
	}

	t.Run("chat of a restricted property", func(t *testing.T) {
		id, tok := e.startChat(propAcme, "hello")
		r := e.do("POST", "/v1/chats/"+id+"/messages", map[string]string{"text": "x"}, "Authorization", "Bearer "+tok, "Origin", "https://evil.example")
		if r.code != 403 || r.errCode() != "origin_not_allowed" {
			t.Errorf("foreign origin on acme chat: %d %s", r.code, r.body)
		}
		r = e.do("POST", "/v1/chats/"+id+"/messages", map[string]string{"text": "x"}, "Authorization", "Bearer "+tok, "Origin", acmeOrigin)
		if r.code != 202 || r.header.Get("Access-Control-Allow-Origin") != acmeOrigin {
			t.Errorf("acme origin on acme chat: %d %v", r.code, r.header)
		}
	})
}

func TestStartChat(t *testing.T) {
	long := strings.Repeat("é", 4001)
	tests := []struct {
		name     string
		path     string
		body     any
		wantCode int
		wantErr  string
	}{
		{"ok", "/v1/properties/demo/chats", map[string]string{"message": "Hello", "name": "Vic", "email": "vic@example.com", "page_url": "https://demo.example/x"}, 201, ""},
		{"4000 characters", "/v1/properties/demo/chats", map[string]string{"message": strings.Repeat("é", 4000)}, 201, ""},
		{"malformed json", "/v1/properties/demo/chats", `{"message": "hi"`, 400, "malformed_json"},
		{"trailing garbage", "/v1/properties/demo/chats", `{"message": "hi"} x`, 400, "malformed_json"},
		{"not an object", "/v1/properties/demo/chats", `["hi"]`, 400, "malformed_json"},
		{"empty body", "/v1/properties/demo/chats", "", 400, "malformed_json"},
		{"wrong type", "/v1/properties/demo/chats", `{"message": 5}`, 400, "invalid_field"},
		{"invalid utf-8", "/v1/properties/demo/chats", []byte("{\"message\": \"caf\xe9\"}"), 400, "invalid_utf8"},
		{"missing message", "/v1/properties/demo/chats", map[string]string{"name": "Vic"}, 400, "missing_field"},
		{"blank message", "/v1/properties/demo/chats", map[string]string{"message": " \n\t "}, 400, "invalid_text"},
		{"message over 4000", "/v1/properties/demo/chats", map[string]string{"message": long}, 400, "text_too_long"},
		{"bad email", "/v1/properties/demo/chats", map[string]string{"message": "hi", "email": "not an email"}, 400, "invalid_email"},
		{"header injection in email", "/v1/properties/demo/chats", map[string]string{"message": "hi", "email": "v@example.com\r\nBcc: all@example.com"}, 400, "invalid_email"},
		{"header injection in name", "/v1/properties/demo/chats", map[string]string{"message": "hi", "name": "Vic\r\nBcc: all@example.com"}, 400, "invalid_name"},
		{"body over 16 KiB", "/v1/properties/demo/chats", map[string]string{"message": "hi", "name": strings.Repeat("x", 17<<10)}, 413, "too_large"},
		{"unknown property", "/v1/properties/nope/chats", map[string]string{"message": "hi"}, 404, "unknown_property"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.do("POST", tc.path, tc.body)
			if r.code != tc.wantCode || r.errCode() != tc.wantErr {
				t.Fatalf("got %d %s, want %d %s", r.code, r.body, tc.wantCode, tc.wantErr)
			}
			calls := e.chats.Calls()
			if tc.wantCode != 201 {
				if len(calls) != 0 {
					t.Errorf("refused request reached the bridge: %v", calls)
				}
				if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
					t.Errorf("error content type %q", r.header.Get("Content-Type"))
				}
				return
			}
			var out map[string]string
			r.json(t, &out)
			c, ok := e.chats.Chat(bridge.ChatID(out["chat_id"]))
			if !ok || out["visitor_token"] == "" {
				t.Fatalf("chat not created: %s", r.body)
			}
			if c.Visitor.IP == "" {
				t.Errorf("visitor IP not passed: %+v", c.Visitor)
			}
		})
	}
}

func TestStartChatPassesVisitor(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "Hello", "name": " Vic ", "email": "vic@example.com", "page_url": "https://demo.example/x"})
	var out map[string]string
	r.json(t, &out)
	c, _ := e.chats.Chat(bridge.ChatID(out["chat_id"]))
	want := bridge.Visitor{Name: "Vic", Email: "vic@example.com", PageURL: "https://demo.example/x", IP: "0.0.0.0"}
	if c.Visitor != want {
		t.Errorf("visitor %+v, want %+v", c.Visitor, want)
	}
	if c.Property != propDemo {
		t.Errorf("property %q", c.Property)
	}
}

func TestStorageErrors(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hello")
	auth := []string{"Authorization", "Bearer " + tok}
	calls := []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"}},
		{"POST", "/v1/chats/" + id + "/messages", map[string]string{"text": "hi"}},
		{"GET", "/v1/chats/" + id + "/messages", nil},
		{"POST", "/v1/chats/" + id + "/close", nil},
		{"POST", "/v1/properties/demo/offline-messages", map[string]string{"email": "a@b.example", "text": "hi"}},
	}
	for _, tc := range []struct {
		name     string
		err      error
		wantCode int
		wantErr  string
	}{
		{"unavailable", fmt.Errorf("redis: %w", bridge.ErrUnavailable), 503, "unavailable"},
		{"unexpected", errors.New("secret internal detail"), 500, "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.chats.SetFail(tc.err)
			defer e.chats.SetFail(nil)
			for _, c := range calls {
				r := e.do(c.method, c.path, c.body, auth...)
				if r.code != tc.wantCode || r.errCode() != tc.wantErr {
					t.Errorf("%s %s: %d %s, want %d", c.method, c.path, r.code, r.body, tc.wantCode)
				}
				if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "redis") {
					t.Errorf("%s %s leaks: %s", c.method, c.path, r.body)
				}
			}
		})
	}

	t.Run("rate limiter without redis", func(t *testing.T) {
		srv := New(e.cfg, e.watcher, e.store, e.chats, downRedis(t), e.log)
		before := len(e.chats.Calls())
		r := doApp(t, srv, "POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"})
		if r.code != 503 || r.errCode() != "unavailable" {
			t.Errorf("%d %s", r.code, r.body)
		}
		if len(e.chats.Calls()) != before {
			t.Errorf("chat started although the limit could not be counted")
		}
	})
}

// panicChats panics in StartChat.
type panicChats struct{ *fakeChats }

func (panicChats) StartChat(context.Context, presence.PropertyID, bridge.Visitor, string) (bridge.Chat, string, error) {
	panic("boom: internal state")
}

func TestPanicIsRecovered(t *testing.T) {
	e := newEnv(t)
	srv := New(e.cfg, e.watcher, e.store, panicChats{e.chats}, e.redis.Client, e.log)
	r := doApp(t, srv, "POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"})
	if r.code != 500 || r.errCode() != "internal" || strings.Contains(string(r.body), "boom") {
		t.Errorf("%d %s", r.code, r.body)
	}
}

func TestPostMessage(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hello")
	closedID, closedTok := e.startChat(propDemo, "bye")
	e.chats.CloseByAgent(bridge.ChatID(closedID), agentAlice)
	path := "/v1/chats/" + id + "/messages"

	tests := []struct {
		name     string
		path     string
		body     any
		headers  []string
		wantCode int
		wantErr  string
	}{
		{"ok", path, map[string]string{"text": "more"}, []string{"Authorization", "Bearer " + tok}, 202, ""},
		{"lowercase scheme", path, map[string]string{"text": "more"}, []string{"Authorization", "bearer " + tok}, 202, ""},
		{"missing token", path, map[string]string{"text": "more"}, nil, 401, "missing_token"},
		{"query token not accepted for writes", path + "?token=" + tok, map[string]string{"text": "more"}, nil, 401, "missing_token"},
		{"wrong token", path, map[string]string{"text": "more"}, []string{"Authorization", "Bearer nope"}, 403, "forbidden"},
		{"other chat's token", "/v1/chats/" + closedID + "/messages", map[string]string{"text": "x"}, []string{"Authorization", "Bearer " + tok}, 403, "forbidden"},
		{"unknown chat", "/v1/chats/doesnotexist/messages", map[string]string{"text": "x"}, []string{"Authorization", "Bearer " + tok}, 404, "unknown_chat"},
		{"bad chat id", "/v1/chats/a.b/messages", map[string]string{"text": "x"}, []string{"Authorization", "Bearer " + tok}, 404, "unknown_chat"},
		{"closed chat", "/v1/chats/" + closedID + "/messages", map[string]string{"text": "x"}, []string{"Authorization", "Bearer " + closedTok}, 409, "chat_closed"},
		{"missing text", path, map[string]string{}, []string{"Authorization", "Bearer " + tok}, 400, "missing_field"},
		{"text too long", path, map[string]string{"text": strings.Repeat("a", 4001)}, []string{"Authorization", "Bearer " + tok}, 400, "text_too_long"},
		{"malformed", path, `{"text":`, []string{"Authorization", "Bearer " + tok}, 400, "malformed_json"},
		{"invalid utf-8", path, []byte("{\"text\":\"\xff\xfe\"}"), []string{"Authorization", "Bearer " + tok}, 400, "invalid_utf8"},
		{"too large", path, map[string]string{"text": strings.Repeat("a", 20000)}, []string{"Authorization", "Bearer " + tok}, 413, "too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.chats.Calls())
			r := e.do("POST", tc.path, tc.body, tc.headers...)
			if r.code != tc.wantCode || r.errCode() != tc.wantErr {
				t.Fatalf("got %d %s, want %d %s", r.code, r.body, tc.wantCode, tc.wantErr)
			}
			posted := len(e.chats.Calls()) > before
			if posted != (tc.wantCode == 202) {
				t.Errorf("bridge called: %v", posted)
			}
			if tc.wantCode == 202 {
				var out map[string]string
				r.json(t, &out)
				if _, ok := parseMessageID(out["id"]); !ok {
					t.Errorf("id %q", out["id"])
				}
			}
		})
	}
}

func TestTranscript(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "first")
	e.chats.Join(bridge.ChatID(id), agentAlice, "Alice")
	m2 := e.chats.Reply(bridge.ChatID(id), agentAlice, "Alice", "hi there", false)
	e.chats.Reply(bridge.ChatID(id), agentAlice, "Alice", "// note to self", true)
	m4 := e.chats.Reply(bridge.ChatID(id), agentAlice, "Alice", "anything else?", false)

	texts := func(r resp) []string {
		var out struct{ Messages []bridge.Message }
		r.json(t, &out)
		var s []string
		for _, m := range out.Messages {
			s = append(s, m.Text)
		}
		return s
	}
	r := e.do("GET", "/v1/chats/"+id+"/messages", nil, "Authorization", "Bearer "+tok)
	if got := fmt.Sprint(texts(r)); r.code != 200 || got != "[first hi there anything else?]" {
		t.Errorf("all: %d %s", r.code, got)
	}
	if strings.Contains(string(r.body), `"agent":"alice"`) || !strings.Contains(string(r.body), `"name":"Alice"`) {
		t.Errorf("agents must show by name only: %s", r.body)
	}
	r = e.do("GET", "/v1/chats/"+id+"/messages?after="+m2.ID+"&token="+tok, nil)
	if got := fmt.Sprint(texts(r)); r.code != 200 || got != "[anything else?]" {
		t.Errorf("after %s: %d %s", m2.ID, r.code, got)
	}
	r = e.do("GET", "/v1/chats/"+id+"/messages?after="+m4.ID, nil, "Authorization", "Bearer "+tok)
	if r.code != 200 || string(r.body) != `{"messages":[]}` {
		t.Errorf("nothing new: %d %s", r.code, r.body)
	}
	if r := e.do("GET", "/v1/chats/"+id+"/messages?after=yesterday", nil, "Authorization", "Bearer "+tok); r.code != 400 || r.errCode() != "invalid_after" {
		t.Errorf("bad after: %d %s", r.code, r.body)
	}
	if r := e.do("GET", "/v1/chats/"+id+"/messages", nil); r.code != 401 {
		t.Errorf("no token: %d", r.code)
	}
	if r := e.do("GET", "/v1/chats/"+id+"/messages?token=wrong", nil); r.code != 403 {
		t.Errorf("wrong token: %d", r.code)
	}
}

func TestCloseChat(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hello")
	for i := range 2 { // closing twice is fine
		r := e.do("POST", "/v1/chats/"+id+"/close", nil, "Authorization", "Bearer "+tok)
		if r.code != 200 || !strings.Contains(string(r.body), `"state":"closed"`) {
			t.Fatalf("close #%d: %d %s", i, r.code, r.body)
		}
	}
	c, _ := e.chats.Chat(bridge.ChatID(id))
	if c.State != bridge.Closed || c.ClosedBy != "visitor" {
		t.Errorf("chat %+v", c)
	}
	if r := e.do("POST", "/v1/chats/"+id+"/close", nil, "Authorization", "Bearer x"); r.code != 403 {
		t.Errorf("wrong token: %d", r.code)
	}
}

func TestOfflineMessages(t *testing.T) {
	tests := []struct {
		name     string
		body     any
		path     string
		wantCode int
		wantErr  string
	}{
		{"ok", map[string]string{"name": "Vic", "email": "vic@example.com", "text": "call me"}, "", 201, ""},
		{"missing email", map[string]string{"text": "call me"}, "", 400, "missing_field"},
		{"bad email", map[string]string{"email": "vic@", "text": "call me"}, "", 400, "invalid_email"},
		{"email without a domain dot", map[string]string{"email": "vic@localhost", "text": "call me"}, "", 400, "invalid_email"},
		{"email with a display name", map[string]string{"email": "Vic <vic@example.com>", "text": "call me"}, "", 400, "invalid_email"},
		{"no at sign", map[string]string{"email": "vic.example.com", "text": "call me"}, "", 400, "invalid_email"},
		{"email with a newline", map[string]string{"email": "vic@example.com\nBcc: x@example.com", "text": "call me"}, "", 400, "invalid_email"},
		{"email with a carriage return", map[string]string{"email": "vic@example.com\r", "text": "call me"}, "", 400, "invalid_email"},
		{"name with a newline", map[string]string{"name": "Vic\nSubject: free money", "email": "vic@example.com", "text": "call me"}, "", 400, "invalid_name"},
		{"missing text", map[string]string{"email": "vic@example.com"}, "", 400, "missing_field"},
		{"text too long", map[string]string{"email": "vic@example.com", "text": strings.Repeat("x", 4001)}, "", 400, "text_too_long"},
		{"malformed", "{", "", 400, "malformed_json"},
		{"unknown property", map[string]string{"email": "vic@example.com", "text": "x"}, "/v1/properties/nope/offline-messages", 404, "unknown_property"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			path := tc.path
			if path == "" {
				path = "/v1/properties/demo/offline-messages"
			}
			r := e.do("POST", path, tc.body)
			if r.code != tc.wantCode || r.errCode() != tc.wantErr {
				t.Fatalf("got %d %s, want %d %s", r.code, r.body, tc.wantCode, tc.wantErr)
			}
			got := e.chats.Offline()
			if tc.wantCode != 201 {
				if len(got) != 0 {
					t.Errorf("stored: %v", got)
				}
				return
			}
			if len(got) != 1 || got[0].Visitor.Email != "vic@example.com" || got[0].Visitor.Name != "Vic" || got[0].Text != "call me" || got[0].Property != propDemo {
				t.Errorf("offline messages %+v", got)
			}
			var out struct {
				ChatID       string `json:"chat_id"`
				VisitorToken string `json:"visitor_token"`
			}
			r.json(t, &out)
			if out.ChatID == "" || out.VisitorToken == "" {
				t.Fatalf("body %s", r.body)
			}
			// The token opens the chat like a live chat's.
			if tr := e.do("GET", "/v1/chats/"+out.ChatID+"/messages", nil, "Authorization", "Bearer "+out.VisitorToken); tr.code != 200 || !strings.Contains(string(tr.body), "call me") {
				t.Errorf("transcript with the offline token: %d %s", tr.code, tr.body)
			}
		})
	}
}

func TestRateLimits(t *testing.T) {
	limits := func(c *Config) { c.RateLimits = RateLimits{ChatsPerMinute: 2, MessagesPerMinute: 3} }
	e := newEnv(t, limits)
	// A second instance on the same Redis shares the counts.
	other := New(e.cfg, e.watcher, e.store, e.chats, e.redis.NewClient(t), e.log)

	start := func(srv *Server) resp {
		return doApp(t, srv, "POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"})
	}
	if r := start(e.srv); r.code != 201 {
		t.Fatalf("1st: %d", r.code)
	}
	if r := start(other); r.code != 201 {
		t.Fatalf("2nd on the other instance: %d", r.code)
	}
	r := start(other)
	if r.code != 429 || r.errCode() != "rate_limited" || r.header.Get("Retry-After") != "55" {
		t.Fatalf("3rd: %d %s retry-after %q", r.code, r.body, r.header.Get("Retry-After"))
	}
	if r := doApp(t, e.srv, "POST", "/v1/properties/demo/offline-messages", map[string]string{"email": "a@b.example", "text": "x"}); r.code != 429 {
		t.Errorf("offline message counts as a chat: %d", r.code)
	}
	if r := start(e.srv); r.code != 429 {
		t.Errorf("4th on the first instance: %d", r.code)
	}

	id, tok := e.startChatNextMinute()
	for i := range 3 {
		if r := e.do("POST", "/v1/chats/"+id+"/messages", map[string]string{"text": "m"}, "Authorization", "Bearer "+tok); r.code != 202 {
			t.Fatalf("message %d: %d", i, r.code)
		}
	}
	if r := doApp(t, other, "POST", "/v1/chats/"+id+"/messages", map[string]string{"text": "m"}, "Authorization", "Bearer "+tok); r.code != 429 {
		t.Errorf("4th message: %d", r.code)
	}
	e.clock.Advance(time.Minute)
	if r := e.do("POST", "/v1/chats/"+id+"/messages", map[string]string{"text": "m"}, "Authorization", "Bearer "+tok); r.code != 202 {
		t.Errorf("next window: %d", r.code)
	}

	t.Run("off", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.RateLimits.ChatsPerMinute = -1 })
		for i := range 25 {
			if r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"}); r.code != 201 {
				t.Fatalf("chat %d: %d", i, r.code)
			}
		}
	})
}

// startChatNextMinute moves the clock to a fresh window and starts a chat.
func (e *env) startChatNextMinute() (string, string) {
	e.clock.Advance(time.Minute)
	return e.startChat(propDemo, "hello")
}

func TestAdmin(t *testing.T) {
	e := newEnv(t)
	e.setStatus(agentAlice, presence.Online)
	e.reload()
	bearer := []string{"Authorization", "Bearer " + adminToken}

	t.Run("disabled without a token", func(t *testing.T) {
		cfg := e.cfg
		cfg.AdminToken = ""
		srv := New(cfg, e.watcher, e.store, e.chats, e.redis.Client, e.log)
		for _, h := range [][]string{nil, bearer, {"Authorization", "Bearer "}} {
			if r := doApp(t, srv, "GET", "/v1/admin/properties/demo/presence", nil, h...); r.code != 404 {
				t.Errorf("presence with %v: %d", h, r.code)
			}
			if r := doApp(t, srv, "PUT", "/v1/admin/agents/alice/status", map[string]string{"status": "away"}, h...); r.code != 404 {
				t.Errorf("set status with %v: %d", h, r.code)
			}
		}
	})

	t.Run("auth", func(t *testing.T) {
		for _, tc := range []struct {
			headers []string
			code    int
		}{
			{nil, 401},
			{[]string{"Authorization", "Bearer wrong"}, 403},
			{[]string{"Authorization", "Bearer " + adminToken + "x"}, 403},
			{[]string{"Authorization", "Basic " + adminToken}, 401},
			{bearer, 200},
		} {
			if r := e.do("GET", "/v1/admin/properties/demo/presence", nil, tc.headers...); r.code != tc.code {
				t.Errorf("%v: %d, want %d", tc.headers, r.code, tc.code)
			}
		}
	})

	t.Run("presence", func(t *testing.T) {
		r := e.do("GET", "/v1/admin/properties/acme/presence", nil, bearer...)
		var out struct {
			presence.Report
			Source string
			Stale  bool
		}
		r.json(t, &out)
		if r.code != 200 || out.Status != presence.Online || out.Source != "redis" || out.Reason != "online: Alice" || len(out.Agents) != 2 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		a := out.Agents[0]
		if a.ID != agentAlice || a.Status != presence.Online || a.Condition != presence.Always || a.Effective != presence.Online || a.LastActivity == nil || !a.Counts {
			t.Errorf("alice %+v", a)
		}
		b := out.Agents[1]
		if b.ID != agentBob || b.Effective != presence.Offline || b.Condition != presence.Activity || b.LastActivity != nil || b.Reason == "" {
			t.Errorf("bob %+v", b)
		}
		if r := e.do("GET", "/v1/admin/properties/nope/presence", nil, bearer...); r.code != 404 {
			t.Errorf("unknown property: %d", r.code)
		}
	})

	t.Run("set status", func(t *testing.T) {
		tests := []struct {
			name, agent string
			body        any
			code        int
			errCode     string
		}{
			{"status", "bob", map[string]string{"status": "away"}, 200, ""},
			{"condition", "bob", map[string]string{"condition": "always"}, 200, ""},
			{"both", "alice", map[string]string{"status": "invisible", "condition": "activity"}, 200, ""},
			{"neither", "bob", map[string]string{}, 400, "missing_field"},
			{"bad status", "bob", map[string]string{"status": "busy"}, 400, "invalid_status"},
			{"bad condition", "bob", map[string]string{"condition": "sometimes"}, 400, "invalid_condition"},
			{"malformed", "bob", "{", 400, "malformed_json"},
			{"unknown agent", "zed", map[string]string{"status": "away"}, 404, "unknown_agent"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do("PUT", "/v1/admin/agents/"+tc.agent+"/status", tc.body, bearer...)
				if r.code != tc.code || r.errCode() != tc.errCode {
					t.Fatalf("%d %s", r.code, r.body)
				}
			})
		}
		ctx := context.Background()
		bob, _ := e.store.Get(ctx, agentBob)
		alice, _ := e.store.Get(ctx, agentAlice)
		if bob.Status != presence.Away || bob.Condition != presence.Always {
			t.Errorf("bob stored %+v", bob)
		}
		if alice.Status != presence.Invisible || alice.Condition != presence.Activity {
			t.Errorf("alice stored %+v", alice)
		}
		r := e.do("PUT", "/v1/admin/agents/bob/status", map[string]string{"status": "online"}, bearer...)
		if !strings.Contains(string(r.body), `"effective":"online"`) || !strings.Contains(string(r.body), `"condition":"always"`) {
			t.Errorf("response %s", r.body)
		}
	})

	t.Run("through the bridge", func(t *testing.T) {
		// Presence is set through the bridge, so the change has the
		// consequences of the agent's own command.
		ps := &presenceSetter{fakeChats: e.chats}
		srv := New(e.cfg, e.watcher, e.store, ps, e.redis.Client, e.log)
		r := doApp(t, srv, "PUT", "/v1/admin/agents/bob/status", map[string]string{"status": "away", "condition": "activity"}, bearer...)
		if r.code != 200 || !strings.Contains(string(r.body), `"status":"away"`) {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if got := ps.calls; len(got) != 1 || got[0] != "bob away activity" {
			t.Errorf("SetPresence calls %q, want [bob away activity]", got)
		}
		ps.err = fmt.Errorf("bridge: set status: %w", presence.ErrUnknownAgent)
		if r := doApp(t, srv, "PUT", "/v1/admin/agents/bob/status", map[string]string{"status": "away"}, bearer...); r.code != 404 || r.errCode() != "unknown_agent" {
			t.Errorf("unknown agent from the bridge: %d %s", r.code, r.body)
		}
	})

	t.Run("redis down", func(t *testing.T) {
		down := presence.NewStore(downRedis(t), e.dir, presence.Keys{Prefix: e.redis.Prefix}, nil)
		srv := New(e.cfg, e.watcher, down, onStore{e.chats, down}, e.redis.Client, e.log)
		r := doApp(t, srv, "GET", "/v1/admin/properties/demo/presence", nil, bearer...)
		if r.code != 200 || !strings.Contains(string(r.body), `"source":"snapshot"`) || r.header.Get(HeaderStale) != "true" {
			t.Errorf("presence fallback: %d %s", r.code, r.body)
		}
		r = doApp(t, srv, "PUT", "/v1/admin/agents/bob/status", map[string]string{"status": "away"}, bearer...)
		if r.code != 503 || r.errCode() != "unavailable" {
			t.Errorf("set status: %d %s", r.code, r.body)
		}
	})
}

func TestAssets(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/widget.js", nil)
	if r.code != 200 || !bytes.Equal(r.body, widgetJS) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/javascript") {
		t.Fatalf("widget.js: %d %v", r.code, r.header)
	}
	etag := r.header.Get("ETag")
	if etag == "" || !strings.Contains(r.header.Get("Cache-Control"), "max-age") {
		t.Errorf("caching headers %v", r.header)
	}
	if r := e.do("GET", "/widget.js", nil, "If-None-Match", etag); r.code != 304 {
		t.Errorf("If-None-Match: %d", r.code)
	}
	r = e.do("GET", "/widget.js", nil, "Accept-Encoding", "gzip, br")
	if r.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", r.header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, widgetJS) {
		t.Errorf("gzip body differs")
	}
	t.Logf("widget.js: %d bytes, %d gzipped", len(widgetJS), len(r.body))
	if len(r.body) > 15*1024 {
		t.Errorf("widget.js is %d bytes gzipped, over 15 KB", len(r.body))
	}

	r = e.do("GET", "/", nil)
	if r.code != 200 || !strings.Contains(string(r.body), `<script src="/widget.js" data-property="demo" async></script>`) {
		t.Errorf("demo page: %d %s", r.code, r.body)
	}
}

func TestMetricsAndNotFound(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/v1/properties/demo/status", nil)
	e.startChat(propDemo, "hi")
	if r := e.do("GET", "/nope", nil); r.code != 404 || r.errCode() != "not_found" {
		t.Errorf("unknown path: %d %s", r.code, r.body)
	}
	r := e.do("GET", "/metrics", nil)
	for _, want := range []string{
		`onduty_http_requests_total{code="200",route="/v1/properties/:p/status"}`,
		`onduty_http_requests_total{code="404",route="unmatched"}`,
		`onduty_chats_started_total{property="demo"}`,
	} {
		if r.code != 200 || !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestServerWideBodyLimit(t *testing.T) {
	e := newEnv(t)
	base := e.serve()
	// Announce a body over the server-wide limit; the server answers from
	// the headers alone (a client still sending would see a reset).
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/properties/demo/chats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", uploadBodyBytes+1)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if r := (resp{code: res.StatusCode, body: b}); r.code != 413 || r.errCode() != "too_large" {
		t.Errorf("%d %s", r.code, r.body)
	}
}

func TestMount(t *testing.T) {
	e := newEnv(t)
	var got []string
	e.srv.Mount("/telegram/webhook", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		w.WriteHeader(http.StatusTeapot)
	}))
	e.srv.Mount("/slack", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
	}))
	// A Telegram update may be larger than the visitor API's 16 KiB.
	big := `{"update_id":1,"text":"` + strings.Repeat("😀", 4096) + `"}`
	if r := e.do("POST", "/telegram/webhook", big); r.code != http.StatusTeapot {
		t.Errorf("webhook: %d %s", r.code, r.body)
	}
	if r := e.do("POST", "/slack/events", "{}"); r.code != 200 {
		t.Errorf("slack: %d", r.code)
	}
	if len(got) != 2 || got[0] != "POST /telegram/webhook "+big || got[1] != "POST /slack/events" {
		t.Errorf("handlers saw %q", got)
	}
}

func TestFile(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hi")
	e.chats.mu.Lock()
	e.chats.chats[bridge.ChatID(id)].files["k1"] = []byte("hello file")
	e.chats.mu.Unlock()
	r := e.do("GET", "/v1/chats/"+id+"/files/k1?token="+tok, nil)
	if r.code != 200 || string(r.body) != "hello file" || r.header.Get("Content-Type") != "text/plain" || !strings.Contains(r.header.Get("Content-Disposition"), "f.txt") {
		t.Errorf("%d %s %v", r.code, r.body, r.header)
	}
	if r := e.do("GET", "/v1/chats/"+id+"/files/k2?token="+tok, nil); r.code != 404 {
		t.Errorf("unknown file: %d", r.code)
	}
}

// TestStatusNeedsNoRedis: the status endpoint answers from the watcher's
// memory, so it keeps answering when its Redis is unreachable.
func TestStatusNeedsNoRedis(t *testing.T) {
	e := newEnv(t)
	e.setStatus(agentAlice, presence.Online)
	e.reload()
	down := downRedis(t)
	srv := New(e.cfg, e.watcher, presence.NewStore(down, e.dir, presence.Keys{Prefix: e.redis.Prefix}, nil), e.chats, down, e.log)
	for i := range 50 {
		r := doApp(t, srv, "GET", "/v1/properties/demo/status", nil)
		if r.code != 200 || !strings.Contains(string(r.body), `"status":"online"`) {
			t.Fatalf("request %d: %d %s", i, r.code, r.body)
		}
	}
}

// presenceSetter is the fake bridge with a SetPresence that records its
// calls and answers with the state asked for.
type presenceSetter struct {
	*fakeChats
	calls []string
	err   error
}

func (p *presenceSetter) SetPresence(ctx context.Context, id presence.AgentID, s presence.Status, c presence.Condition) (presence.State, error) {
	p.calls = append(p.calls, strings.TrimSpace(fmt.Sprintf("%s %s %s", id, s, c)))
	if p.err != nil {
		return presence.State{}, p.err
	}
	return presence.State{Status: s, Condition: c}, nil
}

// TestReadyAdapters: a chat platform that stopped (its token was revoked)
// makes /readyz answer 503 naming it, and the admin board says so, live.
func TestReadyAdapters(t *testing.T) {
	var mu sync.Mutex
	states := []bridge.AdapterState{{Name: "telegram", Up: true}, {Name: "slack", Up: true}}
	set := func(s ...bridge.AdapterState) { mu.Lock(); states = s; mu.Unlock() }
	e := newEnv(t, func(c *Config) {
		c.Adapters = func() []bridge.AdapterState {
			mu.Lock()
			defer mu.Unlock()
			return append([]bridge.AdapterState(nil), states...)
		}
	})
	e.runWatcher()
	base := e.serve()
	s := openSSE(t, base+"/v1/admin/events", adminBearer...)
	first := s.next("adapters")
	if !strings.Contains(first.Data, `{"name":"telegram","up":true}`) {
		t.Errorf("first adapters event %s", first.Data)
	}
	if r := e.do("GET", "/readyz", nil); r.code != 200 {
		t.Errorf("readyz with every adapter up: %d %s", r.code, r.body)
	}

	set(bridge.AdapterState{Name: "telegram", Reason: "token rejected (401)"}, bridge.AdapterState{Name: "slack", Up: true})
	r := e.do("GET", "/readyz", nil)
	var got struct {
		NotReady []string `json:"not_ready"`
	}
	r.json(t, &got)
	if r.code != 503 || len(got.NotReady) != 1 || got.NotReady[0] != "telegram: token rejected (401)" {
		t.Errorf("readyz with telegram stopped: %d %s", r.code, r.body)
	}
	ev := s.next("adapters", "presence", "chats")
	if !strings.Contains(ev.Data, `{"name":"telegram","up":false,"reason":"token rejected (401)"}`) {
		t.Errorf("board adapters event after the stop: %s", ev.Data)
	}
	s.Close()
}

// onStore is the fake bridge keeping presence in another store (one whose
// Redis is down).
type onStore struct {
	*fakeChats
	store *presence.Store
}

func (o onStore) SetPresence(ctx context.Context, id presence.AgentID, s presence.Status, c presence.Condition) (presence.State, error) {
	return setPresence(ctx, o.store, id, s, c)
}
