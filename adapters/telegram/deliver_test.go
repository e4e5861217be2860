package telegram

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/presence"
)

// sentTo lists the sendMessage calls to a Telegram chat.
func sentTo(api *tgfake.Server, chat int64) []tgfake.Call {
	var out []tgfake.Call
	for _, c := range api.Calls("sendMessage") {
		if c.Params["chat_id"] == strconv.FormatInt(chat, 10) && !c.Failed {
			out = append(out, c)
		}
	}
	return out
}

func TestOffersAcceptRaceAndTakenEdit(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	// The fake bridge: the first Accept wins, the other is told.
	var mu sync.Mutex
	owner := ""
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		mu.Lock()
		defer mu.Unlock()
		if act.Kind != bridge.ActAccept {
			return bridge.Reply{}, nil
		}
		if owner == "" {
			owner = string(act.Agent)
			return bridge.Reply{Text: "You own chat #chatA1."}, nil
		}
		return bridge.Reply{Text: "Too late: " + owner + " took it."}, nil
	})
	run(t, a, h)

	chat := testChat("chatA1", "acme")
	first := &bridge.Message{ID: "1-0", Chat: chat.ID, From: bridge.FromVisitor, Text: "Hi, is 5 < 6 & 7 > 3?"}
	ctx := t.Context()
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "d1", Kind: bridge.KindOffer, Agent: "alice", Chat: chat, Message: first}); err != nil {
		t.Fatal(err)
	}
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "d2", Kind: bridge.KindOffer, Agent: "bob", Chat: chat, Message: first, Monitor: true}); err != nil {
		t.Fatal(err)
	}
	// Delivered twice (outbox retry): no second post.
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "d1", Kind: bridge.KindOffer, Agent: "alice", Chat: chat, Message: first}); err != nil {
		t.Fatal(err)
	}
	aliceOffers, bobOffers := sentTo(e.api, aliceTG), sentTo(e.api, bobTG)
	if len(aliceOffers) != 1 || len(bobOffers) != 1 {
		t.Fatalf("offers: alice %d, bob %d; want 1 each", len(aliceOffers), len(bobOffers))
	}
	for _, c := range []tgfake.Call{aliceOffers[0], bobOffers[0]} {
		if !strings.Contains(c.Params["text"], "Hi, is 5 &lt; 6 &amp; 7 &gt; 3?") || !strings.Contains(c.Params["text"], "Vera &lt;V&gt;") {
			t.Errorf("offer text not escaped: %q", c.Params["text"])
		}
	}
	if kb := aliceOffers[0].Params["reply_markup"]; !strings.Contains(kb, `"a:chatA1"`) || strings.Contains(kb, `"m:chatA1"`) {
		t.Errorf("alice's buttons %s", kb)
	}
	if kb := bobOffers[0].Params["reply_markup"]; !strings.Contains(kb, `"a:chatA1"`) || !strings.Contains(kb, `"m:chatA1"`) {
		t.Errorf("bob's buttons (with Monitor) %s", kb)
	}

	// Both press Accept at once.
	e.api.Push(tgfake.Callback(aliceTG, "a:chatA1", aliceTG, 1001))
	e.api.Push(tgfake.Callback(bobTG, "a:chatA1", bobTG, 1002))
	acts := h.WaitN(t, 2)
	for _, act := range acts {
		if act.Kind != bridge.ActAccept || act.Chat != "chatA1" {
			t.Errorf("action %+v", act)
		}
	}
	answers := waitCalls(t, e.api, "answerCallbackQuery", 2, nil)
	texts := answers[0].Params["text"] + "|" + answers[1].Params["text"]
	// The two presses come from different Telegram chats, so they are
	// handled at once: either may win, and the other is told who did.
	mu.Lock()
	winner := owner
	mu.Unlock()
	if !strings.Contains(texts, "You own chat") || !strings.Contains(texts, "Too late: "+winner+" took it.") {
		t.Errorf("answers %q: want one winner and one told", texts)
	}

	// The bridge says who won: every offer is edited, buttons removed.
	for _, ag := range []string{"alice", "bob"} {
		if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "t-" + ag, Kind: bridge.KindTaken, Agent: presence.AgentID(ag), Chat: chat, TakenBy: "Alice"}); err != nil {
			t.Fatal(err)
		}
	}
	edits := e.api.Calls("editMessageText")
	if len(edits) != 2 {
		t.Fatalf("%d edits, want 2", len(edits))
	}
	ids := map[string]bool{}
	for _, ed := range edits {
		ids[ed.Params["chat_id"]+":"+ed.Params["message_id"]] = true
		if !strings.Contains(ed.Params["text"], "taken by Alice") || ed.Params["reply_markup"] != `{"inline_keyboard":[]}` {
			t.Errorf("edit %v", ed.Params)
		}
	}
	if !ids["111:1001"] || !ids["222:1002"] {
		t.Errorf("edited %v, want alice's 1001 and bob's 1002", ids)
	}
	// Nothing left to edit: a repeated Taken does nothing.
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "t-again", Kind: bridge.KindTaken, Agent: "bob", Chat: chat, TakenBy: "Alice"}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.api.Calls("editMessageText")); n != 2 {
		t.Errorf("%d edits after repeat, want 2", n)
	}
}

