package telegram

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/outage"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// refuseLikeTelegram answers as the Bot API does when it fails: 502 with its
// error body, or 429 with retry_after 1.
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

// TestPlatformOutage: Telegram fails for a "minute" (outage.Minute) while a
// visitor and the agent keep writing. Afterwards every visitor message has
// reached the agent and every agent message the visitor, in order, none
// twice — through the real bridge and the real adapter.
func TestPlatformOutage(t *testing.T) {
	for _, mode := range []string{outage.ServerError, outage.Timeout, outage.RateLimited} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			front := &outage.Proxy{Next: e.api, Refuse: refuseLikeTelegram}
			srv := httptest.NewServer(front)
			t.Cleanup(srv.Close)
			dir, err := presence.NewDirectory(
				[]presence.Property{{ID: "acme", Name: "Acme"}},
				[]presence.Agent{{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(aliceTG), Condition: presence.Always}})
			if err != nil {
				t.Fatal(err)
			}
			e.dir = dir
			a := e.adapter(t, "A", nil, func(c *Config) {
				c.APIURL = srv.URL
				// A request that hangs is given up after 2s, as a real
				// deployment gives up after PollTimeout+30s.
				c.HTTPClient = &http.Client{Timeout: 2 * time.Second}
			})
			b := startBridge(t, e, a, dir)
			ctx := t.Context()

			// Alice is on duty and owns a chat.
			e.api.Push(tgfake.PrivateMessage(aliceTG, "/online"))
			chat, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Olga"}, "hello")
			if err != nil {
				t.Fatal(err)
			}
			events, cancel := b.SubscribeVisitor(chat.ID)
			t.Cleanup(cancel)
			waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return strings.Contains(c.Params["reply_markup"], "a:"+string(chat.ID)) })
			e.api.Push(tgfake.Callback(aliceTG, "a:"+string(chat.ID), aliceTG, 0))
			nextEvent(t, events, bridge.EventAgentJoined)

			// Telegram goes down; both sides keep writing.
			front.Start(mode, outage.Minute)
			const n = 8
			for i := range n {
				if _, err := b.PostVisitorMessage(ctx, chat.ID, fmt.Sprintf("visitor %02d", i), nil); err != nil {
					t.Fatal(err)
				}
				e.api.Push(tgfake.PrivateMessage(aliceTG, fmt.Sprintf("agent %02d", i)))
				time.Sleep(outage.Minute / (2 * n)) // spread over the first half of the outage
			}
			wait.For(t, "the outage to end", front.Over)
			if front.Refused() == 0 {
				t.Fatal("the outage refused nothing")
			}

			// Afterwards: all of it, in order, once.
			endedAt := time.Now()
			var got []string
			wait.Long(t, "every visitor message at the agent", func() bool {
				got = linesFrom(sentTo(e.api, aliceTG), "visitor ")
				return len(got) >= n
			})
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("visitor %02d", i))
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("agent got %q,\nwant each once, in order: %q", got, want)
			}
			var agent []string
			wait.Long(t, "every agent message in the transcript", func() bool {
				agent = bridgetest.AgentTexts(ctx, b, chat.ID)
				return len(agent) >= n
			})
			for i := range want {
				want[i] = fmt.Sprintf("agent %02d", i)
			}
			if strings.Join(agent, ",") != strings.Join(want, ",") {
				t.Errorf("visitor got %q,\nwant each once, in order: %q", agent, want)
			}
			deliveredAfter := time.Since(endedAt)
			// One more round trip, then nothing arrived twice meanwhile.
			if _, err := b.PostVisitorMessage(ctx, chat.ID, "visitor last", nil); err != nil {
				t.Fatal(err)
			}
			waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return strings.HasSuffix(c.Params["text"], "visitor last</blockquote>") })
			got = linesFrom(sentTo(e.api, aliceTG), "visitor ")
			if len(got) != n+1 {
				t.Errorf("agent got %d visitor messages, want %d: %q", len(got), n+1, got)
			}
			t.Logf("%s: %d requests refused during the outage; all delivered %s after it", mode, front.Refused(), deliveredAfter.Round(time.Millisecond))
		})
	}
}

// startBridge runs the real bridge with adapter a on e's Redis.
func startBridge(t *testing.T, e *testEnv, a *Adapter, dir *presence.Directory, tweak ...func(*bridge.Config)) *bridge.Bridge {
	t.Helper()
	b, _ := startBridgeStop(t, e, a, dir, tweak...)
	return b
}

