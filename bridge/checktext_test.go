package bridge

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"plain", "hello", nil},
		{"exactly the limit", strings.Repeat("é", MaxTextRunes), nil},
		{"empty", "", ErrTextMissing},
		{"not UTF-8", "a\xffb", ErrTextNotUTF8},
		{"spaces only", " \t\n", ErrTextBlank},
		{"zero-width only", "\u200b\u200d", ErrTextBlank},
		{"one over the limit", strings.Repeat("a", MaxTextRunes+1), ErrTextTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckText(tt.in)
			if err != tt.want {
				t.Fatalf("CheckText = %v, want %v", err, tt.want)
			}
			if err != nil && !errors.Is(err, ErrInvalidText) {
				t.Errorf("%v does not wrap ErrInvalidText", err)
			}
		})
	}
}
