package slack

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/onduty/onduty/bridge"
)

// Fuzz tests. In CI the seed corpus (below and testdata/fuzz) runs as plain
// tests; to fuzz, e.g.:
//
//	go test -run XXX -fuzz FuzzSlackRequests -fuzztime 60s ./adapters/slack

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"", "online", " Transfer  Bob ", "/online", "alwayson on", "\t\n", "ÄWAY x", "a\x00b c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		sub, args := parseCommand(text)
		if sub == "" {
			t.Errorf("%q gave no subcommand", text)
		}
		if strings.ContainsAny(sub, " ") {
			t.Errorf("subcommand %q has a space", sub)
		}
		if args != strings.TrimSpace(args) {
			t.Errorf("args %q not trimmed", args)
		}
	})
}

// FuzzEscape: escaped text never carries < or > (no mentions, links or
// pings), and splitting it for Slack's size limits loses nothing.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"<!channel>", "a & b <@U1> <https://x|y>", "é<>&" + strings.Repeat("x ", 50), "\x00\x1b[1m\n\t", ""} {
		f.Add(s, 7)
	}
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if !utf8.ValidString(s) {
			return // the widget refuses invalid UTF-8 before anything is rendered
		}
		esc := escape(s)
		if strings.ContainsAny(esc, "<>") {
			t.Errorf("escape(%q) = %q", s, esc)
		}
		if strings.IndexFunc(esc, bridge.StrippedControl) >= 0 {
			t.Errorf("escape(%q) keeps a control character: %q", s, esc)
		}
		limit = 5 + abs(limit)%4000
		pieces := splitEscaped(s, limit)
		if strings.Join(pieces, "") != esc {
			t.Errorf("splitEscaped(%q, %d) = %q, joined != %q", s, limit, pieces, esc)
		}
		for _, p := range pieces {
			if len(p) > limit {
				t.Errorf("piece of %d bytes over limit %d", len(p), limit)
			}
		}
		if back := plainText(esc); strings.IndexFunc(s, bridge.StrippedControl) < 0 && back != s && !strings.Contains(s, "<") {
			t.Errorf("plainText(escape(%q)) = %q", s, back)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // the smallest int
			return 0
		}
		return -n
	}
	return n
}

// FuzzSlackRequests sends arbitrary, correctly signed bodies to the
// events-mode handlers: they never panic, answer a fitting status, and hand
// the bridge actions only of configured agents.
func FuzzSlackRequests(f *testing.F) {
	cmd := url.Values{"token": {"x"}, "team_id": {"T1"}, "channel_id": {"C1"}, "user_id": {"U111"}, "command": {"/onduty"},
		"text": {"transfer Bob"}, "response_url": {"http://127.0.0.1:1/r"}, "trigger_id": {"t"}}.Encode()
	stranger := url.Values{"user_id": {"U999"}, "command": {"/onduty"}, "text": {"online"}}.Encode()
	button, _ := json.Marshal(map[string]any{"type": "block_actions", "user": map[string]any{"id": "U111"},
		"channel": map[string]any{"id": "C1"}, "actions": []map[string]any{{"action_id": actionAccept, "value": "chat1"}}})
	badButton, _ := json.Marshal(map[string]any{"type": "block_actions", "user": map[string]any{"id": "U222"},
		"actions": []map[string]any{{"action_id": "onduty_nope", "value": strings.Repeat("x", 3000)}}})
	seeds := []struct {
		path uint8
		body string
	}{
		{0, string(eventBody("Ev1", map[string]any{"type": "message", "user": "U111", "text": "hi", "channel": "D1", "channel_type": "im", "ts": "1.1"}))},
		{0, string(eventBody("Ev2", map[string]any{"type": "message", "user": "U999", "text": "<!channel>", "channel": "C1", "channel_type": "channel", "ts": "1.2", "thread_ts": "1.0"}))},
		{0, string(eventBody("Ev3", map[string]any{"type": "message", "subtype": "file_share", "user": "U111", "channel": "C1", "ts": "1.3", "files": []any{map[string]any{"id": "F1"}}}))},
		{0, `{"type":"url_verification","challenge":"c"}`},
		{0, `{"type":"event_callback","event":null}`},
		{0, `{"type":"app_rate_limited"}`},
		{0, `not json`},
		{1, cmd}, {1, stranger}, {1, "text=%zz"}, {1, ""},
		{2, url.Values{"payload": {string(button)}}.Encode()},
		{2, url.Values{"payload": {string(badButton)}}.Encode()},
		{2, "payload=%7B%7D"}, {2, "payload=nope"},
	}
	for _, s := range seeds {
		f.Add(s.path, []byte(s.body))
	}
	hs := newHarness(f, ModeEvents)
	dir := testDirectory(f)
	paths := []string{"/slack/events", "/slack/commands", "/slack/interactions"}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := paths[int(which)%len(paths)]
		ctype := "application/x-www-form-urlencoded"
		if path == "/slack/events" {
			ctype = "application/json"
		}
		before := len(hs.h.Actions())
		rec := hs.postRaw(path, ctype, body, sign(testSecret, time.Now(), body))
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
		default:
			t.Errorf("%s: status %d for %q", path, rec.Code, body)
		}
		for _, act := range hs.h.Actions()[before:] {
			if _, ok := dir.Agent(act.Agent); !ok {
				t.Errorf("%s: an action of %q reached the bridge", path, act.Agent)
			}
		}
	})
}
