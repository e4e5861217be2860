package widget

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// TestBlockedVisitorAcrossInstances: an agent blocks a chat's visitor on
// one instance; a second instance (its own bridge and server on the same
// Redis) answers that visitor 403 blocked for new chats, offline messages
// and messages, lists the block for the admin and lifts it on DELETE.
func TestBlockedVisitorAcrossInstances(t *testing.T) {
	trusted := func(c *Config) { c.TrustedProxies = mustPrefixes(t, "0.0.0.0/32") }
	e := newEnvDir(t, boardDirectory(t), trusted)
	startBridge := func() *bridge.Bridge {
		b, err := bridge.New(bridge.Config{
			Prefix:     e.redis.Prefix,
			Properties: map[presence.PropertyID]bridge.Routing{propDemo: {}, propAcme: {}, propQuiet: {}},
			PollEvery:  20 * time.Millisecond,
		}, e.redis.NewClient(t), e.store, e.watcher, e.log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = b.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return b
	}
	one := New(e.cfg, e.watcher, e.store, startBridge(), e.redis.Client, e.log)
	two := New(e.cfg, e.watcher, e.store, startBridge(), e.redis.NewClient(t), e.log)
	e.setStatus(agentAlice, presence.Online)
	e.reload()

	const spammer, neighbour = "203.0.113.9", "198.51.100.4"
	const vid, otherVid = "5f0e1d2c3b4a59687766554433221100", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	from := func(ip string) []string { return []string{"X-Forwarded-For", ip} }
	start := func(srv *Server, ip string) resp {
		return doApp(t, srv, "POST", "/v1/properties/acme/chats", map[string]string{"message": "buy cheap watches", "name": "Spam", "visitor_id": vid}, from(ip)...)
	}
	r := start(one, spammer)
	if r.code != http.StatusCreated {
		t.Fatalf("start: %d %s", r.code, r.body)
	}
	var chat startChatResponse
	r.json(t, &chat)
	// An earlier chat from the same address, still open.
	r = start(one, spammer)
	var chat2 startChatResponse
	r.json(t, &chat2)

	act := func(srv *Server, body map[string]string) string {
		t.Helper()
		r := doApp(t, srv, "POST", "/v1/admin/agents/alice/actions", body, adminBearer...)
		var out actionResponse
		r.json(t, &out)
		if r.code != 200 {
			t.Fatalf("action %v: %d %s", body, r.code, r.body)
		}
		return out.Reply
	}
	// The metrics are process-wide: count from here on.
	scrape := func() []byte { return doApp(t, one, "GET", "/metrics", nil).body }
	blocked := func(kind string) float64 {
		v, _ := metricValue(t, scrape(), `onduty_blocked_requests_total{kind="`+kind+`",property="acme"}`)
		return v
	}
	chats0, offline0, msgs0 := blocked("chat"), blocked("offline_message"), blocked("message")
	act(one, map[string]string{"command": "accept", "chat_id": string(chat.ChatID)})
	if reply := act(one, map[string]string{"command": "block", "args": "2d", "chat_id": string(chat.ChatID)}); !strings.Contains(reply, "Blocked the visitor") {
		t.Fatalf("block: %q", reply)
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   map[string]string
		ip     string
		token  string
		want   int
		code   string
	}{
		{"new chat", "POST", "/v1/properties/acme/chats", map[string]string{"message": "hi again"}, spammer, "", 403, "blocked"},
		{"offline message", "POST", "/v1/properties/acme/offline-messages", map[string]string{"email": "s@example.com", "text": "hi"}, spammer, "", 403, "blocked"},
		{"message in the open chat of the address, from elsewhere", "POST", "/v1/chats/" + string(chat2.ChatID) + "/messages", map[string]string{"text": "hello?"}, neighbour, chat2.VisitorToken, 403, "blocked"},
		{"message in the blocked chat", "POST", "/v1/chats/" + string(chat.ChatID) + "/messages", map[string]string{"text": "hello?"}, spammer, chat.VisitorToken, 409, "chat_closed"},
		{"the blocked visitor id from another address", "POST", "/v1/properties/acme/chats", map[string]string{"message": "hi", "visitor_id": vid}, neighbour, "", 403, "blocked"},
		{"offline message, visitor id", "POST", "/v1/properties/acme/offline-messages", map[string]string{"email": "s@example.com", "text": "hi", "visitor_id": vid}, neighbour, "", 403, "blocked"},
		{"bad visitor id", "POST", "/v1/properties/acme/chats", map[string]string{"message": "hi", "visitor_id": "short"}, neighbour, "", 400, "invalid_visitor_id"},
		{"another visitor", "POST", "/v1/properties/acme/chats", map[string]string{"message": "hello", "visitor_id": otherVid}, neighbour, "", 201, ""},
	}
	for _, srv := range []struct {
		name string
		s    *Server
	}{{"same instance", one}, {"second instance", two}} {
		for _, tt := range tests {
			t.Run(srv.name+"/"+tt.name, func(t *testing.T) {
				h := from(tt.ip)
				if tt.token != "" {
					h = append(h, "Authorization", "Bearer "+tt.token)
				}
				r := doApp(t, srv.s, tt.method, tt.path, tt.body, h...)
				if r.code != tt.want || r.errCode() != tt.code {
					t.Errorf("%d %s, want %d %q", r.code, r.body, tt.want, tt.code)
				}
			})
		}
	}

	// Per instance pair: 2 new chats, 2 offline messages, 1 message refused.
	if c, o, m := blocked("chat")-chats0, blocked("offline_message")-offline0, blocked("message")-msgs0; c != 4 || o != 4 || m != 2 {
		t.Errorf("onduty_blocked_requests_total: chat +%v, offline_message +%v, message +%v; want +4, +4, +2", c, o, m)
	}

	// The admin list, on the second instance.
	r = doApp(t, two, "GET", "/v1/admin/properties/acme/blocks", nil, adminBearer...)
	var blocks []map[string]any
	r.json(t, &blocks)
	if r.code != 200 || len(blocks) != 1 || blocks[0]["chat_id"] != string(chat.ChatID) || blocks[0]["ip"] != spammer || blocks[0]["visitor_id"] != vid || blocks[0]["id"] == "" {
		t.Fatalf("blocks: %d %s", r.code, r.body)
	}
	if until, err := time.Parse(time.RFC3339, blocks[0]["until"].(string)); err != nil || until.Sub(time.Now()) < 47*time.Hour || until.Sub(time.Now()) > 49*time.Hour {
		t.Errorf("until %v (%v), want about 2 days from now", blocks[0]["until"], err)
	}
	id := blocks[0]["id"].(string)
	for _, tt := range []struct {
		name, method, path string
		headers            []string
		want               int
		code               string
	}{
		{"list without token", "GET", "/v1/admin/properties/acme/blocks", nil, 401, "missing_token"},
		{"list unknown property", "GET", "/v1/admin/properties/nope/blocks", adminBearer, 404, "unknown_property"},
		{"delete without token", "DELETE", "/v1/admin/properties/acme/blocks/" + id, nil, 401, "missing_token"},
		{"delete wrong token", "DELETE", "/v1/admin/properties/acme/blocks/" + id, []string{"Authorization", "Bearer nope"}, 403, "forbidden"},
		{"delete unknown block", "DELETE", "/v1/admin/properties/acme/blocks/nosuchblock", adminBearer, 404, "unknown_block"},
		{"delete in another property", "DELETE", "/v1/admin/properties/quiet/blocks/" + id, adminBearer, 404, "unknown_block"},
		{"delete", "DELETE", "/v1/admin/properties/acme/blocks/" + id, adminBearer, 204, ""},
		{"delete again", "DELETE", "/v1/admin/properties/acme/blocks/" + id, adminBearer, 404, "unknown_block"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := doApp(t, two, tt.method, tt.path, nil, tt.headers...)
			if r.code != tt.want || r.errCode() != tt.code {
				t.Errorf("%d %s, want %d %q", r.code, r.body, tt.want, tt.code)
			}
		})
	}
	if r := start(one, spammer); r.code != http.StatusCreated {
		t.Errorf("after the admin lifted the block: %d %s", r.code, r.body)
	}
	if r := doApp(t, one, "GET", "/v1/admin/properties/acme/blocks", nil, adminBearer...); r.code != 200 || strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("blocks after lifting: %d %s", r.code, r.body)
	}
}
