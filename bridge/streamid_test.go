package bridge

import (
	"testing"
	"time"
)

func TestParseStreamID(t *testing.T) {
	tests := []struct {
		in      string
		partial bool
		want    StreamID
		ok      bool
	}{
		{"1700000000000-3", false, StreamID{1700000000000, 3}, true},
		{"1700000000000-3", true, StreamID{1700000000000, 3}, true},
		{"1700000000000", true, StreamID{1700000000000, 0}, true},
		{"1700000000000", false, StreamID{}, false}, // a stored id always has its sequence
		{"18446744073709551615-18446744073709551615", false, StreamID{1<<64 - 1, 1<<64 - 1}, true},
		{"", true, StreamID{}, false},
		{"-", true, StreamID{}, false},
		{"1-", true, StreamID{}, false},
		{"-1", true, StreamID{}, false},
		{"1-2-3", true, StreamID{}, false},
		{"+", true, StreamID{}, false},
		{" 1-2", true, StreamID{}, false},
		{"18446744073709551616-0", true, StreamID{}, false}, // over 64 bits
		{"x-1", true, StreamID{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseStreamID(tt.in, tt.partial)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseStreamID(%q, %v) = %v, %v; want %v, %v", tt.in, tt.partial, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStreamIDOrderAndTime(t *testing.T) {
	a, b, c := StreamID{5, 9}, StreamID{6, 0}, StreamID{6, 1}
	if !a.Less(b) || !b.Less(c) || c.Less(a) || a.Less(a) {
		t.Errorf("order of %v %v %v is wrong", a, b, c)
	}
	if got := (StreamID{MS: 1700000000123}).Time(); !got.Equal(time.UnixMilli(1700000000123)) {
		t.Errorf("Time = %v", got)
	}
	if got := streamTime("junk"); !got.IsZero() {
		t.Errorf("streamTime(junk) = %v, want zero", got)
	}
}
