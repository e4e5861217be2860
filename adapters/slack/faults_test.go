package slack

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/outage"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

var visitorLine = regexp.MustCompile(`visitor \d\d`)

// liveSlack is the real bridge with the real adapter (events mode) on a
// fake Slack.
type liveSlack struct {
	b     *bridge.Bridge
	a     *Adapter
	hs    *harness
	store *presence.Store
	dir   *presence.Directory
}

func newLiveSlack(t *testing.T, fake *fakeSlack, tweak ...func(*Config)) *liveSlack {
	t.Helper()
	return newLiveSlackDir(t, fake, testDirectory(t), tweak...)
}

// newLiveSlackDir is newLiveSlack with another directory.
func newLiveSlackDir(t *testing.T, fake *fakeSlack, dir *presence.Directory, tweak ...func(*Config)) *liveSlack {
	t.Helper()
	return newLiveSlackWith(t, fake, dir, nil, tweak...)
}

// newLiveSlackWith is newLiveSlackDir with setup run on the adapter before
// the bridge starts.
func newLiveSlackWith(t *testing.T, fake *fakeSlack, dir *presence.Directory, setup func(*Adapter), tweak ...func(*Config)) *liveSlack {
	t.Helper()
	return newLiveSlackBefore(t, fake, dir, setup, nil, tweak...)
}

// newLiveSlackBefore is newLiveSlackWith with before run on the bridge
// (adapter added) and its Redis before the bridge starts.
func newLiveSlackBefore(t *testing.T, fake *fakeSlack, dir *presence.Directory, setup func(*Adapter),
	before func(*bridge.Bridge, *redistest.Redis), tweak ...func(*Config)) *liveSlack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := redistest.New(t)
	log := testlog.Logger()
	store := presence.NewStore(r.Client, dir, presence.Keys{Prefix: r.Prefix}, time.Now)
	watcher := presence.NewWatcher(store, log)
	if err := watcher.Load(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{
		Prefix: r.Prefix, Properties: map[presence.PropertyID]bridge.Routing{"acme": {}, "beta": {}},
		RetryMin: 10 * time.Millisecond, RetryMax: 300 * time.Millisecond, PollEvery: 20 * time.Millisecond,
	}, r.Client, store, watcher, log)
	if err != nil {
		t.Fatal(err)
	}
	a := newAdapter(t, fake, r, ModeEvents, dir, tweak...)
	if setup != nil {
		setup(a)
	}
	b.AddAdapter(a)
	if before != nil {
		before(b, r)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = watcher.Run(ctx) })
	wg.Go(func() {
		if err := b.Run(ctx); err != nil {
			t.Errorf("bridge Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	wait.For(t, "adapter running", func() bool { return a.handler() != nil })
	return &liveSlack{b: b, a: a, hs: &harness{t: t, mode: ModeEvents, a: a, fake: fake, redis: r}, store: store, dir: dir}
}

// TestSlackOutage: Slack's Web API fails for a "minute" (outage.Minute) while
// a visitor and the agent keep writing. Afterwards every visitor message is
// in the chat's thread and every agent message reached the visitor, in
// order, none twice — through the real bridge and the real adapter.
func TestSlackOutage(t *testing.T) {
	for _, mode := range []string{outage.ServerError, outage.Timeout, outage.RateLimited} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			fake := newFakeSlack(t)
			front := &outage.Proxy{
				Next:    fake.srv.Config.Handler,
				Affects: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") },
				Refuse: func(w http.ResponseWriter, mode string) {
					if mode == outage.RateLimited {
						w.Header().Set("Retry-After", "1")
						w.WriteHeader(http.StatusTooManyRequests)
						return
					}
					w.WriteHeader(http.StatusServiceUnavailable)
				},
			}
			srv := httptest.NewServer(front)
			t.Cleanup(srv.Close)
			l := newLiveSlack(t, fake, func(c *Config) {
				c.APIURL = srv.URL + "/api"
				c.HTTPClient = &http.Client{Timeout: 2 * time.Second}
			})
			b, hs, ctx := l.b, l.hs, t.Context()

			// Alice is on duty and owns a chat in the acme channel.
			hs.command("U111", "D111", "online")
			chat, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Olga"}, "hello")
			if err != nil {
				t.Fatal(err)
			}
			events, stop := b.SubscribeVisitor(chat.ID)
			t.Cleanup(stop)
			rootTS := rootOf(t, fake, "C1", chat.ID)
			hs.button("U111", actionAccept, string(chat.ID), "C1", "")
			waitEvent(t, events, bridge.EventAgentJoined)

			// Slack goes down; both sides keep writing.
			front.Start(mode, outage.Minute)
			const n = 8
			for i := range n {
				if _, err := b.PostVisitorMessage(ctx, chat.ID, fmt.Sprintf("visitor %02d", i), nil); err != nil {
					t.Fatal(err)
				}
				hs.message(fmt.Sprintf("EvOut%d", i), map[string]any{"user": "U111", "text": fmt.Sprintf("agent %02d", i),
					"channel": "C1", "channel_type": "channel", "ts": fmt.Sprintf("20.%d", i), "thread_ts": rootTS})
				time.Sleep(outage.Minute / (2 * n))
			}
			wait.For(t, "the outage to end", front.Over)
			if front.Refused() == 0 {
				t.Fatal("the outage refused nothing")
			}
			endedAt := time.Now()

			inThread := func() []string {
				var got []string
				for _, c := range fake.callsOf("chat.postMessage") {
					if c.Form.Get("thread_ts") == rootTS {
						got = append(got, visitorLine.FindAllString(blocksOf(c), -1)...)
					}
				}
				return got
			}
			var got []string
			wait.Long(t, "every visitor message in the thread", func() bool { got = inThread(); return len(got) >= n })
			deliveredAfter := time.Since(endedAt)
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("visitor %02d", i))
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("thread got %q,\nwant each once, in order: %q", got, want)
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
			// One more round trip, then nothing arrived twice meanwhile.
			if _, err := b.PostVisitorMessage(ctx, chat.ID, "visitor 99", nil); err != nil {
				t.Fatal(err)
			}
			wait.Long(t, "the last message", func() bool { got = inThread(); return len(got) > n })
			if len(got) != n+1 {
				t.Errorf("thread got %d visitor messages, want %d: %q", len(got), n+1, got)
			}
			t.Logf("%s: %d requests refused during the outage; all delivered %s after it", mode, front.Refused(), deliveredAfter.Round(time.Millisecond))
		})
	}
}

func waitEvent(t *testing.T, events <-chan bridge.VisitorEvent, typ bridge.VisitorEventType) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Type == typ {
				return
			}
		case <-deadline:
			t.Fatalf("no %s event", typ)
		}
	}
}
