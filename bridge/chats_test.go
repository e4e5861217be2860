package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

func TestAcceptRaceHasExactlyOneOwner(t *testing.T) {
	e := newEnv(t, Routing{Strategy: Broadcast, QueueTimeout: time.Hour})
	a := e.start(&fakeAdapter{name: "fake"})
	b := e.start(&fakeAdapter{name: "fake"}) // a second instance on the same Redis
	e.status(presence.Online, "alice", "bob", "carol", "erin")
	agents := []presence.AgentID{"alice", "bob", "carol", "erin"}
	for round := range 5 {
		c, _ := a.startChat(t, fmt.Sprintf("V%d", round), "hello")
		var mu sync.Mutex
		var winners []presence.AgentID
		replies := map[presence.AgentID][]string{}
		var wg sync.WaitGroup
		for i := range 24 {
			in := []*instance{a, b}[i%2]
			ag := agents[i%len(agents)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := in.b.Handle(context.Background(), Action{Kind: ActAccept, Agent: ag, Chat: c.ID})
				if err != nil {
					t.Errorf("accept: %v", err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if strings.HasPrefix(r.Text, "You're now chatting") {
					winners = append(winners, ag)
				} else {
					replies[ag] = append(replies[ag], r.Text)
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners %v, want exactly 1", round, len(winners), winners)
		}
		cv := a.chat(t, c.ID)
		if cv.Owner != winners[0] || cv.State != Active {
			t.Fatalf("round %d: stored owner %q state %s, winner %s", round, cv.Owner, cv.State, winners[0])
		}
		// Everyone else was told who won; the winner's other taps, that it is theirs.
		for ag, texts := range replies {
			want := "Already taken by " + a.b.agentName(winners[0]) + "."
			if ag == winners[0] {
				want = "That chat is already yours."
			}
			for _, got := range texts {
				if got != want {
					t.Fatalf("round %d: %s told %q, want %q", round, ag, got, want)
				}
			}
		}
		// Every other agent's offer is edited to say who took it.
		for _, ag := range agents {
			if ag != winners[0] {
				e.waitAll("taken edit for "+string(ag), 1, func(d Delivery) bool {
					return d.Kind == KindTaken && d.Agent == ag && d.Chat.ID == c.ID && d.TakenBy == a.b.agentName(winners[0])
				})
			}
		}
		if n := countPrefix(a.transcript(t, c.ID), "system:"+a.b.agentName(winners[0])+" joined"); n != 1 {
			t.Fatalf("round %d: %d join lines", round, n)
		}
	}
	// Load counts add up: 5 chats owned in total.
	loads, err := a.b.loads(context.Background(), agents)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range loads {
		total += n
	}
	if total != 5 {
		t.Fatalf("total load %d, want 5 (%v)", total, loads)
	}
}

func TestTimersSurviveRestartAndFireOnce(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: 5 * time.Minute})
	first := e.start(nil)
	e.status(presence.Online, "alice")
	c, _ := first.startChat(t, "V", "hello")
	first.stop() // the instance goes away with the queue timer pending

	e.clock.Advance(6 * time.Minute)
	second := e.start(nil)
	third := e.start(nil)
	var wg sync.WaitGroup
	for _, in := range []*instance{second, third, second, third} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := in.b.fireDue(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if cv := second.chat(t, c.ID); !cv.Offline {
		t.Fatalf("queue timeout did not fire after restart: %+v", cv.Chat)
	}
	if n := countPrefix(second.transcript(t, c.ID), "system:Sorry"); n != 1 {
		t.Fatalf("queue timeout fired %d times, want 1", n)
	}
}

func TestTimerClaimedByCrashedInstanceFiresAfterLease(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Minute})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	c, _ := in.startChat(t, "V", "hello")
	in.stop()
	e.clock.Advance(2 * time.Minute)
	// An instance claims the due timer and dies before firing it.
	res, err := claimTimersScript.Run(context.Background(), e.r.Client, []string{in.b.keys.Timers()},
		ms(e.clock.Now()), timerLease.Milliseconds(), 100).StringSlice()
	if err != nil || len(res) < 2 {
		t.Fatalf("claim: %v %v", res, err)
	}
	next := e.start(nil)
	if n, _ := next.b.fireDue(context.Background()); n != 0 {
		t.Fatalf("fired %d timers while another instance held them", n)
	}
	e.advance(next, timerLease)
	if cv := next.chat(t, c.ID); !cv.Offline {
		t.Fatal("timer lost with the crashed instance")
	}
}

func TestOutboxSurvivesFailingPlatformInOrder(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	ad := &fakeAdapter{name: "fake"}
	in := e.start(ad)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	e.drain(in)

	// The platform fails: errors, then rate limits, then recovers.
	var down atomic.Bool
	down.Store(true)
	ad.setFail(func(call int, d Delivery) error {
		if !down.Load() {
			return nil
		}
		if call%2 == 0 {
			return &RetryAfterError{After: 5 * time.Millisecond, Err: errFlaky}
		}
		return errFlaky
	})
	const n = 30
	for i := range n {
		if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, fmt.Sprintf("m%02d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, "failed attempts", func() bool {
		ad.mu.Lock()
		defer ad.mu.Unlock()
		return ad.calls > 20
	})
	down.Store(false)
	e.drain(in)
	// Messages that queued up while the platform failed may come merged.
	texts := messageLines(ad.find(func(d Delivery) bool { return d.Kind == KindMessage && d.Agent == "alice" }))
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	if !slices.Equal(texts, want) {
		t.Fatalf("delivered %v\nwant %v", texts, want)
	}
}

func TestOutboxPermanentErrorGoesToDeadLetter(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	ad := &fakeAdapter{name: "fake"}
	in := e.start(ad)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	e.drain(in)
	ad.setFail(func(_ int, d Delivery) error {
		if d.Message != nil && strings.Contains(d.Message.Text, "bad") {
			return &PermanentError{Err: errors.New("message too long")}
		}
		return nil
	})
	for _, s := range []string{"before", "bad", "after"} {
		if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, s, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.drain(in)
	// "bad" may first be merged with its neighbours: refused merged, they
	// are tried one by one and only "bad" is lost.
	texts := messageLines(ad.find(func(d Delivery) bool { return d.Kind == KindMessage }))
	if !slices.Equal(texts, []string{"before", "after"}) {
		t.Fatalf("delivered %v", texts)
	}
	dead, err := e.r.Client.XRange(context.Background(), in.b.keys.DeadLetter(), "-", "+").Result()
	if err != nil || len(dead) != 1 || !strings.Contains(dead[0].Values["err"].(string), "too long") {
		t.Fatalf("dead letters %v %v", dead, err)
	}
}

func TestNotesNeverReachTheVisitor(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	e.status(presence.Invisible, "bob")
	c, _ := in.startChat(t, "V", "hello")
	events, cancel := in.b.SubscribeVisitor(c.ID)
	defer cancel()
	in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c.ID})
	in.act(t, Action{Kind: ActMonitor, Agent: "bob", Chat: c.ID})
	// A note from the monitor (not the owner) and one from the owner.
	in.say(t, "bob", c.ID, "// VIP customer")
	in.say(t, "alice", c.ID, "//thanks")
	in.say(t, "alice", c.ID, "Hi, how can I help?")
	if ev := nextEvent(t, events); ev.Type != EventAgentJoined {
		t.Fatalf("first event %+v", ev)
	}
	if ev := nextEvent(t, events); ev.Type != EventMessage || ev.Message.Text != "Hi, how can I help?" {
		t.Fatalf("visitor saw %+v", ev)
	}
	tr := in.transcript(t, c.ID)
	for _, l := range tr {
		if strings.Contains(l, "VIP") || strings.Contains(l, "thanks") {
			t.Fatalf("note in visitor transcript: %v", tr)
		}
	}
	waitDelivered(t, in.ad, "note to owner", 1, func(d Delivery) bool {
		return d.Agent == "alice" && d.Message != nil && d.Message.Note && d.Message.Text == "VIP customer"
	})
	waitDelivered(t, in.ad, "note to monitor", 1, func(d Delivery) bool {
		return d.Agent == "bob" && d.Message != nil && d.Message.Note && d.Message.Text == "thanks"
	})
}

