package slack

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
)

func TestEventsSignature(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	challenge := []byte(`{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	msg := eventBody("EvSig", map[string]any{"type": "message", "user": "U111", "text": "hi", "channel": "D1", "channel_type": "im", "ts": "1.1"})
	form := []byte(url.Values{"user_id": {"U111"}, "command": {"/onduty"}, "text": {"online"}}.Encode())
	forged := sign("not-the-secret", time.Now(), msg)
	stale := sign(testSecret, time.Now().Add(-10*time.Minute), msg)
	future := sign(testSecret, time.Now().Add(10*time.Minute), msg)
	tampered := sign(testSecret, time.Now(), msg)
	tests := []struct {
		name     string
		path     string
		ctype    string
		body     []byte
		hdr      http.Header
		wantCode int
		wantBody string
	}{
		{"url verification", "/slack/events", "application/json", challenge, sign(testSecret, time.Now(), challenge), 200, `{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}`},
		{"forged", "/slack/events", "application/json", msg, forged, 401, ""},
		{"replayed after 5 minutes", "/slack/events", "application/json", msg, stale, 401, ""},
		{"from the future", "/slack/events", "application/json", msg, future, 401, ""},
		{"body changed", "/slack/events", "application/json", append([]byte(" "), msg...), tampered, 401, ""},
		{"unsigned", "/slack/events", "application/json", msg, http.Header{}, 401, ""},
		{"forged command", "/slack/commands", "application/x-www-form-urlencoded", form, sign("nope", time.Now(), form), 401, ""},
		{"forged interaction", "/slack/interactions", "application/x-www-form-urlencoded", form, sign("nope", time.Now(), form), 401, ""},
		{"stale command", "/slack/commands", "application/x-www-form-urlencoded", form, sign(testSecret, time.Now().Add(-6*time.Minute), form), 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := hs.postRaw(tt.path, tt.ctype, tt.body, tt.hdr)
			if rec.Code != tt.wantCode {
				t.Fatalf("code %d, want %d (%s)", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantBody != "" && strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Errorf("body %s, want %s", rec.Body, tt.wantBody)
			}
		})
	}
	// A correctly signed message goes through, proving the refusals above
	// were about the signature; none of the refused ones reached the bridge.
	if rec := hs.post("/slack/events", "application/json", msg, nil); rec.Code != 200 {
		t.Fatalf("signed event: %d", rec.Code)
	}
	got := hs.h.WaitN(t, 1)
	if len(got) != 1 || got[0].DedupKey != "slack:EvSig" {
		t.Fatalf("bridge got %+v, want only the signed event", got)
	}
}

func TestEventsRetriesDeduplicated(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	body := eventBody("EvRetry1", map[string]any{"type": "message", "user": "U111", "text": "once", "channel": "D1", "channel_type": "im", "ts": "2.1"})
	for i, retry := range []string{"", "1", "2"} {
		hdr := http.Header{}
		if retry != "" {
			hdr.Set("X-Slack-Retry-Num", retry)
			hdr.Set("X-Slack-Retry-Reason", "http_timeout")
		}
		if rec := hs.post("/slack/events", "application/json", body, hdr); rec.Code != 200 {
			t.Fatalf("attempt %d: %d", i, rec.Code)
		}
	}
	// A later, different event from the same agent is handled after the
	// retries (same worker), so once it is seen, the retries are done.
	hs.post("/slack/events", "application/json", eventBody("EvRetry2", map[string]any{"type": "message", "user": "U111", "text": "twice", "channel": "D1", "channel_type": "im", "ts": "2.2"}), nil)
	got := hs.h.WaitN(t, 2)
	if len(got) != 2 {
		t.Fatalf("got %d actions, want 2: %+v", len(got), got)
	}
	if got[0].Text != "once" || got[0].DedupKey != "slack:EvRetry1" || got[1].Text != "twice" {
		t.Errorf("actions %+v", got)
	}
}

func TestSocketRetriesDeduplicated(t *testing.T) {
	hs := newHarness(t, ModeSocket)
	inner := map[string]any{"type": "message", "user": "U111", "text": "once", "channel": "D1", "channel_type": "im", "ts": "2.1"}
	hs.message("EvS1", inner)
	hs.message("EvS1", inner) // Slack redelivers on another envelope
	hs.message("EvS2", map[string]any{"type": "message", "user": "U111", "text": "next", "channel": "D1", "channel_type": "im", "ts": "2.2"})
	got := hs.h.WaitN(t, 2)
	if len(got) != 2 || got[0].Text != "once" || got[1].Text != "next" {
		t.Fatalf("actions %+v", got)
	}
	wait.For(t, "every envelope acked", func() bool { _, ok := hs.fake.ackFor("env-EvS2"); return ok })
}

func TestThreadReplies(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			hs := newHarness(t, mode)
			rootTS := hs.offer("chat1", "Hello, I need help")
			hs.h.SetReply(func(a bridge.Action) (bridge.Reply, error) {
				if a.Agent == "bob" {
					return bridge.Reply{Text: "Alice owns this chat; your reply was not sent.", Private: true}, nil
				}
				return bridge.Reply{}, nil
			})
			hs.message("Ev1", map[string]any{"user": "U111", "text": "Hi &amp; welcome &lt;3 <https://acme.example/faq|our FAQ>", "channel": "C1", "channel_type": "channel", "ts": "3.1", "thread_ts": rootTS})
			hs.message("Ev2", map[string]any{"user": "U222", "text": "me too", "channel": "C1", "channel_type": "channel", "ts": "3.2", "thread_ts": rootTS})
			hs.message("Ev3", map[string]any{"user": "U111", "text": "lunch?", "channel": "C1", "channel_type": "channel", "ts": "3.3"})
			hs.message("Ev4", map[string]any{"user": "U111", "text": "hello bot", "channel": "D111", "channel_type": "im", "ts": "3.4"})
			hs.message("Ev5", map[string]any{"user": "U111", "text": "unknown thread", "channel": "C1", "channel_type": "channel", "ts": "3.5", "thread_ts": "999.9"})
			got := hs.h.WaitN(t, 5)
			byKey := map[string]bridge.Action{}
			for _, a := range got {
				byKey[a.DedupKey] = a
			}
			want := map[string]bridge.Action{
				"slack:Ev1": {Kind: bridge.ActMessage, Surface: "slack", Agent: "alice", Chat: "chat1", Text: "Hi & welcome <3 our FAQ (https://acme.example/faq)", DedupKey: "slack:Ev1"},
				"slack:Ev2": {Kind: bridge.ActMessage, Surface: "slack", Agent: "bob", Chat: "chat1", Text: "me too", DedupKey: "slack:Ev2"},
				"slack:Ev3": {Kind: bridge.ActActivity, Surface: "slack", Agent: "alice", DedupKey: "slack:Ev3"},
				"slack:Ev4": {Kind: bridge.ActMessage, Surface: "slack", Agent: "alice", Text: "hello bot", DedupKey: "slack:Ev4"},
				"slack:Ev5": {Kind: bridge.ActActivity, Surface: "slack", Agent: "alice", DedupKey: "slack:Ev5"},
			}
			for k, w := range want {
				if g := byKey[k]; g.Kind != w.Kind || g.Agent != w.Agent || g.Chat != w.Chat || g.Text != w.Text || g.Surface != w.Surface {
					t.Errorf("%s: got %+v, want %+v", k, g, w)
				}
			}
			eph := hs.fake.waitCall(t, "chat.postEphemeral", 1)
			if eph.Form.Get("user") != "U222" || eph.Form.Get("channel") != "C1" || eph.Form.Get("thread_ts") != rootTS ||
				!strings.Contains(blocksOf(eph), "Alice owns this chat") {
				t.Errorf("ephemeral to non-owner: %v", eph.Form)
			}
		})
	}
}

func TestButtons(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			hs := newHarness(t, mode)
			hs.h.SetReply(func(a bridge.Action) (bridge.Reply, error) {
				if a.Kind == bridge.ActMonitor {
					return bridge.Reply{Text: "You are monitoring this chat.", Private: true}, nil
				}
				return bridge.Reply{}, nil
			})
			hs.button("U111", actionAccept, "chatA", "C1", "")
			hs.button("U222", actionMonitor, "chatA", "C1", "")
			hs.button("U111", actionStillHere, "yes", "D111", "")
			hs.button("U111", actionSwitch, "chatB", "D111", "")
			hs.button("U111", "someone_elses_button", "x", "C1", "")
			got := hs.h.WaitN(t, 4)
			want := []struct {
				kind  bridge.ActionKind
				agent string
				chat  bridge.ChatID
			}{
				{bridge.ActAccept, "alice", "chatA"},
				{bridge.ActMonitor, "bob", "chatA"},
				{bridge.ActStillHere, "alice", ""},
				{bridge.ActSwitch, "alice", "chatB"},
			}
			if len(got) != len(want) {
				t.Fatalf("got %d actions: %+v", len(got), got)
			}
			for _, w := range want {
				found := false
				for _, g := range got {
					if g.Kind == w.kind && string(g.Agent) == w.agent && g.Chat == w.chat && strings.HasPrefix(g.DedupKey, "slack:trigger:") {
						found = true
					}
				}
				if !found {
					t.Errorf("no %s by %s for %q in %+v", w.kind, w.agent, w.chat, got)
				}
			}
			eph := hs.fake.waitCall(t, "chat.postEphemeral", 1)
			if eph.Form.Get("user") != "U222" || !strings.Contains(blocksOf(eph), "monitoring") {
				t.Errorf("monitor reply: %v", eph.Form)
			}
			// The "Still on duty?" prompt loses its button once pressed.
			up := hs.fake.waitCall(t, "chat.update", 1)
			if up.Form.Get("channel") != "D111" || up.Form.Get("ts") != "1700000000.000001" ||
				strings.Contains(blocksOf(up), actionStillHere) || !strings.Contains(blocksOf(up), "Still on duty") {
				t.Errorf("prompt update %v", up.Form)
			}
			if n := len(hs.fake.callsOf("chat.update")); n != 1 {
				t.Errorf("%d updates, want only the prompt's", n)
			}
		})
	}
}

func TestSlashCommands(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			hs := newHarness(t, mode)
			hs.h.SetReply(func(a bridge.Action) (bridge.Reply, error) {
				switch a.Command {
				case "chats":
					return bridge.Reply{Text: "Your chats:", Private: true, Choices: []bridge.Choice{
						{Label: "Vera: Hello", Action: bridge.ActSwitch, Chat: "c1"},
						{Label: "Sam: Hi", Action: bridge.ActSwitch, Chat: "c2"},
					}}, nil
				case "online":
					return bridge.Reply{Text: "You are online.", Private: true}, nil
				case "close":
					return bridge.Reply{}, bridge.ErrUnavailable
				case "team":
					return bridge.Reply{Text: strings.Repeat("Alice: online, Bob: away & busy\n", 800)}, nil
				}
				return bridge.Reply{}, nil
			})
			tests := []struct {
				text, wantCmd, wantArgs string
				wantIn                  []string
			}{
				{"online", "online", "", []string{`"response_type":"ephemeral"`, "You are online."}},
				{"  Transfer   Bob Smith ", "transfer", "Bob Smith", nil},
				{"", "help", "", nil},
				{"chats", "chats", "", []string{`"action_id":"onduty_switch"`, `"value":"c1"`, `"value":"c2"`, "Vera: Hello"}},
				{"close", "close", "", []string{"try again"}},
			}
			if mode == ModeSocket {
				// An answer too big for an ack comes through the response_url.
				if body := hs.command("U111", "D111", "team"); body != "" {
					t.Errorf("oversized answer in the ack: %d bytes", len(body))
				}
				late := hs.fake.waitCall(t, "response_url", 1)
				if !strings.Contains(unJSON(late.Form.Get("raw")), "Bob: away &amp; busy") {
					t.Errorf("late oversized answer %.200s", late.Form.Get("raw"))
				}
				hs.h.Reset()
			}
			for i, tt := range tests {
				body := hs.command("U111", "D111", tt.text)
				got := hs.h.WaitN(t, i+1)[i]
				if got.Kind != bridge.ActCommand || got.Agent != "alice" || got.Command != tt.wantCmd || got.Args != tt.wantArgs {
					t.Errorf("%q: action %+v", tt.text, got)
				}
				for _, w := range tt.wantIn {
					if !strings.Contains(body, w) {
						t.Errorf("%q: answer %s lacks %s", tt.text, body, w)
					}
				}
				if tt.wantIn == nil && body != "" {
					t.Errorf("%q: answer %q, want none", tt.text, body)
				}
			}
		})
	}
}

// A bridge slower than Slack's 3 s: the command is acknowledged empty and the
// answer comes later through the response_url, or as an ephemeral message
// when that fails.
func TestSlashCommandLateAnswer(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			hs := newHarnessPrep(t, mode, func(a *Adapter) { a.syncWait = 20 * time.Millisecond })
			release := make(chan struct{})
			hs.h.SetReply(func(bridge.Action) (bridge.Reply, error) {
				<-release
				return bridge.Reply{Text: "Team: Alice online", Private: true}, nil
			})
			if body := hs.command("U111", "D111", "team"); body != "" {
				t.Errorf("immediate answer %q, want none", body)
			}
			release <- struct{}{}
			late := hs.fake.waitCall(t, "response_url", 1)
			if raw := unJSON(late.Form.Get("raw")); late.Form.Get("path") != "/response/U111" ||
				!strings.Contains(raw, `"response_type":"ephemeral"`) || !strings.Contains(raw, "Team: Alice online") {
				t.Errorf("late answer %v", late.Form)
			}
			// The response_url fails: an ephemeral message instead.
			hs.fake.failNext("response_url", failure{Status: http.StatusNotFound})
			if body := hs.command("U111", "D111", "team"); body != "" {
				t.Errorf("immediate answer %q, want none", body)
			}
			close(release)
			eph := hs.fake.waitCall(t, "chat.postEphemeral", 1)
			if eph.Form.Get("channel") != "D111" || eph.Form.Get("user") != "U111" || !strings.Contains(blocksOf(eph), "Team: Alice online") {
				t.Errorf("fallback answer %v", eph.Form)
			}
		})
	}
}

func TestStrangers(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			hs := newHarness(t, mode)
			rootTS := hs.offer("chatS", "hi")
			// Refused once a day whatever they send, and nothing reaches the bridge.
			body := hs.command("U999", "D999", "online")
			if !strings.Contains(body, "not set up as an onduty agent") || !strings.Contains(body, "ephemeral") {
				t.Errorf("first command answer %q", body)
			}
			if body := hs.command("U999", "D999", "online"); body != "" {
				t.Errorf("second command answer %q, want silence", body)
			}
			hs.message("EvX1", map[string]any{"user": "U998", "text": "hi bot", "channel": "D998", "channel_type": "im", "ts": "4.1"})
			hs.message("EvX2", map[string]any{"user": "U998", "text": "hello?", "channel": "D998", "channel_type": "im", "ts": "4.2"})
			hs.message("EvX3", map[string]any{"user": "U997", "text": "I'll take it", "channel": "C1", "channel_type": "channel", "ts": "4.3", "thread_ts": rootTS})
			hs.message("EvX4", map[string]any{"user": "U996", "text": "chatting in the channel", "channel": "C1", "channel_type": "channel", "ts": "4.4"})
			hs.button("U995", actionAccept, "chatS", "C1", "")
			// An agent's message afterwards is handled once the strangers' are done
			// for this agent's worker; wait for every ephemeral too.
			wait.For(t, "refusals", func() bool { return len(hs.fake.callsOf("chat.postEphemeral")) >= 3 })
			hs.message("EvA", map[string]any{"user": "U111", "text": "hi", "channel": "D111", "channel_type": "im", "ts": "4.9"})
			got := hs.h.WaitN(t, 1)
			if len(got) != 1 || got[0].Agent != "alice" {
				t.Fatalf("bridge got %+v, want alice's message only", got)
			}
			users := map[string]int{}
			for _, c := range hs.fake.callsOf("chat.postEphemeral") {
				users[c.Form.Get("user")]++
				if !strings.Contains(blocksOf(c), "not set up") {
					t.Errorf("refusal text %v", c.Form)
				}
			}
			if users["U998"] != 1 || users["U997"] != 1 || users["U995"] != 1 || users["U996"] != 0 {
				t.Errorf("refusals by user %v, want one each for U998, U997, U995 and none for U996", users)
			}
		})
	}
}

func TestBotMessagesIgnored(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			hs := newHarness(t, mode)
			hs.message("EvB1", map[string]any{"user": botUser, "text": "New chat", "channel": "C1", "channel_type": "channel", "ts": "5.1"})
			hs.message("EvB2", map[string]any{"subtype": "bot_message", "bot_id": "B777", "text": "other bot", "channel": "C1", "channel_type": "channel", "ts": "5.2"})
			hs.message("EvB3", map[string]any{"user": "U111", "bot_id": "BBOT", "text": "as alice via app", "channel": "D111", "channel_type": "im", "ts": "5.3"})
			hs.message("EvB4", map[string]any{"subtype": "message_changed", "channel": "D111", "channel_type": "im", "ts": "5.4",
				"message": map[string]any{"user": "U111", "text": "edited", "ts": "5.0"}})
			hs.message("EvB5", map[string]any{"type": "app_mention", "user": "U111", "text": "<@UBOT> hi", "channel": "C1", "ts": "5.5"})
			hs.message("EvOK", map[string]any{"user": "U111", "text": "real", "channel": "D111", "channel_type": "im", "ts": "5.9"})
			got := hs.h.WaitN(t, 1)
			if len(got) != 1 || got[0].Text != "real" {
				t.Fatalf("bridge got %+v, want only the real message", got)
			}
		})
	}
}

func TestHandlerErrorsTold(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	hs.h.SetReply(func(bridge.Action) (bridge.Reply, error) { return bridge.Reply{}, errors.New("boom") })
	hs.message("EvE", map[string]any{"user": "U111", "text": "x", "channel": "D111", "channel_type": "im", "ts": "6.1"})
	eph := hs.fake.waitCall(t, "chat.postEphemeral", 1)
	if !strings.Contains(blocksOf(eph), "didn't work") {
		t.Errorf("error reply %v", eph.Form)
	}
}

func TestNotReadyUntilRun(t *testing.T) {
	fake := newFakeSlack(t)
	a := newAdapter(t, fake, redistest.New(t), ModeEvents, testDirectory(t))
	hs := &harness{t: t, mode: ModeEvents, a: a, fake: fake}
	body := eventBody("EvEarly", map[string]any{"type": "message", "user": "U111", "text": "x", "channel": "D1", "channel_type": "im", "ts": "1.1"})
	if rec := hs.post("/slack/events", "application/json", body, nil); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("before Run: %d, want 503 so Slack retries", rec.Code)
	}
	ch := []byte(`{"type":"url_verification","challenge":"abc"}`)
	if rec := hs.post("/slack/events", "application/json", ch, nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "abc") {
		t.Errorf("challenge before Run: %d %s", rec.Code, rec.Body)
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct{ in, sub, args string }{
		{"", "help", ""},
		{"ONLINE", "online", ""},
		{"/away", "away", ""},
		{"alwayson  on", "alwayson", "on"},
		{"transfer  Bob  Smith ", "transfer", "Bob  Smith"},
	}
	for _, tt := range tests {
		sub, args := parseCommand(tt.in)
		if sub != tt.sub || args != tt.args {
			t.Errorf("parseCommand(%q) = %q, %q; want %q, %q", tt.in, sub, args, tt.sub, tt.args)
		}
	}
}

func TestCommandBody(t *testing.T) {
	b := commandBody(bridge.Reply{Text: "a <b> & c"})
	raw, _ := json.Marshal(b)
	if !strings.Contains(unJSON(string(raw)), `a &lt;b&gt; &amp; c`) {
		t.Errorf("body not escaped: %s", raw)
	}
	if commandBody(bridge.Reply{}) != nil {
		t.Error("empty reply should give no body")
	}
}

// TestAgentMessageWaitsOutStorageOutage: while the bridge's storage is down an
// agent's message is handed over again until it is taken — nothing is lost,
// nothing is told "try again", and the agent's next message keeps its place.
func TestAgentMessageWaitsOutStorageOutage(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	var failures atomic.Int32
	hs.h.SetReply(func(a bridge.Action) (bridge.Reply, error) {
		if a.Kind == bridge.ActMessage && failures.Add(1) <= 3 {
			return bridge.Reply{}, bridge.ErrUnavailable
		}
		return bridge.Reply{}, nil
	})
	hs.message("EvOut1", map[string]any{"user": "U111", "text": "sent during the outage", "channel": "D111", "channel_type": "im", "ts": "12.1"})
	hs.message("EvOut2", map[string]any{"user": "U111", "text": "sent next", "channel": "D111", "channel_type": "im", "ts": "12.2"})
	got := hs.h.WaitN(t, 5) // three refused tries, then both messages
	var texts []string
	for _, a := range got {
		texts = append(texts, a.Text)
	}
	want := []string{"sent during the outage", "sent during the outage", "sent during the outage", "sent during the outage", "sent next"}
	if strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Fatalf("handed to the bridge: %q, want %q", texts, want)
	}
	if n := len(hs.fake.callsOf("chat.postEphemeral")); n != 0 {
		t.Errorf("%d ephemeral notes; the agent should not be asked to resend", n)
	}
}

// TestAckAfterHandling: an event is acknowledged only once the bridge has
// handled it, so an instance that dies in between leaves it unacknowledged
// and Slack sends it again; handling slower than handleWait is acknowledged
// anyway, within Slack's 3 s.
func TestAckAfterHandling(t *testing.T) {
	for _, mode := range modes {
		for _, slow := range []bool{false, true} {
			name := mode + "/handled"
			if slow {
				name = mode + "/slower than handleWait"
			}
			t.Run(name, func(t *testing.T) {
				hs := newHarnessPrep(t, mode, func(a *Adapter) { a.handleWait = 300 * time.Millisecond })
				entered, release := make(chan struct{}, 1), make(chan struct{})
				var once atomic.Bool
				t.Cleanup(func() {
					if once.CompareAndSwap(false, true) {
						close(release)
					}
				})
				hs.h.SetReply(func(bridge.Action) (bridge.Reply, error) {
					entered <- struct{}{}
					<-release
					return bridge.Reply{}, nil
				})
				acked := make(chan int, 1)
				inner := map[string]any{"type": "message", "user": "U111", "text": "hold on", "channel": "D1", "channel_type": "im", "ts": "9.1"}
				if mode == ModeEvents {
					go func() {
						acked <- hs.postRaw("/slack/events", "application/json", eventBody("EvAck", inner), sign(testSecret, time.Now(), eventBody("EvAck", inner))).Code
					}()
				} else {
					hs.message("EvAck", inner)
					go func() {
						for {
							if _, ok := hs.fake.ackFor("env-EvAck"); ok {
								acked <- http.StatusOK
								return
							}
							time.Sleep(10 * time.Millisecond)
						}
					}()
				}
				select {
				case <-entered:
				case <-time.After(10 * time.Second):
					t.Fatal("the bridge never got the event")
				}
				if !slow {
					select {
					case code := <-acked:
						t.Fatalf("acknowledged (%d) while the bridge was still handling it", code)
					case <-time.After(150 * time.Millisecond):
					}
					once.Store(true)
					close(release)
				}
				select {
				case code := <-acked:
					if code != http.StatusOK {
						t.Fatalf("answered %d, want 200", code)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("never acknowledged")
				}
			})
		}
	}
}
