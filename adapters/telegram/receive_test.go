package telegram

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

func TestWebhookSecret(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, func(c *Config) {
		c.Mode = ModeWebhook
		c.WebhookURL = "https://onduty.example/telegram/webhook"
		c.WebhookSecret = "s3cret_token-1"
	})
	srv := httptest.NewServer(a.WebhookHandler())
	t.Cleanup(srv.Close)
	post := func(secret string, body []byte) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if secret != "" {
			req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	upd := tgfake.PrivateMessage(aliceTG, "/online")
	upd["update_id"] = 9001
	body, _ := json.Marshal(upd)

	if got := post("s3cret_token-1", body); got != http.StatusServiceUnavailable {
		t.Errorf("before Run: %d, want 503 (Telegram retries)", got)
	}
	h := &dedupHost{Handler: bridgetest.NewHandler(func(bridge.Action) (bridge.Reply, error) { return bridge.Reply{Text: "You are online."}, nil })}
	run(t, a, h)
	hooks := waitCalls(t, e.api, "setWebhook", 1, nil)
	if hooks[0].Params["url"] != "https://onduty.example/telegram/webhook" || hooks[0].Params["secret_token"] != "s3cret_token-1" {
		t.Errorf("setWebhook %v", hooks[0].Params)
	}

	tests := []struct {
		name, secret string
		want         int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong", "s3cret_token-2", http.StatusUnauthorized},
		{"prefix", "s3cret", http.StatusUnauthorized},
		{"right", "s3cret_token-1", http.StatusOK},
		{"right again (Telegram retry)", "s3cret_token-1", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(tt.secret, body); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	if got := post("s3cret_token-1", []byte("{not json")); got != http.StatusBadRequest {
		t.Errorf("bad body: %d, want 400", got)
	}
	acts := h.Actions()
	if len(acts) != 1 || acts[0].Command != "online" || acts[0].DedupKey != "telegram:9001" {
		t.Errorf("actions %+v, want one /online", acts)
	}
	if n := len(e.api.Calls("getUpdates")); n != 0 {
		t.Errorf("webhook mode polled %d times", n)
	}
}

func TestPollingLeaseOneInstancePolls(t *testing.T) {
	e := newEnv(t)
	rdbA := e.rdb.NewClient(t)
	a := e.adapter(t, "A", rdbA, nil)
	b := e.adapter(t, "B", nil, nil)
	ha, hb := &fakeHandler{}, &fakeHandler{}
	stopA := run(t, a, ha)
	wait.For(t, "A to hold the lease", a.leading.Load)
	run(t, b, hb)

	polls := func(inst string) int {
		n := 0
		for _, c := range e.api.Calls("getUpdates") {
			if c.Instance == inst {
				n++
			}
		}
		return n
	}
	// Several lease periods pass (A renews every 200ms, B tries every 200ms).
	start := polls("A")
	wait.For(t, "A to poll on", func() bool { return polls("A") >= start+4 })
	if n := polls("B"); n != 0 || b.leading.Load() {
		t.Fatalf("B polled %d times while A held the lease", n)
	}
	e.api.Push(tgfake.PrivateMessage(aliceTG, "/online"))
	ha.WaitN(t, 1)

	// A stops (shutdown releases the lease): B takes over and handles updates.
	stopA()
	wait.For(t, "B to take over", b.leading.Load)
	e.api.Push(tgfake.PrivateMessage(aliceTG, "/away"))
	acts := hb.WaitN(t, 1)
	if acts[0].Command != "away" {
		t.Errorf("B got %+v", acts[0])
	}
	if n := len(ha.Actions()); n != 1 {
		t.Errorf("A handled %d actions, want 1", n)
	}
}

func TestPollingLeaseTakenOverWhenHolderDies(t *testing.T) {
	e := newEnv(t)
	rdbA := e.rdb.NewClient(t)
	a := e.adapter(t, "A", rdbA, nil)
	b := e.adapter(t, "B", nil, nil)
	run(t, a, &fakeHandler{})
	wait.For(t, "A to hold the lease", a.leading.Load)
	hb := &fakeHandler{}
	run(t, b, hb)
	// A loses Redis for good (as if it died): it must stop polling at once,
	// and B takes over once the lease runs out.
	died := time.Now()
	if err := rdbA.Close(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "A to stop polling", func() bool { return !a.leading.Load() })
	stopped := time.Since(died)
	wait.For(t, "B to take over", b.leading.Load)
	t.Logf("lease TTL %s: A stopped polling after %s, B polled after %s", b.cfg.LeaseTTL, stopped.Round(time.Millisecond), time.Since(died).Round(time.Millisecond))
	e.api.Push(tgfake.PrivateMessage(aliceTG, "/status"))
	hb.WaitN(t, 1)
	// From now on only B polls.
	before := 0
	for _, c := range e.api.Calls("getUpdates") {
		if c.Instance == "A" {
			before++
		}
	}
	wait.For(t, "B to poll twice more", func() bool {
		n := 0
		for _, c := range e.api.Calls("getUpdates") {
			if c.Instance == "B" {
				n++
			}
		}
		return n >= 3
	})
	after := 0
	for _, c := range e.api.Calls("getUpdates") {
		if c.Instance == "A" {
			after++
		}
	}
	if after != before {
		t.Errorf("A polled %d more times after losing the lease", after-before)
	}
}

func TestCallbacks(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		switch act.Kind {
		case bridge.ActSwitch:
			return bridge.Reply{Text: "Now in chat " + string(act.Chat) + ". " + strings.Repeat("Long explanation. ", 20)}, nil
		case bridge.ActStillHere:
			return bridge.Reply{Text: "Thanks, you stay online."}, nil
		}
		return bridge.Reply{Text: "ok"}, nil
	})
	run(t, a, h)

	tests := []struct {
		name, data string
		msgID      int
		want       bridge.Action
		answer     string
	}{
		{"accept", "a:chat_1-x", 10, bridge.Action{Kind: bridge.ActAccept, Chat: "chat_1-x"}, "ok"},
		{"monitor, message inaccessible", "m:chat2", 0, bridge.Action{Kind: bridge.ActMonitor, Chat: "chat2"}, "ok"},
		{"switch", "s:chat3", 11, bridge.Action{Kind: bridge.ActSwitch, Chat: "chat3"}, "Now in chat chat3."},
		{"still here", "h", 12, bridge.Action{Kind: bridge.ActStillHere}, "Thanks, you stay online."},
		{"unknown kind", "z:chat1", 13, bridge.Action{}, badButtonText},
		{"bad chat id", "a:../../x", 13, bridge.Action{}, badButtonText},
		{"empty chat id", "a:", 13, bridge.Action{}, badButtonText},
		{"oversized", "a:" + strings.Repeat("x", 70), 13, bridge.Action{}, badButtonText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.Actions())
			nAnswers := len(e.api.Calls("answerCallbackQuery"))
			e.api.Push(tgfake.Callback(bobTG, tt.data, bobTG, tt.msgID))
			answers := waitCalls(t, e.api, "answerCallbackQuery", nAnswers+1, nil)
			if got := answers[nAnswers].Params["text"]; !strings.HasPrefix(got, tt.answer) {
				t.Errorf("answer %q, want %q", got, tt.answer)
			}
			acts := h.Actions()
			if tt.want.Kind == "" {
				if len(acts) != before {
					t.Errorf("handler called for bad data: %+v", acts[before:])
				}
				return
			}
			if len(acts) != before+1 {
				t.Fatalf("%d actions, want 1", len(acts)-before)
			}
			got := acts[before]
			if got.Kind != tt.want.Kind || got.Chat != tt.want.Chat || got.Agent != "bob" || got.Surface != "telegram" {
				t.Errorf("action %+v, want %+v", got, tt.want)
			}
		})
	}
	// The long switch answer also came as a message in bob's chat.
	waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == "222" && strings.HasPrefix(c.Params["text"], "Now in chat chat3")
	})
}

