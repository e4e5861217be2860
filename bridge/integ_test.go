package bridge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/presence"
)

func TestVerifyIdentity(t *testing.T) {
	const secret = "id-secret"
	good := SignIdentity(secret, "u-42")
	tests := []struct {
		name         string
		secret       string
		id           Identity
		wantErr      error
		wantVerified bool
	}{
		{"valid signature", secret, Identity{UserID: "u-42", Signature: good}, nil, true},
		{"valid, upper-case hex", secret, Identity{UserID: "u-42", Signature: strings.ToUpper(good)}, nil, true},
		{"wrong signature", secret, Identity{UserID: "u-42", Signature: SignIdentity("other", "u-42")}, ErrBadSignature, false},
		{"signature of another user", secret, Identity{UserID: "u-43", Signature: good}, ErrBadSignature, false},
		{"garbage signature", secret, Identity{UserID: "u-42", Signature: "zz"}, ErrBadSignature, false},
		{"signature without user id", secret, Identity{Signature: SignIdentity(secret, "")}, ErrBadSignature, false},
		{"no signature: unverified", secret, Identity{UserID: "u-42"}, nil, false},
		{"no secret: unverified", "", Identity{UserID: "u-42", Signature: good}, nil, false},
		{"verified claimed by the visitor", "", Identity{UserID: "u-42", Verified: true}, nil, false},
		{"name with a newline", secret, Identity{UserID: "u", Name: "A\nB"}, ErrBadIdentity, false},
		{"bad UTF-8", secret, Identity{UserID: "\xff"}, ErrBadIdentity, false},
		{"long user id", secret, Identity{UserID: strings.Repeat("x", MaxIdentityField+1)}, ErrBadIdentity, false},
		{"long attr value", secret, Identity{Attrs: map[string]string{"a": strings.Repeat("x", MaxAttrValue+1)}}, ErrBadIdentity, false},
		{"empty attr key", secret, Identity{Attrs: map[string]string{"": "x"}}, ErrBadIdentity, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyIdentity(tt.secret, tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if got.Verified != tt.wantVerified || got.Signature != "" {
				t.Errorf("got %+v, want verified=%v and no signature kept", got, tt.wantVerified)
			}
		})
	}
}

func TestVisitorContext(t *testing.T) {
	v := Visitor{
		PageURL: "https://a.example/x", Referrer: "https://r.example/\nVerified user: x", Language: "fr",
		TimeZone: "Europe/Paris", Browser: "Firefox 120", OS: "Linux", Returning: 3,
		Identity: &Identity{UserID: "u1", Verified: false, Attrs: map[string]string{"b": "2", "a": strings.Repeat("é", 400)}},
	}
	got := VisitorContext(v)
	want := []string{"Unverified user", "Page", "Referrer", "Browser", "Language", "Time zone", "Returning", "attrs.a", "attrs.b"}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, l := range got {
		if l.Label != want[i] || strings.ContainsAny(l.Value, "\r\n") || len([]rune(l.Value)) > maxContextValue {
			t.Errorf("line %d = %+v, want label %q, one line, at most %d runes", i, l, want[i], maxContextValue)
		}
	}
	if got[2].Value != "https://r.example/ Verified user: x" || got[3].Value != "Firefox 120 on Linux" || got[6].Value != "yes, 3 chats before" {
		t.Errorf("values: %+v", got)
	}
	if len(VisitorContext(Visitor{})) != 0 {
		t.Error("an empty visitor has context lines")
	}
}

// TestReturningVisitor: the visitor id, a verified user id or the email
// recognise a visitor's later chats; an unverified user id does not.
func TestReturningVisitor(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	ctx := context.Background()
	start := func(v Visitor) int {
		t.Helper()
		c, _, err := in.b.StartChat(ctx, "acme", v, "hi")
		if err != nil {
			t.Fatal(err)
		}
		return in.chat(t, c.ID).Visitor.Returning
	}
	verified := &Identity{UserID: "u-1", Verified: true}
	steps := []struct {
		v    Visitor
		want int
	}{
		{Visitor{ID: "vid-aaaaaaaaaaaaaaaa"}, 0},
		{Visitor{ID: "vid-aaaaaaaaaaaaaaaa"}, 1},
		{Visitor{ID: "vid-bbbbbbbbbbbbbbbb", Identity: verified}, 0},
		{Visitor{Identity: verified}, 1},
		{Visitor{Identity: &Identity{UserID: "u-1"}}, 0},
		{Visitor{Email: "Ann@Example.com"}, 0},
		{Visitor{Email: "ann@example.com", ID: "vid-aaaaaaaaaaaaaaaa"}, 2},
	}
	for i, s := range steps {
		if got := start(s.v); got != s.want {
			t.Errorf("step %d (%+v): returning %d, want %d", i, s.v, got, s.want)
		}
	}
}

