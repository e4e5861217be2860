package slack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redistest"
)

func wrapRateLimited(d time.Duration) error {
	return fmt.Errorf("slack: chat.postMessage: %w", &slackapi.RateLimitedError{RetryAfter: d})
}

func TestDeliverSharedChannel(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	chat := bridge.Chat{ID: "chatL", Property: "acme", State: bridge.Pending,
		Visitor: bridge.Visitor{Name: "Vera <b>", Email: "vera@example.com", PageURL: "https://acme.example/pricing?a=1&b=2"}}
	deliver := func(d bridge.Delivery) { t.Helper(); hs.deliver(d) }

	offer := bridge.Delivery{ID: "d1", Kind: bridge.KindOffer, Chat: chat,
		Message: &bridge.Message{From: bridge.FromVisitor, Text: "Hi <!channel> & friends"}}
	made := hs.deliver(offer)
	// A retry of the same item after it made its root (the bridge hands
	// back what it made) posts nothing more.
	retry := offer
	retry.Done = made
	if again := hs.deliver(retry); len(again) != 0 {
		t.Errorf("the retry made %+v", again)
	}
	posts := hs.fake.callsOf("chat.postMessage")
	if len(posts) != 1 {
		t.Fatalf("offer posted %d times", len(posts))
	}
	root := posts[0]
	blocks := blocksOf(root)
	for _, w := range []string{`"action_id":"onduty_accept","value":"chatL","style":"primary"`, `"value":"chatL"`,
		"Vera &lt;b&gt;", "Hi &lt;!channel&gt; &amp; friends", "Acme &amp; Co", "a=1&amp;b=2"} {
		if !strings.Contains(blocks, w) {
			t.Errorf("offer blocks lack %s: %s", w, blocks)
		}
	}
	if root.Form.Get("channel") != "C1" || root.Form.Get("thread_ts") != "" || strings.Contains(blocks, "onduty_monitor") {
		t.Errorf("offer: %v", root.Form)
	}
	want := bridge.RemoteRef{Role: bridge.RefThread, Conversation: "C1", Message: root.TS, Thread: root.TS, Extra: "Hi <!channel> & friends"}
	if len(made) != 1 || made[0] != want {
		t.Fatalf("offer made %+v, want its root %+v", made, want)
	}
	r := struct{ TS string }{made[0].Thread}

	// Re-offer with Monitor (invisible fallback): the same root is redrawn.
	deliver(bridge.Delivery{ID: "d2", Kind: bridge.KindOffer, Chat: chat, Monitor: true})
	up := hs.fake.waitCall(t, "chat.update", 1)
	if up.Form.Get("ts") != r.TS || !strings.Contains(blocksOf(up), "onduty_monitor") || !strings.Contains(blocksOf(up), "friends") {
		t.Errorf("re-offer update: %v", up.Form)
	}

	made = hs.deliver(bridge.Delivery{ID: "d3", Kind: bridge.KindMessage, Chat: chat, Message: &bridge.Message{From: bridge.FromVisitor, Text: "anyone?"}})
	msg := hs.fake.waitCall(t, "chat.postMessage", 2)
	if want := (bridge.RemoteRef{Role: bridge.RefMessage, Conversation: "C1", Message: msg.TS, Thread: r.TS}); len(made) != 1 || made[0] != want {
		t.Errorf("message made %+v, want %+v", made, want)
	}
	if msg.Form.Get("thread_ts") != r.TS || msg.Form.Get("channel") != "C1" || !strings.Contains(blocksOf(msg), `*Visitor:*\n>anyone?`) {
		t.Errorf("visitor message: %v", msg.Form)
	}

	chat.State, chat.Owner = bridge.Active, "alice"
	deliver(bridge.Delivery{ID: "d4", Kind: bridge.KindTaken, Chat: chat, TakenBy: "Alice"})
	taken := hs.fake.waitCall(t, "chat.update", 2)
	if tb := blocksOf(taken); !strings.Contains(tb, "Taken by *Alice*") || strings.Contains(tb, `"type":"actions"`) || !strings.Contains(tb, "friends") {
		t.Errorf("taken update: %s", tb)
	}

	// An agent message from elsewhere (Telegram) is shown in the thread.
	deliver(bridge.Delivery{ID: "d6", Kind: bridge.KindMessage, Chat: chat, Message: &bridge.Message{From: bridge.FromAgent, Agent: "alice", Name: "Alice", Text: "From my phone"}})
	if last := hs.fake.waitCall(t, "chat.postMessage", 3); last.Form.Get("thread_ts") != r.TS || !strings.Contains(blocksOf(last), "*Alice:* From my phone") {
		t.Errorf("agent message: %v", last.Form)
	}

	chat.State = bridge.Closed
	deliver(bridge.Delivery{ID: "d7", Kind: bridge.KindClosed, Chat: chat, Text: "closed by the visitor"})
	closed := hs.fake.waitCall(t, "chat.update", 3)
	if !strings.Contains(blocksOf(closed), "Chat closed: closed by the visitor") {
		t.Errorf("closed update: %v", closed.Form)
	}
	line := hs.fake.waitCall(t, "chat.postMessage", 4)
	if line.Form.Get("thread_ts") != r.TS || !strings.Contains(blocksOf(line), "Chat closed") {
		t.Errorf("closed line: %v", line.Form)
	}
}

