package telegram_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onduty/onduty/adapters/telegram"
	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/outage"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// The conformance driver's Telegram users.
const (
	confAgentTG    = int64(111)
	confStrangerTG = int64(777)
	confGroupTG    = int64(-1001234567890)
	confToken      = "123456:TEST-token"
	confSecret     = "s3cret_token-1"
)

// TestConformance runs the adapter conformance suite on the fake Bot API:
// private chats in both receiving modes (long polling and webhook), and a
// forum group (the property's shared place: one topic per chat) with a
// webhook, whose answers come back in order so that Forge knows when the
// stranger's topic message was handled.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		forum      bool
	}{
		{"polling", telegram.ModePolling, false},
		{"webhook", telegram.ModeWebhook, false},
		{"forum", telegram.ModeWebhook, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bridgetest.Run(t, func(t *testing.T, env bridgetest.Env) bridgetest.Platform {
				api := tgfake.New(tgfake.Options{Token: confToken, Report: t})
				t.Cleanup(api.Close)
				p := &tgPlatform{api: api, mode: tc.mode, forum: tc.forum, env: env}
				p.proxy = &outage.Proxy{Next: api, Refuse: refuseLikeTelegram}
				p.front = httptest.NewServer(p.proxy)
				t.Cleanup(p.front.Close)
				return p
			})
		})
	}
}

// tgPlatform is Telegram for the suite: the fake Bot API behind a front
// that can fail every call (Down), and the agent's updates pushed to the
// fake (polling) or posted to the adapter's webhook handler.
type tgPlatform struct {
	api   *tgfake.Server
	front *httptest.Server
	mode  string
	forum bool // the property has a forum group: chats live in its topics
	env   bridgetest.Env
	a     *telegram.Adapter
	proxy *outage.Proxy // fails calls to the fake during an outage
	seq   atomic.Int64
}

var _ bridgetest.Platform = (*tgPlatform)(nil)

func (p *tgPlatform) Surface() presence.Surface { return telegram.Surface }
func (p *tgPlatform) Account() string           { return strconv.FormatInt(confAgentTG, 10) }

func (p *tgPlatform) Caps() bridgetest.Caps {
	return bridgetest.Caps{Files: true, Forgery: true,
		// The Bot API failing touches a webhook's private chats only where
		// it touches polling's, in sending: polling and the forum group
		// (sending into topics) take those scenarios.
		Outage: p.mode == telegram.ModePolling || p.forum, RateLimit: p.mode == telegram.ModePolling || p.forum,
		// Only a webhook gets an update twice from the fake: getUpdates
		// confirms by offset, and the fake never hands out one it confirmed.
		Duplicates: p.mode == telegram.ModeWebhook}
}

// refuseLikeTelegram answers as the Bot API does when it fails: 502 with
// its error body, or 429 with retry_after 1.
func refuseLikeTelegram(w http.ResponseWriter, mode string) {
	w.Header().Set("Content-Type", "application/json")
	if mode == outage.RateLimited {
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string]any{"ok": false, "error_code": 429,
			"description": "Too Many Requests: retry after 1", "parameters": map[string]any{"retry_after": 1}})
		return
	}
	w.WriteHeader(http.StatusBadGateway)
	json.NewEncoder(w).Encode(map[string]any{"ok": false, "error_code": 502, "description": "Bad Gateway"})
}

func (p *tgPlatform) Adapter(t *testing.T, dir *presence.Directory) bridge.Adapter {
	cfg := telegram.Config{
		Token: confToken, APIURL: p.front.URL, Prefix: p.env.Redis.Prefix, Mode: p.mode,
		// A request that hangs is given up after 2s (outage.Timeout), as a
		// deployment gives up after PollTimeout+30s.
		HTTPClient: &http.Client{Timeout: 2 * time.Second}, PollTimeout: time.Second, LeaseTTL: 600 * time.Millisecond,
	}
	if p.forum {
		cfg.Groups = map[presence.PropertyID]int64{bridgetest.SuiteProperty: confGroupTG}
	}
	if p.mode == telegram.ModeWebhook {
		cfg.WebhookURL, cfg.WebhookSecret = "https://onduty.example/telegram/webhook", confSecret
	}
	a, err := telegram.New(cfg, dir, p.env.Redis.Client, testlog.Logger())
	if err != nil {
		t.Fatal(err)
	}
	p.a = a
	return a
}

func (p *tgPlatform) Ready(t *testing.T) {
	method := "getUpdates"
	if p.mode == telegram.ModeWebhook {
		method = "setWebhook"
	}
	wait.For(t, "the adapter to "+method, func() bool { return p.api.Counts()[method] > 0 })
}

