package telegram

import (
	"errors"
	"strings"
	"testing"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

// TestCannedReplyAndBlockFromPrivateChat: /reply lists the canned replies,
// /reply NAME (replying to the visitor's message) sends one, /block blocks
// the visitor, /unblock lifts it: all from the agent's private chat.
func TestCannedReplyAndBlockFromPrivateChat(t *testing.T) {
	l := newLiveEnv(t)
	ctx := t.Context()
	l.command(t, aliceTG, "/online")
	if got := l.command(t, aliceTG, "/reply"); !strings.Contains(got, "Canned replies for Acme:") || !strings.Contains(got, "• shipping — We ship within 2 days &lt;b&gt;free&lt;/b&gt;.") {
		t.Errorf("/reply: %q", got)
	}
	chat, _, err := l.b.StartChat(ctx, "acme", bridge.Visitor{Name: "Vera", IP: "203.0.113.50"}, "Where is my parcel?")
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := l.b.SubscribeVisitor(chat.ID)
	t.Cleanup(cancel)
	var offer tgfake.Call
	wait.For(t, "offer to alice", func() bool {
		for _, c := range sentTo(l.api, aliceTG) {
			if strings.Contains(c.Params["text"], "Where is my parcel?") {
				offer = c
				return true
			}
		}
		return false
	})
	waitRouted(t, l, aliceTG, offer.ResultID)
	l.api.Push(tgfake.ReplyMessage(aliceTG, "/reply shipping", offer.ResultID))
	bridgetest.NextEvent(t, events, bridge.EventAgentJoined)
	if ev := bridgetest.NextEvent(t, events, bridge.EventMessage); ev.Message.Text != testCanned["shipping"] || ev.Message.Name != "Alice" {
		t.Errorf("visitor got %+v", ev.Message)
	}
	waitAnswer(t, l, aliceTG, "You're now chatting with Vera")
	l.api.Push(tgfake.PrivateMessage(aliceTG, "/reply nope"))
	waitAnswer(t, l, aliceTG, `There is no canned reply "nope" for Acme`)

	l.api.Push(tgfake.ReplyMessage(aliceTG, "/block 3d", offer.ResultID))
	waitAnswer(t, l, aliceTG, "Blocked the visitor of the chat with Vera until")
	if _, _, err := l.b.StartChat(ctx, "acme", bridge.Visitor{IP: "203.0.113.50"}, "again"); !errors.Is(err, bridge.ErrBlocked) {
		t.Errorf("new chat after /block: %v", err)
	}
	// The chat was closed by the block; /unblock still finds it (current chat).
	l.api.Push(tgfake.PrivateMessage(aliceTG, "/unblock"))
	waitAnswer(t, l, aliceTG, "Unblocked the visitor of the chat with Vera")
	if _, _, err := l.b.StartChat(ctx, "acme", bridge.Visitor{IP: "203.0.113.50"}, "again"); err != nil {
		t.Errorf("new chat after /unblock: %v", err)
	}
}

// waitAnswer waits for a message to the Telegram user containing want.
func waitAnswer(t *testing.T, l *liveEnv, to int64, want string) {
	t.Helper()
	wait.For(t, "an answer with "+want, func() bool {
		for _, c := range sentTo(l.api, to) {
			if strings.Contains(c.Params["text"], want) {
				return true
			}
		}
		return false
	})
}