func TestNonOwnerReplies(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice", "bob")
	c, _ := in.startChat(t, "V", "hello")
	// A reply in a pending chat makes the replier the owner.
	in.say(t, "bob", c.ID, "Hi, Bob here")
	if cv := in.chat(t, c.ID); cv.Owner != "bob" {
		t.Fatalf("owner %q after bob's reply, want bob", cv.Owner)
	}
	// In another's chat it is not relayed, and the agent is told.
	r := in.say(t, "alice", c.ID, "Hi, Alice here")
	if !strings.Contains(r.Text, "Bob is handling this chat") {
		t.Fatalf("reply %q", r.Text)
	}
	tr := in.transcript(t, c.ID)
	if slices.Contains(tr, "agent:Hi, Alice here") || !slices.Contains(tr, "agent:Hi, Bob here") {
		t.Fatalf("transcript %v", tr)
	}
}

func TestTransfer(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice", "bob")
	c := in.acceptedChat(t, "alice")

	tests := []struct {
		agent presence.AgentID
		cmd   string
		want  string
	}{
		{"alice", "transfer", "Use /transfer NAME"},
		{"alice", "transfer nobody", "I don't know an agent"},
		{"alice", "transfer carol", "offline"},
		{"bob", "transfer alice", "Alice is handling"},
		{"alice", "transfer BOB", "Transferred the chat with V to Bob"},
	}
	chatOf := func(a presence.AgentID) ChatID {
		if a == "bob" {
			return c.ID // bob names alice's chat (e.g. replying in its thread)
		}
		return "" // alice's current chat
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			c, args, _ := strings.Cut(tt.cmd, " ")
			r := in.act(t, Action{Kind: ActCommand, Agent: tt.agent, Command: c, Args: args, Chat: chatOf(tt.agent)})
			if !strings.Contains(r.Text, tt.want) {
				t.Fatalf("%s: %q, want %q", tt.cmd, r.Text, tt.want)
			}
		})
	}
	if cv := in.chat(t, c.ID); cv.Owner != "bob" {
		t.Fatalf("owner %q after transfer", cv.Owner)
	}
	waitDelivered(t, in.ad, "notice to bob", 1, kindFor(KindNotice, "bob", c.ID))
	if r := in.say(t, "alice", c.ID, "still me"); !strings.Contains(r.Text, "Bob is handling") {
		t.Fatalf("old owner's reply: %q", r.Text)
	}
	in.say(t, "bob", "", "Bob here") // plain text goes to bob's current (transferred) chat
	if tr := in.transcript(t, c.ID); tr[len(tr)-1] != "agent:Bob here" {
		t.Fatalf("transcript %v", tr)
	}
	loads, _ := in.b.loads(context.Background(), []presence.AgentID{"alice", "bob"})
	if loads["alice"] != 0 || loads["bob"] != 1 {
		t.Fatalf("loads %v", loads)
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	t.Run("by agent", func(t *testing.T) {
		e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
		in := e.start(nil)
		e.status(presence.Online, "alice", "bob")
		c, _ := in.startChat(t, "V", "hello")
		events, cancel := in.b.SubscribeVisitor(c.ID)
		defer cancel()
		in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c.ID})
		if r := in.cmd(t, "bob", "close"); !strings.Contains(r.Text, "no open chat") {
			t.Fatalf("bob close: %q", r.Text)
		}
		if r := in.act(t, Action{Kind: ActCommand, Agent: "bob", Command: "close", Chat: c.ID}); !strings.Contains(r.Text, "only they can close") {
			t.Fatalf("bob close: %q", r.Text)
		}
		if r := in.cmd(t, "alice", "close"); !strings.Contains(r.Text, "Closed the chat") {
			t.Fatalf("alice close: %q", r.Text)
		}
		nextEvent(t, events) // agent_joined
		if ev := nextEvent(t, events); ev.Type != EventChatClosed || ev.Reason != "closed by agent" {
			t.Fatalf("event %+v", ev)
		}
		if _, err := in.b.PostVisitorMessage(ctx, c.ID, "hello?", nil); !errors.Is(err, ErrChatClosed) {
			t.Fatalf("post to closed chat: %v", err)
		}
		loads, _ := in.b.loads(ctx, []presence.AgentID{"alice"})
		if loads["alice"] != 0 {
			t.Fatalf("alice load %d after close", loads["alice"])
		}
	})
	t.Run("by visitor", func(t *testing.T) {
		e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
		in := e.start(nil)
		e.status(presence.Online, "alice")
		c := in.acceptedChat(t, "alice")
		if err := in.b.CloseByVisitor(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		d := waitDelivered(t, in.ad, "closed", 1, kindFor(KindClosed, "alice", c.ID))
		if d[0].Chat.ClosedBy != "visitor" {
			t.Fatalf("closed by %q", d[0].Chat.ClosedBy)
		}
	})
	t.Run("pending by visitor withdraws offers", func(t *testing.T) {
		e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
		in := e.start(nil)
		e.status(presence.Online, "alice")
		c, _ := in.startChat(t, "V", "hello")
		if err := in.b.CloseByVisitor(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		waitDelivered(t, in.ad, "withdrawn", 1, kindFor(KindWithdrawn, "alice", c.ID))
		if r := in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c.ID}); !strings.Contains(r.Text, "closed") {
			t.Fatalf("accept closed chat: %q", r.Text)
		}
	})
	t.Run("idle", func(t *testing.T) {
		e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour, CloseAfterIdle: time.Hour})
		in := e.start(nil)
		e.status(presence.Online, "alice")
		c := in.acceptedChat(t, "alice")
		e.advance(in, 50*time.Minute)
		if _, err := in.b.PostVisitorMessage(ctx, c.ID, "still here", nil); err != nil {
			t.Fatal(err)
		}
		e.advance(in, 50*time.Minute) // 100m since accept, 50m since the last message
		if cv := in.chat(t, c.ID); cv.State != Active {
			t.Fatalf("closed %s after its last message", 50*time.Minute)
		}
		e.advance(in, 11*time.Minute)
		if cv := in.chat(t, c.ID); cv.State != Closed || cv.ClosedBy != "idle" {
			t.Fatalf("after idle: %+v", cv.Chat)
		}
	})
}