func TestDeliverToAgents(t *testing.T) {
	hs := newHarness(t, ModeSocket)
	ctx := context.Background()
	chat := bridge.Chat{ID: "chatB", Property: "beta", State: bridge.Pending, Visitor: bridge.Visitor{Name: "Sam"}}
	if hs.a.Shared("beta") || !hs.a.Shared("acme") || !hs.a.Reaches("alice") || hs.a.Reaches("carol") {
		t.Fatal("Shared/Reaches wrong")
	}
	// beta has no channel: its chats go to each agent's DM.
	refs := hs.deliver(bridge.Delivery{ID: "b1", Kind: bridge.KindOffer, Agent: "alice", Chat: chat,
		Message: &bridge.Message{From: bridge.FromVisitor, Text: "hello"}})
	offer := hs.fake.waitCall(t, "chat.postMessage", 1)
	if offer.Form.Get("channel") != "U111" {
		t.Errorf("offer to %s, want alice's DM", offer.Form.Get("channel"))
	}
	if len(refs) != 1 || refs[0].Role != bridge.RefThread || refs[0].Conversation != "D111" {
		t.Fatalf("DM root %+v", refs)
	}
	r := struct{ TS string }{refs[0].Thread}
	hs.deliver(bridge.Delivery{ID: "b2", Kind: bridge.KindMessage, Agent: "alice", Chat: chat,
		Message: &bridge.Message{From: bridge.FromVisitor, Text: "still there?"}})
	if m := hs.fake.waitCall(t, "chat.postMessage", 2); m.Form.Get("channel") != "D111" || m.Form.Get("thread_ts") != r.TS {
		t.Errorf("DM thread message %v", m.Form)
	}
	// Alice answers in the DM thread: the chat is known from the thread.
	hs.message("EvDM", map[string]any{"user": "U111", "text": "yes!", "channel": "D111", "channel_type": "im", "ts": "8.1", "thread_ts": r.TS})
	if a := hs.h.WaitN(t, 1)[0]; a.Kind != bridge.ActMessage || a.Chat != "chatB" || a.Text != "yes!" {
		t.Errorf("DM thread reply %+v", a)
	}

	hs.deliver(bridge.Delivery{ID: "n1", Kind: bridge.KindNotice, Agent: "bob", Chat: chat, Text: "Alice transferred a chat to you."})
	if n := hs.fake.waitCall(t, "chat.postMessage", 3); n.Form.Get("channel") != "U222" || !strings.Contains(blocksOf(n), "transferred") {
		t.Errorf("notice %v", n.Form)
	}
	hs.deliver(bridge.Delivery{ID: "p1", Kind: bridge.KindPrompt, Agent: "alice", Text: "Still on duty?"})
	if p := hs.fake.waitCall(t, "chat.postMessage", 4); p.Form.Get("channel") != "U111" || !strings.Contains(blocksOf(p), `"action_id":"onduty_still_here"`) {
		t.Errorf("prompt %v", p.Form)
	}
	// Edits of a chat never shown here are no-ops, not new messages.
	before := len(hs.fake.callsOf("chat.postMessage"))
	for _, k := range []bridge.DeliveryKind{bridge.KindTaken, bridge.KindWithdrawn, bridge.KindClosed} {
		if _, err := hs.deliverErr(bridge.Delivery{ID: "u-" + string(k), Kind: k, Agent: "bob", Chat: chat, TakenBy: "Alice"}); err != nil {
			t.Fatalf("%s without an offer: %v", k, err)
		}
	}
	if n := len(hs.fake.callsOf("chat.postMessage")); n != before || len(hs.fake.callsOf("chat.update")) != 0 {
		t.Errorf("edits of an unseen chat posted %d messages, %d updates", n-before, len(hs.fake.callsOf("chat.update")))
	}
	var pe *bridge.PermanentError
	if _, err := hs.a.Deliver(ctx, bridge.Delivery{ID: "x1", Kind: bridge.KindNotice, Agent: "carol", Text: "hi"}); !errors.As(err, &pe) {
		t.Errorf("notice to an agent without Slack: %v, want PermanentError", err)
	}
	if _, err := hs.a.Deliver(ctx, bridge.Delivery{ID: "x2", Kind: bridge.KindOffer, Chat: chat}); !errors.As(err, &pe) {
		t.Errorf("shared offer for a property without channel: %v, want PermanentError", err)
	}
}

