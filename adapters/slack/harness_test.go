package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

const testSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// fakeHandler records actions and answers with canned replies. In front
// of it sits what the bridge's Handle does before anything else: an action
// whose DedupKey was handled is ignored (one being handled gets
// bridge.ErrInProgress; a failed one may come again), a ReplyTo is looked
// up among the refs Keep recorded, and a Shared message that belongs to no
// chat becomes activity. Only what passes is recorded.
type fakeHandler struct {
	bridgetest.Handler
	mu   sync.Mutex
	keys map[string]string // DedupKey → "busy" or "done"
}

func (h *fakeHandler) Handle(ctx context.Context, act bridge.Action) (bridge.Reply, error) {
	if act.Chat == "" && act.ReplyTo != nil {
		act.Chat, _ = h.ChatOf(ctx, act.Surface, *act.ReplyTo)
	}
	if act.Kind == bridge.ActMessage && act.Shared && act.Chat == "" {
		// Talk among the team: activity, whose text goes nowhere.
		act.Kind, act.Shared, act.Text = bridge.ActActivity, false, ""
	}
	if k := act.DedupKey; k != "" {
		h.mu.Lock()
		if h.keys == nil {
			h.keys = map[string]string{}
		}
		state := h.keys[k]
		if state == "" {
			h.keys[k] = "busy"
		}
		h.mu.Unlock()
		switch state {
		case "busy":
			return bridge.Reply{}, bridge.ErrInProgress
		case "done":
			return bridge.Reply{}, nil
		}
		defer func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.keys[k] == "busy" {
				delete(h.keys, k)
			}
		}()
	}
	reply, err := h.Handler.Handle(ctx, act)
	if err == nil && act.DedupKey != "" {
		h.mu.Lock()
		h.keys[act.DedupKey] = "done"
		h.mu.Unlock()
	}
	return reply, err
}

func testDirectory(t testing.TB) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme & Co"}, {ID: "beta", Name: "Beta"}},
		[]presence.Agent{
			{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme", "beta"}, Accounts: slackAccount("U111")},
			{ID: "bob", Name: "Bob", Properties: []presence.PropertyID{"acme"}, Accounts: slackAccount("U222")},
			{ID: "carol", Name: "Carol", Properties: []presence.PropertyID{"acme"}, Accounts: map[presence.Surface]string{"telegram": "7"}},
			{ID: "dave", Name: "Dave", Properties: []presence.PropertyID{"beta"}, Accounts: slackAccount("U444"), Condition: presence.Always},
		})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

type harness struct {
	t     testing.TB
	mode  string
	a     *Adapter
	fake  *fakeSlack
	h     *fakeHandler
	redis *redistest.Redis
	seq   atomic.Int64

	mu      sync.Mutex
	threads map[string]bridge.RemoteRef // "chat|target" → the chat's root there
}

// newAdapter builds an adapter against fake; it is not running.
func newAdapter(t testing.TB, fake *fakeSlack, r *redistest.Redis, mode string, dir *presence.Directory, tweak ...func(*Config)) *Adapter {
	t.Helper()
	cfg := Config{
		BotToken: "xoxb-test", AppToken: "xapp-test", SigningSecret: testSecret, Mode: mode,
		APIURL:     strings.TrimSuffix(fake.apiURL(), "/"), // New adds the slash
		Channels:   map[presence.PropertyID]string{"acme": "C1"},
		Prefix:     r.Prefix,
		HTTPClient: fake.srv.Client(),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	a, err := New(cfg, dir, r.Client, testlog.Logger())
	if err != nil {
		t.Fatal(err)
	}
	a.pace = newPacer(time.Millisecond, 3) // TestPacer covers the real pace
	return a
}

// newHarness runs an adapter in mode against a fake Slack and a fake bridge.
func newHarness(t testing.TB, mode string, tweak ...func(*Config)) *harness {
	t.Helper()
	return newHarnessPrep(t, mode, nil, tweak...)
}

// newHarnessPrep is newHarness with prep run on the adapter before it starts.
func newHarnessPrep(t testing.TB, mode string, prep func(*Adapter), tweak ...func(*Config)) *harness {
	t.Helper()
	fake := newFakeSlack(t)
	r := redistest.New(t)
	hs := &harness{t: t, mode: mode, fake: fake, h: &fakeHandler{}, redis: r}
	hs.a = newAdapter(t, fake, r, mode, testDirectory(t), tweak...)
	if prep != nil {
		prep(hs.a)
	}
	hs.start(hs.h)
	return hs
}

func (hs *harness) start(h bridge.Host) {
	t := hs.t
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hs.a.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	wait.For(t, "adapter running", func() bool { return hs.a.handler() != nil })
	if hs.mode == ModeSocket {
		wait.For(t, "socket connected", func() bool {
			hs.fake.mu.Lock()
			defer hs.fake.mu.Unlock()
			return hs.fake.conns > 0
		})
	}
}

// sign returns Slack's signature headers for body at time ts.
func sign(secret string, ts time.Time, body []byte) http.Header {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%s:%s", stamp, body)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", stamp)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	return h
}

