package tgfake

import (
	"encoding/json"
	"strings"
	"unicode/utf16"
)

// maxMessageLen is Telegram's limit on a message's text, in UTF-16 units
// after entities are parsed.
const maxMessageLen = 4096

// checkKeyboard checks an inline keyboard like the Bot API: JSON, text on
// every button, callback_data of 1-64 bytes.
func checkKeyboard(s string) string {
	var kb struct {
		InlineKeyboard [][]map[string]any `json:"inline_keyboard"`
	}
	if err := json.Unmarshal([]byte(s), &kb); err != nil {
		return "can't parse reply keyboard markup JSON object"
	}
	for _, row := range kb.InlineKeyboard {
		for _, b := range row {
			if t, _ := b["text"].(string); t == "" {
				return "BUTTON_TEXT_INVALID"
			}
			if d, ok := b["callback_data"].(string); ok && (len(d) == 0 || len(d) > 64) {
				return "BUTTON_DATA_INVALID"
			}
		}
	}
	return ""
}

// CheckMessage applies the Bot API's rules to a message's text: not empty,
// entities that parse (parseMode "HTML"), at most 4096 UTF-16 units after
// parsing. It returns the description Telegram answers, or "" if accepted.
func CheckMessage(text, parseMode string) string {
	visible := text
	if parseMode == "HTML" {
		if msg := CheckHTML(text); msg != "" {
			return msg
		}
		visible = visibleText(text)
	}
	if strings.TrimSpace(visible) == "" {
		return "message text is empty"
	}
	n := 0
	for _, r := range visible {
		n += utf16.RuneLen(r)
	}
	if n > maxMessageLen {
		return "message is too long"
	}
	return ""
}

// CheckHTML accepts what Telegram's HTML parse mode accepts of what onduty
// sends: <b> <i> <blockquote> tags, and & only as &lt; &gt; &amp; &quot; or
// a numeric entity. It returns Telegram's description of the first
// problem, or "".
func CheckHTML(s string) string {
	var open []string
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return "can't parse entities: unclosed start tag"
			}
			tag := s[i+1 : i+j]
			switch {
			case tag == "b" || tag == "i" || tag == "blockquote":
				open = append(open, tag)
			case strings.HasPrefix(tag, "/"):
				if len(open) == 0 || open[len(open)-1] != tag[1:] {
					return "can't parse entities: unmatched end tag " + tag
				}
				open = open[:len(open)-1]
			default:
				return "can't parse entities: unsupported start tag \"" + tag + "\""
			}
			i += j
		case '>':
			return "can't parse entities: unexpected >"
		case '&':
			j := strings.IndexByte(s[i:], ';')
			if j < 0 {
				return "can't parse entities: bad character reference"
			}
			switch ent := s[i+1 : i+j]; {
			case ent == "lt" || ent == "gt" || ent == "amp" || ent == "quot":
			case strings.HasPrefix(ent, "#"):
			default:
				return "can't parse entities: unknown entity &" + ent + ";"
			}
			i += j
		}
	}
	if len(open) > 0 {
		return "can't parse entities: unclosed tag " + open[len(open)-1]
	}
	return ""
}

// visibleText is HTML text as the user sees it: tags dropped, the entities
// onduty uses decoded.
func visibleText(s string) string {
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