func TestDeliverErrors(t *testing.T) {
	tests := []struct {
		name      string
		fail      failure
		wantAfter time.Duration // RetryAfterError
		wantPerm  bool
	}{
		{"429 with Retry-After", failure{Status: 429, RetryAfter: "7"}, 7 * time.Second, false},
		{"429 without Retry-After", failure{Status: 429}, defaultRetryAfter, false},
		{"ratelimited in body", failure{Err: "ratelimited"}, defaultRetryAfter, false},
		{"channel_not_found", failure{Err: "channel_not_found"}, 0, true},
		{"invalid_blocks", failure{Err: "invalid_blocks"}, 0, true},
		{"server error", failure{Status: 503}, 0, false},
		{"internal_error", failure{Err: "internal_error"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeSlack(t)
			a := newAdapter(t, fake, redistest.New(t), ModeEvents, testDirectory(t))
			fake.failNext("chat.postMessage", tt.fail)
			d := bridge.Delivery{ID: "e1", Kind: bridge.KindMessage, Chat: bridge.Chat{ID: "c", Property: "acme"},
				Message: &bridge.Message{From: bridge.FromVisitor, Text: "x"}}
			// The chat has no root yet, so the first call is the root's post.
			_, err := a.Deliver(context.Background(), d)
			if err == nil {
				t.Fatal("no error")
			}
			var ra *bridge.RetryAfterError
			var pe *bridge.PermanentError
			switch {
			case tt.wantAfter > 0:
				if !errors.As(err, &ra) || ra.After != tt.wantAfter {
					t.Errorf("err %v, want RetryAfterError after %s", err, tt.wantAfter)
				}
			case tt.wantPerm:
				if !errors.As(err, &pe) {
					t.Errorf("err %v, want PermanentError", err)
				}
			default:
				if errors.As(err, &ra) || errors.As(err, &pe) {
					t.Errorf("err %v, want a plain (retried) error", err)
				}
			}
			if tt.wantPerm {
				return
			}
			// Nothing is dropped: the retry goes through once Slack is back.
			a.pace = newPacer(time.Millisecond, 1)
			if _, err := a.Deliver(context.Background(), d); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if n := len(fake.callsOf("chat.postMessage")); n != 3 { // failed root, root, message
				t.Errorf("%d posts, want 3", n)
			}
		})
	}
}

