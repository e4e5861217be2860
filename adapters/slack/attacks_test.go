package slack

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// TestSlackVisitorTextArrivesEscaped: mentions, links and markup in what a
// visitor types (name, page, messages) reach Slack as text — never as
// <!channel> pings, <@U…> mentions or <url|label> links — in the blocks and
// in the notification text, and without control characters.
func TestSlackVisitorTextArrivesEscaped(t *testing.T) {
	fake := newFakeSlack(t)
	l := newLiveSlack(t, fake)
	b, hs, ctx := l.b, l.hs, t.Context()
	hs.command("U111", "D111", "online")

	visitor := bridge.Visitor{Name: "<!channel> Eve\n*Email*\nboss@acme.example", PageURL: "https://acme.example/?<@U222>"}
	chat, _, err := b.StartChat(ctx, "acme", visitor, "first <!here>")
	if err != nil {
		t.Fatal(err)
	}
	rootTS := rootOf(t, fake, "C1", chat.ID)
	for _, c := range fake.callsOf("chat.postMessage") {
		if c.Form.Get("ts") == "" && strings.Contains(unJSON(c.Form.Get("blocks")), `Eve\n`) {
			t.Errorf("the visitor's name spans lines in the root message: %s", blocksOf(c))
		}
	}
	hs.button("U111", actionAccept, string(chat.ID), "C1", "")

	texts := []struct{ sent, want string }{
		{"<!channel>", "&lt;!channel&gt;"},
		{"<!here> and <!everyone>", "&lt;!here&gt; and &lt;!everyone&gt;"},
		{"<@U123> hi", "&lt;@U123&gt; hi"},
		{"<https://evil.example|click here>", "&lt;https://evil.example|click here&gt;"},
		{"<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"},
		{"&lt; literally", "&amp;lt; literally"},
		{"bell\a nul\x00 esc\x1b[31m del\x7f c1\u0085 end", "bell nul esc[31m del c1 end"},
	}
	// One at a time: messages queued together arrive merged, with a
	// notification text cut short.
	for i, tt := range texts {
		if _, err := b.PostVisitorMessage(ctx, chat.ID, fmt.Sprintf("m%d %s", i, tt.sent), nil); err != nil {
			t.Fatal(err)
		}
		tag := fmt.Sprintf("m%d ", i)
		var c apiCall
		wait.For(t, "message "+tag, func() bool {
			for _, x := range fake.callsOf("chat.postMessage") {
				if x.Form.Get("thread_ts") == rootTS && strings.Contains(x.Form.Get("blocks"), tag) {
					c = x
					return true
				}
			}
			return false
		})
		if bl := blocksOf(c); !strings.Contains(bl, tag+tt.want) {
			t.Errorf("%q arrived in blocks %s, want %q", tt.sent, bl, tag+tt.want)
		}
		if txt := c.Form.Get("text"); !strings.Contains(txt, tag+tt.want) {
			t.Errorf("%q arrived as notification text %q, want %q", tt.sent, txt, tag+tt.want)
		}
	}
	fake.mu.Lock()
	all := append([]apiCall(nil), fake.calls...)
	fake.mu.Unlock()
	for _, c := range all {
		for k, vs := range c.Form {
			for _, v := range vs {
				v = unJSON(v)
				for _, raw := range []string{"<!channel>", "<!here>", "<!everyone>", "<@U123>", "<@U222>", "<https://evil"} {
					if strings.Contains(v, raw) {
						t.Errorf("%s %s carries %s unescaped: %s", c.Method, k, raw, v)
					}
				}
				if strings.IndexFunc(strings.NewReplacer(`\n`, "", `\t`, "").Replace(v), isBadControl) >= 0 ||
					strings.Contains(v, `\u0000`) || strings.Contains(v, `\u001b`) || strings.Contains(v, `\u0007`) {
					t.Errorf("%s %s carries a control character: %q", c.Method, k, v)
				}
			}
		}
	}
}

// isBadControl: a control character other than tab and newline.
func isBadControl(r rune) bool {
	return unicode.IsControl(r) && r != '\n' && r != '\t'
}

// TestOversizeCallbacks: a Slack callback over 1 MiB is refused with 413 on
// every events-mode path, signed or not, and reaches nothing.
func TestOversizeCallbacks(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	big := []byte(`{"type":"event_callback","event_id":"EvBig","event":{"type":"message","user":"U111","channel":"D1","channel_type":"im","ts":"1.1","text":"` +
		strings.Repeat("x", maxBody) + `"}}`)
	for _, path := range []string{"/slack/events", "/slack/commands", "/slack/interactions"} {
		t.Run(path, func(t *testing.T) {
			if rec := hs.post(path, "application/json", big, nil); rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("signed: %d, want 413", rec.Code)
			}
			if rec := hs.postRaw(path, "application/json", big, http.Header{}); rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("unsigned: %d, want 413", rec.Code)
			}
		})
	}
	if got := hs.h.Actions(); len(got) != 0 {
		t.Errorf("refused callbacks reached the bridge: %+v", got)
	}
}

