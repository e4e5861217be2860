package bridge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/presence"
)

var cannedRouting = Routing{Canned: map[string]string{
	"shipping": "We ship within 2 days.",
	"refund":   "Refunds take 5 working days.",
}}

func TestCannedReply(t *testing.T) {
	e := newEnv(t, cannedRouting)
	// A shared place (a Slack channel): the command is not shown there, so
	// the sent text is.
	in := e.start(&fakeAdapter{name: "fake", shared: true})
	ctx := context.Background()

	t.Run("list", func(t *testing.T) {
		r := in.cmd(t, "alice", "reply")
		want := "Canned replies for Acme:\n• refund — Refunds take 5 working days.\n• shipping — We ship within 2 days.\nSend /reply NAME in a chat to send one."
		if r.Text != want || !r.Private {
			t.Errorf("/reply = %q (private %v), want %q", r.Text, r.Private, want)
		}
	})

	c := in.acceptedChat(t, "alice")
	tests := []struct {
		name    string
		agent   presence.AgentID
		command string
		chat    ChatID
		reply   string // part of the reply ("" for none)
		sent    string // the text the visitor gets ("" for nothing)
	}{
		{"owner by name, current chat", "alice", "reply shipping", "", "", "We ship within 2 days."},
		{"case does not matter, chat named", "alice", "reply REFUND", c.ID, "", "Refunds take 5 working days."},
		{"unknown name", "alice", "reply discount", c.ID, `There is no canned reply "discount" for Acme`, ""},
		{"not the owner", "bob", "reply shipping", c.ID, "Alice is handling this chat", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(in.transcript(t, c.ID))
			cmd, args, _ := strings.Cut(tt.command, " ")
			r := in.act(t, Action{Kind: ActCommand, Surface: "fake", Agent: tt.agent, Chat: tt.chat, Command: cmd, Args: args})
			if tt.reply == "" && r.Text != "" || !strings.Contains(r.Text, tt.reply) {
				t.Errorf("reply %q, want it to contain %q", r.Text, tt.reply)
			}
			got := in.transcript(t, c.ID)
			if tt.sent == "" {
				if len(got) != before {
					t.Errorf("transcript grew: %q", got[before:])
				}
				return
			}
			if len(got) != before+1 || got[before] != "agent:"+tt.sent {
				t.Fatalf("transcript %q, want agent:%s appended", got, tt.sent)
			}
			ms, _ := in.b.Transcript(ctx, c.ID, "", 0)
			if m := ms[len(ms)-1]; m.Agent != tt.agent || m.Name != "Alice" {
				t.Errorf("sent as %s (%s), want the agent", m.Agent, m.Name)
			}
		})
	}
	waitDelivered(t, in.ad, "canned reply shown in the shared place", 1, func(d Delivery) bool {
		return d.Kind == KindMessage && d.Agent == "" && d.Message != nil && d.Message.Text == "We ship within 2 days."
	})

	t.Run("a pending chat is claimed like a reply", func(t *testing.T) {
		p, _ := in.startChat(t, "W", "anyone?")
		r := in.act(t, Action{Kind: ActCommand, Surface: "fake", Agent: "bob", Chat: p.ID, Command: "reply", Args: "shipping"})
		if cv := in.chat(t, p.ID); cv.Owner != "bob" || cv.State != Active {
			t.Fatalf("after /reply in a pending chat: owner %q state %s (reply %q)", cv.Owner, cv.State, r.Text)
		}
		if got := in.transcript(t, p.ID); !slices.Contains(got, "agent:We ship within 2 days.") {
			t.Errorf("transcript %q", got)
		}
	})
}

func TestCannedReplyNoneConfigured(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	if r := in.cmd(t, "alice", "reply"); !strings.Contains(r.Text, "No canned replies") {
		t.Errorf("/reply = %q", r.Text)
	}
	c := in.acceptedChat(t, "alice")
	if r := in.act(t, Action{Kind: ActCommand, Agent: "alice", Chat: c.ID, Command: "reply", Args: "x"}); !strings.Contains(r.Text, "There is no canned reply") {
		t.Errorf("/reply x = %q", r.Text)
	}
}

