package slack

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/onduty/onduty/internal/outage"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// The conformance driver's Slack: the property's channel, the agent and a
// stranger in the workspace. The driver talks to the adapter only through
// New, HTTPHandlers and the fake Slack, so it works whatever the adapter's
// insides.
const (
	confChannel  = "C1"
	confAgent    = "U111"
	confStranger = "U999"
	confSecret   = "conf0secret1for2signing3requests"
)

// TestConformance runs the adapter conformance suite on the fake Slack
// (events mode: Slack's HTTP requests, signed).
func TestConformance(t *testing.T) {
	bridgetest.Run(t, func(t *testing.T, env bridgetest.Env) bridgetest.Platform {
		p := &confSlack{fake: newFakeSlack(t), env: env}
		p.proxy = &outage.Proxy{
			Next:    http.HandlerFunc(p.serve),
			Affects: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") },
			Refuse: func(w http.ResponseWriter, mode string) {
				if mode == outage.RateLimited {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusServiceUnavailable)
			},
		}
		p.front = httptest.NewServer(p.proxy)
		t.Cleanup(p.front.Close)
		return p
	})
}

// confSlack is Slack for the suite: the fake Web API behind a front that
// can fail (Down, RateLimit) and that keeps what chat.postMessage showed.
type confSlack struct {
	fake  *fakeSlack
	front *httptest.Server
	proxy *outage.Proxy // fails Web API calls during an outage
	env   bridgetest.Env
	a     *Adapter
	seq   atomic.Int64

	mu      sync.Mutex
	posts   []confPost
	limit   int           // chat.postMessage calls still to answer 429
	after   time.Duration // their Retry-After
	limited []confPost    // the calls answered 429
}

// confPost is one chat.postMessage call that reached the front.
type confPost struct {
	channel, thread, text, blocks, ts string
	ok                                bool
	at                                time.Time
}

var _ bridgetest.Platform = (*confSlack)(nil)

func (p *confSlack) Surface() presence.Surface { return Surface }
func (p *confSlack) Account() string           { return confAgent }
func (p *confSlack) Caps() bridgetest.Caps {
	return bridgetest.Caps{Files: true, Outage: true, RateLimit: true, Duplicates: true, Forgery: true}
}

