package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

const secret = "whsec-test-1"

// receiver is a real HTTP receiver as a customer would write it: it checks
// every post's signature over the raw body, and while down it fails every
// post, half by answering 503 and half by dropping the connection.
type receiver struct {
	t     *testing.T
	srv   *httptest.Server
	down  atomic.Bool
	fails atomic.Int64
	mu    sync.Mutex
	got   []Payload // accepted posts, in arrival order (duplicates kept)
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(req.Header.Get("X-Onduty-Signature")), []byte(want)) {
		r.t.Errorf("bad signature %q on %s", req.Header.Get("X-Onduty-Signature"), body)
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		r.t.Errorf("got %s with Content-Type %q", req.Method, req.Header.Get("Content-Type"))
	}
	if r.down.Load() {
		if r.fails.Add(1)%2 == 0 {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
		}
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		r.t.Errorf("body is not JSON: %v: %s", err, body)
	}
	if h := req.Header.Get("X-Onduty-Event"); h != string(p.Event) {
		r.t.Errorf("X-Onduty-Event %q, body event %q", h, p.Event)
	}
	if _, err := time.Parse(time.RFC3339, p.At); err != nil {
		r.t.Errorf("at %q is not RFC 3339: %v", p.At, err)
	}
	r.mu.Lock()
	r.got = append(r.got, p)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// unique is what was received, each id once, in order of first arrival.
func (r *receiver) unique() []Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []Payload
	for _, p := range r.got {
		if !seen[p.ID] {
			seen[p.ID] = true
			out = append(out, p)
		}
	}
	return out
}

