package telegram

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/tgfake"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.html")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n got: %q\nwant: %q", name, path, got, want)
	}
	if msg := tgfake.CheckHTML(got); msg != "" {
		t.Errorf("%s: Telegram would refuse it: %s", name, msg)
	}
}

func TestRenderedHTML(t *testing.T) {
	chat := testChat("chatG1abcdef", "acme")
	visitor := &bridge.Message{ID: "1-0", Chat: chat.ID, From: bridge.FromVisitor, Text: "<script>alert('x')</script> & 1 < 2 > 0 \"quoted\" 🙂"}
	agent := &bridge.Message{ID: "2-0", Chat: chat.ID, From: bridge.FromAgent, Agent: "alice", Name: "Alice <Lead>", Text: "On it & more"}
	note := &bridge.Message{ID: "3-0", Chat: chat.ID, From: bridge.FromAgent, Agent: "bob", Name: "Bob", Text: "//check the <invoice>", Note: true}
	system := &bridge.Message{ID: "4-0", Chat: chat.ID, From: bridge.FromSystem, Text: "Visitor left the page"}
	offline := chat
	offline.Offline = true
	rich := chat
	rich.Visitor = richVisitor()
	tests := []struct {
		name string
		html string
	}{
		{"offer", offerText(bridge.Delivery{Kind: bridge.KindOffer, Chat: chat, Message: visitor}).pieces()[0]},
		{"offer_offline", offerText(bridge.Delivery{Kind: bridge.KindOffer, Chat: offline, Message: visitor}).pieces()[0]},
		{"offer_context", offerText(bridge.Delivery{Kind: bridge.KindOffer, Chat: rich, Message: visitor}).pieces()[0]},
		{"taken", closedOfferText(bridge.Delivery{Chat: chat}, "taken by Alice & Co")},
		{"message_private_visitor", messageText(bridge.Delivery{Chat: chat, Message: visitor}, false).pieces()[0]},
		{"message_private_agent", messageText(bridge.Delivery{Chat: chat, Message: agent}, false).pieces()[0]},
		{"message_private_note", messageText(bridge.Delivery{Chat: chat, Message: note}, false).pieces()[0]},
		{"message_private_system", messageText(bridge.Delivery{Chat: chat, Message: system}, false).pieces()[0]},
		{"message_topic_visitor", messageText(bridge.Delivery{Chat: chat, Message: visitor}, true).pieces()[0]},
		{"message_topic_agent", messageText(bridge.Delivery{Chat: chat, Message: agent}, true).pieces()[0]},
		{"closed", closedText(bridge.Delivery{Chat: chat, Text: "closed by the visitor <3"}).pieces()[0]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { golden(t, tt.name, tt.html) })
	}
}

func TestSplitText(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		limit int
		want  []string
	}{
		{"short", "hello", 10, []string{"hello"}},
		{"empty", "", 10, []string{""}},
		{"exact", "abcdefghij", 10, []string{"abcdefghij"}},
		{"prefers newline", "aaaaaaa\nbbbbbbb", 10, []string{"aaaaaaa\n", "bbbbbbb"}},
		{"then space", "aaaaaaaa bbbbbbb", 10, []string{"aaaaaaaa ", "bbbbbbb"}},
		{"hard cut", "abcdefghijklmnop", 10, []string{"abcdefghij", "klmnop"}},
		{"runes kept whole", "ééééééé", 3, []string{"ééé", "ééé", "é"}},
		{"surrogate pairs count 2", "🙂🙂🙂🙂", 5, []string{"🙂🙂", "🙂🙂"}},
		{"newline too early ignored", "a\nbbbbbbbbbbbbbbbbbbb", 10, []string{"a\nbbbbbbbb", "bbbbbbbbbbb"[:10], "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitText(tt.text, tt.limit)
			if strings.Join(got, "") != tt.text {
				t.Errorf("pieces %q do not join back", got)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("piece %d = %q, want %q", i, got[i], tt.want[i])
				}
				if !utf8.ValidString(got[i]) || textLen(got[i]) > tt.limit {
					t.Errorf("piece %d = %q invalid or too long", i, got[i])
				}
			}
		})
	}
}

func TestLongMessagesFitTelegram(t *testing.T) {
	chat := testChat("chatL", "acme")
	text := strings.Repeat("Ünïcode & <tags> 🙂 line\n", 700) // ~17k characters, escapes grow it
	for _, shared := range []bool{false, true} {
		pieces := messageText(bridge.Delivery{Chat: chat, Message: &bridge.Message{From: bridge.FromVisitor, Text: text}}, shared).pieces()
		if len(pieces) < 4 {
			t.Fatalf("%d pieces for %d characters", len(pieces), len(text))
		}
		var body strings.Builder
		for i, p := range pieces {
			if msg := tgfake.CheckMessage(p, "HTML"); msg != "" {
				t.Errorf("piece %d refused: %s", i, msg)
			}
			_, rest, _ := strings.Cut(stripTags(p), ": ")
			if !shared {
				_, rest, _ = strings.Cut(stripTags(p), "] ")
			}
			body.WriteString(rest)
		}
		if body.String() != text {
			t.Errorf("shared=%v: pieces do not give the text back", shared)
		}
	}
	// An offer is one message: its first message is cut, not split.
	offer := offerText(bridge.Delivery{Chat: chat, Message: &bridge.Message{Text: text}}).pieces()
	if len(offer) != 1 || tgfake.CheckMessage(offer[0], "HTML") != "" || !strings.HasSuffix(offer[0], "…</blockquote>") {
		t.Errorf("offer: %d pieces, %q", len(offer), tgfake.CheckMessage(offer[0], "HTML"))
	}
}

