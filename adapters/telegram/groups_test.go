package telegram

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

// testCanned are the canned replies of every property in the live tests.
var testCanned = map[string]string{"shipping": "We ship within 2 days <b>free</b>."}

// groupMessage is an agent's message in a group without topics, replying
// to the message replyTo when it is not 0.
func groupMessage(from, group int64, typ, text string, replyTo int) map[string]any {
	m := map[string]any{
		"message_id": 7, "date": time.Now().Unix(), "from": tgfake.User(from, "U"),
		"chat": map[string]any{"id": group, "type": typ, "title": "Support"}, "text": text,
	}
	if replyTo != 0 {
		m["reply_to_message"] = map[string]any{
			"message_id": replyTo, "date": time.Now().Unix(), "from": map[string]any{"id": 999, "is_bot": true, "first_name": "Onduty"},
			"chat": map[string]any{"id": group, "type": typ, "title": "Support"}, "text": "earlier",
		}
	}
	return map[string]any{"message": m}
}

// TestGroupWithoutTopics: a telegram_group that is a basic group, a
// supergroup without topics, or one whose topics were switched off after
// getChat was asked, gets each offer as a group message with an Accept
// button; the accepted offer is edited to "taken by"; visitor messages are
// posted tagged with their chat; an agent answers by replying to one, and
// talk in the group that replies to nothing is not relayed.
func TestGroupWithoutTopics(t *testing.T) {
	tests := []struct {
		name        string
		typ         string
		saysForum   bool
		topicTrials int // createForumTopic calls expected
	}{
		{"basic group", "group", false, 0},
		{"supergroup without topics", "supergroup", false, 0},
		{"topics switched off", "supergroup", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLiveEnv(t)
			l.api.GroupWithoutTopics(betaGroup, tt.typ, tt.saysForum)
			ctx := t.Context()
			l.command(t, carolTG, "/online")
			group := strconv.FormatInt(betaGroup, 10)

			chat, _, err := l.b.StartChat(ctx, "beta", bridge.Visitor{Name: "Walt <W>", PageURL: "https://beta.example/help"}, "Is anyone there?")
			if err != nil {
				t.Fatal(err)
			}
			events, cancel := l.b.SubscribeVisitor(chat.ID)
			t.Cleanup(cancel)
			offer := waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
				return c.Params["chat_id"] == group && !c.Failed && strings.Contains(c.Params["text"], "Is anyone there?")
			})[0]
			if offer.Params["message_thread_id"] != "" {
				t.Errorf("offer sent to thread %s", offer.Params["message_thread_id"])
			}
			if !strings.Contains(offer.Params["reply_markup"], `"a:`+string(chat.ID)+`"`) || !strings.Contains(offer.Params["text"], "Walt &lt;W&gt;") {
				t.Errorf("offer %v", offer.Params)
			}

			// Carol taps Accept on the group's offer: it is edited to "taken by".
			l.api.Push(tgfake.Callback(carolTG, "a:"+string(chat.ID), betaGroup, offer.ResultID))
			bridgetest.NextEvent(t, events, bridge.EventAgentJoined)
			waitCalls(t, l.api, "editMessageText", 1, func(c tgfake.Call) bool {
				return c.Params["chat_id"] == group && c.Params["message_id"] == strconv.Itoa(offer.ResultID) && strings.Contains(c.Params["text"], "taken by Carol")
			})

			// The visitor writes: posted in the group, tagged with the chat.
			if _, err := l.b.PostVisitorMessage(ctx, chat.ID, "Great, thanks", nil); err != nil {
				t.Fatal(err)
			}
			want := "<b>[Walt &lt;W&gt; · " + shortID(chat.ID) + "]</b> <blockquote>Great, thanks</blockquote>"
			msg := waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
				return c.Params["chat_id"] == group && !c.Failed && c.Params["text"] == want
			})[0]

			// Carol replies to it in the group: the visitor gets it, the group
			// is not sent a copy (it shows her message already).
			waitRouted(t, l, betaGroup, msg.ResultID)
			waitRouted(t, l, betaGroup, offer.ResultID)
			l.api.Push(groupMessage(carolTG, betaGroup, tt.typ, "Yes, Carol here.", msg.ResultID))
			if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != "Yes, Carol here." || ev.Message.Name != "Carol" {
				t.Errorf("visitor got %+v", ev.Message)
			}
			// A canned reply, as a reply to the offer.
			l.api.Push(groupMessage(carolTG, betaGroup, tt.typ, "/reply shipping", offer.ResultID))
			if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != testCanned["shipping"] {
				t.Errorf("visitor got %+v for /reply", ev.Message)
			}
			// Talk in the group that replies to nothing is not for the visitor.
			l.api.Push(groupMessage(carolTG, betaGroup, tt.typ, "lunch, anyone?", 0))
			l.api.Push(groupMessage(carolTG, betaGroup, tt.typ, "Anything else?", msg.ResultID))
			if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != "Anything else?" {
				t.Errorf("visitor got %+v, want the reply after the chatter", ev.Message)
			}
			msgs, _ := l.b.Transcript(ctx, chat.ID, "", 0)
			for _, m := range msgs {
				if strings.Contains(m.Text, "lunch") {
					t.Errorf("group chatter relayed: %+v", m)
				}
			}
			// A canned reply is shown in the group (the command was not it);
			// Carol's own replies are not echoed.
			waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
				return c.Params["chat_id"] == group && strings.Contains(c.Params["text"], "We ship within 2 days &lt;b&gt;free&lt;/b&gt;.")
			})
			for _, c := range l.api.Calls("sendMessage") {
				if c.Params["chat_id"] == group && strings.Contains(c.Params["text"], "Carol here") {
					t.Errorf("reply echoed into the group: %q", c.Params["text"])
				}
				if c.Params["chat_id"] == group && c.Params["message_thread_id"] != "" && !c.Failed {
					t.Errorf("message sent to a topic: %v", c.Params)
				}
			}

			// A second chat: the group's kind is known, no topic is tried again.
			chat2, _, err := l.b.StartChat(ctx, "beta", bridge.Visitor{Name: "Xena"}, "Second")
			if err != nil {
				t.Fatal(err)
			}
			waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
				return c.Params["chat_id"] == group && strings.Contains(c.Params["reply_markup"], string(chat2.ID))
			})
			if n := len(l.api.Calls("createForumTopic")); n != tt.topicTrials {
				t.Errorf("%d createForumTopic calls, want %d", n, tt.topicTrials)
			}
			if n := len(l.api.Calls("getChat")); n != 1 {
				t.Errorf("%d getChat calls, want 1", n)
			}

			// The visitor closes: the group is told.
			if err := l.b.CloseByVisitor(ctx, chat.ID); err != nil {
				t.Fatal(err)
			}
			wait.For(t, "closing in the group", func() bool {
				for _, c := range sentTo(l.api, betaGroup) {
					if strings.Contains(c.Params["text"], "Chat "+shortID(chat.ID)+" with Walt &lt;W&gt; closed.") {
						return true
					}
				}
				return false
			})
		})
	}
}