// push hands the adapter an update as Telegram would: queued for
// getUpdates, or posted to the webhook (again while it answers 503: not
// running yet). It returns the update's id.
func (p *tgPlatform) push(t *testing.T, u map[string]any) {
	t.Helper()
	if p.mode != telegram.ModeWebhook {
		p.api.Push(u)
		return
	}
	u["update_id"] = 5000 + p.seq.Add(1)
	p.post(t, u, confSecret, http.StatusOK)
}

// post sends an update to the webhook handler with secret and wants code.
func (p *tgPlatform) post(t *testing.T, u map[string]any, secret string, want int) {
	t.Helper()
	body, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	var code int
	wait.For(t, "the webhook to answer", func() bool {
		req := httptest.NewRequest(http.MethodPost, "/telegram/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if secret != "" {
			req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
		}
		rec := httptest.NewRecorder()
		p.a.WebhookHandler().ServeHTTP(rec, req)
		code = rec.Code
		return code != http.StatusServiceUnavailable && code != http.StatusInternalServerError
	})
	if code != want {
		t.Fatalf("webhook answered %d, want %d", code, want)
	}
}

// place is the Telegram chat where the agent is shown the property's
// chats: the forum group, or the agent's private chat with the bot.
func (p *tgPlatform) place() string {
	if p.forum {
		return strconv.FormatInt(confGroupTG, 10)
	}
	return p.Account()
}

// answer is the agent's message tied to chat: in the chat's topic, or a
// reply to its offer.
func (p *tgPlatform) answer(t *testing.T, from int64, chat bridge.ChatID, text string) map[string]any {
	t.Helper()
	offer := p.offer(t, chat)
	if p.forum {
		thread, _ := strconv.Atoi(offer.Params["message_thread_id"])
		if thread == 0 {
			t.Fatalf("offer of %s not in a topic", chat)
		}
		return tgfake.TopicMessage(from, confGroupTG, thread, text)
	}
	return tgfake.ReplyMessage(from, text, offer.ResultID)
}

// offer is the agent's offer message for chat (its Accept button).
func (p *tgPlatform) offer(t *testing.T, chat bridge.ChatID) tgfake.Call {
	t.Helper()
	var got tgfake.Call
	wait.For(t, "the offer of "+string(chat), func() bool {
		for _, c := range p.api.Calls("sendMessage") {
			if !c.Failed && c.Params["chat_id"] == p.place() && strings.Contains(c.Params["reply_markup"], "a:"+string(chat)) {
				got = c
				return true
			}
		}
		return false
	})
	return got
}

func (p *tgPlatform) WaitOffer(t *testing.T, chat bridge.ChatID, first string) {
	t.Helper()
	if c := p.offer(t, chat); !strings.Contains(c.Params["text"], first) {
		t.Errorf("offer %q lacks %q", c.Params["text"], first)
	}
}

func (p *tgPlatform) Accept(t *testing.T, chat bridge.ChatID) {
	t.Helper()
	where, _ := strconv.ParseInt(p.place(), 10, 64)
	p.push(t, tgfake.Callback(confAgentTG, "a:"+string(chat), where, p.offer(t, chat).ResultID))
}

// Reply writes in the chat's topic, or answers its offer message in
// private: Telegram's reply ties it to the chat.
func (p *tgPlatform) Reply(t *testing.T, chat bridge.ChatID, text string) {
	t.Helper()
	p.push(t, p.answer(t, confAgentTG, chat, text))
}

func (p *tgPlatform) Command(t *testing.T, _ bridge.ChatID, command string) {
	p.push(t, tgfake.PrivateMessage(confAgentTG, "/"+command))
}

func (p *tgPlatform) Seen(*testing.T) []string {
	var out []string
	for _, c := range p.api.Calls("sendMessage") {
		if !c.Failed && c.Params["chat_id"] == p.place() {
			out = append(out, c.Params["text"])
		}
	}
	return out
}

func (p *tgPlatform) WaitFile(t *testing.T, _ bridge.ChatID, name string) []byte {
	t.Helper()
	var data []byte
	wait.For(t, "a document called "+name, func() bool {
		for _, c := range p.api.Calls("sendDocument") {
			if !c.Failed && c.Params["chat_id"] == p.place() && c.Params["document.filename"] == name {
				data = c.Files["document"]
				return true
			}
		}
		return false
	})
	return data
}

func (p *tgPlatform) SendFile(t *testing.T, chat bridge.ChatID, name string) []byte {
	t.Helper()
	data := []byte("%PDF agent " + name)
	id := fmt.Sprintf("doc%d", p.seq.Add(1))
	p.api.AddFile("documents/"+id+".bin", data)
	u := p.answer(t, confAgentTG, chat, "")
	m := u["message"].(map[string]any)
	delete(m, "text")
	m["document"] = map[string]any{"file_id": id, "file_unique_id": "u" + id, "file_name": name, "mime_type": "text/plain", "file_size": len(data)}
	p.push(t, u)
	return data
}