func TestParseBlockFor(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 30 * 24 * time.Hour, true},
		{"7d", 7 * 24 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"12h", 12 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"10s", 0, false},
		{"-1h", 0, false},
		{"forever", 0, false},
		{"99999d", 0, false},
		{"d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBlockFor(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseBlockFor(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestBlockKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":          "203.0.113.7",
		"::ffff:203.0.113.7":   "203.0.113.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"":                     "",
		"not an ip":            "",
		"fe80::1%eth0":         "fe80::/64",
	} {
		if got := blockKey(in); got != want {
			t.Errorf("blockKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestBlockVisitor: /block in a chat refuses its visitor's messages and
// new chats and offline messages from its address, on every instance
// sharing the Redis (a second bridge started afterwards, as after a
// restart); it ends by itself, and /unblock or the admin lift it earlier.
func TestBlockVisitor(t *testing.T) {
	e := newEnv(t, Routing{})
	a := e.start(nil)
	ctx := context.Background()
	spam := Visitor{Name: "Spam", IP: "203.0.113.7"}
	other := Visitor{Name: "Ok", IP: "198.51.100.1"}
	c, _, err := a.b.StartChat(ctx, "acme", spam, "buy now")
	if err != nil {
		t.Fatal(err)
	}
	// A second chat from the same address, open before the block.
	c2, _, err := a.b.StartChat(ctx, "acme", Visitor{IP: "203.0.113.7"}, "me again")
	if err != nil {
		t.Fatal(err)
	}
	a.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c.ID})

	if r := a.act(t, Action{Kind: ActCommand, Agent: "bob", Chat: c.ID, Command: "block"}); !strings.Contains(r.Text, "Alice is handling that chat") {
		t.Errorf("/block by a non-owner: %q", r.Text)
	}
	if r := a.act(t, Action{Kind: ActCommand, Agent: "alice", Chat: c.ID, Command: "block", Args: "soon"}); !strings.Contains(r.Text, "Use /block") {
		t.Errorf("/block soon: %q", r.Text)
	}
	r := a.act(t, Action{Kind: ActCommand, Agent: "alice", Chat: c.ID, Command: "block", Args: "7d"})
	until := e.clock.Now().Add(7 * 24 * time.Hour)
	if !strings.Contains(r.Text, "Blocked the visitor of the chat with Spam until "+until.UTC().Format("2006-01-02 15:04")) {
		t.Fatalf("/block 7d: %q", r.Text)
	}
	if cv := a.chat(t, c.ID); cv.State != Closed {
		t.Errorf("the blocked chat is %s, want closed", cv.State)
	}

	// A second instance on the same Redis, started after the block.
	b2 := e.start(&fakeAdapter{name: "fake"})
	for name, in := range map[string]*instance{"first": a, "second": b2} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := in.b.StartChat(ctx, "acme", spam, "hello"); !errors.Is(err, ErrBlocked) {
				t.Errorf("new chat from the blocked address: %v, want ErrBlocked", err)
			}
			if _, _, err := in.b.LeaveOfflineMessage(ctx, "acme", Visitor{Email: "s@example.com", IP: "203.0.113.7"}, "hi"); !errors.Is(err, ErrBlocked) {
				t.Errorf("offline message from the blocked address: %v, want ErrBlocked", err)
			}
			if _, err := in.b.PostVisitorMessage(ctx, c2.ID, "still me", nil); !errors.Is(err, ErrBlocked) {
				t.Errorf("message in another chat of the blocked address: %v, want ErrBlocked", err)
			}
			if _, _, err := in.b.StartChat(ctx, "acme", other, "hello"); err != nil {
				t.Errorf("another address: %v", err)
			}
		})
	}
	if got := a.transcript(t, c2.ID); len(got) != 1 {
		t.Errorf("a refused message was stored: %q", got)
	}

	blocks, err := b2.b.Blocks(ctx, "acme")
	if err != nil || len(blocks) != 1 {
		t.Fatalf("Blocks = %+v, %v", blocks, err)
	}
	if bl := blocks[0]; bl.Chat != c.ID || bl.IP != "203.0.113.7" || !bl.Until.Equal(until) || bl.ID == "" {
		t.Errorf("block %+v", bl)
	}

	// /unblock in the (closed) chat, on the second instance.
	if r := b2.act(t, Action{Kind: ActCommand, Agent: "alice", Chat: c.ID, Command: "unblock"}); !strings.Contains(r.Text, "Unblocked the visitor of the chat with Spam") {
		t.Fatalf("/unblock: %q", r.Text)
	}
	if _, _, err := a.b.StartChat(ctx, "acme", spam, "hello again"); err != nil {
		t.Errorf("after /unblock: %v", err)
	}
	if r := b2.act(t, Action{Kind: ActCommand, Agent: "alice", Chat: c.ID, Command: "unblock"}); !strings.Contains(r.Text, "is not blocked") {
		t.Errorf("second /unblock: %q", r.Text)
	}
	if blocks, _ := a.b.Blocks(ctx, "acme"); len(blocks) != 0 {
		t.Errorf("after /unblock: %+v", blocks)
	}

	// Blocked again (the current chat: no chat named), lifted by the admin.
	if _, err := a.b.PostVisitorMessage(ctx, c2.ID, "back", nil); err != nil {
		t.Fatal(err)
	}
	a.act(t, Action{Kind: ActAccept, Agent: "bob", Chat: c2.ID})
	if r := a.cmd(t, "bob", "block 1h"); !strings.Contains(r.Text, "Blocked") {
		t.Fatalf("/block 1h in the current chat: %q", r.Text)
	}
	blocks, _ = a.b.Blocks(ctx, "acme")
	if len(blocks) != 1 || blocks[0].Chat != c2.ID {
		t.Fatalf("Blocks = %+v", blocks)
	}
	if ok, err := b2.b.Unblock(ctx, "acme", blocks[0].ID); !ok || err != nil {
		t.Fatalf("Unblock = %v, %v", ok, err)
	}
	if ok, _ := b2.b.Unblock(ctx, "acme", blocks[0].ID); ok {
		t.Error("a lifted block was lifted again")
	}
	if ok, _ := b2.b.Unblock(ctx, "acme", "../x"); ok {
		t.Error("a bad id was lifted")
	}
	if _, err := b2.b.Unblock(ctx, "nope", "x"); !errors.Is(err, ErrUnknownProperty) {
		t.Errorf("unknown property: %v", err)
	}
	if _, _, err := a.b.StartChat(ctx, "acme", spam, "hi"); err != nil {
		t.Errorf("after the admin lifted it: %v", err)
	}

	// The widget's visitor id: a block follows it to another address.
	vid := "0123456789abcdef0123456789abcdef"
	cv, _, err := a.b.StartChat(ctx, "acme", Visitor{Name: "Roamer", IP: "192.0.2.1", ID: vid}, "hi")
	if err != nil {
		t.Fatal(err)
	}
	other2, _, err := a.b.StartChat(ctx, "acme", Visitor{IP: "192.0.2.200", ID: vid}, "my other tab")
	if err != nil {
		t.Fatal(err)
	}
	a.act(t, Action{Kind: ActAccept, Agent: "carol", Chat: cv.ID})
	a.act(t, Action{Kind: ActCommand, Agent: "carol", Chat: cv.ID, Command: "block"})
	if _, _, err := b2.b.StartChat(ctx, "acme", Visitor{IP: "198.51.100.99", ID: vid}, "new address"); !errors.Is(err, ErrBlocked) {
		t.Errorf("the same visitor id from another address: %v, want ErrBlocked", err)
	}
	if _, err := b2.b.PostVisitorMessage(ctx, other2.ID, "still me", nil); !errors.Is(err, ErrBlocked) {
		t.Errorf("message in a chat of the blocked visitor id: %v, want ErrBlocked", err)
	}
	if _, _, err := b2.b.StartChat(ctx, "acme", Visitor{IP: "198.51.100.99", ID: "not a valid id!"}, "x"); err != nil {
		t.Errorf("an invalid visitor id is ignored: %v", err)
	}
	blocks, _ = a.b.Blocks(ctx, "acme")
	if len(blocks) != 1 || blocks[0].Visitor != vid || blocks[0].IP != "192.0.2.1" {
		t.Fatalf("Blocks = %+v", blocks)
	}
	a.act(t, Action{Kind: ActCommand, Agent: "carol", Chat: cv.ID, Command: "unblock"})
	if _, _, err := b2.b.StartChat(ctx, "acme", Visitor{IP: "198.51.100.99", ID: vid}, "new address"); err != nil {
		t.Errorf("after /unblock: %v", err)
	}

	// A block ends by itself.
	c3, _, _ := a.b.StartChat(ctx, "acme", Visitor{IP: "2001:db8:1:2::99"}, "v6")
	a.act(t, Action{Kind: ActAccept, Agent: "carol", Chat: c3.ID})
	a.act(t, Action{Kind: ActCommand, Agent: "carol", Chat: c3.ID, Command: "block", Args: "1h"})
	if _, _, err := b2.b.StartChat(ctx, "acme", Visitor{IP: "2001:db8:1:2:aaaa::1"}, "same /64"); !errors.Is(err, ErrBlocked) {
		t.Errorf("the same IPv6 /64: %v, want ErrBlocked", err)
	}
	e.clock.Advance(time.Hour + time.Second)
	if _, _, err := b2.b.StartChat(ctx, "acme", Visitor{IP: "2001:db8:1:2:aaaa::1"}, "later"); err != nil {
		t.Errorf("after the block ended: %v", err)
	}
	if blocks, _ := a.b.Blocks(ctx, "acme"); len(blocks) != 0 {
		t.Errorf("ended blocks are listed: %+v", blocks)
	}
}