func TestReplyAndPlainTextRouting(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	h := &fakeHandler{}
	run(t, a, h)
	ctx := t.Context()
	for i, id := range []bridge.ChatID{"chatX", "chatY"} {
		c := testChat(id, "acme")
		m := &bridge.Message{ID: "1-0", Chat: id, From: bridge.FromVisitor, Text: "question " + string(id)}
		if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "m" + strconv.Itoa(i), Kind: bridge.KindMessage, Agent: "alice", Chat: c, Message: m}); err != nil {
			t.Fatal(err)
		}
	}
	sent := sentTo(e.api, aliceTG)
	if len(sent) != 2 || sent[1].Params["text"] != "<b>[Vera &lt;V&gt; · #chatY]</b> <blockquote>question chatY</blockquote>" {
		t.Fatalf("sent %+v", sent)
	}
	// Message ids are 1001 (chatX) and 1002 (chatY).
	e.api.Push(tgfake.ReplyMessage(aliceTG, "answer for Y", 1002))
	e.api.Push(tgfake.ReplyMessage(aliceTG, "answer for X", 1001))
	e.api.Push(tgfake.PrivateMessage(aliceTG, "plain text"))
	e.api.Push(tgfake.ReplyMessage(aliceTG, "reply to something unknown", 5))
	acts := resolved(t, h, h.WaitN(t, 4))
	want := []struct {
		chat bridge.ChatID
		text string
	}{{"chatY", "answer for Y"}, {"chatX", "answer for X"}, {"", "plain text"}, {"", "reply to something unknown"}}
	for i, w := range want {
		if acts[i].Kind != bridge.ActMessage || acts[i].Chat != w.chat || acts[i].Text != w.text || acts[i].Agent != "alice" {
			t.Errorf("action %d = %+v, want chat %q text %q", i, acts[i], w.chat, w.text)
		}
	}
}