func (p *tgPlatform) Outage(_ *testing.T, mode string) { p.proxy.Start(mode, outage.Minute) }

func (p *tgPlatform) Recovered(t *testing.T) {
	wait.For(t, "the outage to end", p.proxy.Over)
	if p.proxy.Refused() == 0 {
		t.Error("the outage refused nothing")
	}
}

func (p *tgPlatform) RateLimit(t *testing.T, n int, retryAfter time.Duration) func(*testing.T) {
	secs := int(retryAfter / time.Second)
	before := len(p.api.Calls("sendMessage"))
	p.api.FailNext("sendMessage", n, http.StatusTooManyRequests, fmt.Sprintf("Too Many Requests: retry after %d", secs), secs)
	return func(t *testing.T) {
		t.Helper()
		calls := p.api.Calls("sendMessage")[before:]
		failed := 0
		for i, c := range calls {
			if !c.Failed {
				continue
			}
			failed++
			for _, next := range calls[i+1:] {
				if next.Params["chat_id"] == c.Params["chat_id"] {
					if gap := next.At.Sub(c.At); gap < retryAfter {
						t.Errorf("sent again %s after a 429 asking for %s", gap, retryAfter)
					}
					break
				}
			}
		}
		if failed != n {
			t.Errorf("%d sends answered 429, want %d", failed, n)
		}
	}
}

// ReplyTwice posts the same update (same update_id) to the webhook twice,
// as Telegram does when it got no answer in time.
func (p *tgPlatform) ReplyTwice(t *testing.T, chat bridge.ChatID, text string) {
	t.Helper()
	u := p.answer(t, confAgentTG, chat, text)
	u["update_id"] = 5000 + p.seq.Add(1)
	p.post(t, u, confSecret, http.StatusOK)
	p.post(t, u, confSecret, http.StatusOK)
}

// Forge: a stranger presses Accept, answers in the chat's place and runs
// commands; in webhook mode, requests without the secret carry the
// agent's own words. Each is answered (or refused) before it returns
// (with a webhook each is handled before it is answered; polling, the
// private ones are handled in order, before the button's answer).
func (p *tgPlatform) Forge(t *testing.T, chat bridge.ChatID) {
	t.Helper()
	offer := p.offer(t, chat).ResultID
	if p.mode == telegram.ModeWebhook {
		for _, secret := range []string{"", "wrong-secret"} {
			p.post(t, tgfake.Callback(confAgentTG, "a:"+string(chat), confAgentTG, offer), secret, http.StatusUnauthorized)
			p.post(t, p.answer(t, confAgentTG, chat, "forged answer"), secret, http.StatusUnauthorized)
			p.post(t, tgfake.PrivateMessage(confAgentTG, "/offline"), secret, http.StatusUnauthorized)
		}
	}
	answered := func(u map[string]any) func() bool {
		id := u["callback_query"].(map[string]any)["id"]
		return func() bool {
			return len(p.api.CallsWhere(func(c tgfake.Call) bool {
				return c.Method == "answerCallbackQuery" && c.Params["callback_query_id"] == id
			})) > 0
		}
	}
	// A stranger is told once a day, where they first wrote.
	toldOff := func() int {
		return len(p.api.CallsWhere(func(c tgfake.Call) bool {
			return c.Method == "sendMessage" && strings.Contains(c.Params["text"], "support team only")
		}))
	}
	// Every command, plain text, an answer in the chat's place, every button.
	sent := []string{"/alwayson on", "/alwayson off", "/transfer Alice", "/online@onduty_bot",
		"/accept " + string(chat), "#" + string(chat) + " hello", "plain text to the bot"}
	for _, c := range bridge.Commands {
		sent = append(sent, "/"+c.Name)
	}
	p.push(t, p.answer(t, confStrangerTG, chat, "I take it"))
	for _, text := range sent {
		p.push(t, tgfake.PrivateMessage(confStrangerTG, text))
	}
	where, _ := strconv.ParseInt(p.place(), 10, 64)
	var buttons []map[string]any
	for _, data := range []string{"a:" + string(chat), "m:" + string(chat), "s:" + string(chat), "h"} {
		cb := tgfake.Callback(confStrangerTG, data, where, offer)
		buttons = append(buttons, cb)
		p.push(t, cb)
	}
	for _, cb := range buttons {
		wait.For(t, "the stranger's button answered", answered(cb))
	}
	wait.For(t, "the stranger told off", func() bool { return toldOff() > 0 })
	wait.For(t, "every update confirmed", func() bool { return p.api.Pending() == 0 })
	if n := toldOff(); n != 1 {
		t.Errorf("the stranger was told off %d times, want once", n)
	}
}
