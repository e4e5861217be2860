package telegram

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// armedPacer makes the first send after arm wait d, as a busy chat's
// pacing would; every other send goes at once.
type armedPacer struct {
	mu    sync.Mutex
	armed time.Duration
}

func (p *armedPacer) arm(d time.Duration) { p.mu.Lock(); p.armed = d; p.mu.Unlock() }

func (p *armedPacer) wait(context.Context, int64) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.armed
	p.armed = 0
	return d
}

// slowSends answers the first sendMessage only after delay (Telegram has
// posted the message when the request arrives) and notes when each arrived.
type slowSends struct {
	next  http.Handler
	delay time.Duration

	mu      sync.Mutex
	arrived []time.Time
}

func (s *slowSends) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/sendMessage") && r.Method == http.MethodPost {
		s.mu.Lock()
		s.arrived = append(s.arrived, time.Now())
		first := len(s.arrived) == 1
		s.mu.Unlock()
		if first {
			time.Sleep(s.delay)
		}
	}
	s.next.ServeHTTP(w, r)
}

func (s *slowSends) arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.arrived...)
}

// TestDeliveryTimeoutCoversOnlyThePlatformCall: the outbox's delivery
// timeout (1s here) bounds Telegram's answer to a send, not the pacing wait
// before it. Before, the wait (0.8s) used up most of the timeout, the send
// went out, Telegram's answer (0.5s) came after the deadline, the delivery
// was recorded as failed and the offer sent a second time. Now it is sent
// once. And a send whose answer never comes within the timeout (it may have
// been posted) is retried only after the call's window, never at once.
func TestDeliveryTimeoutCoversOnlyThePlatformCall(t *testing.T) {
	const timeout = time.Second
	for _, tt := range []struct {
		name         string
		pacing, slow time.Duration
		sends        int
	}{
		{"paced, answered within the timeout", 800 * time.Millisecond, 500 * time.Millisecond, 1},
		{"no answer within the timeout", 0, 1500 * time.Millisecond, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			dir, err := presence.NewDirectory([]presence.Property{{ID: "acme", Name: "Acme"}},
				[]presence.Agent{{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(aliceTG), Condition: presence.Always}})
			if err != nil {
				t.Fatal(err)
			}
			e.dir = dir
			slow := &slowSends{next: e.api, delay: tt.slow}
			front := httptest.NewServer(slow)
			t.Cleanup(front.Close)
			a := e.adapter(t, "A", nil, func(c *Config) { c.APIURL = front.URL })
			p := &armedPacer{}
			a.lim = p
			store := presence.NewStore(e.rdb.Client, dir, presence.Keys{Prefix: e.rdb.Prefix}, time.Now)
			if _, err := store.SetStatus(t.Context(), "alice", presence.Online); err != nil {
				t.Fatal(err)
			}
			b := startBridge(t, e, a, dir, func(c *bridge.Config) { c.DeliverTimeout = timeout })

			p.arm(tt.pacing)
			chat, _, err := b.StartChat(t.Context(), "acme", bridge.Visitor{Name: "Una"}, "only once")
			if err != nil {
				t.Fatal(err)
			}
			// The chat's next delivery waits behind the offer in the same
			// shard: once it is at Telegram, the offer is settled.
			if _, err := b.PostVisitorMessage(t.Context(), chat.ID, "after the offer", nil); err != nil {
				t.Fatal(err)
			}
			waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return strings.Contains(c.Params["text"], "after the offer") })
			offers := e.api.Calls("sendMessage")
			n := 0
			for _, c := range offers {
				if strings.Contains(c.Params["reply_markup"], "a:"+string(chat.ID)) {
					n++
				}
			}
			if n != tt.sends {
				t.Errorf("the offer reached Telegram %d times, want %d", n, tt.sends)
			}
			if tt.sends == 2 {
				wait.For(t, "two offers", func() bool { return len(slow.arrivals()) >= 2 })
				at := slow.arrivals()
				// The first call's window ends at the timeout; the retry
				// waits a whole timeout more, so the first request cannot
				// still be landing when the second is sent.
				if gap := at[1].Sub(at[0]); gap < 2*timeout-50*time.Millisecond {
					t.Errorf("an offer that may have been posted was sent again %s later, within its window (%s)", gap, 2*timeout)
				}
			}
		})
	}
}
