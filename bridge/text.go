package bridge

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What agents and visitors see of a text: the chat apps drop control
// characters when rendering, so every surface applies the same rules.

// Blank reports whether s shows nothing: only white space, control
// characters and invisible ones (zero-width spaces and joiners, other
// format characters, variation selectors, fillers).
func Blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !Invisible(r) }) < 0
}

// Invisible reports whether r shows as nothing, or as white space only.
func Invisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) ||
		unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point) ||
		r == '\u2800' // BRAILLE PATTERN BLANK
}

// StrippedControl reports whether a renderer drops r: a control character
// (C0, DEL, C1) other than tab and newline.
func StrippedControl(r rune) bool {
	return unicode.IsControl(r) && r != '\n' && r != '\t'
}

// OneLine makes a visitor-supplied field (name, email, page) a single line,
// so it cannot fake extra lines ("Page: …") in an offer.
func OneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
}

// AgentLabel is how the team is shown who wrote an agent's message: the
// agent's name as it was when written, else the agent's id, else "Agent".
func (m Message) AgentLabel() string {
	if m.Name != "" {
		return m.Name
	}
	if m.Agent != "" {
		return string(m.Agent)
	}
	return "Agent"
}

// ForVisitor is what a visitor may see of m: nothing of an internal note
// (ok false), and agents by display name only, not by their internal id.
// Every surface that shows visitors messages goes through it.
func (m Message) ForVisitor() (vm Message, ok bool) {
	if m.Note {
		return Message{}, false
	}
	m.Agent = ""
	return m, true
}

// The problems CheckText finds; each wraps ErrInvalidText.
var (
	ErrTextMissing = fmt.Errorf("%w: text is empty", ErrInvalidText)
	ErrTextNotUTF8 = fmt.Errorf("%w: text is not valid UTF-8", ErrInvalidText)
	ErrTextBlank   = fmt.Errorf("%w: text is blank", ErrInvalidText)
	ErrTextTooLong = fmt.Errorf("%w: text is over %d characters", ErrInvalidText, MaxTextRunes)
)

// TextRuleHint tells people the rule CheckText applies.
var TextRuleHint = fmt.Sprintf("Messages must be 1 to %d characters.", MaxTextRunes)

// CheckText is the one rule for a message's text, whoever writes it (a
// visitor, an agent, a canned reply): present, valid UTF-8, not blank (see
// Blank) and at most MaxTextRunes characters. The error says which.
func CheckText(s string) error {
	switch {
	case s == "":
		return ErrTextMissing
	case !utf8.ValidString(s):
		return ErrTextNotUTF8
	case Blank(s):
		return ErrTextBlank
	case utf8.RuneCountInString(s) > MaxTextRunes:
		return ErrTextTooLong
	}
	return nil
}
