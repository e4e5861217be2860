package telegram

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// liveEnv is the real bridge with the adapter, on the fake Bot API.
type liveEnv struct {
	*testEnv
	a     *Adapter
	b     *bridge.Bridge
	store *presence.Store
}

func newLiveEnv(t *testing.T) *liveEnv {
	t.Helper()
	e := newEnv(t)
	e.dir = liveDirectory(t)
	a := e.adapter(t, "A", nil, nil)
	b := startBridge(t, e, a, e.dir)
	// The bridge's store has no state of its own: this one sees the same Redis.
	store := presence.NewStore(e.rdb.Client, e.dir, presence.Keys{Prefix: e.rdb.Prefix}, time.Now)
	return &liveEnv{testEnv: e, a: a, b: b, store: store}
}

// liveDirectory has alice and bob (acme, private chats) and carol (beta,
// the forum group), always on duty.
func liveDirectory(t *testing.T) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme"}, {ID: "beta", Name: "Beta"}},
		[]presence.Agent{
			{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(aliceTG), Condition: presence.Always},
			{ID: "bob", Name: "Bob", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(bobTG), Condition: presence.Always},
			{ID: "carol", Name: "Carol", Properties: []presence.PropertyID{"beta"}, Accounts: tgAccount(carolTG), Condition: presence.Always},
		})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// command sends an agent's private message and waits for the bot's answer.
func (l *liveEnv) command(t *testing.T, from int64, text string) string {
	t.Helper()
	before := len(sentTo(l.api, from))
	l.api.Push(tgfake.PrivateMessage(from, text))
	var got []tgfake.Call
	wait.For(t, "an answer to "+text, func() bool { got = sentTo(l.api, from); return len(got) > before })
	return got[before].Params["text"]
}

func (l *liveEnv) status(t *testing.T, agent presence.AgentID) presence.Status {
	t.Helper()
	st, err := l.store.Get(t.Context(), agent)
	if err != nil {
		t.Fatal(err)
	}
	return st.Status
}

