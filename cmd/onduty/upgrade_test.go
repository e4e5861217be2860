package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

// upgradeOldFamilies are the key families the adapters kept chat state in
// before the bridge kept it for them (refs, delivery progress, handled
// events). After an upgrade none may be left: moved at start.
var upgradeOldFamilies = []string{"tg:msg:", "tg:msgs:", "tg:offer:", "tg:topic:", "tg:thread:", "tg:dlv:", "tg:upd:",
	"slack:root:", "slack:thread:", "slack:event:", "slack:dlv:"}

// TestUpgradeFromV1 starts this binary on the Redis data an older one left
// with chats open (testdata/upgrade-v1.json, see TestRecordUpgradeFixture),
// with the same configuration and platforms that continue where they were,
// and checks that the open chats go on with the old data alone: agents'
// answers to old messages, threads and topics reach their chats, old offer
// buttons work and the old offers are edited, old threads and topics keep
// being used, events handled before the upgrade are not handled again, the
// half-sent delivery is finished, and the adapters' old keys are moved into
// the bridge's records.
func TestUpgradeFromV1(t *testing.T) {
	f, keys := readUpgradeFixture(t)
	m := f.Meta
	r := redistest.New(t)
	ctx := context.Background()

	// The data as if recorded just now: its timers (offers and queues time
	// out an hour after the recording) and chats' times are moved forward.
	data, err := json.Marshal(shiftTimes(keys, time.Since(time.UnixMilli(m.RecordedMS))))
	if err != nil {
		t.Fatal(err)
	}
	if err := redistest.Load(ctx, r.Client, r.Prefix, data); err != nil {
		t.Fatal(err)
	}

	// Telegram and Slack go on from where they were. Telegram had not yet
	// been told that the old process took the last update (carol's reply in
	// chat C): it hands it out again first.
	api := fakeBot{tgfake.New(tgfake.Options{Token: m.Telegram.Token, BotName: "onduty_proc_bot", Report: t,
		// 2000: above every message id the old fake handed out (the
		// fixture's highest is 1010).
		After: tgfake.IDs{Update: m.Telegram.LastUpdateID - 1, Message: 2000, Thread: m.Telegram.LastThread}})}
	t.Cleanup(api.Close)
	sl := newSlackWeb(t, m.Slack.SigningSecret, m.Slack.LastTS)
	chatA, chatB, chatC, chatD, chatE := m.Chats["A"], m.Chats["B"], m.Chats["C"], m.Chats["D"], m.Chats["E"]
	alice, carol := m.Telegram.Users["alice"], m.Telegram.Users["carol"]
	dave := m.Slack.Users["dave"]
	group := m.Telegram.Group
	if redo := api.Push(tgfake.ReplyMessage(carol, "C: carol: reset link sent", chatC.TGVisitor[0].MessageID)); redo != m.Telegram.LastUpdateID {
		t.Fatalf("the repeated update got id %d, want %d", redo, m.Telegram.LastUpdateID)
	}

	file := writeFile(t, fmt.Sprintf(m.Config, r.URL, r.Prefix, group, m.Slack.Channels["acme"], m.Slack.Channels["beta"],
		alice, m.Slack.Users["bob"], carol, dave, m.Telegram.Token, m.Slack.BotToken, m.Slack.SigningSecret, sl.apiURL()))
	p := startProcess(t, "new", file, api)
	started := func(c upChat) startedChat { return startedChat{ChatID: c.ChatID, VisitorToken: c.VisitorToken} }
	transcript := func(c upChat) string { return transcriptOf(t, p.base, started(c)) }
	inTranscript := func(t *testing.T, c upChat, text string) {
		t.Helper()
		wait.Within(t, 15*time.Second, fmt.Sprintf("%q in the transcript of %s", text, c.ChatID), func() bool {
			return strings.Contains(transcript(c), text)
		})
	}
	visitorSays := func(t *testing.T, c upChat, text string) {
		t.Helper()
		if code := postJSON(t, p.base+"/v1/chats/"+c.ChatID+"/messages", c.VisitorToken, map[string]string{"text": text}, nil); code != 202 {
			t.Fatalf("visitor message in %s: %d", c.ChatID, code)
		}
	}
	tgCalls := func(method string, keep func(c tgfake.Call) bool) []tgfake.Call {
		return api.CallsWhere(func(c tgfake.Call) bool { return c.Method == method && keep(c) })
	}

	t.Run("old keys moved", func(t *testing.T) {
		left := func() []string { return oldKeys(t, r) }
		deadline := time.Now().Add(15 * time.Second)
		for len(left()) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if l := left(); len(l) > 0 {
			t.Errorf("%d adapter keys of the old format left after start, such as %v", len(l), l[:min(len(l), 5)])
		}
		for _, family := range []string{"refs:*", "ref:telegram:*", "ref:slack:*"} {
			if n, _ := r.Client.Keys(ctx, r.Prefix+family).Result(); len(n) == 0 {
				t.Errorf("no %s key: the old refs were not moved into the bridge's records", family)
			}
		}
	})

	t.Run("telegram", func(t *testing.T) {
		// The delivery the old process left half done (chat A's long
		// message: one piece of two sent) is finished, without showing its
		// first piece again: its progress (tg:dlv, pieces sent) is carried
		// into the bridge's (RefStore.PutProgress).
		partial := func(c tgfake.Call) bool {
			return c.Params["chat_id"] == strconv.FormatInt(group, 10) && strings.Contains(c.Params["text"], "😀 end")
		}
		wait.Within(t, 20*time.Second, "the second piece of the half-sent delivery", func() bool {
			return len(tgCalls("sendMessage", func(c tgfake.Call) bool { return partial(c) && !c.Failed })) > 0
		})
		if again := tgCalls("sendMessage", func(c tgfake.Call) bool { return strings.Contains(c.Params["text"], "A: long") }); len(again) != 0 {
			t.Errorf("the half-sent delivery %s sent its first piece again %d times", m.Telegram.Partial, len(again))
		}
		if th := tgCalls("sendMessage", partial)[0].Params["message_thread_id"]; th != strconv.Itoa(chatA.TGThread) {
			t.Errorf("the rest of chat A's long message went to topic %q, want %d", th, chatA.TGThread)
		}

		// carol replies to the visitor's old message in her private chat:
		// it reaches chat C. The repeated update (handled before the
		// upgrade) came first in the same Telegram chat, so it was
		// handled, and ignored, before this one.
		api.Push(tgfake.ReplyMessage(carol, "C: carol after the upgrade", chatC.TGVisitor[0].MessageID))
		inTranscript(t, chatC, "carol after the upgrade")
		if n := strings.Count(transcript(chatC), "reset link sent"); n != 1 {
			t.Errorf("carol's reply handled before the upgrade is in chat C %d times, want 1", n)
		}

		// alice writes in chat A's old forum topic: it reaches chat A.
		api.Push(tgfake.TopicMessage(alice, group, chatA.TGThread, "A: alice after the upgrade"))
		inTranscript(t, chatA, "alice after the upgrade")

		// A new visitor message of chat A goes to its old topic.
		visitorSays(t, chatA, "A: any news?")
		wait.Within(t, 15*time.Second, "chat A's new visitor message on Telegram", func() bool {
			return len(tgCalls("sendMessage", func(c tgfake.Call) bool { return strings.Contains(c.Params["text"], "any news?") && !c.Failed })) > 0
		})
		for _, c := range tgCalls("sendMessage", func(c tgfake.Call) bool { return strings.Contains(c.Params["text"], "any news?") }) {
			if c.Params["chat_id"] != strconv.FormatInt(group, 10) || c.Params["message_thread_id"] != strconv.Itoa(chatA.TGThread) {
				t.Errorf("chat A's visitor message went to chat %s topic %q, want %d topic %d", c.Params["chat_id"], c.Params["message_thread_id"], group, chatA.TGThread)
			}
		}

		// alice presses Accept on chat B's old offer in its topic: she
		// gets the chat, and the old offer is edited.
		offerB := chatB.TGOffers[0]
		api.Push(groupCallback(alice, "a:"+chatB.ChatID, group, chatB.TGThread, offerB.MessageID))
		inTranscript(t, chatB, "Alice joined the chat.")
		wait.Within(t, 15*time.Second, "chat B's old offer edited", func() bool {
			return len(tgCalls("editMessageText", func(c tgfake.Call) bool {
				return c.Params["chat_id"] == strconv.FormatInt(group, 10) && c.Params["message_id"] == strconv.Itoa(offerB.MessageID)
			})) > 0
		})
		if n := len(api.Calls("createForumTopic")); n != 0 {
			t.Errorf("%d forum topics created; the open chats have theirs", n)
		}
	})

	t.Run("slack", func(t *testing.T) {
		rootB, rootD, rootE := chatB.SlackRoots[0], chatD.SlackRoots[0], chatE.SlackRoots[0]

		// dave answers in chat E's old thread: it reaches chat E.
		sl.event(t, p.base, "EvUp1", map[string]any{"type": "message", "user": dave, "channel": rootE.Channel, "channel_type": "channel",
			"text": "E: dave after the upgrade", "ts": "1700003000.000100", "thread_ts": rootE.TS})
		inTranscript(t, chatE, "dave after the upgrade")

		// Slack sends an event handled before the upgrade again: ignored
		// (the process answers once it has handled an event).
		sl.event(t, p.base, "Ev0E1", map[string]any{"type": "message", "user": dave, "channel": rootE.Channel, "channel_type": "channel",
			"text": "E: dave: one is a hold, it drops in 3 days", "ts": "1700002000.000100", "thread_ts": rootE.TS})
		if n := strings.Count(transcript(chatE), "one is a hold"); n != 1 {
			t.Errorf("dave's message handled before the upgrade is in chat E %d times, want 1", n)
		}

		// A new visitor message of chat E goes to its old thread.
		visitorSays(t, chatE, "E: and the second charge?")
		post := sl.waitPost(t, rootE.Channel, "the second charge?")
		if post.ThreadTS != rootE.TS {
			t.Errorf("chat E's visitor message posted in thread %q, want %s", post.ThreadTS, rootE.TS)
		}

		// dave takes chat D with its old offer's Accept button: the old
		// root says so, and carol's old offer on Telegram is edited.
		sl.button(t, p.base, dave, chatD.ChatID, rootD.Channel, rootD.TS)
		inTranscript(t, chatD, "Dave joined the chat.")
		wait.Within(t, 15*time.Second, "chat D's old root marked taken", func() bool { return strings.Contains(sl.updatesOf(rootD.TS), "Taken by *Dave*") })
		offerD := chatD.TGOffers[0]
		wait.Within(t, 15*time.Second, "carol's old offer of chat D edited", func() bool {
			return len(tgCalls("editMessageText", func(c tgfake.Call) bool {
				return c.Params["chat_id"] == strconv.FormatInt(offerD.Chat, 10) && c.Params["message_id"] == strconv.Itoa(offerD.MessageID)
			})) > 0
		})

		// Chat B, taken on Telegram (above): its old root says who took it.
		wait.Within(t, 15*time.Second, "chat B's old root marked taken", func() bool { return strings.Contains(sl.updatesOf(rootB.TS), "Taken by *Alice*") })

		// The visitor closes chat E: its old root says so.
		if code := postJSON(t, p.base+"/v1/chats/"+chatE.ChatID+"/close", chatE.VisitorToken, map[string]string{}, nil); code != 200 {
			t.Fatalf("close chat E: %d", code)
		}
		wait.Within(t, 15*time.Second, "chat E's old root marked closed", func() bool { return strings.Contains(sl.updatesOf(rootE.TS), ":lock:") })
		if n := len(sl.postsWhere(func(p slackPost) bool {
			return p.Method == "chat.postMessage" && p.ThreadTS == "" && p.Channel != "D"+dave[1:]
		})); n != 0 {
			t.Errorf("%d new root messages in the channels; every chat has its root", n)
		}
	})

	// No timer fired because the data is old: the pending chats were not
	// turned into offline messages, the active ones not closed as idle.
	for _, name := range []string{"A", "B", "C", "D"} {
		if tr := transcript(m.Chats[name]); strings.Contains(tr, "nobody could answer right away") || strings.Contains(tr, "Closed after") {
			t.Errorf("chat %s timed out after the upgrade: %s", name, tr)
		}
	}

	// Nothing the adapters did since start wrote keys of the old format.
	if l := oldKeys(t, r); len(l) > 0 {
		t.Errorf("%d adapter keys of the old format at the end, such as %v", len(l), l[:min(len(l), 5)])
	}
}

