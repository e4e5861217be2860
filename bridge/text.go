package bridge

import (
	"strings"
	"unicode"
)

// What agents and visitors see of a text: the chat apps drop control
// characters when rendering, so every surface applies the same rules.

// Blank reports whether s shows nothing: only white space and control
// characters.
func Blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) && !unicode.IsControl(r) }) < 0
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