// TestSlackCommandsWithoutPermission: an agent without any of the three
// permissions runs every presence command through the real bridge: each is
// refused with a clear reply and the stored presence does not change.
func TestSlackCommandsWithoutPermission(t *testing.T) {
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme"}, {ID: "beta", Name: "Beta"}},
		[]presence.Agent{{ID: "pat", Name: "Pat", Properties: []presence.PropertyID{"acme"}, Accounts: slackAccount("U444"), Permissions: []presence.Permission{}}})
	if err != nil {
		t.Fatal(err)
	}
	l := newLiveSlackDir(t, newFakeSlack(t), dir)
	ctx := t.Context()
	l.hs.command("U444", "D444", "status") // first contact counts as coming online (SPEC §2)
	before, err := l.store.Get(ctx, "pat")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"online", "away", "offline", "invisible", "alwayson on", "alwayson off"} {
		if body := l.hs.command("U444", "D444", cmd); !strings.Contains(body, "not allowed") {
			t.Errorf("/onduty %s answered %q, want a refusal", cmd, body)
		}
	}
	after, err := l.store.Get(ctx, "pat")
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != before.Status || after.Condition != before.Condition || before.Status == "" {
		t.Errorf("presence changed from %+v to %+v", before, after)
	}
}

// TestSlashCommandReplayAppliedOnce: a correctly signed slash command sent
// again within the 5-minute window (a replay, or Slack's own retry) is
// applied once: by trigger_id, or without one by its signature (which
// covers the timestamp and the body). Different commands still all apply.
func TestSlashCommandReplayAppliedOnce(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	form := func(text, trigger string) []byte {
		v := url.Values{"token": {"x"}, "team_id": {"T1"}, "channel_id": {"D111"}, "user_id": {"U111"}, "user_name": {"u"},
			"command": {"/onduty"}, "text": {text}}
		if trigger != "" {
			v.Set("trigger_id", trigger)
		}
		return []byte(v.Encode())
	}
	const ctype = "application/x-www-form-urlencoded"
	replay := func(body []byte, hdr http.Header) {
		for i := range 3 {
			if rec := hs.postRaw("/slack/commands", ctype, body, hdr); rec.Code != 200 {
				t.Fatalf("attempt %d: %d %s", i, rec.Code, rec.Body)
			}
		}
	}
	withTrigger := form("away", "trig-replayed")
	replay(withTrigger, sign(testSecret, time.Now(), withTrigger))
	noTrigger := form("online", "")
	replay(noTrigger, sign(testSecret, time.Now(), noTrigger))
	// The same text signed at another time is another command.
	later := sign(testSecret, time.Now().Add(time.Second), noTrigger)
	replay(noTrigger, later)
	// A last, different command: handled after the others (same worker).
	last := form("status", "trig-last")
	hs.postRaw("/slack/commands", ctype, last, sign(testSecret, time.Now(), last))
	got := hs.h.WaitN(t, 4)
	var cmds []string
	for _, a := range got {
		cmds = append(cmds, a.Command)
	}
	if strings.Join(cmds, " ") != "away online online status" {
		t.Errorf("commands applied: %q, want away online online status", cmds)
	}
	if got[0].DedupKey != "slack:trigger:trig-replayed" || !strings.HasPrefix(got[1].DedupKey, "slack:cmdsig:v0=") {
		t.Errorf("dedup keys %q %q", got[0].DedupKey, got[1].DedupKey)
	}
}

// TestSocketSlashCommandRedeliveredOnce: in Socket Mode a command
// redelivered with the same trigger_id applies once.
func TestSocketSlashCommandRedeliveredOnce(t *testing.T) {
	hs := newHarness(t, ModeSocket)
	fields := map[string]string{"token": "x", "team_id": "T1", "channel_id": "D111", "user_id": "U111", "user_name": "u",
		"command": "/onduty", "text": "away", "trigger_id": "trig-socket"}
	hs.fake.send("cmd-a", "slash_commands", fields)
	hs.fake.send("cmd-b", "slash_commands", fields)
	fields["text"], fields["trigger_id"] = "status", "trig-socket-2"
	hs.fake.send("cmd-c", "slash_commands", fields)
	got := hs.h.WaitN(t, 2)
	wait.For(t, "every envelope acked", func() bool { _, ok := hs.fake.ackFor("cmd-c"); return ok })
	if got = hs.h.Actions(); len(got) != 2 || got[0].Command != "away" || got[1].Command != "status" {
		t.Errorf("actions %+v", got)
	}
}