// TestEraseVisitor: erasing by email deletes every chat of that address
// (live, active with a file and a monitor, closed, offline), and no key of
// them is left under the prefix, nor a member or field naming them; the
// other visitor's chat is untouched. Erasing by chat id deletes one.
func TestEraseVisitor(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	ctx := context.Background()
	const addr = "erase.me@example.com"
	start := func(email, text string) ChatID {
		t.Helper()
		c, _, err := in.b.StartChat(ctx, "acme", Visitor{Name: "E", Email: email, ID: "vid-" + strings.NewReplacer("@", "-", ".", "-").Replace(email)}, text)
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	active := start(addr, "active one")
	in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: active})
	in.say(t, "alice", active, "answer")
	in.act(t, Action{Kind: ActMonitor, Agent: "bob", Chat: active})
	att, err := in.b.PutFile(ctx, active, "a.txt", "text/plain", []byte("secret file"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.b.PostVisitorMessage(ctx, active, "", &att); err != nil {
		t.Fatal(err)
	}
	// The pending chat's offers are refused for good: they end in the
	// dead-letter stream, with the chat's snapshot.
	in.ad.setFail(func(_ int, d Delivery) error {
		if d.Message != nil && d.Message.Text == "pending one" {
			return &PermanentError{Err: errors.New("refused")}
		}
		return nil
	})
	pending := start(addr, "pending one")
	closed := start(addr, "closed one")
	if err := in.b.CloseByVisitor(ctx, closed); err != nil {
		t.Fatal(err)
	}
	offline, _, err := in.b.LeaveOfflineMessage(ctx, "acme", Visitor{Identity: &Identity{UserID: "x", Email: addr}}, "offline one")
	if err != nil {
		t.Fatal(err)
	}
	other := start("keep@example.com", "keep me")
	e.drain(in)

	if dead := e.r.Client.XLen(ctx, in.b.keys.DeadLetter()).Val(); dead == 0 {
		t.Fatal("no dead letter to erase")
	}
	gone := []ChatID{active, pending, closed, offline.ID}
	n, err := in.b.EraseVisitor(ctx, addr, "")
	if err != nil || n != len(gone) {
		t.Fatalf("EraseVisitor = %d, %v; want %d", n, err, len(gone))
	}
	assertNoTrace(t, e, gone...)
	if got := in.transcript(t, other); len(got) != 1 || got[0] != "visitor:keep me" {
		t.Errorf("the other chat's transcript is %v", got)
	}
	if _, err := in.b.AuthVisitor(ctx, active, "x"); !errors.Is(err, ErrUnknownChat) {
		t.Errorf("erased chat answers %v, want ErrUnknownChat", err)
	}

	if n, err := in.b.EraseVisitor(ctx, addr, ""); err != nil || n != 0 {
		t.Errorf("second erasure = %d, %v; want 0", n, err)
	}
	if n, err := in.b.EraseVisitor(ctx, "", other); err != nil || n != 1 {
		t.Errorf("erase by chat id = %d, %v; want 1", n, err)
	}
	assertNoTrace(t, e, other)
	for _, bad := range [][2]string{{"", ""}, {"not-an-address", ""}, {addr, "abc"}, {"", "bad id!"}} {
		if _, err := in.b.EraseVisitor(ctx, bad[0], ChatID(bad[1])); !errors.Is(err, ErrBadErasure) {
			t.Errorf("EraseVisitor(%q, %q) = %v, want ErrBadErasure", bad[0], bad[1], err)
		}
	}
}

// assertNoTrace scans every key under the test's prefix: none may be named
// after the chats, and no hash field, set, sorted set member or string
// value may name them either.
func assertNoTrace(t *testing.T, e *env, ids ...ChatID) {
	t.Helper()
	ctx := context.Background()
	rdb := e.r.Client
	has := func(s string) (ChatID, bool) {
		for _, id := range ids {
			if strings.Contains(s, string(id)) {
				return id, true
			}
		}
		return "", false
	}
	keys, err := rdb.Keys(ctx, e.r.Prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys at all under the prefix")
	}
	for _, k := range keys {
		if id, ok := has(k); ok {
			t.Errorf("key %s of erased chat %s is left", k, id)
			continue
		}
		if strings.Contains(k, ":outbox:{") {
			continue // deliveries already in flight (dead letters are checked)
		}
		var vals []string
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			vals = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "set":
			vals = rdb.SMembers(ctx, k).Val()
		case "zset":
			vals = rdb.ZRange(ctx, k, 0, -1).Val()
		case "stream":
			for _, x := range rdb.XRange(ctx, k, "-", "+").Val() {
				for _, v := range x.Values {
					s, _ := v.(string)
					vals = append(vals, s)
				}
			}
		}
		for _, v := range vals {
			if id, ok := has(v); ok {
				t.Errorf("key %s still names erased chat %s: %.80q", k, id, v)
			}
		}
	}
}

