package slack

import (
	"context"
	"strconv"
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

// visitorLog collects a visitor's events under a mutex.
type visitorLog struct {
	mu     sync.Mutex
	events []bridge.VisitorEvent
}

func (v *visitorLog) has(match func(bridge.VisitorEvent) bool) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.events {
		if match(e) {
			return true
		}
	}
	return false
}

// TestConversation is the whole product path: a visitor starts a chat through
// the bridge's visitor API, it appears in the (fake) Slack channel, an agent
// accepts and answers in the thread, non-owners and notes stay private, the
// agent closes it, and the agent's presence follows.
func TestConversation(t *testing.T) {
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
			b, err := bridge.New(bridge.Config{
				Prefix: r.Prefix, Properties: map[presence.PropertyID]bridge.Routing{"acme": {}, "beta": {}},
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

			// Alice comes on duty from Slack.
			if body := hs.command("U111", "D111", "online"); !strings.Contains(strings.ToLower(body+lastEphemeral(fake)), "online") {
				t.Errorf("/onduty online answered %q", body)
			}
			st, err := store.Get(ctx, "alice")
			if err != nil || st.Status != presence.Online || time.Since(st.LastActivity) > time.Minute {
				t.Fatalf("alice after /onduty online: %+v %v", st, err)
			}

			// A visitor starts a chat on the widget.
			chat, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Vera", Email: "vera@example.com", PageURL: "https://acme.example/x",
				Browser: "Safari 17", OS: "macOS", Identity: &bridge.Identity{UserID: "u-9", Verified: true}}, "Where is order <42> & co?")
			if err != nil {
				t.Fatal(err)
			}
			events, stop := b.SubscribeVisitor(chat.ID)
			defer stop()
			vl := &visitorLog{}
			wg.Go(func() {
				for e := range events {
					vl.mu.Lock()
					vl.events = append(vl.events, e)
					vl.mu.Unlock()
				}
			})
			var offerCall apiCall
			wait.For(t, "offer in the channel", func() bool {
				for _, c := range fake.callsOf("chat.postMessage") {
					if c.Form.Get("channel") == "C1" && strings.Contains(blocksOf(c), `"value":"`+string(chat.ID)+`"`) {
						offerCall = c
						return true
					}
				}
				return false
			})
			if bl := blocksOf(offerCall); !strings.Contains(bl, "Where is order &lt;42&gt; &amp; co?") || !strings.Contains(bl, "onduty_accept") ||
				!strings.Contains(bl, `_Verified user:_ u-9\n_Page:_ https://acme.example/x\n_Browser:_ Safari 17 on macOS`) {
				t.Errorf("offer blocks %s", bl)
			}
			rootTS := rootOf(t, fake, "C1", chat.ID)

			// Alice accepts: the offer shows her as the owner, buttons gone.
			hs.button("U111", actionAccept, string(chat.ID), "C1", "")
			wait.For(t, "offer updated to taken", func() bool {
				for _, c := range fake.callsOf("chat.update") {
					if c.Form.Get("ts") == rootTS && strings.Contains(blocksOf(c), "Taken by *Alice*") && !strings.Contains(blocksOf(c), "onduty_accept") {
						return true
					}
				}
				return false
			})
			wait.For(t, "visitor told Alice joined", func() bool {
				return vl.has(func(e bridge.VisitorEvent) bool { return e.Type == bridge.EventAgentJoined && e.Agent == "Alice" })
			})

			// Alice answers in the thread; the visitor gets it.
			hs.message("EvC1", map[string]any{"user": "U111", "text": "Hi Vera &amp; welcome, checking <https://acme.example/o/42|order 42>", "channel": "C1", "channel_type": "channel", "ts": "9.1", "thread_ts": rootTS})
			wait.For(t, "visitor got Alice's answer", func() bool {
				return vl.has(func(e bridge.VisitorEvent) bool {
					return e.Type == bridge.EventMessage && e.Message != nil && e.Message.From == bridge.FromAgent &&
						e.Message.Text == "Hi Vera & welcome, checking order 42 (https://acme.example/o/42)"
				})
			})
			// Slack redelivers the same event: nothing new reaches the visitor.
			hs.message("EvC1", map[string]any{"user": "U111", "text": "Hi Vera &amp; welcome, checking <https://acme.example/o/42|order 42>", "channel": "C1", "channel_type": "channel", "ts": "9.1", "thread_ts": rootTS})

			// The visitor writes; it lands in the thread.
			if _, err := b.PostVisitorMessage(ctx, chat.ID, "Thanks! <@channel>", nil); err != nil {
				t.Fatal(err)
			}
			wait.For(t, "visitor message in the thread", func() bool {
				for _, c := range fake.callsOf("chat.postMessage") {
					if c.Form.Get("thread_ts") == rootTS && strings.Contains(blocksOf(c), `*Visitor:*\n>Thanks! &lt;@channel&gt;`) {
						return true
					}
				}
				return false
			})

			// The visitor sends a screenshot: named in the thread, and the file
			// itself shared there through Slack's upload flow.
			shot := []byte("\x89PNG fake screenshot")
			att, err := b.PutFile(ctx, chat.ID, "screen.png", "image/png", shot)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.PostVisitorMessage(ctx, chat.ID, "here is a screenshot", &att); err != nil {
				t.Fatal(err)
			}
			var done apiCall
			wait.For(t, "the screenshot shared in the thread", func() bool {
				calls := fake.callsOf("files.completeUploadExternal")
				if len(calls) == 0 {
					return false
				}
				done = calls[0]
				return true
			})
			if done.Form.Get("channel_id") != "C1" || done.Form.Get("thread_ts") != rootTS {
				t.Errorf("file shared to %q thread %q, want C1 thread %s", done.Form.Get("channel_id"), done.Form.Get("thread_ts"), rootTS)
			}
			if ups := fake.uploaded(); len(ups) != 1 || ups[0].Name != "screen.png" || string(ups[0].Content) != string(shot) || ups[0].Length != strconv.Itoa(len(shot)) {
				t.Errorf("uploads %+v, want the screenshot once", ups)
			}
			if n := inThreadCount(fake, rootTS, "screen.png (image/png"); n != 1 {
				t.Errorf("the screenshot named %d times in the thread, want 1", n)
			}

			// Bob is not the owner: told privately, the visitor sees nothing.
			hs.message("EvC2", map[string]any{"user": "U222", "text": "I can take it", "channel": "C1", "channel_type": "channel", "ts": "9.2", "thread_ts": rootTS})
			wait.For(t, "bob told privately", func() bool {
				for _, c := range fake.callsOf("chat.postEphemeral") {
					if c.Form.Get("user") == "U222" && c.Form.Get("thread_ts") == rootTS && strings.Contains(blocksOf(c), "Alice is handling this chat") {
						return true
					}
				}
				return false
			})
			// Alice leaves a note for the team.
			hs.message("EvC3", map[string]any{"user": "U111", "text": "// VIP customer", "channel": "C1", "channel_type": "channel", "ts": "9.3", "thread_ts": rootTS})

			// Alice sends a file in the thread; the visitor gets it.
			hs.message("EvC4", map[string]any{"subtype": "file_share", "user": "U111", "text": "", "channel": "C1", "channel_type": "channel",
				"ts": "9.4", "thread_ts": rootTS, "files": []any{fileJSON(fake, "receipt.txt", 33)}})
			var agentFile *bridge.Attachment
			wait.For(t, "visitor got the file", func() bool {
				return vl.has(func(e bridge.VisitorEvent) bool {
					if e.Message != nil && e.Message.From == bridge.FromAgent && e.Message.Attachment != nil {
						agentFile = e.Message.Attachment
						return true
					}
					return false
				})
			})
			if _, data, err := b.File(ctx, chat.ID, agentFile.Key); err != nil || string(data) != fileContent("receipt.txt") {
				t.Errorf("file %+v: %q %v", agentFile, data, err)
			}

			// Alice answers from her DM with the bot (plain text: her one
			// chat): the visitor gets it, and the team's thread gets a copy;
			// what she wrote in the thread itself was not echoed there.
			hs.message("EvC5", map[string]any{"user": "U111", "text": "Sent from my DM", "channel": "D111", "channel_type": "im", "ts": "9.5"})
			wait.For(t, "visitor got the DM answer", func() bool {
				return vl.has(func(e bridge.VisitorEvent) bool { return e.Message != nil && e.Message.Text == "Sent from my DM" })
			})
			inThread := func(text string) int { return inThreadCount(fake, rootTS, text) }
			wait.For(t, "the DM answer copied into the thread", func() bool { return inThread("*Alice:* Sent from my DM") == 1 })
			if n := inThread("Hi Vera"); n != 0 {
				t.Errorf("Alice's answer written in the thread was echoed into it %d times", n)
			}

			// Alice closes the chat with the slash command.
			hs.command("U111", "C1", "close")
			wait.For(t, "visitor told the chat closed", func() bool {
				return vl.has(func(e bridge.VisitorEvent) bool { return e.Type == bridge.EventChatClosed })
			})
			wait.For(t, "offer updated to closed", func() bool {
				for _, c := range fake.callsOf("chat.update") {
					if c.Form.Get("ts") == rootTS && strings.Contains(blocksOf(c), "Chat closed") {
						return true
					}
				}
				return false
			})

			// The visitor rates it: the rating lands in the chat's thread.
			if _, err := b.Rate(ctx, chat.ID, 3, "ok <!channel>"); err != nil {
				t.Fatal(err)
			}
			wait.For(t, "the rating in the thread", func() bool {
				for _, c := range fake.callsOf("chat.postMessage") {
					if c.Form.Get("thread_ts") == rootTS && strings.Contains(blocksOf(c), "rated this chat 3/5") {
						if strings.Contains(blocksOf(c), "<!channel>") {
							t.Errorf("the comment pinged the channel: %s", blocksOf(c))
						}
						return true
					}
				}
				return false
			})

			// The transcript holds exactly what the visitor may see, once.
			ms, err := b.Transcript(ctx, chat.ID, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, m := range ms {
				if m.From != bridge.FromSystem {
					lines = append(lines, string(m.From)+": "+m.Text)
				}
			}
			want := []string{
				"visitor: Where is order <42> & co?",
				"agent: Hi Vera & welcome, checking order 42 (https://acme.example/o/42)",
				"visitor: Thanks! <@channel>",
				"visitor: here is a screenshot",
				"agent: ", // the file
				"agent: Sent from my DM",
			}
			if strings.Join(lines, "\n") != strings.Join(want, "\n") {
				t.Errorf("transcript:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
			}
			if vl.has(func(e bridge.VisitorEvent) bool {
				return e.Message != nil && (strings.Contains(e.Message.Text, "take it") || strings.Contains(e.Message.Text, "VIP"))
			}) {
				t.Error("the visitor saw a non-owner's message or a note")
			}
			// Presence followed the agents: both were active on Slack just now.
			for _, id := range []presence.AgentID{"alice", "bob"} {
				st, err := store.Get(ctx, id)
				if err != nil || time.Since(st.LastActivity) > time.Minute {
					t.Errorf("%s last activity %v (%v)", id, st.LastActivity, err)
				}
			}
			stop()
		})
	}
}

func lastEphemeral(f *fakeSlack) string {
	cs := f.callsOf("chat.postEphemeral")
	if len(cs) == 0 {
		return ""
	}
	return blocksOf(cs[len(cs)-1])
}

// inThreadCount counts the messages in channel C1's thread threadTS that
// contain text.
func inThreadCount(fake *fakeSlack, threadTS, text string) int {
	n := 0
	for _, c := range fake.callsOf("chat.postMessage") {
		if c.Form.Get("channel") == "C1" && c.Form.Get("thread_ts") == threadTS && strings.Contains(blocksOf(c), text) {
			n++
		}
	}
	return n
}
