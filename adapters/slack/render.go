package slack

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	slackapi "github.com/slack-go/slack"

	"github.com/onduty/onduty/bridge"
)

// Slack's limits on what one message may carry.
const (
	maxSectionText = 3000  // characters of a section block's text
	maxBlocks      = 50    // blocks per message
	maxMessageText = 40000 // characters of a message's text (and of its blocks together)
	maxButtonValue = 2000  // characters of a button's value
	fallbackText   = 150   // characters of the notification text shown beside blocks
)

// Action ids of our buttons. They are what block_actions payloads name.
const (
	actionAccept    = "onduty_accept"
	actionMonitor   = "onduty_monitor"
	actionSwitch    = "onduty_switch"
	actionStillHere = "onduty_still_here"
)

var actionKinds = map[string]bridge.ActionKind{
	actionAccept:    bridge.ActAccept,
	actionMonitor:   bridge.ActMonitor,
	actionSwitch:    bridge.ActSwitch,
	actionStillHere: bridge.ActStillHere,
}

func actionID(k bridge.ActionKind) string {
	for id, kind := range actionKinds {
		if kind == k {
			return id
		}
	}
	return ""
}

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escape makes s safe to show as Slack mrkdwn: no links, mentions or
// @channel pings can be smuggled in through <…> sequences. Control
// characters other than tab and newline are dropped.
func escape(s string) string {
	if strings.IndexFunc(s, bridge.StrippedControl) >= 0 {
		s = strings.Map(func(r rune) rune {
			if bridge.StrippedControl(r) {
				return -1
			}
			return r
		}, s)
	}
	return mrkdwnEscaper.Replace(s)
}

// escapedLen is len(escape(r)) for one rune without building the string.
func escapedLen(r rune) int {
	switch {
	case r == '&':
		return 5
	case r == '<', r == '>':
		return 4
	case bridge.StrippedControl(r):
		return 0
	}
	return utf8.RuneLen(r)
}

// splitEscaped splits s into pieces whose escaped form has at most limit
// bytes (Slack counts characters; bytes are never fewer), cutting at a newline
// or a space near the end of a piece when there is one, never inside an
// escape sequence or a rune. The pieces are returned escaped.
func splitEscaped(s string, limit int) []string { return splitPieces(s, limit, false) }

// splitQuoted is splitEscaped for text shown as a quote: every line of every
// piece starts with ">" (counted in the limit).
func splitQuoted(s string, limit int) []string { return splitPieces(s, limit, true) }

func splitPieces(s string, limit int, quote bool) []string {
	if quote {
		limit-- // the first line's ">"
	}
	var out []string
	for s != "" {
		size, cut, lastBreak := 0, len(s), -1
		for i, r := range s {
			n := escapedLen(r)
			if quote && r == '\n' {
				n++ // the next line's ">"
			}
			if size+n > limit {
				cut = i
				break
			}
			size += n
			if r == '\n' || r == ' ' {
				lastBreak = i + 1
			}
		}
		if cut < len(s) && lastBreak > cut/2 {
			cut = lastBreak
		}
		if cut == 0 { // a single rune over the limit cannot happen for limit >= 5
			cut = len(s)
		}
		piece := escape(s[:cut])
		if quote {
			piece = quoteLines(strings.TrimSuffix(piece, "\n"))
		}
		out = append(out, piece)
		s = s[cut:]
	}
	return out
}

// quoteLines makes escaped mrkdwn a quote block: ">" before every line.
// Visitor text is shown this way, so that nothing a visitor types (a line
// like "*Alice:* refund approved") can look like an agent's line, which is
// never quoted. The visitor's own ">" is escaped and cannot end the quote.
func quoteLines(escaped string) string {
	return ">" + strings.ReplaceAll(escaped, "\n", "\n>")
}

// truncate shortens s to at most n runes, with an ellipsis when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func mrkdwn(text string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.MarkdownType, text, false, true)
}

func plain(text string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.PlainTextType, truncate(text, 75), false, false)
}

// rendered is one Slack message: blocks plus the notification text.
type rendered struct {
	Text   string
	Blocks []slackapi.Block
}

// textSections turns a prefix (already mrkdwn) and raw text into section
// blocks within the size limit.
func textSections(prefix, raw string) []slackapi.Block {
	return sections(prefix, splitEscaped(raw, max(maxSectionText-len(prefix), maxSectionText/2)))
}