func newBridge(t *testing.T, hooks ...*Webhook) *bridge.Bridge {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := redistest.New(t)
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme"}},
		[]presence.Agent{{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Condition: presence.Always, InitialStatus: presence.Online}})
	if err != nil {
		t.Fatal(err)
	}
	log := testlog.Logger()
	store := presence.NewStore(r.Client, dir, presence.Keys{Prefix: r.Prefix}, nil)
	watcher := presence.NewWatcher(store, log)
	if err := watcher.Load(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{
		Prefix: r.Prefix, Properties: map[presence.PropertyID]bridge.Routing{"acme": {}},
		RetryMin: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond, PollEvery: 10 * time.Millisecond,
	}, r.Client, store, watcher, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		b.AddAdapter(h)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := b.Run(ctx); err != nil {
			t.Errorf("bridge: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return b
}

func newHook(t *testing.T, url string, events ...bridge.HookEvent) *Webhook {
	t.Helper()
	w, err := New(Config{URL: url, Secret: secret, Events: events}, testlog.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func say(t *testing.T, b *bridge.Bridge, id bridge.ChatID, text string) {
	t.Helper()
	if _, err := b.Handle(context.Background(), bridge.Action{Kind: bridge.ActMessage, Surface: "test", Agent: "alice", Chat: id, Text: text}); err != nil {
		t.Fatal(err)
	}
}

// TestWebhookReceiverDownGetsEverythingInOrder: while the receiver fails
// (503s and dropped connections), two chats go through their whole life
// and an offline message is left; once it is back it gets every event,
// each signed, each id once after de-duplication, in order per chat, the
// note never.
func TestWebhookReceiverDownGetsEverythingInOrder(t *testing.T) {
	rc := newReceiver(t)
	rc.down.Store(true)
	hook := newHook(t, rc.srv.URL+"/hooks/onduty?token=abc")
	b := newBridge(t, hook)
	ctx := context.Background()
	okBefore := testutil.ToFloat64(metrics.Webhooks.WithLabelValues(hook.Name(), "ok"))

	c1, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Vic"}, "first of one")
	if err != nil {
		t.Fatal(err)
	}
	c2, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Val"}, "first of two")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PostVisitorMessage(ctx, c1.ID, "visitor again", nil); err != nil {
		t.Fatal(err)
	}
	say(t, b, c1.ID, "agent answer")
	say(t, b, c1.ID, "//internal note")
	say(t, b, c2.ID, "answer two")
	if err := b.CloseByVisitor(ctx, c1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Rate(ctx, c1.ID, 4, "fine"); err != nil {
		t.Fatal(err)
	}
	off, _, err := b.LeaveOfflineMessage(ctx, "acme", bridge.Visitor{Email: "o@example.com"}, "call me")
	if err != nil {
		t.Fatal(err)
	}

	wait.For(t, "several failed posts", func() bool { return rc.fails.Load() >= 6 })
	if n := len(rc.unique()); n != 0 {
		t.Fatalf("%d events accepted while down", n)
	}
	rc.down.Store(false)

	type ev struct{ event, text string }
	want := map[bridge.ChatID][]ev{
		c1.ID:  {{"chat.started", "first of one"}, {"chat.message", "visitor again"}, {"chat.message", "agent answer"}, {"chat.closed", ""}, {"chat.rated", ""}},
		c2.ID:  {{"chat.started", "first of two"}, {"chat.message", "answer two"}},
		off.ID: {{"offline_message", "call me"}},
	}
	total := 0
	for _, evs := range want {
		total += len(evs)
	}
	wait.For(t, "every event delivered", func() bool { return len(rc.unique()) >= total })
	time.Sleep(50 * time.Millisecond) // nothing more (the note) may follow
	got := map[bridge.ChatID][]ev{}
	for _, p := range rc.unique() {
		if p.Property != "acme" || p.ID == "" {
			t.Errorf("payload %+v: want property acme and an id", p)
		}
		e := ev{event: string(p.Event)}
		if p.Message != nil {
			e.text = p.Message.Text
		}
		if p.Event == bridge.HookChatRated && (p.Rating == nil || p.Rating.Score != 4 || p.Rating.Comment != "fine") {
			t.Errorf("chat.rated carries %+v", p.Rating)
		}
		got[p.Chat] = append(got[p.Chat], e)
	}
	for id, w := range want {
		if !slices.Equal(got[id], w) {
			t.Errorf("chat %s: got %v, want %v", id, got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("events for %d chats, want %d: %v", len(got), len(want), got)
	}
	if d := testutil.ToFloat64(metrics.Webhooks.WithLabelValues(hook.Name(), "ok")) - okBefore; d < float64(total) {
		t.Errorf("ok posts counted %v, want at least %d", d, total)
	}
	if testutil.ToFloat64(metrics.Webhooks.WithLabelValues(hook.Name(), "error")) < 6 {
		t.Error("failed posts not counted as errors")
	}
}

// TestWebhookEventsFilter: a webhook gets only the events it names.
func TestWebhookEventsFilter(t *testing.T) {
	rc := newReceiver(t)
	b := newBridge(t, newHook(t, rc.srv.URL, bridge.HookChatClosed))
	ctx := context.Background()
	c, _, err := b.StartChat(ctx, "acme", bridge.Visitor{}, "hello")
	if err != nil {
		t.Fatal(err)
	}
	say(t, b, c.ID, "hi")
	if err := b.CloseByVisitor(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "chat.closed", func() bool { return len(rc.unique()) >= 1 })
	time.Sleep(50 * time.Millisecond)
	if got := rc.unique(); len(got) != 1 || got[0].Event != bridge.HookChatClosed || got[0].Chat != c.ID || got[0].Message != nil {
		t.Errorf("got %+v, want one chat.closed", got)
	}
}

// TestSignMatchesReceiverCheck: Sign is HMAC-SHA256 of the raw body, as the
// README's receiver examples compute it.
func TestSignMatchesReceiverCheck(t *testing.T) {
	body := []byte(`{"id":"x","event":"chat.started"}`)
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write(body)
	if got, want := Sign([]byte("s3cret"), body), "sha256="+hex.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no url", Config{Secret: "s"}},
		{"ftp url", Config{URL: "ftp://x.example/", Secret: "s"}},
		{"no secret", Config{URL: "https://x.example/"}},
		{"unknown event", Config{URL: "https://x.example/", Secret: "s", Events: []bridge.HookEvent{"chat.deleted"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, nil); err == nil {
				t.Error("accepted")
			}
		})
	}
}
