package telegram

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// attackDirectory: alice and bob are agents of acme; stranger is nobody.
func attackDirectory(t *testing.T) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme"}},
		[]presence.Agent{
			{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(aliceTG), Condition: presence.Always},
			{ID: "bob", Name: "Bob", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(bobTG)},
		})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// updatesDrained reports whether the fake has no update left to confirm:
// the adapter moves its offset past an update only once it is handled.
func updatesDrained(api *tgfake.Server) bool {
	return api.Pending() == 0
}

// TestVisitorTextArrivesEscaped: markup in what a visitor types (name, page
// and messages) reaches the agent on Telegram as text: escaped for HTML
// parse mode (the fake Bot API refuses anything that does not parse, as
// Telegram does), never as tags, and without control characters.
func TestVisitorTextArrivesEscaped(t *testing.T) {
	e := newEnv(t)
	dir := attackDirectory(t)
	e.dir = dir
	a := e.adapter(t, "A", nil, nil)
	b := startBridge(t, e, a, dir)
	ctx := t.Context()
	e.api.Push(tgfake.PrivateMessage(aliceTG, "/online"))
	wait.For(t, "alice online", func() bool { return updatesDrained(e.api) && len(sentTo(e.api, aliceTG)) > 0 })

	visitor := bridge.Visitor{Name: "<b>Eve</b>\nPage: https://evil.example", PageURL: "https://acme.example/?q=<script>"}
	chat, _, err := b.StartChat(ctx, "acme", visitor, "first <b>x</b>")
	if err != nil {
		t.Fatal(err)
	}
	e.api.Push(tgfake.Callback(aliceTG, "a:"+string(chat.ID), aliceTG, 0))
	waitCalls(t, e.api, "answerCallbackQuery", 1, nil)

	texts := []struct{ sent, want string }{
		{"<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"},
		{"<!channel> look", "&lt;!channel&gt; look"},
		{"<@U123> hi", "&lt;@U123&gt; hi"},
		{`<a href="https://evil.example">click</a>`, `&lt;a href="https://evil.example"&gt;click&lt;/a&gt;`},
		{"&lt;b&gt; literally", "&amp;lt;b&amp;gt; literally"},
		{"</b></i><i>", "&lt;/b&gt;&lt;/i&gt;&lt;i&gt;"},
		{"bell\a nul\x00 esc\x1b[31m del\x7f c1\u0085 end", "bell nul esc[31m del c1 end"},
	}
	for i, tt := range texts {
		if _, err := b.PostVisitorMessage(ctx, chat.ID, fmt.Sprintf("m%d %s", i, tt.sent), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, tt := range texts {
		tag := fmt.Sprintf("m%d ", i)
		msgs := waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool {
			return !c.Failed && c.Params["chat_id"] == "111" && strings.Contains(c.Params["text"], tag)
		})
		got := msgs[0].Params["text"]
		// Messages queued up behind pacing arrive merged, one a line.
		line := got
		for _, l := range strings.Split(got, "\n") {
			if strings.Contains(l, tag) {
				line = l
			}
		}
		if !strings.HasSuffix(strings.TrimSuffix(line, "</blockquote>"), tag+tt.want) {
			t.Errorf("%q arrived as %q, want it to end in %q", tt.sent, got, tag+tt.want)
		}
		if msg := tgfake.CheckHTML(got); msg != "" {
			t.Errorf("%q arrived as invalid HTML (%s): %q", tt.sent, msg, got)
		}
	}
	for _, c := range e.api.Calls("") {
		for k, v := range c.Params {
			if strings.IndexFunc(v, isBadControl) >= 0 {
				t.Errorf("%s %s carries a control character: %q", c.Method, k, v)
			}
		}
	}
	offers := waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return strings.Contains(c.Params["reply_markup"], "a:"+string(chat.ID)) })
	o := offers[0].Params["text"]
	for _, bad := range []string{"<b>Eve", "<script>", "\nPage: https://evil"} {
		if strings.Contains(o, bad) {
			t.Errorf("offer shows the visitor's %q raw: %q", bad, o)
		}
	}
}

// isBadControl: a control character other than tab and newline.
func isBadControl(r rune) bool {
	return unicode.IsControl(r) && r != '\n' && r != '\t'
}

// TestWebhookOversizeAndWrongMethod: a body over 1 MiB is refused with 413
// without being parsed, and only POST is served (the secret and malformed
// bodies are TestWebhookSecret's; arbitrary bodies FuzzWebhookUpdate's).
func TestWebhookOversizeAndWrongMethod(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, func(c *Config) {
		c.Mode = ModeWebhook
		c.WebhookURL = "https://onduty.example/telegram/webhook"
		c.WebhookSecret = "s3cret"
	})
	h := &fakeHandler{}
	run(t, a, h)
	waitCalls(t, e.api, "setWebhook", 1, nil)
	hook := a.WebhookHandler()
	big := `{"update_id":1,"message":{"message_id":1,"date":1,"from":{"id":111,"is_bot":false,"first_name":"A"},"chat":{"id":111,"type":"private"},"text":"` +
		strings.Repeat("x", maxWebhookBody) + `"}}`
	for _, tt := range []struct {
		name, method, body string
		want               int
	}{
		{"over 1 MiB", http.MethodPost, big, http.StatusRequestEntityTooLarge},
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed},
		{"PUT", http.MethodPut, `{"update_id":2}`, http.StatusMethodNotAllowed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/telegram/webhook", strings.NewReader(tt.body))
			req.Header.Set("X-Telegram-Bot-Api-Secret-Token", "s3cret")
			rec := httptest.NewRecorder()
			hook.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
	if acts := h.Actions(); len(acts) != 0 {
		t.Errorf("refused requests reached the bridge: %+v", acts)
	}
}

// TestCommandsWithoutPermission: an agent without any of the three
// permissions tries every presence command through the real bridge: each
// is refused with a clear reply and the stored presence does not change.
func TestCommandsWithoutPermission(t *testing.T) {
	e := newEnv(t)
	const patTG = int64(444)
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme"}},
		[]presence.Agent{{ID: "pat", Name: "Pat", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(patTG),
			InitialStatus: presence.Away, Permissions: []presence.Permission{}}})
	if err != nil {
		t.Fatal(err)
	}
	e.dir = dir
	a := e.adapter(t, "A", nil, nil)
	startBridge(t, e, a, dir)
	ctx := t.Context()
	store := presence.NewStore(e.rdb.Client, dir, presence.Keys{Prefix: e.rdb.Prefix}, nil)
	// First contact counts as coming online (SPEC §2), permission or not.
	e.api.Push(tgfake.PrivateMessage(patTG, "/status"))
	waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return c.Params["chat_id"] == "444" })
	before, err := store.Get(ctx, "pat")
	if err != nil {
		t.Fatal(err)
	}
	for i, cmd := range []string{"/online", "/away", "/offline", "/invisible", "/alwayson on", "/alwayson off"} {
		e.api.Push(tgfake.PrivateMessage(patTG, cmd))
		answers := waitCalls(t, e.api, "sendMessage", i+2, func(c tgfake.Call) bool { return c.Params["chat_id"] == "444" })
		if got := answers[i+1].Params["text"]; !strings.Contains(got, "not allowed") {
			t.Errorf("%s answered %q, want a refusal", cmd, got)
		}
	}
	after, err := store.Get(ctx, "pat")
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != before.Status || after.Condition != before.Condition || before.Status == "" {
		t.Errorf("presence changed from %+v to %+v", before, after)
	}
}