// oldKeys lists the keys of upgradeOldFamilies in r (without the prefix).
func oldKeys(t *testing.T, r *redistest.Redis) []string {
	t.Helper()
	var out []string
	for _, family := range upgradeOldFamilies {
		ks, err := r.Client.Keys(context.Background(), r.Prefix+family+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			out = append(out, strings.TrimPrefix(k, r.Prefix))
		}
	}
	return out
}

// shiftTimes is the fixture's data as if recorded d later: the absolute
// times that decide what happens next move by d. Those are the timers
// (offer, queue and idle timers fire at their score), the pending queues'
// scores, the chats' times (the idle timer checks "last") and the agents'
// last activity. Stream ids (transcripts, outbox) stay as they are: they
// only order entries, new ones still come after them, and deliveries and
// read marks name them.
func shiftTimes(keys map[string]redistest.Entry, d time.Duration) map[string]redistest.Entry {
	ms := float64(d.Milliseconds())
	out := make(map[string]redistest.Entry, len(keys))
	for k, e := range keys {
		switch {
		case k == "timers" || strings.HasSuffix(k, "}:pending") || strings.HasSuffix(k, "}:offline"):
			zs := make([]redistest.ZMember, len(e.ZSet))
			for i, z := range e.ZSet {
				zs[i] = redistest.ZMember{Member: z.Member, Score: z.Score + ms}
			}
			e.ZSet = zs
		case strings.Contains(k, "}:chat:") || strings.HasPrefix(k, "agent:{"):
			h := make(map[string]string, len(e.Hash))
			for f, v := range e.Hash {
				switch f {
				case "created", "last", "accepted", "replied", "closed_at", "mailed_at", "last_activity":
					if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
						v = strconv.FormatInt(n+d.Milliseconds(), 10)
					}
				}
				h[f] = v
			}
			e.Hash = h
		}
		out[k] = e
	}
	return out
}