func TestForumTopicsAndRecreate(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		if act.Kind == bridge.ActMessage {
			return bridge.Reply{}, nil
		}
		return bridge.Reply{Text: "ok " + act.Command}, nil
	})
	run(t, a, h)
	ctx := t.Context()
	if !a.Shared("beta") || a.Shared("acme") {
		t.Fatal("Shared: want beta only")
	}
	chat := testChat("chatT1", "beta")
	first := &bridge.Message{ID: "1-0", Chat: chat.ID, From: bridge.FromVisitor, Text: "hello from beta"}
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "o1", Kind: bridge.KindOffer, Chat: chat, Message: first}); err != nil {
		t.Fatal(err)
	}
	topics := e.api.Calls("createForumTopic")
	if len(topics) != 1 || topics[0].Params["name"] != "Vera <V> · acme.example/pricing?a=1&b=2" || topics[0].Params["chat_id"] != strconv.FormatInt(betaGroup, 10) {
		t.Fatalf("topics %+v", topics)
	}
	offer := sentTo(e.api, betaGroup)
	if len(offer) != 1 || offer[0].Params["message_thread_id"] != "51" || !strings.Contains(offer[0].Params["reply_markup"], "a:chatT1") {
		t.Fatalf("offer in topic %+v", offer)
	}
	// Carol writes in the topic: a message for that chat (the bridge lets her claim it).
	e.api.Push(tgfake.TopicMessage(carolTG, betaGroup, 51, "I can help"))
	e.api.Push(tgfake.TopicMessage(carolTG, betaGroup, 51, "/close"))
	acts := resolved(t, h, h.WaitN(t, 2))
	if acts[0].Kind != bridge.ActMessage || acts[0].Chat != "chatT1" || acts[0].Text != "I can help" || acts[0].Agent != "carol" {
		t.Errorf("topic message -> %+v", acts[0])
	}
	if acts[1].Kind != bridge.ActCommand || acts[1].Command != "close" || acts[1].Chat != "chatT1" {
		t.Errorf("topic command -> %+v", acts[1])
	}
	reply := waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return c.Params["text"] == "ok close" })
	if reply[0].Params["message_thread_id"] != "51" {
		t.Errorf("reply to a topic command went to thread %q", reply[0].Params["message_thread_id"])
	}

	// Someone deletes the topic: the next message recreates it, nothing lost.
	e.api.DeleteThread(51)
	m2 := &bridge.Message{ID: "2-0", Chat: chat.ID, From: bridge.FromVisitor, Text: "are you there?"}
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "m2", Kind: bridge.KindMessage, Chat: chat, Message: m2}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.api.Calls("createForumTopic")); n != 2 {
		t.Fatalf("%d topics created, want 2", n)
	}
	var inNew []tgfake.Call
	for _, c := range sentTo(e.api, betaGroup) {
		if c.Params["message_thread_id"] == "52" {
			inNew = append(inNew, c)
		}
	}
	if len(inNew) != 1 || inNew[0].Params["text"] != "<b>Vera &lt;V&gt;:</b> <blockquote>are you there?</blockquote>" {
		t.Fatalf("messages in the new topic %+v", inNew)
	}
	// The new topic is the chat's now, both ways.
	e.api.Push(tgfake.TopicMessage(carolTG, betaGroup, 52, "yes"))
	acts = resolved(t, h, h.WaitN(t, 3))
	if acts[2].Chat != "chatT1" {
		t.Errorf("message in recreated topic -> %+v", acts[2])
	}
	// Chatter in the group outside any chat's topic is only activity.
	e.api.Push(tgfake.TopicMessage(carolTG, betaGroup, 7, "coffee?"))
	acts = resolved(t, h, h.WaitN(t, 4))
	if acts[3].Kind != bridge.ActActivity || acts[3].Chat != "" {
		t.Errorf("general chatter -> %+v", acts[3])
	}
	// A group the bot does not serve is ignored entirely.
	e.api.Push(tgfake.TopicMessage(carolTG, -100999, 3, "/online"))
	e.api.Push(tgfake.PrivateMessage(carolTG, "/status"))
	acts = h.WaitN(t, 5)
	if len(acts) != 5 || acts[4].Command != "status" {
		t.Errorf("after a foreign group: %+v", acts[4:])
	}
}

