package main

import (
	"slices"
	"testing"
)

// TestParseAddrs: --source-addrs takes a list, ranges of the last number,
// or both; a bad range is an error.
func TestParseAddrs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"127.0.0.2", []string{"127.0.0.2"}, false},
		{"127.0.0.2-4", []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, false},
		{"127.0.0.2, 127.0.0.9-10", []string{"127.0.0.2", "127.0.0.9", "127.0.0.10"}, false},
		{"", nil, false},
		{"127.0.0.5-2", nil, true},
		{"127.0.0.2-300", nil, true},
		{"127.0.0.x-2", nil, true},
	} {
		got, err := parseAddrs(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseAddrs(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
