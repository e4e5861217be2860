package telegram

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

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