func TestConversationPrivateChats(t *testing.T) {
	l := newLiveEnv(t)
	ctx := t.Context()

	// Presence follows the agents' commands.
	if got := l.command(t, aliceTG, "/online"); got == "" {
		t.Fatal("no answer to /online")
	}
	l.command(t, bobTG, "/start")
	if l.status(t, "alice") != presence.Online || l.status(t, "bob") != presence.Online {
		t.Fatalf("statuses %s %s, want online", l.status(t, "alice"), l.status(t, "bob"))
	}
	if got := l.command(t, bobTG, "/away"); l.status(t, "bob") != presence.Away {
		t.Fatalf("after /away (%q) bob is %s", got, l.status(t, "bob"))
	}
	l.command(t, bobTG, "/online")
	if got := l.command(t, stranger, "/online"); !strings.Contains(got, "support team only") {
		t.Errorf("stranger told %q", got)
	}

	// A visitor starts a chat: both agents get an offer with Accept.
	chat, _, err := l.b.StartChat(ctx, "acme", bridge.Visitor{Name: "Vera", PageURL: "https://acme.example/buy",
		Referrer: "https://search.example/", Browser: "Firefox 120", OS: "Linux", Language: "de", TimeZone: "Europe/Berlin",
		Identity: &bridge.Identity{UserID: "u-7", Verified: true, Attrs: map[string]string{"plan": "pro"}}}, "Hello <team> & co")
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := l.b.SubscribeVisitor(chat.ID)
	t.Cleanup(cancel)
	offers := map[int64]tgfake.Call{}
	wait.For(t, "offers to alice and bob", func() bool {
		for _, tg := range []int64{aliceTG, bobTG} {
			for _, c := range sentTo(l.api, tg) {
				if strings.Contains(c.Params["reply_markup"], "a:"+string(chat.ID)) {
					offers[tg] = c
				}
			}
		}
		return len(offers) == 2
	})
	for _, want := range []string{"Hello &lt;team&gt; &amp; co", "<i>Verified user</i>: u-7\n", "<i>Referrer</i>: https://search.example/\n",
		"<i>Browser</i>: Firefox 120 on Linux\n", "<i>Time zone</i>: Europe/Berlin\n", "<i>attrs.plan</i>: pro\n"} {
		if !strings.Contains(offers[aliceTG].Params["text"], want) {
			t.Errorf("offer text %q lacks %q", offers[aliceTG].Params["text"], want)
		}
	}

	// Both press Accept at the same moment: exactly one owns the chat.
	answersBefore := len(l.api.Calls("answerCallbackQuery"))
	l.api.Push(tgfake.Callback(aliceTG, "a:"+string(chat.ID), aliceTG, 0))
	l.api.Push(tgfake.Callback(bobTG, "a:"+string(chat.ID), bobTG, 0))
	answers := waitCalls(t, l.api, "answerCallbackQuery", answersBefore+2, nil)[answersBefore:]
	joined := bridgetest.NextEvent(t, events, bridge.EventAgentJoined)
	winner, loser := aliceTG, bobTG
	if joined.Agent == "Bob" {
		winner, loser = bobTG, aliceTG
	}
	t.Logf("answers: %q / %q; %s joined", answers[0].Params["text"], answers[1].Params["text"], joined.Agent)
	// The loser's offer is edited to say who took it, without buttons.
	waitCalls(t, l.api, "editMessageText", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == strconv.FormatInt(loser, 10) && strings.Contains(c.Params["text"], "taken by "+joined.Agent)
	})

	// The owner answers with plain text (their only chat): the visitor sees it.
	l.api.Push(tgfake.PrivateMessage(winner, "Hi Vera, how can I help?"))
	ev := bridgetest.NextEvent(t, events, bridge.EventMessage)
	if ev.Message.Text != "Hi Vera, how can I help?" || ev.Message.Name != joined.Agent {
		t.Errorf("visitor got %+v", ev.Message)
	}
	// The visitor writes back: it reaches the owner tagged with the chat.
	if _, err := l.b.PostVisitorMessage(ctx, chat.ID, "I need an <invoice> & receipt", nil); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == strconv.FormatInt(winner, 10) && strings.HasSuffix(c.Params["text"], "<blockquote>I need an &lt;invoice&gt; &amp; receipt</blockquote>")
	})
	// The owner replies to that message (the newest Telegram remembers for
	// the chat): it routes to the chat by the reply.
	l.api.Push(tgfake.ReplyMessage(winner, "Sent it to your email.", lastRouted(t, l, winner)))
	if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != "Sent it to your email." {
		t.Errorf("reply routed to the visitor as %+v", ev.Message)
	}
	// The loser replies to their offer: not relayed, and told why.
	l.api.Push(tgfake.ReplyMessage(loser, "me too", lastRouted(t, l, loser)))
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == strconv.FormatInt(loser, 10) && strings.Contains(c.Params["text"], "not sent to the visitor")
	})
	// The owner closes it.
	l.command(t, winner, "/close")
	bridgetest.NextEvent(t, events, bridge.EventChatClosed)
	transcript, err := l.b.Transcript(ctx, chat.ID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range transcript {
		if m.Text == "me too" {
			t.Errorf("the non-owner's message reached the visitor")
		}
	}
	// The visitor rates the closed chat: the owner is told on Telegram.
	if _, err := l.b.Rate(ctx, chat.ID, 4, "Quick <b>answer</b>"); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == strconv.FormatInt(winner, 10) && strings.Contains(c.Params["text"], "rated this chat 4/5") &&
			strings.Contains(c.Params["text"], "Quick &lt;b&gt;answer&lt;/b&gt;")
	})
}

