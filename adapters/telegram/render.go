package telegram

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/onduty/onduty/bridge"
)

// maxMessageLen is Telegram's limit on a message's text after entity
// parsing, in UTF-16 code units.
const maxMessageLen = 4096

// maxCaptionLen is the limit on a document's caption.
const maxCaptionLen = 1024

// maxCallbackData is Telegram's limit on callback_data, in bytes.
const maxCallbackData = 64

// escapeHTML escapes text for parse_mode HTML. Telegram needs only these
// three; quotes are left alone so texts stay readable in the raw API.
// Control characters other than tab and newline are dropped: a visitor's
// escape sequences or NULs have no business in an agent's chat.
func escapeHTML(s string) string {
	if !strings.ContainsAny(s, "<>&") && strings.IndexFunc(s, bridge.StrippedControl) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for _, r := range s {
		switch {
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case bridge.StrippedControl(r):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// textLen is the length Telegram counts: UTF-16 code units.
func textLen(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// splitText cuts s into pieces of at most limit UTF-16 units, on rune
// boundaries, preferring to cut after a newline, else after a space, in the
// last quarter of a piece. Pieces joined give s back.
func splitText(s string, limit int) []string {
	if limit < 2 {
		limit = 2
	}
	var out []string
	for textLen(s) > limit {
		// cut is the byte offset where limit units end.
		cut, n := 0, 0
		for i, r := range s {
			w := utf16.RuneLen(r)
			if n+w > limit {
				break
			}
			n += w
			cut = i + utf8.RuneLen(r)
		}
		best := cut
		floor := cut * 3 / 4
		if i := strings.LastIndexByte(s[:cut], '\n'); i >= floor && i > 0 {
			best = i + 1
		} else if i := strings.LastIndexByte(s[:cut], ' '); i >= floor && i > 0 {
			best = i + 1
		}
		out = append(out, s[:best])
		s = s[best:]
	}
	if s != "" || len(out) == 0 {
		out = append(out, s)
	}
	return out
}

// rendered is a text to send as one or more messages (parse_mode HTML).
type rendered struct {
	// head is HTML put before every piece.
	head string
	// body is plain text, escaped after splitting.
	body string
	// tail is HTML after the body of the last piece (no visible length limit
	// is checked for it; keep it short).
	tail string
	// quote shows the body as a quote block: a visitor's words, so that no
	// line a visitor types ("Alice: refund approved") can look like an
	// agent's line, which is never quoted.
	quote bool
}

// pieces splits r into messages that each fit Telegram's limit.
func (r rendered) pieces() []string {
	budget := maxMessageLen - textLen(stripTags(r.head)) - textLen(r.tail)
	parts := splitText(r.body, budget)
	out := make([]string, len(parts))
	for i, p := range parts {
		body := escapeHTML(p)
		if r.quote && strings.TrimSpace(p) != "" {
			body = "<blockquote>" + body + "</blockquote>"
		}
		out[i] = r.head + body
		if i == len(parts)-1 {
			out[i] += r.tail
		}
	}
	return out
}

// shortID is the chat tag agents see ("#a1b2c3").
func shortID(c bridge.ChatID) string {
	s := string(c)
	if len(s) > 6 {
		s = s[:6]
	}
	return "#" + s
}

func visitorName(v bridge.Visitor) string {
	if n := bridge.OneLine(v.Name); n != "" {
		return n
	}
	return "Visitor"
}

// pageLabel shortens a page URL for titles.
func pageLabel(u string) string {
	u = bridge.OneLine(u)
	u = strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://")
	return strings.TrimSuffix(u, "/")
}

// truncateRunes cuts s to at most n runes, marking a cut with "…".
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// topicTitle names a chat's forum topic: the visitor and the page (≤128).
func topicTitle(c bridge.Chat) string {
	t := visitorName(c.Visitor)
	if p := pageLabel(c.Visitor.PageURL); p != "" {
		t += " · " + p
	}
	return truncateRunes(t, 128)
}

// offerText describes a new chat and its first message.
func offerText(d bridge.Delivery) rendered {
	c := d.Chat
	title := "New chat"
	if c.Offline {
		title = "Offline message"
	}
	var h strings.Builder
	fmt.Fprintf(&h, "<b>%s %s</b>\n", title, shortID(c.ID))
	h.WriteString("From: <b>" + escapeHTML(visitorName(c.Visitor)) + "</b>")
	if c.Visitor.Email != "" {
		h.WriteString(" · " + escapeHTML(bridge.OneLine(c.Visitor.Email)))
	}
	h.WriteString("\n")
	writeContext(&h, bridge.VisitorContext(c.Visitor))
	h.WriteString("\n")
	head := h.String()
	body := d.Text
	if d.Message != nil && d.Message.Text != "" {
		body = d.Message.Text
	}
	// An offer is one message: cut the first message rather than split it.
	headLen := textLen(stripTags(head))
	if limit := maxMessageLen - headLen - 1; textLen(body) > limit {
		body = splitText(body, limit-1)[0] + "…"
	}
	return rendered{head: head, body: body, quote: true}
}

// maxContextLen bounds the visitor context of an offer (characters as
// Telegram counts them), leaving the rest of the 4096 to the first message.
const maxContextLen = 2000

// writeContext writes the visitor context lines, "Label: value" with the
// label in italics, up to maxContextLen; the lines that do not fit are
// counted in a last line. Every value is one escaped line, so nothing a
// visitor sent can pass for another line of the offer.
func writeContext(h *strings.Builder, lines []bridge.ContextLine) {
	used := 0
	for i, l := range lines {
		n := textLen(l.Label) + 2 + textLen(l.Value) + 1
		if used+n > maxContextLen {
			fmt.Fprintf(h, "<i>(%d more not shown)</i>\n", len(lines)-i)
			return
		}
		used += n
		h.WriteString("<i>" + escapeHTML(l.Label) + "</i>: " + escapeHTML(l.Value) + "\n")
	}
}

// closedOfferText replaces an offer once it is no longer open.
func closedOfferText(d bridge.Delivery, why string) string {
	return fmt.Sprintf("<b>Chat %s</b> with <b>%s</b>: %s",
		shortID(d.Chat.ID), escapeHTML(visitorName(d.Chat.Visitor)), escapeHTML(why))
}

// messageText renders a chat message, tagged with the chat in private mode.
func messageText(d bridge.Delivery, shared bool) rendered {
	m := d.Message
	if m == nil {
		m = &bridge.Message{From: bridge.FromSystem, Text: d.Text}
	}
	var head string
	switch {
	case shared && m.From == bridge.FromVisitor:
		head = "<b>" + escapeHTML(visitorName(d.Chat.Visitor)) + ":</b> "
	case shared && m.From == bridge.FromAgent && m.Note:
		head = "<b>" + escapeHTML(m.AgentLabel()) + " (note):</b> "
	case shared && m.From == bridge.FromAgent:
		head = "<b>" + escapeHTML(m.AgentLabel()) + ":</b> "
	case shared:
		head = "<i>System:</i> "
	case m.From == bridge.FromVisitor:
		head = "<b>[" + escapeHTML(visitorName(d.Chat.Visitor)) + " · " + shortID(d.Chat.ID) + "]</b> "
	case m.From == bridge.FromAgent && m.Note:
		head = "<b>[" + escapeHTML(m.AgentLabel()) + " · note · " + shortID(d.Chat.ID) + "]</b> "
	case m.From == bridge.FromAgent:
		head = "<b>[" + escapeHTML(m.AgentLabel()) + " → " + escapeHTML(visitorName(d.Chat.Visitor)) + " · " + shortID(d.Chat.ID) + "]</b> "
	default:
		head = "<i>[" + shortID(d.Chat.ID) + "]</i> "
	}
	return rendered{head: head, body: m.Text, quote: m.From == bridge.FromVisitor}
}

// closedText tells that a chat ended.
func closedText(d bridge.Delivery) rendered {
	head := fmt.Sprintf("<b>Chat %s with %s closed.</b> ", shortID(d.Chat.ID), escapeHTML(visitorName(d.Chat.Visitor)))
	return rendered{head: head, body: d.Text}
}

// stripTags removes the tags of our own head HTML and undoes its escapes,
// giving the visible text whose length Telegram counts.
func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(b.String())
}

// Callback data: one letter, a colon and a chat id; "h" for "still here".
const (
	cbAccept    = "a"
	cbMonitor   = "m"
	cbSwitch    = "s"
	cbStillHere = "h"
)

// callbackData encodes a button. Chat ids are at most 22 characters, so
// every value fits the 64-byte limit.
func callbackData(k bridge.ActionKind, c bridge.ChatID) string {
	switch k {
	case bridge.ActAccept:
		return cbAccept + ":" + string(c)
	case bridge.ActMonitor:
		return cbMonitor + ":" + string(c)
	case bridge.ActSwitch:
		return cbSwitch + ":" + string(c)
	case bridge.ActStillHere:
		return cbStillHere
	}
	return ""
}

// parseCallback decodes callback data; ok is false for anything we did not make.
func parseCallback(data string) (bridge.ActionKind, bridge.ChatID, bool) {
	if len(data) == 0 || len(data) > maxCallbackData {
		return "", "", false
	}
	if data == cbStillHere {
		return bridge.ActStillHere, "", true
	}
	kind, id, ok := strings.Cut(data, ":")
	if !ok || !bridge.ChatID(id).IsValid() {
		return "", "", false
	}
	switch kind {
	case cbAccept:
		return bridge.ActAccept, bridge.ChatID(id), true
	case cbMonitor:
		return bridge.ActMonitor, bridge.ChatID(id), true
	case cbSwitch:
		return bridge.ActSwitch, bridge.ChatID(id), true
	}
	return "", "", false
}

// keyboard is an inline keyboard built by hand: the library's button type
// always sends "copy_text":{"text":""}, which the Bot API may reject.
type keyboard struct {
	InlineKeyboard [][]button `json:"inline_keyboard"`
}

type button struct {
	Text         string `json:"text"`
	CallbackData string `json:"callback_data"`
}

// noKeyboard removes the buttons of an edited message.
var noKeyboard = &keyboard{InlineKeyboard: [][]button{}}

func offerKeyboard(c bridge.ChatID, monitor bool) *keyboard {
	row := []button{{Text: "Accept", CallbackData: callbackData(bridge.ActAccept, c)}}
	if monitor {
		row = append(row, button{Text: "Monitor", CallbackData: callbackData(bridge.ActMonitor, c)})
	}
	return &keyboard{InlineKeyboard: [][]button{row}}
}

// choicesKeyboard puts each choice on its own row; nil when there are none.
func choicesKeyboard(cs []bridge.Choice) *keyboard {
	var rows [][]button
	for _, c := range cs {
		data := callbackData(c.Action, c.Chat)
		if data == "" || len(data) > maxCallbackData {
			continue
		}
		rows = append(rows, []button{{Text: truncateRunes(c.Label, 60), CallbackData: data}})
	}
	if len(rows) == 0 {
		return nil
	}
	return &keyboard{InlineKeyboard: rows}
}

func promptKeyboard() *keyboard {
	return &keyboard{InlineKeyboard: [][]button{{{Text: "Yes, I'm here", CallbackData: cbStillHere}}}}
}
