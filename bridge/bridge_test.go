package bridge

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// TestAdapterStoppedOnError: an adapter that cannot run (a revoked token)
// is reported as down, the other adapters and the chats keep working, and
// Run returns its error once stopped.
func TestAdapterStoppedOnError(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	rdb := e.r.NewClient(t)
	store := presence.NewStore(rdb, e.dir, presence.Keys{Prefix: e.r.Prefix}, e.clock.Now)
	w := presence.NewWatcher(store, testlog.Logger())
	ctx := context.Background()
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Prefix: e.r.Prefix, Properties: map[presence.PropertyID]Routing{"acme": e.route}, Now: e.clock.Now, Shards: 2, PollEvery: 20 * time.Millisecond}, rdb, store, w, testlog.Logger())
	if err != nil {
		t.Fatal(err)
	}
	good := &fakeAdapter{name: "good-adapter"}
	revoked := &RejectedError{Key: "slack.bot_token", Reason: "token rejected (invalid_auth)", Err: errors.New("invalid_auth")}
	b.AddAdapter(good)
	b.AddAdapter(&fakeAdapter{name: "bad-adapter", runErr: revoked})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(rctx) }()

	st, err := store.SetStatus(ctx, "alice", presence.Online)
	if err != nil {
		t.Fatal(err)
	}
	w.Apply("alice", st)
	c, _, err := b.StartChat(ctx, "acme", Visitor{Name: "V"}, "hello")
	if err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, good, "offer through the adapter that runs", 1, kindFor(KindOffer, "alice", c.ID))
	want := []AdapterState{{Name: "good-adapter", Up: true}, {Name: "bad-adapter", Reason: "token rejected (invalid_auth)"}}
	wait.Within(t, 5*time.Second, "the bad adapter reported down", func() bool {
		return reflect.DeepEqual(b.Adapters(), want)
	})

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, revoked) {
			t.Errorf("Run returned %v, want the bad adapter's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if up := adapterUp(t, "bad-adapter"); up != 0 {
		t.Errorf("onduty_adapter_up{adapter=bad-adapter} = %v, want 0", up)
	}
	if up := adapterUp(t, "good-adapter"); up != 1 {
		t.Errorf("onduty_adapter_up{adapter=good-adapter} = %v, want 1", up)
	}
}

func adapterUp(t *testing.T, adapter string) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.AdapterUp.WithLabelValues(adapter).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