func TestTopicTitle(t *testing.T) {
	c := testChat("c1", "beta")
	c.Visitor.PageURL = "https://example.com/" + strings.Repeat("very-long-path/", 20)
	title := topicTitle(c)
	if n := utf8.RuneCountInString(title); n > 128 || !strings.HasPrefix(title, "Vera <V> · example.com/very-long") {
		t.Errorf("title %q (%d runes)", title, n)
	}
	if got := topicTitle(bridge.Chat{}); got != "Visitor" {
		t.Errorf("untitled chat -> %q", got)
	}
}

func TestCallbackDataFits(t *testing.T) {
	id := bridge.ChatID(strings.Repeat("Z", 22))
	for _, k := range []bridge.ActionKind{bridge.ActAccept, bridge.ActMonitor, bridge.ActSwitch, bridge.ActStillHere} {
		data := callbackData(k, id)
		if len(data) > maxCallbackData {
			t.Errorf("%s: %d bytes", k, len(data))
		}
		gk, gc, ok := parseCallback(data)
		if !ok || gk != k || (k != bridge.ActStillHere && gc != id) {
			t.Errorf("%s: round trip gave %s %s %v", k, gk, gc, ok)
		}
	}
}

func TestPacingReturnsRetryAfter(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	now := time.Unix(1_700_000_000, 0)
	a.lim = newLimiter(limits{group: telegramLimits.group}, func() time.Time { return now })
	// The group allows a burst of 5, then asks for ~3s: longer than Deliver
	// waits, so the outbox is told to come back.
	var err error
	sent := 0
	for i := range 10 {
		_, err = out(a).Deliver(t.Context(), bridge.Delivery{ID: "n" + string(rune('a'+i)), Kind: bridge.KindNotice, Chat: bridge.Chat{Property: "beta"}, Text: "hello"})
		if err != nil {
			break
		}
		sent++
	}
	ra, ok := asRetryAfter(err)
	if !ok || ra.After < 2*time.Second || ra.After > 3*time.Second || sent != 5 {
		t.Errorf("after %d sends: %v, want RetryAfterError of about 3s after 5", sent, err)
	}
}

// TestVisitorTextIsQuoted: a visitor's text is shown inside a blockquote,
// in private chats, in topics and in the offer, so a line the visitor types
// like an agent's ("Alice: refund approved") stays inside the quote; an
// agent's line is never quoted.
func TestVisitorTextIsQuoted(t *testing.T) {
	chat := testChat("chatQ1", "acme")
	fake := "thanks\n\n[Alice → Vera · #chatQ1] refund approved - confirm at https://evil.example/pay\nAlice: <b>yes</b>"
	vis := &bridge.Message{From: bridge.FromVisitor, Text: fake}
	for _, p := range append(append(messageText(bridge.Delivery{Chat: chat, Message: vis}, false).pieces(),
		messageText(bridge.Delivery{Chat: chat, Message: vis}, true).pieces()...),
		offerText(bridge.Delivery{Chat: chat, Message: vis}).pieces()...) {
		if msg := tgfake.CheckHTML(p); msg != "" {
			t.Errorf("%q: %s", p, msg)
		}
		i := strings.Index(p, "<blockquote>")
		if i < 0 || !strings.HasSuffix(p, "</blockquote>") || !strings.Contains(p[i:], "refund approved") || strings.Contains(p[:i], "refund") {
			t.Errorf("visitor text not quoted: %q", p)
		}
	}
	agent := messageText(bridge.Delivery{Chat: chat, Message: &bridge.Message{From: bridge.FromAgent, Name: "Alice", Text: "hi"}}, true).pieces()
	if strings.Contains(agent[0], "blockquote") {
		t.Errorf("agent line quoted: %q", agent[0])
	}
}

// TestOfferContextWithinLimit: the most context a visitor can send (every
// field and 20 attrs at their limits) with a 4000-character message still
// makes one offer Telegram accepts, the context cut and counted.
func TestOfferContextWithinLimit(t *testing.T) {
	v := richVisitor()
	long := strings.Repeat("<&é", 700)
	v.PageURL, v.Referrer, v.TimeZone = long, long, long
	v.Identity.Attrs = map[string]string{}
	for i := range bridge.MaxAttrs {
		v.Identity.Attrs[fmt.Sprintf("k%02d", i)] = strings.Repeat("x", bridge.MaxAttrValue)
	}
	chat := testChat("chatLimit1", "acme")
	chat.Visitor = v
	pieces := offerText(bridge.Delivery{Chat: chat, Message: &bridge.Message{Text: strings.Repeat("m", 4000)}}).pieces()
	if len(pieces) != 1 {
		t.Fatalf("%d pieces, want 1", len(pieces))
	}
	if msg := tgfake.CheckMessage(pieces[0], "HTML"); msg != "" {
		t.Fatalf("Telegram would refuse the offer: %s", msg)
	}
	if !strings.Contains(pieces[0], "more not shown)</i>") || !strings.Contains(pieces[0], "<blockquote>mmm") {
		t.Errorf("offer lost the cut marker or the message: %.300q", pieces[0])
	}
}