// serve fronts the fake's Web API.
func (p *confSlack) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	var post confPost
	if method == "chat.postMessage" {
		form := url.Values{}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			var m map[string]any
			_ = json.Unmarshal(body, &m)
			for k, v := range m {
				if s, ok := v.(string); ok {
					form.Set(k, s)
				} else {
					b, _ := json.Marshal(v)
					form.Set(k, string(b))
				}
			}
		} else {
			form, _ = url.ParseQuery(string(body))
		}
		post = confPost{channel: form.Get("channel"), thread: form.Get("thread_ts"), text: form.Get("text"),
			blocks: form.Get("blocks"), at: time.Now()}
	}
	p.mu.Lock()
	if method == "chat.postMessage" && p.limit > 0 {
		p.limit--
		p.limited = append(p.limited, post)
		secs := strconv.Itoa(int(p.after / time.Second))
		p.mu.Unlock()
		w.Header().Set("Retry-After", secs)
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	p.mu.Unlock()
	rec := httptest.NewRecorder()
	p.fake.srv.Config.Handler.ServeHTTP(rec, r)
	if method == "chat.postMessage" {
		var ans struct {
			OK bool   `json:"ok"`
			TS string `json:"ts"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &ans)
		post.ok, post.ts = ans.OK, ans.TS
		p.mu.Lock()
		p.posts = append(p.posts, post)
		p.mu.Unlock()
	}
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	// Upload URLs name the front: the adapter sends the token to the API's host only.
	_, _ = w.Write(bytes.ReplaceAll(rec.Body.Bytes(), []byte(p.fake.srv.URL), []byte(p.front.URL)))
}

func (p *confSlack) Adapter(t *testing.T, dir *presence.Directory) bridge.Adapter {
	a, err := New(Config{
		BotToken: "xoxb-test", SigningSecret: confSecret, Mode: ModeEvents,
		APIURL:   p.front.URL + "/api/",
		Channels: map[presence.PropertyID]string{bridgetest.SuiteProperty: confChannel},
		Prefix:   p.env.Redis.Prefix, HTTPClient: &http.Client{Timeout: 2 * time.Second},
	}, dir, p.env.Redis.Client, testlog.Logger())
	if err != nil {
		t.Fatal(err)
	}
	p.a = a
	return a
}

func (p *confSlack) Ready(t *testing.T) {
	wait.For(t, "the adapter to call auth.test", func() bool { return len(p.fake.callsOf("auth.test")) > 0 })
}

// request posts a signed (with secret, at ts) request to one of the
// adapter's endpoints, again while it answers 503 (not running yet, busy),
// and returns the status and body.
func (p *confSlack) request(t *testing.T, path, contentType string, body []byte, secret string, ts time.Time, hdr http.Header) (int, string) {
	t.Helper()
	var rec *httptest.ResponseRecorder
	wait.For(t, "an answer from "+path, func() bool {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		stamp := strconv.FormatInt(ts.Unix(), 10)
		m := hmac.New(sha256.New, []byte(secret))
		fmt.Fprintf(m, "v0:%s:%s", stamp, body)
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-Slack-Request-Timestamp", stamp)
		req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
		rec = httptest.NewRecorder()
		h, ok := p.a.HTTPHandlers()[path]
		if !ok {
			t.Fatalf("no handler for %s", path)
		}
		h.ServeHTTP(rec, req)
		return rec.Code != http.StatusServiceUnavailable
	})
	return rec.Code, rec.Body.String()
}

// must is request, signed now with the right secret, wanting 200.
func (p *confSlack) must(t *testing.T, path, contentType string, body []byte, hdr http.Header) {
	t.Helper()
	if code, ans := p.request(t, path, contentType, body, confSecret, time.Now(), hdr); code != http.StatusOK {
		t.Fatalf("%s answered %d %s", path, code, ans)
	}
}

func (p *confSlack) eventBody(user, text, threadTS string, extra map[string]any) []byte {
	n := p.seq.Add(1)
	ev := map[string]any{"type": "message", "user": user, "text": text, "channel": confChannel, "channel_type": "channel",
		"ts": fmt.Sprintf("1800000000.%06d", n), "thread_ts": threadTS}
	for k, v := range extra {
		ev[k] = v
	}
	b, _ := json.Marshal(map[string]any{"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
		"event_id": fmt.Sprintf("EvConf%d", n), "event_time": 1800000000, "event": ev})
	return b
}

func (p *confSlack) commandBody(user, channel, text string) []byte {
	return []byte(url.Values{"token": {"x"}, "team_id": {"T1"}, "channel_id": {channel}, "user_id": {user}, "user_name": {"u"},
		"command": {"/onduty"}, "text": {text}, "response_url": {p.fake.srv.URL + "/response/" + user},
		"trigger_id": {fmt.Sprintf("trConf%d", p.seq.Add(1))}}.Encode())
}

func (p *confSlack) buttonBody(user string, chat bridge.ChatID, rootTS string) []byte {
	n := p.seq.Add(1)
	b, _ := json.Marshal(map[string]any{
		"type": "block_actions", "trigger_id": fmt.Sprintf("trigConf%d", n), "api_app_id": "A1",
		"user": map[string]any{"id": user, "username": "u"}, "team": map[string]any{"id": "T1"},
		"channel":   map[string]any{"id": confChannel, "name": "support"},
		"container": map[string]any{"type": "message", "message_ts": rootTS, "channel_id": confChannel},
		"actions": []map[string]any{{"action_id": "onduty_accept", "block_id": "offer", "value": string(chat), "type": "button",
			"text": map[string]any{"type": "plain_text", "text": "Accept"}, "action_ts": fmt.Sprintf("1800000001.%06d", n)}},
	})
	return []byte(url.Values{"payload": {string(b)}}.Encode())
}

// root is the offer in the channel: the message the chat's thread hangs off.
func (p *confSlack) root(t *testing.T, chat bridge.ChatID) confPost {
	t.Helper()
	var got confPost
	wait.For(t, "the offer of "+string(chat)+" in the channel", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.posts {
			if c.ok && c.channel == confChannel && c.thread == "" && strings.Contains(c.blocks, `"value":"`+string(chat)+`"`) {
				got = c
				return true
			}
		}
		return false
	})
	return got
}

func (p *confSlack) WaitOffer(t *testing.T, chat bridge.ChatID, first string) {
	t.Helper()
	if r := p.root(t, chat); !strings.Contains(r.blocks, first) || !strings.Contains(r.blocks, "onduty_accept") {
		t.Errorf("offer %s lacks %q or its Accept button", r.blocks, first)
	}
}

func (p *confSlack) Accept(t *testing.T, chat bridge.ChatID) {
	p.must(t, "/slack/interactions", "application/x-www-form-urlencoded", p.buttonBody(confAgent, chat, p.root(t, chat).ts), nil)
}

// Reply writes in the chat's thread.
func (p *confSlack) Reply(t *testing.T, chat bridge.ChatID, text string) {
	p.must(t, "/slack/events", "application/json", p.eventBody(confAgent, text, p.root(t, chat).ts, nil), nil)
}

func (p *confSlack) Command(t *testing.T, _ bridge.ChatID, command string) {
	p.must(t, "/slack/commands", "application/x-www-form-urlencoded", p.commandBody(confAgent, "D111", command), nil)
}

func (p *confSlack) Seen(*testing.T) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.posts {
		if c.ok {
			out = append(out, c.text)
		}
	}
	return out
}

func (p *confSlack) WaitFile(t *testing.T, _ bridge.ChatID, name string) []byte {
	t.Helper()
	var data []byte
	wait.For(t, "an upload called "+name, func() bool {
		for _, u := range p.fake.uploaded() {
			if u.Name == name {
				data = u.Content
				return true
			}
		}
		return false
	})
	return data
}

// SendFile shares a file in the chat's thread; the fake serves a file's
// content as its name three times.
func (p *confSlack) SendFile(t *testing.T, chat bridge.ChatID, name string) []byte {
	data := strings.Repeat(name, 3)
	file := map[string]any{"id": "F" + name, "name": name, "mimetype": "text/plain", "size": len(data),
		"url_private_download": p.front.URL + "/files/" + name}
	p.must(t, "/slack/events", "application/json",
		p.eventBody(confAgent, "", p.root(t, chat).ts, map[string]any{"subtype": "file_share", "files": []any{file}}), nil)
	return []byte(data)
}

func (p *confSlack) Outage(_ *testing.T, mode string) { p.proxy.Start(mode, outage.Minute) }

func (p *confSlack) Recovered(t *testing.T) {
	wait.For(t, "the outage to end", p.proxy.Over)
	if p.proxy.Refused() == 0 {
		t.Error("the outage refused nothing")
	}
}

func (p *confSlack) RateLimit(t *testing.T, n int, retryAfter time.Duration) func(*testing.T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limit, p.after, p.limited = n, retryAfter, nil
	return func(t *testing.T) {
		t.Helper()
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.limited) != n {
			t.Errorf("%d sends answered 429, want %d", len(p.limited), n)
		}
		for _, l := range p.limited {
			for _, c := range append(append([]confPost(nil), p.limited...), p.posts...) {
				if c.channel == l.channel && c.at.After(l.at) && c.at.Sub(l.at) < retryAfter {
					t.Errorf("sent again %s after a 429 asking for %s", c.at.Sub(l.at), retryAfter)
				}
			}
		}
	}
}

// ReplyTwice posts one event twice, the second as Slack's retry.
func (p *confSlack) ReplyTwice(t *testing.T, chat bridge.ChatID, text string) {
	body := p.eventBody(confAgent, text, p.root(t, chat).ts, nil)
	p.must(t, "/slack/events", "application/json", body, nil)
	p.must(t, "/slack/events", "application/json", body, http.Header{"X-Slack-Retry-Num": {"1"}, "X-Slack-Retry-Reason": {"http_timeout"}})
}

// Forge: the agent's own words badly signed or replayed from long ago
// (refused 401), then a stranger presses Accept, writes in the thread and
// runs commands (answered, not applied).
func (p *confSlack) Forge(t *testing.T, chat bridge.ChatID) {
	t.Helper()
	root := p.root(t, chat).ts
	forged := []struct{ path, typ string }{{"/slack/interactions", "application/x-www-form-urlencoded"},
		{"/slack/events", "application/json"}, {"/slack/commands", "application/x-www-form-urlencoded"}}
	bodies := [][]byte{p.buttonBody(confAgent, chat, root), p.eventBody(confAgent, "forged answer", root, nil), p.commandBody(confAgent, "D111", "offline")}
	for i, f := range forged {
		for _, sig := range []struct {
			secret string
			at     time.Time
		}{{"not-the-secret", time.Now()}, {confSecret, time.Now().Add(-time.Hour)}} {
			if code, _ := p.request(t, f.path, f.typ, bodies[i], sig.secret, sig.at, nil); code != http.StatusUnauthorized {
				t.Errorf("forged %s answered %d, want 401", f.path, code)
			}
		}
	}
	// Strangers (one each, as a refusal is told once per user) run every
	// command, press every button, write in the chat's thread and to the bot.
	stranger := 0
	next := func() string { stranger++; return fmt.Sprintf("U9%03d", stranger) }
	commands := []string{"", "alwayson on", "alwayson off", "accept " + string(chat), "transfer Alice", "dance"}
	for _, c := range bridge.Commands {
		commands = append(commands, c.Name)
	}
	for _, c := range commands {
		code, body := p.request(t, "/slack/commands", "application/x-www-form-urlencoded", p.commandBody(next(), confChannel, c), confSecret, time.Now(), nil)
		if code != http.StatusOK || !strings.Contains(body, "not set up as an onduty agent") {
			t.Errorf("/onduty %s by a stranger answered %d %q", c, code, body)
		}
	}
	refused := map[string]bool{}
	for _, action := range []string{"onduty_accept", "onduty_monitor", "onduty_switch", "onduty_still_here"} {
		user := next()
		refused[user] = true
		body := strings.Replace(string(p.buttonBody(user, chat, root)), "onduty_accept", action, 1)
		p.must(t, "/slack/interactions", "application/x-www-form-urlencoded", []byte(body), nil)
	}
	user := next()
	refused[user] = true
	p.must(t, "/slack/events", "application/json", p.eventBody(user, "I take it", root, nil), nil)
	user = next()
	refused[user] = true
	p.must(t, "/slack/events", "application/json", p.eventBody(user, "/online", "", map[string]any{"channel": "D9", "channel_type": "im"}), nil)
	told := func() map[string]int {
		n := map[string]int{}
		for _, c := range p.fake.callsOf("chat.postEphemeral") {
			n[c.Form.Get("user")]++
		}
		return n
	}
	wait.For(t, "every stranger refused", func() bool {
		n := told()
		for u := range refused {
			if n[u] == 0 {
				return false
			}
		}
		return true
	})
	for u, n := range told() {
		if refused[u] && n != 1 {
			t.Errorf("%s was told %d times, want once", u, n)
		}
	}
}
