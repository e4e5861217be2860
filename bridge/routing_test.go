package bridge

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

func TestLeastLoadedOffersFewestThenNextAfterAcceptTimeout(t *testing.T) {
	e := newEnv(t, Routing{Strategy: LeastLoaded, AcceptTimeout: 30 * time.Second, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice", "bob")

	// alice gets the first chat (tie → first by id) and takes it.
	c1, _ := in.startChat(t, "V1", "hello")
	e.drain(in)
	if got := offeredTo(in.ad, c1.ID); !slices.Equal(got, []presence.AgentID{"alice"}) {
		t.Fatalf("first chat offered to %v, want [alice]", got)
	}
	in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c1.ID})

	// bob has fewer active chats now.
	c2, _ := in.startChat(t, "V2", "hi")
	e.drain(in)
	if got := offeredTo(in.ad, c2.ID); !slices.Equal(got, []presence.AgentID{"bob"}) {
		t.Fatalf("second chat offered to %v, want [bob]", got)
	}
	// Not accepted in accept_timeout: offered to the next one.
	e.advance(in, 29*time.Second)
	e.drain(in)
	if got := offeredTo(in.ad, c2.ID); len(got) != 1 {
		t.Fatalf("re-offered before accept_timeout: %v", got)
	}
	e.advance(in, 2*time.Second)
	e.drain(in)
	if got := offeredTo(in.ad, c2.ID); !slices.Equal(got, []presence.AgentID{"alice", "bob"}) {
		t.Fatalf("after accept_timeout offered to %v, want [alice bob]", got)
	}
}

func TestLeastLoadedRespectsMaxChats(t *testing.T) {
	e := newEnv(t, Routing{Strategy: LeastLoaded, MaxChats: 1, AcceptTimeout: 10 * time.Second, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice", "bob")
	c1, _ := in.startChat(t, "V1", "hello")
	in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c1.ID})
	c2, _ := in.startChat(t, "V2", "hello")
	e.advance(in, 11*time.Second) // bob ignores it: alice is full, so nobody next
	e.drain(in)
	if got := offeredTo(in.ad, c2.ID); !slices.Equal(got, []presence.AgentID{"bob"}) {
		t.Fatalf("offered to %v, want only bob (alice at max_chats)", got)
	}
}

// An agent coming online at max_chats is not offered the waiting chats; one
// with room is.
func TestComingOnlineRespectsMaxChats(t *testing.T) {
	e := newEnv(t, Routing{Strategy: LeastLoaded, MaxChats: 1, AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	c1, _ := in.startChat(t, "V1", "hello")
	in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c1.ID})
	in.cmd(t, "alice", "offline")
	c2, _ := in.startChat(t, "V2", "hello")
	c3, _ := in.startChat(t, "V3", "hello")
	in.cmd(t, "alice", "online") // full: one active chat
	in.cmd(t, "bob", "online")
	// Both the command and the presence follower offer the waiting chats;
	// whichever records an offer first queues it, so wait for them.
	for _, c := range []ChatID{c2.ID, c3.ID} {
		waitDelivered(t, in.ad, "offer to bob", 1, kindFor(KindOffer, "bob", c))
	}
	e.drain(in)
	for _, c := range []ChatID{c2.ID, c3.ID} {
		if got := offeredTo(in.ad, c); !slices.Equal(got, []presence.AgentID{"bob"}) {
			t.Errorf("chat %s offered to %v, want only bob (alice at max_chats)", c, got)
		}
	}
}

func TestBroadcastOffersEveryOnlineAgent(t *testing.T) {
	e := newEnv(t, Routing{Strategy: Broadcast, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice", "bob")
	e.status(presence.Away, "carol")
	e.status(presence.Invisible, "erin")
	c, _ := in.startChat(t, "V", "hello")
	e.drain(in)
	if got := offeredTo(in.ad, c.ID); !slices.Equal(got, []presence.AgentID{"alice", "bob"}) {
		t.Fatalf("broadcast offered to %v, want [alice bob]", got)
	}
	// The first to accept wins; the other's offer is edited.
	if r := in.act(t, Action{Kind: ActAccept, Agent: "bob", Chat: c.ID}); !strings.Contains(r.Text, "now chatting") {
		t.Fatalf("accept reply %q", r.Text)
	}
	waitDelivered(t, in.ad, "taken edit for alice", 1, kindFor(KindTaken, "alice", c.ID))
	if d := in.ad.find(kindFor(KindTaken, "alice", c.ID))[0]; d.TakenBy != "Bob" {
		t.Fatalf("TakenBy %q, want Bob", d.TakenBy)
	}
	if r := in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c.ID}); r.Text != "Already taken by Bob." {
		t.Fatalf("late accept reply %q", r.Text)
	}
}