func TestPacer(t *testing.T) {
	now := time.Unix(1700000000, 0)
	p := newPacer(time.Second, 3)
	p.now = func() time.Time { return now }
	var waits []time.Duration
	for range 5 {
		w, ok := p.reserve("C1", time.Minute, false)
		if !ok {
			t.Fatal("not booked")
		}
		waits = append(waits, w)
	}
	want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if w, _ := p.reserve("C2", time.Minute, false); w != 0 {
		t.Errorf("another channel waits %s", w)
	}
	now = now.Add(10 * time.Second) // the bucket refills
	if w, _ := p.reserve("C1", time.Minute, false); w != 0 {
		t.Errorf("after a pause: wait %s", w)
	}
	p.penalize("C1", wrapRateLimited(20*time.Second))
	if w, ok := p.reserve("C1", maxPaceWait, false); ok || w < 19*time.Second {
		t.Errorf("after 429: wait %s ok %v, want about 20s and not booked", w, ok)
	}
	err := p.wait(context.Background(), "C1")
	var ra *bridge.RetryAfterError
	if !errors.As(err, &ra) || ra.After < 19*time.Second {
		t.Errorf("wait after 429: %v", err)
	}
}

// TestPacerLeavesAFreshChatItsTurn: backlogged sends to a channel leave the
// last turn of the burst free, so a fresh chat's message goes at once
// however long the backlog; a backlogged send is never booked ahead.
func TestPacerLeavesAFreshChatItsTurn(t *testing.T) {
	now := time.Unix(1700000000, 0)
	p := newPacer(time.Second, 3)
	p.now = func() time.Time { return now }
	sent := 0
	for range 40 { // a flood, 100ms apart, always backlogged
		if w, ok := p.reserve("C1", 0, true); ok && w == 0 {
			sent++
		} else if ok {
			t.Fatalf("a backlogged send was booked %s ahead", w)
		}
		now = now.Add(100 * time.Millisecond)
	}
	if sent < 4 || sent > 6 {
		t.Errorf("the backlog sent %d in 4s, want about one a second", sent)
	}
	if w, ok := p.reserve("C1", maxPaceWait, false); !ok || w != 0 {
		t.Errorf("a fresh chat behind the backlog waits %s (booked %v), want 0", w, ok)
	}
	if w, ok := p.reserve("C1", maxPaceWait, false); !ok || w > time.Second {
		t.Errorf("a second fresh chat waits %s, want at most one interval", w)
	}
	err := p.wait(withBacklog(context.Background(), true), "C1")
	var ra *bridge.RetryAfterError
	if !errors.As(err, &ra) || !errors.Is(err, bridge.ErrPaced) {
		t.Errorf("a backlogged wait: %v, want a RetryAfterError wrapping ErrPaced", err)
	}
}

// TestMessageDeliveryRoundTrips: a message in a chat's thread costs no
// Redis round trip in the adapter (the bridge hands it the thread, and
// keeps what it made), and a retry of the delivery after it posted its
// message (d.Done) posts nothing more.
func TestMessageDeliveryRoundTrips(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	hs.offer("chatR", "hello")
	var n redistest.Counter
	hs.redis.Client.AddHook(&n)
	d := bridge.Delivery{ID: "m1", Kind: bridge.KindMessage, Chat: bridge.Chat{ID: "chatR", Property: "acme", State: bridge.Pending},
		Message: &bridge.Message{From: bridge.FromVisitor, Text: "still there?"}}
	for range 2 {
		n.All.Store(0)
		d.Done = append(d.Done, hs.deliver(d)...)
		if got := n.All.Load(); got > 0 {
			t.Errorf("message delivery took %d Redis round trips, want none", got)
		}
	}
	if posts := len(hs.fake.callsOf("chat.postMessage")); posts != 2 { // the offer's root, the message once
		t.Errorf("%d posts, want 2", posts)
	}
}
