package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/config"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
)

// TestServeSiteIntegration: `onduty serve` from a config file with an
// identity_secret and a webhook: a signed identity starts a chat, a wrong
// one is refused, the webhook receiver gets chat.started signed with the
// configured secret, and the admin API erases the chat.
func TestServeSiteIntegration(t *testing.T) {
	var mu sync.Mutex
	var events []map[string]any
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := hmac.New(sha256.New, []byte("hook-secret"))
		m.Write(body)
		if r.Header.Get("X-Onduty-Signature") != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			t.Errorf("bad signature on %s", body)
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)

	r := redistest.New(t)
	file := writeFile(t, fmt.Sprintf(`
redis_url: %q
redis_prefix: %q
admin_token: integ-admin
properties: [{id: acme, identity_secret: id-secret}]
agents: [{id: alice, properties: [acme], condition: always, initial_status: online}]
webhooks: [{url: %q, secret: hook-secret, events: [chat.started]}]
`, r.URL, r.Prefix, rcv.URL+"/hook"))
	c, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := build(ctx, c, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
		svc.close()
	})
	base := "http://" + ln.Addr().String()

	var bad struct {
		Error struct{ Code string } `json:"error"`
	}
	wrong := map[string]any{"message": "hi", "identity": map[string]any{"user_id": "u-1", "signature": bridge.SignIdentity("guess", "u-1")}}
	if code := postJSON(t, base+"/v1/properties/acme/chats", "", wrong, &bad); code != 400 || bad.Error.Code != "bad_signature" {
		t.Fatalf("wrong signature: %d %+v", code, bad)
	}
	var out struct {
		ChatID string `json:"chat_id"`
	}
	good := map[string]any{"message": "hi", "identity": map[string]any{"user_id": "u-1", "signature": bridge.SignIdentity("id-secret", "u-1")}}
	if code := postJSON(t, base+"/v1/properties/acme/chats", "", good, &out); code != 201 {
		t.Fatalf("valid signature: %d", code)
	}
	wait.For(t, "chat.started posted", func() bool { mu.Lock(); defer mu.Unlock(); return len(events) >= 1 })
	mu.Lock()
	ev := events[0]
	mu.Unlock()
	if ev["event"] != "chat.started" || ev["chat"] != out.ChatID || ev["property"] != "acme" {
		t.Errorf("event %v", ev)
	}

	req, _ := http.NewRequest("DELETE", base+"/v1/admin/visitors?chat_id="+out.ChatID, nil)
	req.Header.Set("Authorization", "Bearer integ-admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"deleted_chats":1}` {
		t.Errorf("erase: %d %s", resp.StatusCode, body)
	}
}
