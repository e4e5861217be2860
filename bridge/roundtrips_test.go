package bridge

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/presence"
)

// calls counts the round trips f makes with the context it is given.
func calls(c *redistest.Counter, f func(ctx context.Context)) int64 {
	before := c.Marked.Load()
	f(redistest.Mark(context.Background()))
	return c.Marked.Load() - before
}

func TestAuthVisitorRoundTrips(t *testing.T) {
	in, rt := boardEnv(t, 0, 1)
	c, tok := in.startChat(t, "Vera", "hello")
	tests := []struct {
		name    string
		id      ChatID
		token   string
		wantErr error
		wantRTT int64
	}{
		{"right token", c.ID, tok, nil, 1},
		{"wrong token", c.ID, tok + "x", ErrBadToken, 1},
		{"unknown chat", "nope", tok, ErrUnknownChat, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Chat
			var err error
			n := calls(rt, func(ctx context.Context) { got, err = in.b.AuthVisitor(ctx, tt.id, tt.token) })
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("AuthVisitor: %v, want %v", err, tt.wantErr)
			}
			if err == nil && (got.ID != c.ID || got.Visitor.Name != "Vera" || got.State != Pending) {
				t.Errorf("AuthVisitor gave %+v", got)
			}
			if n != tt.wantRTT {
				t.Errorf("AuthVisitor took %d round trips, want %d", n, tt.wantRTT)
			}
		})
	}
}

// An agent's plain text goes to their current chat without loading every
// chat they have: the relay's round trips do not grow with the agent's chats.
func TestAgentPlainTextRoundTrips(t *testing.T) {
	for _, chats := range []int{1, 5} {
		t.Run(fmt.Sprintf("%d chats", chats), func(t *testing.T) {
			in, rt := boardEnv(t, 0, chats) // alice owns them all, the last accepted is current
			in.startChat(t, "Waiting", "anyone?")
			mine, _, err := in.b.agentChats(context.Background(), mustAgent(t, in, "alice"))
			if err != nil || len(mine) != chats {
				t.Fatalf("alice's chats: %d, %v", len(mine), err)
			}
			cur, err := in.b.rdb.Get(context.Background(), in.b.keys.Current("alice")).Result()
			if err != nil {
				t.Fatal(err)
			}
			var r Reply
			n := calls(rt, func(ctx context.Context) {
				r, err = in.b.Handle(ctx, Action{Kind: ActMessage, Surface: "fake", Agent: "alice", Text: "plain"})
			})
			if err != nil || r.Text != "" {
				t.Fatalf("Handle: %q, %v", r.Text, err)
			}
			if tr := in.transcript(t, ChatID(cur)); tr[len(tr)-1] != "agent:plain" {
				t.Fatalf("current chat's transcript %v", tr)
			}
			// Touch, current chat, the chat, the message, the relay (alice is
			// always online: no prompt to move).
			if n != 5 {
				t.Errorf("plain text took %d round trips, want 5", n)
			}
		})
	}
}

func mustAgent(t *testing.T, in *instance, id presence.AgentID) presence.Agent {
	t.Helper()
	a, ok := in.b.dir.Agent(id)
	if !ok {
		t.Fatalf("no agent %s", id)
	}
	return a
}

// A visitor's message is stored, the chat read as it is then, and relayed
// in two round trips (the chat's property is cached once known).
func TestVisitorMessageRoundTrips(t *testing.T) {
	in, rt := boardEnv(t, 0, 1)
	c, _ := in.startChat(t, "Vera", "hello")
	if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, "warm up", nil); err != nil {
		t.Fatal(err)
	}
	var err error
	n := calls(rt, func(ctx context.Context) { _, err = in.b.PostVisitorMessage(ctx, c.ID, "again", nil) })
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("visitor message took %d round trips, want 2 (store and read, relay)", n)
	}
}

// An agent's reply to a platform message: the event's claim and the
// chat's lookup share a round trip, and the done mark rides with the relay.
func TestAgentReplyRoundTrips(t *testing.T) {
	in, rt := boardEnv(t, 0, 1)
	ctx := context.Background()
	chat, err := in.b.rdb.Get(ctx, in.b.keys.Current("alice")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := (refStore{b: in.b, adapter: "fake"}).PutRefs(ctx, ChatID(chat), "alice", RemoteRef{Role: RefMessage, Conversation: "111", Message: "42"}); err != nil {
		t.Fatal(err)
	}
	act := Action{Kind: ActMessage, Surface: "fake", Agent: "alice", Text: "answer", DedupKey: "fake:1",
		ReplyTo: &RemoteRef{Conversation: "111", Message: "42"}}
	var r Reply
	n := calls(rt, func(ctx context.Context) { r, err = in.b.Handle(ctx, act) })
	if err != nil || r.Text != "" {
		t.Fatalf("Handle: %q, %v", r.Text, err)
	}
	if tr := in.transcript(t, ChatID(chat)); tr[len(tr)-1] != "agent:answer" {
		t.Fatalf("transcript %v", tr)
	}
	// Claim, lookup and Touch; the chat; the message; the relay with the
	// done mark.
	if n != 4 {
		t.Errorf("reply took %d round trips, want 4", n)
	}
	if v, _ := in.b.rdb.Get(ctx, in.b.keys.Dedup("fake:1")).Result(); v != dedupDone {
		t.Errorf("dedup mark %q, want %q", v, dedupDone)
	}
	// The repeat costs the claim (with the lookup and Touch) and one read
	// of the mark.
	n = calls(rt, func(ctx context.Context) { r, err = in.b.Handle(ctx, act) })
	if err != nil || n != 2 {
		t.Errorf("repeat: %d round trips, %v", n, err)
	}
}