func TestRateLimitAndErrorsMapToBridgeErrors(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	ctx := t.Context()
	chat := testChat("chatR1", "acme")
	long := strings.Repeat("word ", 2000) // 10000 characters: three messages
	d := bridge.Delivery{ID: "long1", Kind: bridge.KindMessage, Agent: "alice", Chat: chat,
		Message: &bridge.Message{ID: "1-0", Chat: chat.ID, From: bridge.FromVisitor, Text: long}}

	// The first piece goes out, then Telegram says 429 with retry_after 3.
	e.api.FailAfter("sendMessage", 1, 1, 429, "Too Many Requests: retry after 3", 3)
	_, err := out(a).Deliver(ctx, d)
	ra, ok := asRetryAfter(err)
	if !ok || ra.After != 3*time.Second {
		t.Fatalf("Deliver under 429 = %v, want RetryAfterError of 3s", err)
	}
	// The outbox retries: the rest follows, nothing repeated, nothing lost.
	if _, err := out(a).Deliver(ctx, d); err != nil {
		t.Fatal(err)
	}
	var pieces []string
	for _, c := range sentTo(e.api, aliceTG) {
		pieces = append(pieces, c.Params["text"])
	}
	if len(pieces) != 3 {
		t.Fatalf("%d pieces sent, want 3", len(pieces))
	}
	var joined strings.Builder
	for _, p := range pieces {
		body, ok := strings.CutPrefix(p, "<b>[Vera &lt;V&gt; · #chatR1]</b> <blockquote>")
		body, ok2 := strings.CutSuffix(body, "</blockquote>")
		if !ok || !ok2 {
			t.Errorf("piece without the chat tag: %.60q", p)
		}
		joined.WriteString(body)
	}
	if joined.String() != long {
		t.Errorf("pieces do not join back to the text")
	}

	tests := []struct {
		name      string
		code      int
		desc      string
		permanent bool
	}{
		{"bad request", 400, "Bad Request: chat not found", true},
		{"blocked", 403, "Forbidden: bot was blocked by the user", true},
		{"server error", 502, "Bad Gateway", false},
		{"unauthorized", 401, "Unauthorized", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.api.FailNext("sendMessage", 1, tt.code, tt.desc, 0)
			_, err := out(a).Deliver(ctx, bridge.Delivery{ID: "e" + strconv.Itoa(i), Kind: bridge.KindNotice, Agent: "bob", Text: "x"})
			if err == nil {
				t.Fatal("want an error")
			}
			if asPermanent(err) != tt.permanent {
				t.Errorf("permanent = %v for %v", !tt.permanent, err)
			}
			if _, ok := asRetryAfter(err); ok {
				t.Errorf("%v is not a rate limit", err)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("token in error %v", err)
			}
		})
	}
	// An agent without Telegram, or a property without a group, cannot be reached.
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "x1", Kind: bridge.KindNotice, Agent: "dave", Text: "x"}); !asPermanent(err) {
		t.Errorf("dave: %v, want permanent", err)
	}
	if _, err := out(a).Deliver(ctx, bridge.Delivery{ID: "x2", Kind: bridge.KindMessage, Chat: testChat("c", "acme"), Text: "x"}); !asPermanent(err) {
		t.Errorf("shared delivery without group: %v, want permanent", err)
	}
	if a.Reaches("dave") || !a.Reaches("alice") {
		t.Error("Reaches: want alice, not dave")
	}
}

