package telegram

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// TestMigrateOldKeys: chats opened under an earlier version, whose adapter
// kept its own tg:* keys, go on after an upgrade: the new instance moves
// the keys into the bridge at start (and deletes them), so a reply to an
// old message reaches its chat, an Accept on an old offer edits the other
// agent's old offer, a new message of an old chat goes into its old topic,
// and an update handled before the upgrade is not handled again.
func TestMigrateOldKeys(t *testing.T) {
	e := newEnv(t)
	e.dir = liveDirectory(t)
	ctx := t.Context()
	rdb, pre := e.rdb.Client, e.rdb.Prefix

	// Before the upgrade: two chats with offers, one in a forum topic.
	a1 := e.adapter(t, "A", nil, nil)
	b1, stop1 := startBridgeStop(t, e, a1, e.dir)
	l1 := &liveEnv{testEnv: e, a: a1, b: b1}
	for _, u := range []int64{aliceTG, bobTG, carolTG} {
		l1.command(t, u, "/online")
	}
	priv, _, err := b1.StartChat(ctx, "acme", bridge.Visitor{Name: "Olga"}, "old question")
	if err != nil {
		t.Fatal(err)
	}
	forum, _, err := b1.StartChat(ctx, "beta", bridge.Visitor{Name: "Fritz"}, "old topic")
	if err != nil {
		t.Fatal(err)
	}
	offerTo := func(tg int64, chat bridge.ChatID) tgfake.Call {
		t.Helper()
		c := waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool {
			return c.Params["chat_id"] == strconv.FormatInt(tg, 10) && !c.Failed && strings.Contains(c.Params["reply_markup"], "a:"+string(chat))
		})[0]
		waitRouted(t, l1, tg, c.ResultID)
		return c
	}
	aliceOffer, bobOffer, topicOffer := offerTo(aliceTG, priv.ID), offerTo(bobTG, priv.ID), offerTo(betaGroup, forum.ID)
	thread := topicOffer.Params["message_thread_id"]
	stop1()

	// What the earlier version had kept instead of the bridge's refs.
	var bridgeRefs []string
	it := rdb.Scan(ctx, 0, pre+"b:ref*", 1000).Iterator()
	for it.Next(ctx) {
		bridgeRefs = append(bridgeRefs, it.Val())
	}
	if len(bridgeRefs) == 0 {
		t.Fatal("no bridge refs to replace")
	}
	rdb.Del(ctx, bridgeRefs...)
	g := strconv.FormatInt(betaGroup, 10)
	msgKey := func(tg int64, id int) string {
		return pre + "tg:msg:" + strconv.FormatInt(tg, 10) + ":" + strconv.Itoa(id)
	}
	old := map[string]string{
		msgKey(aliceTG, aliceOffer.ResultID):                    string(priv.ID),
		msgKey(bobTG, bobOffer.ResultID):                        string(priv.ID),
		msgKey(betaGroup, topicOffer.ResultID):                  string(forum.ID),
		pre + "tg:topic:" + string(forum.ID):                    g + ":" + thread,
		pre + "tg:thread:" + g + ":" + thread:                   string(forum.ID),
		pre + "tg:dlv:1700000000000-0":                          "1",
		pre + "tg:thread:" + g + ":7":                           "notachat!",
		pre + "tg:msg:" + strconv.FormatInt(aliceTG, 10) + ":1": "also not a chat",
	}
	for k, v := range old {
		rdb.Set(ctx, k, v, 30*24*time.Hour)
	}
	rdb.HSet(ctx, pre+"tg:offer:"+string(priv.ID),
		"111:"+strconv.Itoa(aliceOffer.ResultID), "alice", "222:"+strconv.Itoa(bobOffer.ResultID), "bob")
	rdb.SAdd(ctx, pre+"tg:msgs:"+string(priv.ID), msgKey(aliceTG, aliceOffer.ResultID))
	// Alice went offline under the old version: that update was handled,
	// but Telegram hands it again to the new instance.
	handled := e.api.Push(tgfake.PrivateMessage(aliceTG, "/offline"))
	rdb.Set(ctx, pre+"tg:upd:"+strconv.FormatInt(handled, 10), "done", time.Hour)
	busy := pre + "tg:upd:999999"
	rdb.Set(ctx, busy, "busy", time.Minute)

	// The upgrade.
	a2 := e.adapter(t, "B", nil, nil)
	b2 := startBridge(t, e, a2, e.dir)
	l2 := &liveEnv{testEnv: e, a: a2, b: b2, store: presence.NewStore(rdb, e.dir, presence.Keys{Prefix: pre}, time.Now)}
	for _, p := range []string{"tg:msg:*", "tg:msgs:*", "tg:offer:*", "tg:topic:*", "tg:thread:*", "tg:dlv:*", "tg:upd:*"} {
		keys, err := rdb.Keys(ctx, pre+p).Result()
		if err != nil {
			t.Fatal(err)
		}
		if p == "tg:upd:*" && slices.Equal(keys, []string{busy}) {
			continue // a claim still busy is left to expire
		}
		if len(keys) != 0 {
			t.Errorf("old keys left: %v", keys)
		}
	}

	// Alice accepts on her old offer: Bob's old offer says so.
	e.api.Push(tgfake.Callback(aliceTG, "a:"+string(priv.ID), aliceTG, aliceOffer.ResultID))
	waitCalls(t, e.api, "editMessageText", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == "222" && c.Params["message_id"] == strconv.Itoa(bobOffer.ResultID) && strings.Contains(c.Params["text"], "taken by Alice")
	})
	// Her reply to the old offer reaches the visitor.
	e.api.Push(tgfake.ReplyMessage(aliceTG, "answer from before the upgrade", aliceOffer.ResultID))
	wait.For(t, "the reply to reach the visitor", func() bool {
		return slices.Contains(bridgetest.AgentTexts(ctx, b2, priv.ID), "answer from before the upgrade")
	})
	// The /offline handled before the upgrade was not handled again.
	if st := l2.status(t, "alice"); st != presence.Online {
		t.Errorf("alice is %s: the update handled before the upgrade acted again", st)
	}
	// The old chat's next message goes into its old topic.
	if _, err := b2.PostVisitorMessage(ctx, forum.ID, "still here", nil); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == g && c.Params["message_thread_id"] == thread && strings.Contains(c.Params["text"], "still here")
	})
	if n := len(e.api.Calls("createForumTopic")); n != 1 {
		t.Errorf("%d topics created, want 1 (the old one kept)", n)
	}
	// Carol writing in the old topic answers its chat.
	e.api.Push(tgfake.TopicMessage(carolTG, betaGroup, mustAtoi(t, thread), "carol here"))
	wait.For(t, "carol's message to reach the visitor", func() bool {
		return slices.Contains(bridgetest.AgentTexts(ctx, b2, forum.ID), "carol here")
	})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