func TestNobodyOnlineAwayAgentsToldAndLaterOnlineAgentOffered(t *testing.T) {
	e := newEnv(t, Routing{QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Away, "carol")
	c, _ := in.startChat(t, "V", "anyone?")
	e.drain(in)
	if got := offeredTo(in.ad, c.ID); !slices.Equal(got, []presence.AgentID{"carol"}) {
		t.Fatalf("offered to %v, want the away agent [carol]", got)
	}
	// bob comes online (first contact) while the chat is pending.
	in.cmd(t, "bob", "online")
	waitDelivered(t, in.ad, "offer to bob", 1, kindFor(KindOffer, "bob", c.ID))
	// An away agent may take it by hand.
	if r := in.act(t, Action{Kind: ActAccept, Agent: "carol", Chat: c.ID}); !strings.Contains(r.Text, "now chatting") {
		t.Fatalf("away accept: %q", r.Text)
	}
	if cv := in.chat(t, c.ID); cv.Owner != "carol" || cv.State != Active {
		t.Fatalf("chat %+v, want active, owned by carol", cv.Chat)
	}
}

func TestInvisibleFallbackOffersWithMonitor(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Minute, FallbackAfter: 30 * time.Second, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "bob")
	e.status(presence.Invisible, "alice")
	c, _ := in.startChat(t, "V", "hello")
	e.advance(in, 29*time.Second)
	e.drain(in)
	if len(in.ad.find(kindFor(KindOffer, "alice", c.ID))) != 0 {
		t.Fatal("invisible agent offered before invisible_fallback_after")
	}
	e.advance(in, time.Second)
	got := waitDelivered(t, in.ad, "fallback offer", 1, kindFor(KindOffer, "alice", c.ID))
	if !got[0].Monitor {
		t.Fatal("fallback offer has no Monitor button")
	}
	// Monitoring does not take the chat; the monitor then sees messages.
	if r := in.act(t, Action{Kind: ActMonitor, Agent: "alice", Chat: c.ID}); !strings.Contains(r.Text, "monitoring") {
		t.Fatalf("monitor reply %q", r.Text)
	}
	if cv := in.chat(t, c.ID); cv.Owner != "" || !slices.Contains(cv.Monitors, "alice") {
		t.Fatalf("after monitor: %+v", cv.Chat)
	}
	if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, "still there?", nil); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, in.ad, "message to monitor", 1, func(d Delivery) bool {
		return d.Kind == KindMessage && d.Agent == "alice" && d.Message != nil && d.Message.Text == "still there?"
	})
}

func TestFallbackOffIsOff(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Invisible, "alice")
	e.status(presence.Online, "bob")
	c, _ := in.startChat(t, "V", "hello")
	e.advance(in, 10*time.Minute)
	e.drain(in)
	if got := offeredTo(in.ad, c.ID); !slices.Equal(got, []presence.AgentID{"bob"}) {
		t.Fatalf("offered to %v with fallback off", got)
	}
}

func TestQueueTimeoutBecomesAnswerableOfflineMessage(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: 5 * time.Minute})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	c, _ := in.startChat(t, "V", "help me")
	events, cancel := in.b.SubscribeVisitor(c.ID)
	defer cancel()
	e.advance(in, 5*time.Minute)

	cv := in.chat(t, c.ID)
	if !cv.Offline || cv.State != Pending {
		t.Fatalf("after queue timeout: %+v, want pending offline message", cv.Chat)
	}
	ev := nextEvent(t, events)
	if ev.Type != EventMessage || ev.Message.From != FromSystem || !strings.Contains(ev.Message.Text, "nobody could answer") {
		t.Fatalf("visitor told %+v", ev)
	}
	// Every agent of the property gets the offline message, alice again.
	waitDelivered(t, in.ad, "offline offer to bob", 1, func(d Delivery) bool {
		return d.Kind == KindOffer && d.Agent == "bob" && d.Chat.Offline
	})
	waitDelivered(t, in.ad, "offline offer to alice", 1, func(d Delivery) bool {
		return d.Kind == KindOffer && d.Agent == "alice" && d.Chat.Offline
	})
	// Fires once only.
	e.advance(in, 10*time.Minute)
	if n := countPrefix(in.transcript(t, c.ID), "system:Sorry"); n != 1 {
		t.Fatalf("visitor told %d times", n)
	}
	// Answered later: reaches the transcript and the open widget.
	in.say(t, "bob", c.ID, "Sorry for the wait!")
	for ev = nextEvent(t, events); ev.Type != EventMessage; ev = nextEvent(t, events) {
	}
	if ev.Message.Text != "Sorry for the wait!" || ev.Message.Name != "Bob" {
		t.Fatalf("answer event %+v", ev.Message)
	}
	if tr := in.transcript(t, c.ID); tr[len(tr)-1] != "agent:Sorry for the wait!" {
		t.Fatalf("transcript %v", tr)
	}
}

