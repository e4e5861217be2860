package slack

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"

	"github.com/onduty/onduty/bridge"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestRenderGolden(t *testing.T) {
	chat := bridge.Chat{ID: "Zx9_chat-01", Property: "acme", State: bridge.Pending,
		Visitor: bridge.Visitor{Name: "Vera <@U111>", Email: "vera@example.com", PageURL: "https://acme.example/pricing?plan=pro&seats=3"}}
	long := strings.Repeat("Fish & chips <3 ", 250) // 4000 runes, 6250 once escaped
	tests := []struct {
		name string
		got  []rendered
	}{
		{"offer", renderRoot(rootView{Chat: chat, Property: "Acme & Co", First: "Hi! <!channel> *urgent* & <https://evil.example|click>", Status: "Waiting for an agent", Accept: true})},
		{"offer_monitor_offline", renderRoot(rootView{Chat: bridge.Chat{ID: "c2", Offline: true}, Property: "Beta", First: "Call me back", Status: "Offline message: answer in the thread", Accept: true, Monitor: true})},
		{"taken", renderRoot(rootView{Chat: chat, Property: "Acme & Co", First: "Hi!", Status: ":white_check_mark: Taken by *Alice*"})},
		{"message_visitor_long", renderMessage(bridge.Message{From: bridge.FromVisitor, Text: long})},
		{"message_visitor_fake_agent", renderMessage(bridge.Message{From: bridge.FromVisitor, Text: "thanks\n\n*Alice:* refund approved - confirm at https://evil.example/pay\n> _quoted_ `code` ~gone~"})},
		{"message_agent", renderMessage(bridge.Message{From: bridge.FromAgent, Agent: "alice", Name: "Alice", Text: "On it > 2 min"})},
		{"message_note", renderMessage(bridge.Message{From: bridge.FromAgent, Agent: "bob", Name: "Bob", Note: true, Text: "// VIP customer"})},
		{"message_system_attachment", renderMessage(bridge.Message{From: bridge.FromSystem, Text: "Visitor sent a file",
			Attachment: &bridge.Attachment{Key: "k", Name: "invoice.pdf", MIME: "application/pdf", Size: 1234}})},
		{"notice_choices", renderNotice("Your chats:", []bridge.Choice{{Label: "Vera: Hi! <!channel>", Action: bridge.ActSwitch, Chat: "c1"}, {Label: "Accept Sam", Action: bridge.ActAccept, Chat: "c2"}})},
		{"prompt", renderPrompt("Still on duty?")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLimits(t, tt.got)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(tt.got); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			path := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create)", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(got)) {
				t.Errorf("%s differs from golden file:\n%s", tt.name, got)
			}
		})
	}
}

// checkLimits asserts Slack's limits on every message.
func checkLimits(t *testing.T, msgs []rendered) {
	t.Helper()
	for _, m := range msgs {
		if len(m.Blocks) == 0 || len(m.Blocks) > maxBlocks {
			t.Errorf("%d blocks", len(m.Blocks))
		}
		total := len(m.Text)
		for _, b := range m.Blocks {
			switch b := b.(type) {
			case *slackapi.SectionBlock:
				if b.Text != nil {
					n := utf8.RuneCountInString(b.Text.Text)
					total += n
					if n > maxSectionText || n == 0 {
						t.Errorf("section text of %d characters", n)
					}
				}
			case *slackapi.ActionBlock:
				for _, e := range b.Elements.ElementSet {
					if btn, ok := e.(*slackapi.ButtonBlockElement); ok && (len(btn.Value) > maxButtonValue || utf8.RuneCountInString(btn.Text.Text) > 75) {
						t.Errorf("button %q value %d bytes", btn.Text.Text, len(btn.Value))
					}
				}
			}
		}
		if total > maxMessageText {
			t.Errorf("message of %d characters", total)
		}
	}
}

func TestLongMessageSplit(t *testing.T) {
	long := strings.Repeat("&", 4000) // the worst case: 20000 characters escaped
	msgs := renderMessage(bridge.Message{From: bridge.FromVisitor, Text: long})
	checkLimits(t, msgs)
	var joined strings.Builder
	for _, m := range msgs {
		for _, b := range m.Blocks {
			// Each block is one line of the quote (the text has no newline).
			joined.WriteString(strings.TrimPrefix(strings.TrimPrefix(b.(*slackapi.SectionBlock).Text.Text, "*Visitor:*\n"), ">"))
		}
	}
	if got := joined.String(); got != escape(long) {
		t.Error("split pieces do not join to the escaped text")
	}
	// 200 paragraphs of 2900 characters: more than one message's worth.
	huge := strings.Repeat(strings.Repeat("word ", 580)+"\n", 200)
	msgs = renderNotice(huge, nil)
	if len(msgs) < 2 {
		t.Errorf("%d messages for %d characters", len(msgs), len(huge))
	}
	checkLimits(t, msgs)
}

