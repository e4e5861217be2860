package telegram

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

// Fuzz tests. In CI the seed corpus (below and testdata/fuzz) runs as plain
// tests; to fuzz, e.g.:
//
//	go test -run XXX -fuzz FuzzParseCommand -fuzztime 60s ./adapters/telegram

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"/start", "/online@onduty_bot", "/transfer Bob", "/alwayson  on ", "/x@other_bot y",
		"//note", "/", "/@", "/ü", "/cmd\targ", "/cmd\nsecond line", "plain", "/" + strings.Repeat("a", 40), "/A_1 \x00"} {
		f.Add(s, "onduty_bot")
	}
	f.Fuzz(func(t *testing.T, text, botName string) {
		cmd, args, ok := parseCommand(text, botName)
		if !ok {
			if cmd != "" || args != "" {
				t.Errorf("not a command, yet cmd %q args %q", cmd, args)
			}
			return
		}
		if !strings.HasPrefix(text, "/") {
			t.Errorf("%q taken for a command", text)
		}
		if len(cmd) > 32 {
			t.Errorf("command %q longer than 32", cmd)
		}
		for _, c := range cmd {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				t.Errorf("command %q has %q", cmd, c)
			}
		}
		if args != strings.TrimSpace(args) {
			t.Errorf("args %q not trimmed", args)
		}
	})
}

func FuzzParseCallback(f *testing.F) {
	for _, s := range []string{"a:chat_1-x", "m:c", "s:c", "h", "z:c", "a:", "a:../../x", "a:" + strings.Repeat("x", 22),
		"a:" + strings.Repeat("x", 23), "a:" + strings.Repeat("x", 70), "h:x", ":", "a:b:c", "a:é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		kind, chat, ok := parseCallback(data)
		if !ok {
			return
		}
		if len(data) > maxCallbackData {
			t.Errorf("accepted %d bytes of callback data", len(data))
		}
		if back := callbackData(kind, chat); back != data {
			t.Errorf("%q parsed to %s/%q, which encodes as %q", data, kind, chat, back)
		}
		if chat != "" && !chat.IsValid() {
			t.Errorf("chat id %q accepted", chat)
		}
	})
}

// FuzzWebhookUpdate posts arbitrary bodies to the webhook with the right
// secret: the handler never panics, answers a fitting status, hands the
// bridge actions only of configured agents, and everything the adapter
// sends to Telegram parses as HTML.
func FuzzWebhookUpdate(f *testing.F) {
	for _, s := range []string{
		`{"update_id":1,"message":{"message_id":1,"date":1,"from":{"id":111,"is_bot":false,"first_name":"A"},"chat":{"id":111,"type":"private"},"text":"/online"}}`,
		`{"update_id":2,"message":{"message_id":2,"date":1,"from":{"id":777,"is_bot":false,"first_name":"S"},"chat":{"id":777,"type":"private"},"text":"hi <b>"}}`,
		`{"update_id":3,"callback_query":{"id":"q","from":{"id":222,"is_bot":false,"first_name":"B"},"chat_instance":"c","data":"a:chat1"}}`,
		`{"update_id":4,"callback_query":{"id":"q","from":{"id":222,"is_bot":false,"first_name":"B"},"chat_instance":"c","data":"s:x","message":{"message_id":9,"date":0,"chat":{"id":-5,"type":"supergroup"}}}}`,
		`{"update_id":5,"message":{"message_id":3,"date":1,"chat":{"id":1,"type":"channel"},"text":"no from"}}`,
		`{"update_id":6,"message":{"message_id":4,"date":1,"from":{"id":333,"is_bot":false,"first_name":"C"},"chat":{"id":-1001234567890,"type":"supergroup","is_forum":true},"message_thread_id":7,"is_topic_message":true,"text":"in a topic"}}`,
		`{"update_id":7,"message":{"message_id":5,"date":1,"from":{"id":111,"is_bot":false,"first_name":"A"},"chat":{"id":111,"type":"private"},"reply_to_message":{"message_id":1000,"date":1,"chat":{"id":111,"type":"private"}},"text":"a reply"}}`,
		`{"update_id":8,"message":{"message_id":6,"date":1,"from":{"id":111,"is_bot":false,"first_name":"A"},"chat":{"id":111,"type":"private"},"document":{"file_id":"d","file_unique_id":"u"}}}`,
		`{"update_id":9}`, `{}`, `[]`, `null`, `{"update_id":"x"}`, `{"update_id":10,"message":null}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	e := newEnv(f)
	a := e.adapter(f, "A", nil, func(c *Config) {
		c.Mode = ModeWebhook
		c.WebhookURL = "https://onduty.example/telegram/webhook"
		c.WebhookSecret = "fuzz-secret"
	})
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		return bridge.Reply{Text: "you said " + act.Text + " <&>", Choices: []bridge.Choice{{Label: act.Text, Action: bridge.ActSwitch, Chat: act.Chat}}}, nil
	})
	run(f, a, h)
	wait.For(f, "the webhook registered", func() bool { return len(e.api.Calls("setWebhook")) > 0 })
	hook := a.WebhookHandler()
	checked := 0 // sendMessage calls already checked
	f.Fuzz(func(t *testing.T, body []byte) {
		before := len(h.Actions())
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/telegram/webhook", bytes.NewReader(body))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", "fuzz-secret")
		rec := httptest.NewRecorder()
		hook.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusInternalServerError:
		default:
			t.Errorf("status %d for %q", rec.Code, body)
		}
		for _, act := range h.Actions()[before:] {
			if _, ok := e.dir.Agent(act.Agent); !ok || act.Surface != surface {
				t.Errorf("action of %q on %q reached the bridge", act.Agent, act.Surface)
			}
			if !utf8.ValidString(act.Text) {
				t.Errorf("action text is not UTF-8: %q", act.Text)
			}
		}
		sends := e.api.Calls("sendMessage")
		for _, c := range sends[min(checked, len(sends)):] {
			if msg := tgfake.CheckHTML(c.Params["text"]); msg != "" {
				t.Errorf("sent HTML Telegram refuses (%s): %q", msg, c.Params["text"])
			}
		}
		checked = len(sends)
	})
}