// post calls one of the events-mode handlers with a signed body.
func (hs *harness) post(path, contentType string, body []byte, extra http.Header) *httptest.ResponseRecorder {
	hdr := sign(testSecret, time.Now(), body)
	for k, v := range extra {
		hdr[k] = v
	}
	return hs.postRaw(path, contentType, body, hdr)
}

func (hs *harness) postRaw(path, contentType string, body []byte, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	req.Header = hdr.Clone()
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h, ok := hs.a.HTTPHandlers()[path]
	if !ok {
		hs.t.Fatalf("no handler for %s", path)
	}
	h.ServeHTTP(rec, req)
	return rec
}

func eventBody(eventID string, inner map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{
		"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
		"event_id": eventID, "event_time": 1700000000, "event": inner,
	})
	return b
}

// message delivers a message event through the harness's mode.
func (hs *harness) message(eventID string, inner map[string]any) {
	hs.t.Helper()
	if _, ok := inner["type"]; !ok {
		inner["type"] = "message"
	}
	if hs.mode == ModeEvents {
		rec := hs.post("/slack/events", "application/json", eventBody(eventID, inner), nil)
		if rec.Code != http.StatusOK {
			hs.t.Fatalf("events: %d %s", rec.Code, rec.Body)
		}
		return
	}
	var payload map[string]any
	_ = json.Unmarshal(eventBody(eventID, inner), &payload)
	hs.fake.send("env-"+eventID, "events_api", payload)
}

