package slack

import (
	"net/http"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
)

// Two instances on one Redis both hold a Socket Mode connection. Slack gives
// each envelope to one of them; a redelivered event that lands on the other
// instance is still handled once.
func TestTwoInstancesSocket(t *testing.T) {
	fake := newFakeSlack(t)
	r := redistest.New(t)
	h := &fakeHandler{}
	dir := testDirectory(t)
	for i := range 2 {
		rdb := r.Client
		if i == 1 {
			rdb = r.NewClient(t)
		}
		a := newAdapter(t, fake, &redistest.Redis{Client: rdb, Prefix: r.Prefix, URL: r.URL}, ModeSocket, dir)
		hs := &harness{t: t, mode: ModeSocket, a: a, fake: fake}
		hs.start(h)
	}
	wait.For(t, "both connected", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return fake.conns == 2
	})
	inner := map[string]any{"type": "message", "user": "U111", "text": "once", "channel": "D111", "channel_type": "im", "ts": "1.1"}
	hs := &harness{t: t, mode: ModeSocket, fake: fake}
	for range 6 {
		hs.message("EvTwin", inner)
	}
	wait.For(t, "every envelope acked", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return len(fake.acks) >= 6
	})
	hs.message("EvAfter", map[string]any{"type": "message", "user": "U111", "text": "after", "channel": "D111", "channel_type": "im", "ts": "1.2"})
	got := h.WaitN(t, 2)
	// A duplicate still in flight on the other instance would show up within
	// this bound; the dedup makes it impossible, this only gives it the chance.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) && len(h.Actions()) == 2 {
		time.Sleep(10 * time.Millisecond)
	}
	got = h.Actions()
	n := 0
	for _, a := range got {
		if a.Text == "once" {
			n++
		}
	}
	if n != 1 || len(got) != 2 {
		t.Errorf("handled %d times (actions %+v), want once", n, got)
	}
}

// Slack asks for a reconnect ("disconnect" envelope): the adapter opens a new
// connection and events keep flowing.
func TestSocketReconnects(t *testing.T) {
	hs := newHarness(t, ModeSocket)
	hs.fake.push <- []byte(`{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"fake"}}`)
	wait.For(t, "second connection", func() bool {
		hs.fake.mu.Lock()
		defer hs.fake.mu.Unlock()
		return hs.fake.conns >= 2 && hs.fake.active == 1 // the old one is gone
	})
	hs.message("EvAfterReconnect", map[string]any{"type": "message", "user": "U111", "text": "still here", "channel": "D111", "channel_type": "im", "ts": "1.1"})
	if got := hs.h.WaitN(t, 1); got[0].Text != "still here" {
		t.Errorf("after reconnect: %+v", got)
	}
	if n := len(hs.fake.callsOf("apps.connections.open")); n < 2 {
		t.Errorf("apps.connections.open called %d times", n)
	}
}

// TestEventInProgressElsewhereRetried: Slack sends an event again (its
// retry) to a second instance while the first still handles it. The
// second leaves it to Slack's next try (503, not acknowledged) rather
// than dropping it, so that the event is not lost if the first instance
// dies; once the first has handled it, a retry is acknowledged and
// ignored.
func TestEventInProgressElsewhereRetried(t *testing.T) {
	fake := newFakeSlack(t)
	r := redistest.New(t)
	h := &fakeHandler{}
	dir := testDirectory(t)
	var inst [2]*harness
	for i := range inst {
		inst[i] = &harness{t: t, mode: ModeEvents, fake: fake, a: newAdapter(t, fake, r, ModeEvents, dir)}
		inst[i].start(h)
	}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	h.SetReply(func(bridge.Action) (bridge.Reply, error) {
		entered <- struct{}{}
		<-release
		return bridge.Reply{}, nil
	})
	body := eventBody("EvBusy", map[string]any{"type": "message", "user": "U111", "text": "once", "channel": "D111", "channel_type": "im", "ts": "1.1"})
	first := make(chan int, 1)
	go func() { first <- inst[0].post("/slack/events", "application/json", body, nil).Code }()
	<-entered
	if code := inst[1].post("/slack/events", "application/json", body, nil).Code; code != http.StatusServiceUnavailable {
		t.Errorf("the retry on the other instance while the first handles it: %d, want 503", code)
	}
	close(release)
	if code := <-first; code != http.StatusOK {
		t.Errorf("the first delivery: %d", code)
	}
	if code := inst[1].post("/slack/events", "application/json", body, nil).Code; code != http.StatusOK {
		t.Errorf("a retry after it was handled: %d, want 200", code)
	}
	if got := h.Actions(); len(got) != 1 || got[0].Text != "once" {
		t.Errorf("actions %+v, want the event once", got)
	}
}