func TestOfflineMessageAnswered(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	a := e.start(nil)
	b := e.start(nil)
	c, _, err := a.b.LeaveOfflineMessage(context.Background(), "acme", Visitor{Name: "Vera", Email: "v@example.com"}, "Call me back")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Offline || c.State != Pending {
		t.Fatalf("offline message %+v", c)
	}
	// Every agent gets it, whatever their status.
	for _, ag := range []presence.AgentID{"alice", "bob", "carol", "dave", "erin"} {
		e.waitAll("offline message for "+string(ag), 1, func(d Delivery) bool {
			return d.Kind == KindOffer && d.Agent == ag && d.Chat.Offline && d.Message != nil && d.Message.Text == "Call me back"
		})
	}
	// The visitor's widget is open on instance b; alice answers through a.
	events, cancel := b.b.SubscribeVisitor(c.ID)
	defer cancel()
	e.status(presence.Online, "alice")
	a.say(t, "alice", c.ID, "Calling you now")
	var got VisitorEvent
	for got = nextEvent(t, events); got.Type != EventMessage; got = nextEvent(t, events) {
	}
	if got.Message.Text != "Calling you now" {
		t.Fatalf("visitor got %+v", got.Message)
	}
	if tr := b.transcript(t, c.ID); !slices.Equal(tr, []string{"visitor:Call me back", "system:Alice joined the chat.", "agent:Calling you now"}) {
		t.Fatalf("transcript %v", tr)
	}
}