// startBridgeStop is startBridge that can also be stopped before the test ends.
func startBridgeStop(t *testing.T, e *testEnv, a *Adapter, dir *presence.Directory, tweak ...func(*bridge.Config)) (*bridge.Bridge, func()) {
	t.Helper()
	store := presence.NewStore(e.rdb.Client, dir, presence.Keys{Prefix: e.rdb.Prefix}, time.Now)
	w := presence.NewWatcher(store, testlog.Logger())
	if err := w.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	routing := map[presence.PropertyID]bridge.Routing{}
	for _, p := range dir.Properties() {
		routing[p] = bridge.Routing{Strategy: bridge.Broadcast, Canned: testCanned}
	}
	cfg := bridge.Config{
		Prefix: e.rdb.Prefix + "b:", Properties: routing,
		Shards: 2, RetryMin: 10 * time.Millisecond, RetryMax: 300 * time.Millisecond, PollEvery: 20 * time.Millisecond,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	b, err := bridge.New(cfg, e.rdb.Client, store, w, testlog.Logger())
	if err != nil {
		t.Fatal(err)
	}
	b.AddAdapter(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("bridge Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("bridge did not stop")
			}
		})
	}
	t.Cleanup(stop)
	wait.For(t, "the adapter to poll", a.leading.Load)
	return b, stop
}

// blockingHandler blocks every action until released: an instance that
// stops (dies, or hangs) in the middle of handling an update.
type blockingHandler struct {
	fakeHandler
	release chan struct{}
}

func (h *blockingHandler) Handle(ctx context.Context, a bridge.Action) (bridge.Reply, error) {
	h.fakeHandler.Handle(ctx, a)
	<-h.release
	return bridge.Reply{}, ctx.Err()
}

// TestUpdateOfDeadPollerIsHandledByTheNext: the polling instance dies while
// handling an update (after claiming it, before it is done). Telegram gives
// the update again to the instance that takes over polling, which must act
// on it: an agent's message is not lost because a dead instance claimed it.
func TestUpdateOfDeadPollerIsHandledByTheNext(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	ha := &blockingHandler{release: make(chan struct{})}
	stopA := run(t, a, ha)
	t.Cleanup(func() { close(ha.release); stopA() })
	wait.For(t, "A to poll", a.leading.Load)

	e.api.Push(tgfake.PrivateMessage(aliceTG, "the agent's answer"))
	ha.WaitN(t, 1) // A is inside the update now, and never finishes it
	// A is gone: its lease is not renewed any more.
	if err := e.rdb.Client.Del(t.Context(), a.keys.lease()).Err(); err != nil {
		t.Fatal(err)
	}

	b := e.adapter(t, "B", nil, nil)
	hb := &fakeHandler{}
	run(t, b, hb)
	wait.For(t, "B to poll", b.leading.Load)
	acts := hb.WaitN(t, 1)
	if acts[0].Text != "the agent's answer" || acts[0].Agent != "alice" || acts[0].DedupKey == "" {
		t.Errorf("B acted on %+v", acts[0])
	}
}

// TestAgentMessageSurvivesLongStorageOutage: while Redis (or the bridge) is
// unavailable for longer than a few retries, an agent's message waits at
// Telegram and is handled once storage is back — not given up after a
// fixed number of attempts. Retries are made fast for the test; the rule
// is about how many, not how long.
func TestAgentMessageSurvivesLongStorageOutage(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	a.retryWait = func(int) time.Duration { return 5 * time.Millisecond }
	var mu sync.Mutex
	failures := 0
	h := bridgetest.NewHandler(func(bridge.Action) (bridge.Reply, error) {
		mu.Lock()
		defer mu.Unlock()
		if failures < 3*maxUpdateAttempts {
			failures++
			return bridge.Reply{}, fmt.Errorf("bridge: write: %w", bridge.ErrUnavailable)
		}
		return bridge.Reply{}, nil
	})
	run(t, a, h)
	e.api.Push(tgfake.PrivateMessage(aliceTG, "sent while storage was down"))
	e.api.Push(tgfake.PrivateMessage(aliceTG, "and after it"))
	wait.For(t, "both messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failures == 3*maxUpdateAttempts && updatesDrained(e.api)
	})
	var texts []string
	for _, act := range h.Actions() {
		texts = append(texts, act.Text)
	}
	// The first message was tried until storage came back, then handled once;
	// the second came after it.
	last := texts[len(texts)-2:]
	if last[0] != "sent while storage was down" || last[1] != "and after it" {
		t.Errorf("handled %q", texts)
	}
	for _, s := range texts[:len(texts)-2] {
		if s != "sent while storage was down" {
			t.Errorf("a later update was handled before the first one succeeded: %q", texts)
			break
		}
	}
}