func TestConversationForumTopics(t *testing.T) {
	l := newLiveEnv(t)
	ctx := t.Context()
	l.command(t, carolTG, "/online")

	chat, _, err := l.b.StartChat(ctx, "beta", bridge.Visitor{Name: "Walt", PageURL: "https://beta.example/help"}, "Is anyone there?")
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := l.b.SubscribeVisitor(chat.ID)
	t.Cleanup(cancel)
	topics := waitCalls(t, l.api, "createForumTopic", 1, nil)
	if topics[0].Params["name"] != "Walt · beta.example/help" {
		t.Errorf("topic name %q", topics[0].Params["name"])
	}
	offer := waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == strconv.FormatInt(betaGroup, 10) && strings.Contains(c.Params["text"], "Is anyone there?")
	})
	thread, _ := strconv.Atoi(offer[0].Params["message_thread_id"])
	if thread == 0 {
		t.Fatal("offer not in a topic")
	}
	// Carol answers in the topic: she claims the chat and the visitor sees it.
	l.api.Push(tgfake.TopicMessage(carolTG, betaGroup, thread, "Yes, Carol here."))
	bridgetest.NextEvent(t, events, bridge.EventAgentJoined)
	if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != "Yes, Carol here." {
		t.Errorf("visitor got %+v", ev.Message)
	}
	// The visitor's answer arrives in the topic.
	if _, err := l.b.PostVisitorMessage(ctx, chat.ID, "Great, thanks", nil); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["message_thread_id"] == strconv.Itoa(thread) && c.Params["text"] == "<b>Walt:</b> <blockquote>Great, thanks</blockquote>"
	})
	// The topic is deleted; the next message recreates it and nothing is lost.
	l.api.DeleteThread(thread)
	if _, err := l.b.PostVisitorMessage(ctx, chat.ID, "Still there?", nil); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, l.api, "createForumTopic", 2, nil)
	again := waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["message_thread_id"] != strconv.Itoa(thread) && c.Params["text"] == "<b>Walt:</b> <blockquote>Still there?</blockquote>"
	})
	newThread, _ := strconv.Atoi(again[0].Params["message_thread_id"])
	if newThread == thread || newThread == 0 {
		t.Fatalf("message went to thread %d (old %d)", newThread, thread)
	}
	l.api.Push(tgfake.TopicMessage(carolTG, betaGroup, newThread, "Yes!"))
	if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != "Yes!" {
		t.Errorf("visitor got %+v from the new topic", ev.Message)
	}
	// Carol answers from her private chat with the bot (plain text: her one
	// chat): the visitor gets it and the topic gets a copy for the team;
	// what she wrote in the topic itself was never echoed there.
	l.api.Push(tgfake.PrivateMessage(carolTG, "Sent from my phone"))
	if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != "Sent from my phone" {
		t.Errorf("visitor got %+v from the private chat", ev.Message)
	}
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["message_thread_id"] == strconv.Itoa(newThread) && c.Params["text"] == "<b>Carol:</b> Sent from my phone"
	})
	for _, c := range l.api.Calls("sendMessage") {
		if c.Params["chat_id"] == strconv.FormatInt(betaGroup, 10) && (strings.Contains(c.Params["text"], "Carol here") || strings.Contains(c.Params["text"], "Yes!")) {
			t.Errorf("Carol's answer written in the topic was echoed into it: %q", c.Params["text"])
		}
	}
	// Closed and rated: the rating lands in the chat's topic.
	if err := l.b.CloseByVisitor(ctx, chat.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := l.b.Rate(ctx, chat.ID, 5, ""); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["message_thread_id"] == strconv.Itoa(newThread) && strings.Contains(c.Params["text"], "rated this chat 5/5")
	})
	// Erased: neither the bridge's keys nor the adapter's (offers, topic,
	// message refs) name the chat any more.
	if n, err := l.b.EraseVisitor(ctx, "", chat.ID); err != nil || n != 1 {
		t.Fatalf("EraseVisitor = %d, %v", n, err)
	}
	assertErased(t, l.rdb.Client, l.rdb.Prefix, chat.ID)
}