// TestForumGroupKindRemembered: a forum group is asked about once, and
// its topics are used as before.
func TestForumGroupKindRemembered(t *testing.T) {
	l := newLiveEnv(t)
	ctx := t.Context()
	l.command(t, carolTG, "/online")
	for i := range 2 {
		if _, _, err := l.b.StartChat(ctx, "beta", bridge.Visitor{Name: "V"}, "hello "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitCalls(t, l.api, "createForumTopic", 2, nil)
	if n := len(l.api.Calls("getChat")); n != 1 {
		t.Errorf("%d getChat calls, want 1", n)
	}
	if v, _ := l.rdb.Client.Get(ctx, l.a.keys.groupKind(betaGroup)).Result(); v != groupForum {
		t.Errorf("remembered kind %q", v)
	}
}

// TestTopicsSwitchedOffMidChat: a chat has a forum topic, then the group's
// topics are switched off: the next message is not lost but posted in the
// group itself, tagged with its chat, and replies to it answer the chat.
func TestTopicsSwitchedOffMidChat(t *testing.T) {
	l := newLiveEnv(t)
	ctx := t.Context()
	l.command(t, carolTG, "/online")
	group := strconv.FormatInt(betaGroup, 10)
	chat, _, err := l.b.StartChat(ctx, "beta", bridge.Visitor{Name: "Walt"}, "first")
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := l.b.SubscribeVisitor(chat.ID)
	t.Cleanup(cancel)
	waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == group && c.Params["message_thread_id"] != "" && strings.Contains(c.Params["text"], "first")
	})
	l.api.GroupWithoutTopics(betaGroup, "supergroup", false)
	if _, err := l.b.PostVisitorMessage(ctx, chat.ID, "second", nil); err != nil {
		t.Fatal(err)
	}
	want := "<b>[Walt · " + shortID(chat.ID) + "]</b> <blockquote>second</blockquote>"
	msg := waitCalls(t, l.api, "sendMessage", 1, func(c tgfake.Call) bool {
		return c.Params["chat_id"] == group && !c.Failed && c.Params["message_thread_id"] == "" && c.Params["text"] == want
	})[0]
	waitRouted(t, l, betaGroup, msg.ResultID)
	l.api.Push(groupMessage(carolTG, betaGroup, "supergroup", "Got it", msg.ResultID))
	if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != "Got it" {
		t.Errorf("visitor got %+v", ev.Message)
	}
}

// waitRouted waits until the bridge recorded which chat a message the
// adapter sent belongs to (just after Deliver returned it).
func waitRouted(t *testing.T, l *liveEnv, tgChat int64, msgID int) {
	t.Helper()
	wait.For(t, "message "+strconv.Itoa(msgID)+" routed", func() bool {
		chat, err := l.b.ChatOf(t.Context(), surface, bridge.RemoteRef{Conversation: strconv.FormatInt(tgChat, 10), Message: strconv.Itoa(msgID)})
		return err == nil && chat != ""
	})
}