func TestWithdrawnClosedAndSharedTaken(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	ctx := t.Context()
	priv := testChat("chatW1", "acme")
	shared := testChat("chatW2", "beta")
	first := &bridge.Message{ID: "1-0", From: bridge.FromVisitor, Text: "hi"}
	steps := []bridge.Delivery{
		{ID: "o1", Kind: bridge.KindOffer, Agent: "alice", Chat: priv, Message: first},
		{ID: "o2", Kind: bridge.KindOffer, Chat: shared, Message: first},
		{ID: "w1", Kind: bridge.KindWithdrawn, Agent: "alice", Chat: priv, Text: "The visitor left."},
		{ID: "t2", Kind: bridge.KindTaken, Chat: shared, TakenBy: "Carol"},
		{ID: "c1", Kind: bridge.KindClosed, Agent: "alice", Chat: priv, Text: "Closed by the visitor."},
		{ID: "c2", Kind: bridge.KindClosed, Chat: shared, Text: "Closed after 24h idle."},
		{ID: "n1", Kind: bridge.KindNotice, Agent: "bob", Chat: priv, Text: "Alice transferred chat #chatW1 to you."},
	}
	for _, d := range steps {
		if _, err := out(a).Deliver(ctx, d); err != nil {
			t.Fatalf("%s: %v", d.ID, err)
		}
	}
	edits := e.api.Calls("editMessageText")
	if len(edits) != 2 {
		t.Fatalf("%d edits, want 2", len(edits))
	}
	if edits[0].Params["chat_id"] != "111" || !strings.HasSuffix(edits[0].Params["text"], "The visitor left.") {
		t.Errorf("withdrawn edit %v", edits[0].Params)
	}
	if edits[1].Params["chat_id"] != strconv.FormatInt(betaGroup, 10) || !strings.HasSuffix(edits[1].Params["text"], "taken by Carol") {
		t.Errorf("shared taken edit %v", edits[1].Params)
	}
	closed := waitCalls(t, e.api, "sendMessage", 2, func(c tgfake.Call) bool { return strings.Contains(c.Params["text"], "closed.</b>") })
	if closed[1].Params["message_thread_id"] == "" || !strings.HasSuffix(closed[1].Params["text"], "Closed after 24h idle.") {
		t.Errorf("closed in topic %v", closed[1].Params)
	}
	// A notice about a chat routes replies to it too.
	notice := sentTo(e.api, bobTG)
	if len(notice) != 1 {
		t.Fatalf("notices %+v", notice)
	}
	h := &fakeHandler{}
	run(t, a, h)
	e.api.Push(tgfake.ReplyMessage(bobTG, "on it", sentTo(e.api, bobTG)[0].ResultID))
	if acts := resolved(t, h, h.WaitN(t, 1)); acts[0].Chat != "chatW1" {
		t.Errorf("reply to a notice -> %+v", acts[0])
	}
}

// TestDeliveryRoundTrips: a relayed message or an offer costs the adapter
// no Redis round trip at all (the bridge keeps what it made); a retry posts
// nothing and replies to the message still find its chat.
func TestDeliveryRoundTrips(t *testing.T) {
	e := newEnv(t)
	rdb := e.rdb.NewClient(t)
	var n redistest.Counter
	rdb.AddHook(&n)
	a := e.adapter(t, "A", rdb, nil) // not running: nothing else uses Redis
	ctx := t.Context()
	chat := testChat("chatRT", "acme")
	var made []bridge.RemoteRef
	for _, d := range []bridge.Delivery{
		{ID: "o1", Kind: bridge.KindOffer, Agent: "alice", Chat: chat, Message: &bridge.Message{From: bridge.FromVisitor, Text: "hi"}},
		{ID: "m1", Kind: bridge.KindMessage, Agent: "alice", Chat: chat, Message: &bridge.Message{From: bridge.FromVisitor, Text: "still there?"}},
	} {
		for range 2 { // the second time is an outbox retry
			n.All.Store(0)
			refs, err := out(a).Deliver(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			made = append(made, refs...)
			if got := n.All.Load(); got > 0 {
				t.Errorf("%s %s: %d Redis round trips, want none", d.Kind, d.ID, got)
			}
		}
	}
	sent := sentTo(e.api, aliceTG)
	if len(sent) != 2 {
		t.Fatalf("%d messages sent, want 2", len(sent))
	}
	want := []bridge.RemoteRef{
		{Role: bridge.RefOffer, Conversation: "111", Message: strconv.Itoa(sent[0].ResultID)},
		{Role: bridge.RefMessage, Conversation: "111", Message: strconv.Itoa(sent[1].ResultID)},
	}
	if !slices.Equal(made, want) {
		t.Errorf("made %+v, want %+v", made, want)
	}
	h := &fakeHandler{}
	h.Keep(surface, chat.ID, made...)
	if got, err := h.ChatOf(ctx, surface, bridge.RemoteRef{Conversation: "111", Message: strconv.Itoa(sent[1].ResultID)}); err != nil || got != chat.ID {
		t.Errorf("message %d routes to %q (%v), want %s", sent[1].ResultID, got, err, chat.ID)
	}
	if offers := out(a).offers[string(chat.ID)+"|alice"]; len(offers) != 1 {
		t.Errorf("offer remembered %d times, want 1", len(offers))
	}
}
