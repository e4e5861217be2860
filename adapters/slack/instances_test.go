package slack

import (
	"testing"
	"time"

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