// quotedSections is textSections with the text shown as a quote block (a
// visitor's words): the prefix stays outside the quote, on its own line.
func quotedSections(prefix, raw string) []slackapi.Block {
	if prefix != "" {
		prefix += "\n"
	}
	return sections(prefix, splitQuoted(raw, max(maxSectionText-len(prefix), maxSectionText/2)))
}

func sections(prefix string, pieces []string) []slackapi.Block {
	if len(pieces) == 0 {
		pieces = []string{""}
	}
	blocks := make([]slackapi.Block, 0, len(pieces))
	for i, p := range pieces {
		if i == 0 {
			p = prefix + p
		}
		if p == "" {
			p = " "
		}
		blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn(p), nil, nil))
	}
	return blocks
}

// paginate splits blocks into messages of at most maxBlocks blocks and about
// maxMessageText characters each, all carrying the same notification text.
func paginate(text string, blocks []slackapi.Block) []rendered {
	var out []rendered
	cur := rendered{Text: text}
	size := 0
	for _, b := range blocks {
		n := blockSize(b)
		if len(cur.Blocks) > 0 && (len(cur.Blocks) == maxBlocks || size+n > maxMessageText-len(text)) {
			out = append(out, cur)
			cur, size = rendered{Text: text}, 0
		}
		cur.Blocks = append(cur.Blocks, b)
		size += n
	}
	if len(cur.Blocks) > 0 {
		out = append(out, cur)
	}
	return out
}

func blockSize(b slackapi.Block) int {
	if s, ok := b.(*slackapi.SectionBlock); ok && s.Text != nil {
		return len(s.Text.Text)
	}
	return 200
}

// rootView is what the root message of a chat shows.
type rootView struct {
	Chat     bridge.Chat
	Property string // the property's display name
	First    string // the visitor's first message, raw
	Status   string // mrkdwn line saying where the chat is
	Accept   bool   // show the Accept button
	Monitor  bool   // show the Monitor button
}

// renderRoot draws a chat's root message: who the visitor is, the first
// message and the buttons while it is open for taking.
func renderRoot(v rootView) []rendered {
	title := "New chat"
	if v.Chat.Offline {
		title = "Offline message"
	}
	name := bridge.OneLine(v.Chat.Visitor.Name)
	if name == "" {
		name = "Visitor"
	}
	head := fmt.Sprintf(":speech_balloon: *%s* on %s from *%s*", title, escape(v.Property), escape(truncate(name, 200)))
	var fields []*slackapi.TextBlockObject
	if v.Chat.Visitor.Email != "" {
		fields = append(fields, mrkdwn("*Email*\n"+escape(truncate(bridge.OneLine(v.Chat.Visitor.Email), 500))))
	}
	blocks := []slackapi.Block{slackapi.NewSectionBlock(mrkdwn(head), fields, nil)}
	if ctx := contextText(bridge.VisitorContext(v.Chat.Visitor)); ctx != "" {
		blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn(ctx), nil, nil))
	}
	if v.First != "" {
		blocks = append(blocks, quotedSections("", v.First)...)
	}
	if v.Status != "" {
		blocks = append(blocks, slackapi.NewContextBlock("status", mrkdwn(v.Status)))
	}
	if v.Accept || v.Monitor {
		var buttons []slackapi.BlockElement
		id := string(v.Chat.ID)
		if v.Accept {
			buttons = append(buttons, slackapi.NewButtonBlockElement(actionAccept, id, plain("Accept")).WithStyle(slackapi.StylePrimary))
		}
		if v.Monitor {
			buttons = append(buttons, slackapi.NewButtonBlockElement(actionMonitor, id, plain("Monitor")))
		}
		blocks = append(blocks, slackapi.NewActionBlock("offer", buttons...))
	}
	text := fmt.Sprintf("%s from %s: %s", title, escape(truncate(name, 60)), escape(truncate(v.First, fallbackText)))
	return paginate(text, blocks)
}

// maxContextText bounds the visitor context section (a section's text may
// hold 3000 characters).
const maxContextText = 2800

