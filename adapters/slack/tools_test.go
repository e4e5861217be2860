package slack

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// TestCannedReplyAndBlock: "/onduty reply" lists the canned replies,
// "/onduty reply NAME" sends one in the agent's current chat (the visitor
// gets it, the chat's thread a copy), "/onduty block" blocks the visitor,
// "/onduty unblock" lifts it.
func TestCannedReplyAndBlock(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			fake := newFakeSlack(t)
			r := redistest.New(t)
			dir := testDirectory(t)
			log := testlog.Logger()
			store := presence.NewStore(r.Client, dir, presence.Keys{Prefix: r.Prefix}, time.Now)
			watcher := presence.NewWatcher(store, log)
			if err := watcher.Load(ctx); err != nil {
				t.Fatal(err)
			}
			canned := map[string]string{"shipping": "We ship within *2* days <soon>."}
			b, err := bridge.New(bridge.Config{
				Prefix: r.Prefix, Properties: map[presence.PropertyID]bridge.Routing{"acme": {Canned: canned}, "beta": {}},
				RetryMin: time.Millisecond, RetryMax: 50 * time.Millisecond, PollEvery: 20 * time.Millisecond,
			}, r.Client, store, watcher, log)
			if err != nil {
				t.Fatal(err)
			}
			a := newAdapter(t, fake, r, mode, dir)
			b.AddAdapter(a)
			var wg sync.WaitGroup
			wg.Go(func() { _ = watcher.Run(ctx) })
			wg.Go(func() {
				if err := b.Run(ctx); err != nil {
					t.Errorf("bridge Run: %v", err)
				}
			})
			t.Cleanup(func() { cancel(); wg.Wait() })
			hs := &harness{t: t, mode: mode, a: a, fake: fake, redis: r}
			wait.For(t, "adapter running", func() bool { return a.handler() != nil })
			// answered runs a command and waits for an answer containing want
			// (the immediate body, a late response_url post or an ephemeral).
			answered := func(text, want string) {
				t.Helper()
				body := hs.command("U111", "D111", text)
				wait.For(t, "an answer to "+text+" with "+want, func() bool {
					if strings.Contains(unJSON(body), want) {
						return true
					}
					for _, c := range fake.callsOf("response_url") {
						if strings.Contains(unJSON(c.Form.Get("raw")), want) {
							return true
						}
					}
					for _, c := range fake.callsOf("chat.postEphemeral") {
						if strings.Contains(blocksOf(c)+c.Form.Get("text"), want) {
							return true
						}
					}
					return false
				})
			}
			hs.command("U111", "D111", "online")
			answered("reply", "shipping — We ship within")

			chat, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Vera", IP: "192.0.2.77"}, "Where is my order?")
			if err != nil {
				t.Fatal(err)
			}
			rootTS := rootOf(t, fake, "C1", chat.ID)
			hs.button("U111", actionAccept, string(chat.ID), "C1", "")
			wait.For(t, "offer taken", func() bool {
				for _, c := range fake.callsOf("chat.update") {
					if c.Form.Get("ts") == rootTS && strings.Contains(blocksOf(c), "Taken by *Alice*") {
						return true
					}
				}
				return false
			})
			// Alice's current chat is the accepted one.
			hs.command("U111", "D111", "reply shipping")
			wait.For(t, "the visitor got the canned reply", func() bool {
				msgs, _ := b.Transcript(ctx, chat.ID, "", 0)
				for _, m := range msgs {
					if m.From == bridge.FromAgent && m.Agent == "alice" && m.Text == canned["shipping"] {
						return true
					}
				}
				return false
			})
			wait.For(t, "a copy in the chat's thread", func() bool { return inThreadCount(fake, rootTS, "We ship within") == 1 })
			answered("reply nothing", `There is no canned reply`)

			answered("block 2d", "Blocked the visitor of the chat with Vera until")
			if _, _, err := b.StartChat(ctx, "acme", bridge.Visitor{IP: "192.0.2.77"}, "again"); !errors.Is(err, bridge.ErrBlocked) {
				t.Errorf("new chat after /onduty block: %v", err)
			}
			answered("unblock", "Unblocked the visitor of the chat with Vera")
			if _, _, err := b.StartChat(ctx, "acme", bridge.Visitor{IP: "192.0.2.77"}, "again"); err != nil {
				t.Errorf("new chat after /onduty unblock: %v", err)
			}
		})
	}
}