func TestStillOnDutyPrompt(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	h := &fakeHandler{}
	run(t, a, h)
	if _, err := out(a).Deliver(t.Context(), bridge.Delivery{ID: "p1", Kind: bridge.KindPrompt, Agent: "alice"}); err != nil {
		t.Fatal(err)
	}
	sent := sentTo(e.api, aliceTG)
	if len(sent) != 1 || !strings.Contains(sent[0].Params["text"], "Still on duty?") || !strings.Contains(sent[0].Params["reply_markup"], `"callback_data":"h"`) {
		t.Fatalf("prompt %+v", sent)
	}
	e.api.Push(tgfake.Callback(aliceTG, "h", aliceTG, 1001))
	acts := h.WaitN(t, 1)
	if acts[0].Kind != bridge.ActStillHere || acts[0].Agent != "alice" {
		t.Errorf("press -> %+v", acts[0])
	}
}

func TestFiles(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	h := &fileHandler{files: map[string][]byte{}}
	run(t, a, h)
	e.api.AddFile("documents/doc1.bin", []byte("%PDF-1.4 agent file"))
	e.api.AddFile("documents/ph2.bin", []byte("JPEGDATA"))
	h.Keep(surface, "chatF0", bridge.RemoteRef{Conversation: strconv.FormatInt(aliceTG, 10), Message: "4"})

	doc := tgfake.PrivateMessage(aliceTG, "")
	m := doc["message"].(map[string]any)
	m["caption"] = "the invoice"
	m["document"] = map[string]any{"file_id": "doc1", "file_unique_id": "u1", "file_name": "invoice.pdf", "mime_type": "application/pdf", "file_size": 19}
	m["reply_to_message"] = map[string]any{"message_id": 4, "date": 1, "chat": map[string]any{"id": aliceTG, "type": "private"}}
	e.api.Push(doc)
	photo := tgfake.PrivateMessage(aliceTG, "")
	photo["message"].(map[string]any)["reply_to_message"] = map[string]any{"message_id": 4, "date": 1, "chat": map[string]any{"id": aliceTG, "type": "private"}}
	photo["message"].(map[string]any)["photo"] = []map[string]any{
		{"file_id": "ph1", "file_unique_id": "p1", "width": 90, "height": 90, "file_size": 3},
		{"file_id": "ph2", "file_unique_id": "p2", "width": 800, "height": 800, "file_size": 8},
	}
	e.api.Push(photo)
	// Without a reply the chat is unknown: the agent is asked to reply.
	loose := tgfake.PrivateMessage(aliceTG, "")
	loose["message"].(map[string]any)["caption"] = "loose file"
	loose["message"].(map[string]any)["document"] = map[string]any{"file_id": "doc1", "file_unique_id": "u1", "file_name": "x.pdf"}
	e.api.Push(loose)
	acts := h.WaitN(t, 3)
	if acts[2].Kind != bridge.ActMessage || acts[2].Attachment != nil || acts[2].Text != "loose file" {
		t.Errorf("file without a chat -> %+v", acts[2])
	}
	waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return strings.Contains(c.Params["text"], "To send a file, reply") })
	if acts[0].Chat != "chatF0" || acts[1].Chat != "chatF0" {
		t.Errorf("files not routed by reply: %q %q", acts[0].Chat, acts[1].Chat)
	}
	if acts[0].Kind != bridge.ActMessage || acts[0].Text != "the invoice" || acts[0].Attachment == nil ||
		acts[0].Attachment.Name != "invoice.pdf" || acts[0].Attachment.MIME != "application/pdf" || acts[0].Attachment.Size != 19 {
		t.Errorf("document -> %+v (%+v)", acts[0], acts[0].Attachment)
	}
	if acts[1].Attachment == nil || acts[1].Attachment.MIME != "image/jpeg" || string(h.files[acts[1].Attachment.Key]) != "JPEGDATA" {
		t.Errorf("photo -> %+v; want the largest size stored", acts[1])
	}

	// A visitor's file reaches the agent as a document.
	h.files["vis1"] = []byte("visitor bytes")
	chat := testChat("chatF1", "acme")
	d := bridge.Delivery{ID: "f1", Kind: bridge.KindMessage, Agent: "alice", Chat: chat, Message: &bridge.Message{
		ID: "3-0", Chat: chat.ID, From: bridge.FromVisitor, Text: "see attached",
		Attachment: &bridge.Attachment{Key: "vis1", Name: "report.pdf", MIME: "application/pdf", Size: 13},
	}}
	if _, err := out(a).Deliver(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	docs := e.api.Calls("sendDocument")
	if len(docs) != 1 || string(docs[0].Files["document"]) != "visitor bytes" || docs[0].Params["document.filename"] != "report.pdf" ||
		!strings.Contains(docs[0].Params["caption"], "#chatF1") {
		t.Fatalf("sendDocument %+v", docs)
	}
	if texts := sentTo(e.api, aliceTG); len(texts) == 0 || !strings.HasSuffix(texts[len(texts)-1].Params["text"], "<blockquote>see attached</blockquote>") {
		t.Errorf("the text of the message was not sent before the file")
	}
}