// hookSink is a Subscriber outbox target that records what it is given.
type hookSink struct {
	fakeAdapter
	wants map[HookEvent]bool
}

func (h *hookSink) Wants(e HookEvent, _ presence.PropertyID) bool { return h.wants[e] }

// TestHooksAtQueueTimeout: a chat nobody accepts gives chat.started, then at
// the queue timeout the system line the visitor sees (chat.message) and
// offline_message with the first message; an agent's note gives nothing,
// the agent's answer chat.message, the close chat.closed. Targets get only
// the events they want, and no chat-app delivery.
func TestHooksAtQueueTimeout(t *testing.T) {
	e := newEnv(t, Routing{QueueTimeout: time.Minute})
	all := &hookSink{fakeAdapter: fakeAdapter{name: "hook-all", reaches: map[presence.AgentID]bool{}}, wants: map[HookEvent]bool{}}
	for _, ev := range HookEvents {
		all.wants[ev] = true
	}
	closedOnly := &hookSink{fakeAdapter: fakeAdapter{name: "hook-closed", reaches: map[presence.AgentID]bool{}}, wants: map[HookEvent]bool{HookChatClosed: true}}
	e.extra = []Adapter{all, closedOnly}
	in := e.start(nil)
	c, _ := in.startChat(t, "V", "anyone there?")
	e.advance(in, 2*time.Minute)
	in.say(t, "alice", c.ID, "//check the order first")
	in.say(t, "alice", c.ID, "Sorry for the wait")
	in.cmd(t, "alice", "close")
	want := []string{"chat.started:anyone there?", "chat.message:system", "offline_message:anyone there?", "chat.message:Sorry for the wait", "chat.closed:"}
	waitDelivered(t, &all.fakeAdapter, "hooks", len(want), func(Delivery) bool { return true })
	time.Sleep(50 * time.Millisecond)
	got := all.find(func(Delivery) bool { return true })
	var evs []string
	for _, d := range got {
		if d.Kind != KindHook || d.Hook == nil || d.Chat.ID != c.ID || d.Agent != "" {
			t.Errorf("delivery %+v: want a hook for the chat", d)
			continue
		}
		s := string(d.Hook.Event) + ":"
		if d.Message != nil {
			if d.Message.From == FromSystem {
				s += "system"
			} else {
				s += d.Message.Text
			}
		}
		evs = append(evs, s)
	}
	if strings.Join(evs, "|") != strings.Join(want, "|") {
		t.Errorf("hooks\n got %v\nwant %v", evs, want)
	}
	waitDelivered(t, &closedOnly.fakeAdapter, "closed hook", 1, func(Delivery) bool { return true })
	time.Sleep(50 * time.Millisecond)
	if n := len(closedOnly.find(func(Delivery) bool { return true })); n != 1 {
		t.Errorf("chat.closed-only target got %d deliveries", n)
	}
}