func TestVisitorAPI(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	tests := []struct {
		name string
		prop presence.PropertyID
		text string
		want error
	}{
		{"empty", "acme", "", ErrInvalidText},
		{"blank", "acme", "   ", ErrInvalidText},
		{"too long", "acme", strings.Repeat("é", MaxTextRunes+1), ErrInvalidText},
		{"bad utf-8", "acme", "a\xffb", ErrInvalidText},
		{"unknown property", "nope", "hi", ErrUnknownProperty},
		{"longest", "acme", strings.Repeat("é", MaxTextRunes), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := in.b.StartChat(ctx, tt.prop, Visitor{}, tt.text)
			if !errors.Is(err, tt.want) {
				t.Fatalf("StartChat: %v, want %v", err, tt.want)
			}
		})
	}
	c, tok := in.startChat(t, "V", "hello")
	if !c.ID.IsValid() || len(c.ID) > 22 {
		t.Fatalf("chat id %q", c.ID)
	}
	if _, err := in.b.AuthVisitor(ctx, c.ID, tok); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if _, err := in.b.AuthVisitor(ctx, c.ID, tok+"x"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := in.b.AuthVisitor(ctx, "nope", tok); !errors.Is(err, ErrUnknownChat) {
		t.Fatalf("unknown chat: %v", err)
	}
	if _, err := in.b.AuthVisitor(ctx, "../../x", tok); !errors.Is(err, ErrUnknownChat) {
		t.Fatalf("bad chat id: %v", err)
	}
	m1, err := in.b.PostVisitorMessage(ctx, c.ID, "second", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.b.PostVisitorMessage(ctx, c.ID, "third", nil); err != nil {
		t.Fatal(err)
	}
	after, err := in.b.Transcript(ctx, c.ID, m1.ID, 0)
	if err != nil || len(after) != 1 || after[0].Text != "third" {
		t.Fatalf("Transcript after %s: %+v %v", m1.ID, after, err)
	}
	// Attachments: stored with a cap, readable only through their chat.
	att, err := in.b.PutFile(ctx, c.ID, "a.txt", "text/plain", []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, data, err := in.b.File(ctx, c.ID, att.Key); err != nil || string(data) != "data" {
		t.Fatalf("File: %q %v", data, err)
	}
	// Files are kept file_retention (default 7 days), not as long as the transcript.
	if ttl := in.b.rdb.TTL(ctx, in.b.keys.File(c.Property, c.ID, att.Key)).Val(); ttl <= 7*24*time.Hour-time.Minute || ttl > 7*24*time.Hour {
		t.Errorf("file kept %v, want 7 days", ttl)
	}
	c2, _ := in.startChat(t, "W", "other")
	if _, _, err := in.b.File(ctx, c2.ID, att.Key); err == nil {
		t.Fatal("file readable through another chat")
	}
	in.b.cfg.MaxFileBytes = 3
	if _, err := in.b.PutFile(ctx, c.ID, "big", "x", []byte("data")); err == nil {
		t.Fatal("file over the cap accepted")
	}
	if _, err := in.b.PostVisitorMessage(ctx, c.ID, "", &att); err != nil {
		t.Fatalf("attachment without text: %v", err)
	}
}

func TestRedisDownIsUnavailable(t *testing.T) {
	e := newEnv(t, Routing{})
	rdb := e.r.NewClient(t)
	in := e.startWith(nil, rdb)
	c, tok := in.startChat(t, "V", "hello")
	in.stop()
	rdb.Close()
	ctx := context.Background()
	if _, _, err := in.b.StartChat(ctx, "acme", Visitor{}, "hi"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("StartChat with Redis gone: %v", err)
	}
	in.b.propCache.Delete(c.ID)
	if _, err := in.b.AuthVisitor(ctx, c.ID, tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("AuthVisitor with Redis gone: %v", err)
	}
}

func TestOutboxResumesOnAnotherInstance(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	down := &fakeAdapter{name: "fake", fail: func(int, Delivery) error { return errFlaky }}
	a := e.start(down)
	e.status(presence.Online, "alice")
	c := a.acceptedChat(t, "alice")
	for i := range 5 {
		if _, err := a.b.PostVisitorMessage(context.Background(), c.ID, fmt.Sprintf("m%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, "attempts on the failing instance", func() bool {
		down.mu.Lock()
		defer down.mu.Unlock()
		return down.calls > 3
	})
	a.stop() // gives its shards back
	b := e.start(nil)
	e.drain(b)
	got := messageLines(b.ad.find(func(d Delivery) bool { return d.Kind == KindMessage && d.Chat.ID == c.ID }))
	if !slices.Equal(got, []string{"m0", "m1", "m2", "m3", "m4"}) {
		t.Fatalf("delivered %v", got)
	}
	if n := len(b.ad.find(kindFor(KindOffer, "alice", c.ID))); n != 1 {
		t.Fatalf("offer delivered %d times", n)
	}
}

// TestOutboxWakesTheShardHolderOnAnotherInstance: a message accepted by one
// instance is delivered at once, and once, by whichever instance takes its
// outbox shard, not at the next safety poll (an hour here).
func TestOutboxWakesTheShardHolderOnAnotherInstance(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	e.pollEvery = time.Hour
	first := e.start(nil)
	other := e.start(nil)
	e.status(presence.Online, "alice")
	c := first.acceptedChat(t, "alice")
	for i, in := range []*instance{other, first} {
		text := fmt.Sprintf("via instance %d", i)
		if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, text, nil); err != nil {
			t.Fatal(err)
		}
		e.waitAll("the message delivered", 1, func(d Delivery) bool {
			return d.Kind == KindMessage && d.Message != nil && d.Message.Text == text
		})
	}
	e.drain(first)
	got := messageLines(e.waitAll("all messages", 0, func(d Delivery) bool { return d.Kind == KindMessage }))
	slices.Sort(got)
	if want := []string{"via instance 0", "via instance 1"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q once each", got, want)
	}
}

// TestTranscriptPagesSkipNotes: notes never count against a visitor's page,
// so a short page always means the transcript has ended.
func TestTranscriptPagesSkipNotes(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice") // "hello", then a system line: Alice joined
	ctx := context.Background()
	for i := range 3 {
		in.say(t, "alice", c.ID, fmt.Sprintf("// note %d", i))
		if _, err := in.b.PostVisitorMessage(ctx, c.ID, fmt.Sprintf("v%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := in.b.Transcript(ctx, c.ID, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			if m.Note {
				t.Fatalf("a note in the visitor's transcript: %+v", m)
			}
			got = append(got, m.Text)
		}
		if len(page) < 2 {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		after = page[len(page)-1].ID
	}
	if n := len(got); n != 5 || got[0] != "hello" || got[n-3] != "v0" || got[n-1] != "v2" {
		t.Fatalf("paged transcript %q, want the first message, the join line, then v0..v2", got)
	}
}

// TestClosedChatExpires: a closed chat's keys expire ClosedChatTTL after it
// closed (for real, in Redis); an open chat's never do.
func TestClosedChatExpires(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	e.closedTTL = 1500 * time.Millisecond
	in := e.start(nil)
	e.status(presence.Online, "alice")
	c, token := in.startChat(t, "V", "hello")
	in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c.ID})
	if _, err := in.b.PostVisitorMessage(ctx, c.ID, "thanks", nil); err != nil {
		t.Fatal(err)
	}
	k := in.b.keys
	chatKeys := []string{k.Chat("acme", c.ID), k.Messages("acme", c.ID), k.Offered("acme", c.ID), k.ChatProperty(c.ID)}
	ttls := func() []time.Duration {
		out := make([]time.Duration, len(chatKeys))
		for i, key := range chatKeys {
			d, err := e.r.Client.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			out[i] = d
		}
		return out
	}
	for i, d := range ttls() {
		if d != -1 { // -1: the key exists and has no expiry
			t.Fatalf("%s of an open chat: PTTL %v, want no expiry", chatKeys[i], d)
		}
	}
	if r := in.cmd(t, "alice", "close"); !strings.Contains(r.Text, "Closed the chat") {
		t.Fatalf("close: %q", r.Text)
	}
	e.drain(in)
	for i, d := range ttls() {
		if d <= 0 || d > e.closedTTL {
			t.Errorf("%s after close: PTTL %v, want (0, %v]", chatKeys[i], d, e.closedTTL)
		}
	}
	if msgs, err := in.b.Transcript(ctx, c.ID, "", 50); err != nil || len(msgs) == 0 {
		t.Fatalf("transcript right after close: %d messages, %v", len(msgs), err)
	}
	if _, err := in.b.AuthVisitor(ctx, c.ID, token); err != nil {
		t.Fatalf("the visitor's token right after close: %v", err)
	}
	// Every visitor request starts with AuthVisitor, which reads the chat.
	wait.Long(t, "closed chat gone", func() bool {
		_, err := in.b.AuthVisitor(ctx, c.ID, token)
		return errors.Is(err, ErrUnknownChat)
	})
	// The key outside the property's slot expires a moment later (it is set
	// in the batch after the close script).
	wait.For(t, "every key of the closed chat gone", func() bool {
		for _, d := range ttls() {
			if d != -2 { // -2: no such key
				return false
			}
		}
		return true
	})
}