func TestSharedPlaceGetsChatOnce(t *testing.T) {
	e := newEnv(t, Routing{Strategy: Broadcast, QueueTimeout: time.Hour})
	shared := &fakeAdapter{name: "slackish", shared: true}
	in := e.start(shared)
	e.status(presence.Online, "alice", "bob")
	c, _ := in.startChat(t, "V", "hello")
	in.act(t, Action{Kind: ActAccept, Surface: "slackish", Agent: "alice", Chat: c.ID})
	in.act(t, Action{Kind: ActMessage, Surface: "slackish", Agent: "alice", Chat: c.ID, Text: "hi there", Shared: true})
	if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, "thanks", nil); err != nil {
		t.Fatal(err)
	}
	// Written to the bot directly (not in the shared place): the team's
	// place gets a copy, as it would from another app.
	in.act(t, Action{Kind: ActMessage, Surface: "slackish", Agent: "alice", Chat: c.ID, Text: "from my DM"})
	e.drain(in)
	for _, d := range shared.find(func(Delivery) bool { return true }) {
		if d.Agent != "" {
			t.Fatalf("shared adapter got a per-agent chat delivery: %+v", d)
		}
	}
	offers := shared.find(func(d Delivery) bool { return d.Kind == KindOffer })
	if len(offers) != 1 {
		t.Fatalf("%d offers in the shared place, want 1", len(offers))
	}
	if !offers[0].Monitor {
		t.Fatal("the shared offer has no Monitor button for invisible agents")
	}
	if n := len(shared.find(func(d Delivery) bool { return d.Kind == KindTaken && d.TakenBy == "Alice" })); n != 1 {
		t.Fatalf("%d taken edits in the shared place, want 1", n)
	}
	// The agent's reply written in the shared place is not echoed back to
	// it; the visitor's message and the reply from elsewhere are.
	var texts []string
	for _, d := range shared.find(func(d Delivery) bool { return d.Kind == KindMessage }) {
		texts = append(texts, d.Message.Text)
	}
	if !slices.Equal(texts, []string{"thanks", "from my DM"}) {
		t.Fatalf("messages in the shared place %q, want [thanks from my DM]", texts)
	}
}

// A pending chat transferred by hand is taken like an accepted one: the
// offer in the shared place is edited too, not left with a live Accept button.
func TestTransferOfPendingChatEditsSharedOffer(t *testing.T) {
	e := newEnv(t, Routing{Strategy: Broadcast, QueueTimeout: time.Hour})
	shared := &fakeAdapter{name: "slackish", shared: true}
	in := e.start(shared)
	e.status(presence.Online, "alice", "bob")
	c, _ := in.startChat(t, "V", "hello")
	if r := in.act(t, Action{Kind: ActCommand, Surface: "slackish", Agent: "alice", Chat: c.ID, Command: "transfer", Args: "bob"}); !strings.Contains(r.Text, "Transferred") {
		t.Fatalf("transfer: %q", r.Text)
	}
	waitDelivered(t, shared, "taken edit in the shared place", 1, func(d Delivery) bool {
		return d.Kind == KindTaken && d.Agent == "" && d.Chat.ID == c.ID && d.TakenBy == "Bob"
	})
}

func nextEvent(t testing.TB, ch <-chan VisitorEvent) VisitorEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no visitor event in 10s")
	}
	return VisitorEvent{}
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func TestTimerLoopFiresInBackground(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Minute})
	e.autoTimers = true
	in := e.start(nil)
	other := e.start(nil)
	c, _ := in.startChat(t, "V", "hello")
	e.clock.Advance(time.Minute)
	wait.For(t, "queue timeout by the timer loop", func() bool {
		return countPrefix(in.transcript(t, c.ID), "system:Sorry") > 0
	})
	// Both loops keep running; it still fired once.
	e.clock.Advance(time.Hour)
	for range 3 {
		if _, err := other.b.fireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := countPrefix(in.transcript(t, c.ID), "system:Sorry"); n != 1 {
		t.Fatalf("fired %d times", n)
	}
}

func TestAgentComingOnlineAnyWayIsOfferedPendingChatsOnce(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	a := e.start(nil)
	b := e.start(nil)
	c, _ := a.startChat(t, "V", "anyone?")
	// bob is set online by the admin API: both instances' watchers hear it.
	e.status(presence.Online, "bob")
	e.waitAll("offer to bob", 1, kindFor(KindOffer, "bob", c.ID))
	e.drain(a)
	e.drain(b)
	if n := len(e.waitAll("offers to bob", 1, kindFor(KindOffer, "bob", c.ID))); n != 1 {
		t.Fatalf("bob offered %d times, want 1", n)
	}
}
