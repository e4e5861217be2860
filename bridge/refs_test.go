package bridge

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/presence"
)

// platform is a fakeAdapter that makes objects like a platform with a
// shared place: a thread per chat (made with the chat's first delivery),
// a message per delivery, an offer per offer; it numbers them.
type platform struct {
	mu   sync.Mutex
	next int
	// failAfterFirst makes the next message delivery of a long text fail
	// after its first part, once.
	failAfterFirst bool
}

func (p *platform) id() string {
	p.next++
	return strconv.Itoa(p.next)
}

func (p *platform) makes(_ int, d Delivery) ([]RemoteRef, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.Kind == KindClosed {
		return nil, nil // shown in the thread, making nothing to answer
	}
	var made []RemoteRef
	thread := d.Thread
	if d.Chat.ID != "" && thread == nil {
		t := RemoteRef{Role: RefThread, Conversation: "G", Thread: "T" + p.id()}
		made = append(made, t)
		thread = &t
	}
	conv, th := "G", ""
	if thread != nil {
		th = thread.Thread
	}
	switch d.Kind {
	case KindOffer:
		made = append(made, RemoteRef{Role: RefOffer, Conversation: conv, Thread: th, Message: p.id()})
	case KindMessage:
		parts := 1
		if d.Message != nil && len(d.Message.Text) > 10 {
			parts = 2 // a long text goes in two messages
		}
		for i := len(d.Done); i < parts; i++ {
			if i == 1 && p.failAfterFirst {
				p.failAfterFirst = false
				return made, errors.New("platform hiccup")
			}
			made = append(made, RemoteRef{Role: RefMessage, Conversation: conv, Thread: th, Message: p.id()})
		}
	}
	return made, nil
}

// TestRefsKeptByTheBridge: what Deliver returns comes back with later
// deliveries (the chat's thread, its open offers, a failed attempt's
// progress), and replies to it reach the chat.
func TestRefsKeptByTheBridge(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	plat := &platform{}
	ad := &fakeAdapter{name: "fake", shared: true, makes: plat.makes}
	in := e.start(ad)
	e.status(presence.Online, "alice")
	ctx := context.Background()
	chat, _ := in.startChat(t, "Vic", "hello")
	offers := waitDelivered(t, ad, "offer", 1, kindFor(KindOffer, "", chat.ID))
	if offers[0].Thread != nil {
		t.Fatalf("first delivery came with a thread: %+v", offers[0].Thread)
	}

	// The offer's message and the thread both name the chat.
	for _, ref := range []RemoteRef{{Conversation: "G", Message: "2"}, {Conversation: "G", Thread: "T1"}, {Conversation: "G", Thread: "T1", Message: "999"}} {
		if got, err := in.b.ChatOf(ctx, "fake", ref); err != nil || got != chat.ID {
			t.Errorf("ChatOf(%+v) = %q, %v; want %q", ref, got, err, chat.ID)
		}
	}
	for _, ref := range []RemoteRef{{Conversation: "G", Message: "999"}, {Conversation: "H", Thread: "T1"}, {}} {
		if got, err := in.b.ChatOf(ctx, "fake", ref); err != nil || got != "" {
			t.Errorf("ChatOf(%+v) = %q, %v; want none", ref, got, err)
		}
	}
	if got, _ := in.b.ChatOf(ctx, "other", RemoteRef{Conversation: "G", Message: "2"}); got != "" {
		t.Errorf("another surface's object named the chat %q", got)
	}

	// An agent's answer in the thread reaches the chat without naming it
	// (ReplyTo), and the acceptance edits the offer it was shown with.
	in.act(t, Action{Kind: ActAccept, Surface: "fake", Agent: "alice", Chat: chat.ID})
	taken := waitDelivered(t, ad, "taken", 1, kindFor(KindTaken, "", chat.ID))
	if taken[0].Thread == nil || taken[0].Thread.Thread != "T1" || len(taken[0].Offers) != 1 || taken[0].Offers[0].Message != "2" {
		t.Fatalf("taken came with thread %+v and offers %+v", taken[0].Thread, taken[0].Offers)
	}
	in.act(t, Action{Kind: ActMessage, Surface: "fake", Agent: "alice", Text: "hi there", Shared: true,
		ReplyTo: &RemoteRef{Conversation: "G", Thread: "T1"}})
	if got := in.transcript(t, chat.ID); got[len(got)-1] != "agent:hi there" {
		t.Fatalf("reply in the thread: transcript %q", got)
	}
	// Talk in the shared place outside any chat is activity, not a message.
	before := len(in.transcript(t, chat.ID))
	in.act(t, Action{Kind: ActMessage, Surface: "fake", Agent: "alice", Text: "lunch?", Shared: true,
		ReplyTo: &RemoteRef{Conversation: "G", Message: "12345"}})
	if got := in.transcript(t, chat.ID); len(got) != before {
		t.Fatalf("talk outside chats reached the chat: %q", got)
	}

	// A delivery that fails partway continues after what it made.
	plat.mu.Lock()
	plat.failAfterFirst = true
	plat.mu.Unlock()
	if _, err := in.b.PostVisitorMessage(ctx, chat.ID, "a long message in two parts", nil); err != nil {
		t.Fatal(err)
	}
	msgs := waitDelivered(t, ad, "the long message", 1, func(d Delivery) bool {
		return d.Kind == KindMessage && d.Message != nil && d.Message.Text == "a long message in two parts"
	})
	if len(msgs[0].Done) != 1 || msgs[0].Thread == nil || msgs[0].Thread.Thread != "T1" {
		t.Fatalf("retry came with done %+v, thread %+v", msgs[0].Done, msgs[0].Thread)
	}
	// Both parts answer the chat; the progress record is gone.
	for _, m := range []string{msgs[0].Done[0].Message, strconv.Itoa(plat.next)} {
		if got, _ := in.b.ChatOf(ctx, "fake", RemoteRef{Conversation: "G", Message: m}); got != chat.ID {
			t.Errorf("part %s names chat %q", m, got)
		}
	}
	e.drain(in)
	for s := range 4 {
		if n, _ := e.r.Client.HLen(ctx, in.b.keys.Progress("fake", s)).Result(); n != 0 {
			t.Errorf("shard %d keeps %d progress records after success", s, n)
		}
	}

	// Erasure deletes every record of the chat's objects.
	if n, err := in.b.EraseVisitor(ctx, "", chat.ID); err != nil || n != 1 {
		t.Fatalf("erase: %d, %v", n, err)
	}
	if got, _ := in.b.ChatOf(ctx, "fake", RemoteRef{Conversation: "G", Thread: "T1"}); got != "" {
		t.Errorf("erased chat still named by its thread")
	}
	if n, _ := e.r.Client.Exists(ctx, in.b.keys.Refs("fake", chat.ID)).Result(); n != 0 {
		t.Errorf("erased chat's refs hash remains")
	}
}