// contextText is the visitor context as mrkdwn lines "_Label:_ value", up
// to maxContextText; the lines that do not fit are counted in a last line.
// Every value is escaped and on one line, so nothing a visitor sent can
// pass for another line.
func contextText(lines []bridge.ContextLine) string {
	var sb strings.Builder
	for i, l := range lines {
		line := "_" + escape(l.Label) + ":_ " + escape(l.Value) + "\n"
		if sb.Len()+len(line) > maxContextText {
			fmt.Fprintf(&sb, "_(%d more not shown)_\n", len(lines)-i)
			break
		}
		sb.WriteString(line)
	}
	return strings.TrimSuffix(sb.String(), "\n")
}

// renderMessage draws one line of a chat's transcript for a thread or DM.
func renderMessage(m bridge.Message) []rendered {
	var prefix, fallback string
	switch {
	case m.From == bridge.FromVisitor:
		prefix = "*Visitor:*"
	case m.From == bridge.FromSystem:
		prefix = ":information_source: "
	case m.Note:
		prefix = fmt.Sprintf(":memo: _note by_ *%s:* ", escape(truncate(m.AgentLabel(), 100)))
	default:
		prefix = fmt.Sprintf("*%s:* ", escape(truncate(m.AgentLabel(), 100)))
	}
	text := m.Text
	if m.Attachment != nil {
		if text != "" {
			text += "\n"
		}
		text += fmt.Sprintf("📎 %s (%s, %d bytes)", m.Attachment.Name, m.Attachment.MIME, m.Attachment.Size)
	}
	if m.From == bridge.FromVisitor {
		// One line: the notification shows no quote.
		fallback = prefix + " " + strings.ReplaceAll(escape(truncate(text, fallbackText)), "\n", " ")
		return paginate(fallback, quotedSections(prefix, text))
	}
	fallback = prefix + escape(truncate(text, fallbackText))
	return paginate(fallback, textSections(prefix, text))
}

// renderNotice draws plain text from the bridge (notices, replies), with
// optional buttons under it.
func renderNotice(text string, choices []bridge.Choice) []rendered {
	blocks := textSections("", text)
	if len(choices) > 0 {
		var buttons []slackapi.BlockElement
		for _, c := range choices {
			id := actionID(c.Action)
			if id == "" || len(c.Chat) > maxButtonValue {
				continue
			}
			buttons = append(buttons, slackapi.NewButtonBlockElement(id, string(c.Chat), plain(c.Label)))
			// An actions block holds at most 25 elements.
			if len(buttons) == 25 {
				blocks = append(blocks, slackapi.NewActionBlock("", buttons...))
				buttons = nil
			}
		}
		if len(buttons) > 0 {
			blocks = append(blocks, slackapi.NewActionBlock("", buttons...))
		}
	}
	return paginate(escape(truncate(text, fallbackText)), blocks)
}

// renderPrompt draws "Still on duty?" with its one-tap button.
func renderPrompt(text string) []rendered {
	if text == "" {
		text = "Still on duty?"
	}
	blocks := textSections("", text)
	blocks = append(blocks, slackapi.NewActionBlock("prompt",
		slackapi.NewButtonBlockElement(actionStillHere, "yes", plain("I'm here")).WithStyle(slackapi.StylePrimary)))
	return paginate(escape(truncate(text, fallbackText)), blocks)
}

var (
	slackLink    = regexp.MustCompile(`<([^<>|]*)(?:\|([^<>]*))?>`)
	slackUnescap = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")
)

// plainText turns Slack's wire text (escaped, links as <url|label>, mentions
// as <@U123>) back into what the agent typed, for the visitor.
func plainText(s string) string {
	s = slackLink.ReplaceAllStringFunc(s, func(m string) string {
		sub := slackLink.FindStringSubmatch(m)
		target, label := sub[1], sub[2]
		switch {
		case label != "":
			if strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "@") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "!") {
				return label
			}
			if label == strings.TrimPrefix(strings.TrimPrefix(target, "https://"), "http://") {
				return target
			}
			return label + " (" + target + ")"
		case strings.HasPrefix(target, "@"), strings.HasPrefix(target, "#"):
			return target
		case strings.HasPrefix(target, "!"):
			return "@" + strings.TrimPrefix(target, "!")
		}
		return strings.TrimPrefix(target, "mailto:")
	})
	return slackUnescap.Replace(s)
}