// assertErased scans every key under prefix (but the outbox streams, whose
// items are in flight): none may be named after the chat or hold its id.
func assertErased(t *testing.T, rdb redis.UniversalClient, prefix string, id bridge.ChatID) {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, string(id)) {
			t.Errorf("key %s is left", k)
			continue
		}
		if strings.Contains(k, ":outbox:") {
			continue
		}
		var vals []string
		switch rdb.Type(ctx, k).Val() {
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
		}
		for _, v := range vals {
			if strings.Contains(v, string(id)) {
				t.Errorf("key %s still names the chat: %.80q", k, v)
			}
		}
	}
}

// lastRouted is the newest Telegram message id in tg's chat that the
// bridge remembers as belonging to a visitor chat.
func lastRouted(t *testing.T, l *liveEnv, tg int64) int {
	t.Helper()
	keys, err := l.rdb.Client.Keys(t.Context(), l.rdb.Prefix+"b:ref:telegram:"+strconv.FormatInt(tg, 10)+":m:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no remembered messages for %d: %v", tg, err)
	}
	best := 0
	for _, k := range keys {
		id, _ := strconv.Atoi(k[strings.LastIndexByte(k, ':')+1:])
		best = max(best, id)
	}
	return best
}

func TestConversationFiles(t *testing.T) {
	l := newLiveEnv(t)
	ctx := t.Context()
	l.command(t, aliceTG, "/online")
	l.command(t, bobTG, "/offline")
	chat, _, err := l.b.StartChat(ctx, "acme", bridge.Visitor{Name: "Fay"}, "I have a screenshot")
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := l.b.SubscribeVisitor(chat.ID)
	t.Cleanup(cancel)
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool { return strings.Contains(c.Params["reply_markup"], "a:"+string(chat.ID)) })
	l.api.Push(tgfake.Callback(aliceTG, "a:"+string(chat.ID), aliceTG, 0))
	bridgetest.NextEvent(t, events, bridge.EventAgentJoined)

	// The visitor's file reaches Alice as a document.
	att, err := l.b.PutFile(ctx, chat.ID, "screen.png", "image/png", []byte("PNGBYTES"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.b.PostVisitorMessage(ctx, chat.ID, "here", &att); err != nil {
		t.Fatal(err)
	}
	docs := waitCalls(t, l.api, "sendDocument", 1, nil)
	if string(docs[0].Files["document"]) != "PNGBYTES" || docs[0].Params["document.filename"] != "screen.png" || docs[0].Params["chat_id"] != "111" {
		t.Fatalf("sendDocument %+v", docs[0].Params)
	}

	// Alice replies with a document: downloaded from Telegram, stored by the
	// bridge, and the visitor's message carries it.
	l.api.AddFile("documents/doc9.bin", []byte("%PDF agent"))
	u := tgfake.ReplyMessage(aliceTG, "", lastRouted(t, l, aliceTG))
	m := u["message"].(map[string]any)
	delete(m, "text")
	m["caption"] = "the guide"
	m["document"] = map[string]any{"file_id": "doc9", "file_unique_id": "u9", "file_name": "guide.pdf", "mime_type": "application/pdf", "file_size": 10}
	l.api.Push(u)
	ev := bridgetest.NextEvent(t, events, bridge.EventMessage)
	if ev.Message.Text != "the guide" || ev.Message.Attachment == nil || ev.Message.Attachment.Name != "guide.pdf" {
		t.Fatalf("visitor got %+v", ev.Message)
	}
	_, data, err := l.b.File(ctx, chat.ID, ev.Message.Attachment.Key)
	if err != nil || string(data) != "%PDF agent" {
		t.Errorf("stored file %q, %v", data, err)
	}
}