func TestSplitEscaped(t *testing.T) {
	alphabet := []rune("ab &<>\né日🙂")
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		n := r.IntN(300)
		var sb strings.Builder
		for range n {
			sb.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		limit := 5 + r.IntN(40)
		pieces := splitEscaped(s, limit)
		if strings.Join(pieces, "") != escape(s) {
			t.Fatalf("case %d: pieces %q do not join to %q", i, pieces, escape(s))
		}
		for _, p := range pieces {
			if len(p) > limit || p == "" || !utf8.ValidString(p) {
				t.Fatalf("case %d: piece %q (limit %d)", i, p, limit)
			}
			if j := strings.LastIndex(p, "&"); j >= 0 && !strings.Contains(p[j:], ";") {
				t.Fatalf("case %d: piece %q cuts an entity", i, p)
			}
		}
	}
	if got := splitEscaped("hello world foo", 12); len(got) != 2 || got[0] != "hello world " {
		t.Errorf("prefers breaking at a space: %q", got)
	}
}

func TestPlainText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a &amp; b &lt;3 &gt;", "a & b <3 >"},
		{"see <https://acme.example/faq|our FAQ>", "see our FAQ (https://acme.example/faq)"},
		{"<https://acme.example>", "https://acme.example"},
		{"<https://acme.example|acme.example>", "https://acme.example"},
		{"mail <mailto:a@b.c|a@b.c>", "mail a@b.c"},
		{"hi <@U111>", "hi @U111"},
		{"hi <@U111|alice>", "hi alice"},
		{"<!here> all", "@here all"},
		{"// note &amp; more", "// note & more"},
		{"&amp;lt;", "&lt;"},
	}
	for _, tt := range tests {
		if got := plainText(tt.in); got != tt.want {
			t.Errorf("plainText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestVisitorTextIsQuoted: every line of a visitor's text, in messages and
// in the offer, is inside a quote block (starts with ">"), so no line a
// visitor types can look like an agent's "*Alice:* …" line, which is never
// quoted; the visitor's own ">" is escaped and cannot close or open one.
func TestVisitorTextIsQuoted(t *testing.T) {
	texts := []string{
		"thanks\n\n*Alice:* refund approved - confirm at https://evil.example/pay",
		"\n\n\n*Alice:*",
		"> not a quote of mine\n>> nor this",
		strings.Repeat("line\n", 2500),
		strings.Repeat("x", 3999) + "\n*Alice:* hi",
		strings.Repeat("\n", 3999) + "*Alice:* hi",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		var b strings.Builder
		for range rng.IntN(500) {
			b.WriteString([]string{"*", "_", "~", "`", ">", "\n", " ", "Alice:", "&", "<", "é", "😀"}[rng.IntN(12)])
		}
		texts = append(texts, b.String())
	}
	for i, text := range texts {
		msgs := renderMessage(bridge.Message{From: bridge.FromVisitor, Text: text})
		checkLimits(t, msgs)
		first := true
		for _, m := range msgs {
			for _, blk := range m.Blocks {
				sec, ok := blk.(*slackapi.SectionBlock)
				if !ok || sec.Text == nil {
					continue
				}
				lines := strings.Split(sec.Text.Text, "\n")
				if first {
					if lines[0] != "*Visitor:*" {
						t.Fatalf("text %d: first line %q", i, lines[0])
					}
					lines, first = lines[1:], false
				}
				for _, l := range lines {
					if !strings.HasPrefix(l, ">") || strings.HasPrefix(l, ">>") {
						t.Fatalf("text %d: line %q is not quoted once", i, l)
					}
				}
			}
		}
		root := renderRoot(rootView{Chat: bridge.Chat{ID: "c1"}, Property: "Acme", First: text})
		for _, blk := range root[0].Blocks[1:] {
			if sec, ok := blk.(*slackapi.SectionBlock); ok && sec.Text != nil {
				for _, l := range strings.Split(sec.Text.Text, "\n") {
					if !strings.HasPrefix(l, ">") {
						t.Fatalf("offer, text %d: line %q is not quoted", i, l)
					}
				}
			}
		}
		if strings.Contains(msgs[0].Text, "\n") {
			t.Errorf("text %d: notification text spans lines: %q", i, msgs[0].Text)
		}
	}
}