// command runs "/onduty text" as user and returns Slack's immediate answer
// (the HTTP body or the ack payload), empty if none.
func (hs *harness) command(user, channel, text string) string {
	hs.t.Helper()
	fields := map[string]string{
		"token": "x", "team_id": "T1", "channel_id": channel, "user_id": user, "user_name": "u",
		"command": "/onduty", "text": text, "response_url": hs.fake.srv.URL + "/response/" + user, "trigger_id": "tr" + strconv.FormatInt(hs.seq.Add(1), 10),
	}
	if hs.mode == ModeEvents {
		form := url.Values{}
		for k, v := range fields {
			form.Set(k, v)
		}
		rec := hs.post("/slack/commands", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
		if rec.Code != http.StatusOK {
			hs.t.Fatalf("commands: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	env := "cmd-" + strconv.FormatInt(hs.seq.Add(1), 10)
	hs.fake.send(env, "slash_commands", fields)
	var ack socketAck
	wait.For(hs.t, "ack of "+env, func() bool {
		var ok bool
		ack, ok = hs.fake.ackFor(env)
		return ok
	})
	if string(ack.Payload) == "null" {
		return ""
	}
	return string(ack.Payload)
}

// button presses a block_actions button as user.
func (hs *harness) button(user, actionID, value, channel, threadTS string) {
	hs.t.Helper()
	n := strconv.FormatInt(hs.seq.Add(1), 10)
	payload := map[string]any{
		"type": "block_actions", "trigger_id": "trig-" + n, "api_app_id": "A1",
		"user":      map[string]any{"id": user, "username": "u"},
		"team":      map[string]any{"id": "T1"},
		"channel":   map[string]any{"id": channel, "name": "support"},
		"container": map[string]any{"type": "message", "message_ts": "1700000000.000001", "channel_id": channel, "thread_ts": threadTS},
		"actions": []map[string]any{{
			"action_id": actionID, "block_id": "offer", "value": value, "type": "button",
			"text": map[string]any{"type": "plain_text", "text": "Accept"}, "action_ts": "1700000001.000001",
		}},
	}
	if hs.mode == ModeEvents {
		b, _ := json.Marshal(payload)
		form := url.Values{"payload": {string(b)}}
		rec := hs.post("/slack/interactions", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
		if rec.Code != http.StatusOK {
			hs.t.Fatalf("interactions: %d %s", rec.Code, rec.Body)
		}
		return
	}
	env := "act-" + n
	hs.fake.send(env, "interactive", payload)
	wait.For(hs.t, "ack of "+env, func() bool { _, ok := hs.fake.ackFor(env); return ok })
}

// offer delivers a new chat to the acme channel and returns its root ts.
func (hs *harness) offer(chat bridge.ChatID, first string) string {
	hs.t.Helper()
	refs := hs.deliver(bridge.Delivery{
		ID: "offer-" + string(chat), Kind: bridge.KindOffer,
		Chat:    bridge.Chat{ID: chat, Property: "acme", State: bridge.Pending, Visitor: bridge.Visitor{Name: "Vera", Email: "vera@example.com"}},
		Message: &bridge.Message{Chat: chat, From: bridge.FromVisitor, Text: first},
	})
	if len(refs) == 0 || refs[0].Role != bridge.RefThread {
		hs.t.Fatalf("offer of %s made %+v, want its root", chat, refs)
	}
	return refs[0].Thread
}

// deliver hands d to the adapter as the bridge would: with the chat's
// thread for d's target from earlier deliveries, and the refs it returns
// kept (for the next deliveries, and for the handler's ChatOf).
func (hs *harness) deliver(d bridge.Delivery) []bridge.RemoteRef {
	hs.t.Helper()
	refs, err := hs.deliverErr(d)
	if err != nil {
		hs.t.Fatalf("deliver %s: %v", d.ID, err)
	}
	return refs
}

func (hs *harness) deliverErr(d bridge.Delivery) ([]bridge.RemoteRef, error) {
	key := string(d.Chat.ID) + "|" + string(d.Agent)
	hs.mu.Lock()
	if r, ok := hs.threads[key]; ok && d.Chat.ID != "" {
		d.Thread = &r
	}
	hs.mu.Unlock()
	refs, err := hs.a.Deliver(context.Background(), d)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, r := range refs {
		if r.Role == bridge.RefThread {
			if hs.threads == nil {
				hs.threads = map[string]bridge.RemoteRef{}
			}
			hs.threads[key] = r
		}
	}
	if hs.h != nil && d.Chat.ID != "" {
		hs.h.Keep(hs.a.Name(), d.Chat.ID, refs...)
	}
	return refs, err
}

// rootOf is the ts of the root message posted for chat (its offer, with
// the chat's id on its buttons) in channel.
func rootOf(t testing.TB, fake *fakeSlack, channel string, chat bridge.ChatID) string {
	t.Helper()
	var ts string
	wait.For(t, "the root of "+string(chat), func() bool {
		for _, c := range fake.callsOf("chat.postMessage") {
			if c.Form.Get("channel") == channel && c.Form.Get("thread_ts") == "" && strings.Contains(blocksOf(c), `"value":"`+string(chat)+`"`) {
				ts = c.TS
				return true
			}
		}
		return false
	})
	return ts
}

// unJSON undoes encoding/json's HTML-safe escapes so tests can read text.
func unJSON(s string) string {
	return strings.NewReplacer(`\u0026`, "&", `\u003c`, "<", `\u003e`, ">").Replace(s)
}

// blocksOf is a call's blocks as readable JSON.
func blocksOf(c apiCall) string { return unJSON(c.Form.Get("blocks")) }

var modes = []string{ModeEvents, ModeSocket}

// slackAccount is an agent's Accounts with the Slack user id.
func slackAccount(user string) map[presence.Surface]string {
	return map[presence.Surface]string{Surface: user}
}
