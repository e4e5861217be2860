package widget

import "testing"

// TestControlOnlyTextRefused: a message made only of control characters
// (valid UTF-8, not blank to strings.TrimSpace) would show as nothing on
// Telegram and Slack (the adapters drop control characters): it is refused
// like a blank message. Mixed text ("hi\x1b[31m") stays accepted: the adapters strip
// the controls when rendering.
func TestControlOnlyTextRefused(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hello")
	for _, tc := range []struct {
		name, path, body string
		headers          []string
	}{
		{"start chat", "/v1/properties/demo/chats", `{"message":"\u0000\u001b\u0007"}`, nil},
		{"message", "/v1/chats/" + id + "/messages", `{"text":"\u0000\u001b\u0007"}`, []string{"Authorization", "Bearer " + tok}},
		{"offline message", "/v1/properties/demo/offline-messages", `{"email":"a@b.example","text":"\u0000\u0085"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", tc.path, tc.body, tc.headers...)
			if r.code != 400 || r.errCode() != "invalid_text" {
				t.Errorf("%d %s, want 400 invalid_text", r.code, r.body)
			}
		})
	}
}

// TestInvisibleOnlyTextRefused: text made only of zero-width and other
// invisible characters shows as nothing anywhere: refused like blank text.
// Visible text with such characters in it stays accepted.
func TestInvisibleOnlyTextRefused(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hello")
	auth := []string{"Authorization", "Bearer " + tok}
	for _, tc := range []struct {
		name, text string
		want       int
	}{
		{"zero-width space", "\u200b", 400},
		{"zero-width joiners and spaces", "\u200b\u200c\u200d \u2060\ufeff", 400},
		{"bidi marks", "\u200e\u200f\u202a\u202e", 400},
		{"fillers and blanks", "\u3164\u115f\u2800\u034f", 400},
		{"variation selectors", "\ufe0f\ufe0e", 400},
		{"soft hyphen", "\u00ad", 400},
		{"visible text with a zero-width space", "hi\u200bthere", 202},
		{"emoji with a variation selector", "\u2764\ufe0f", 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/v1/chats/"+id+"/messages", map[string]string{"text": tc.text}, auth...)
			if r.code != tc.want || (tc.want == 400 && r.errCode() != "invalid_text") {
				t.Errorf("%d %s, want %d", r.code, r.body, tc.want)
			}
			if tc.want == 400 {
				if r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": tc.text}); r.code != 400 {
					t.Errorf("start chat: %d %s", r.code, r.body)
				}
			}
		})
	}
}

// TestLargestMessageID: the largest possible stream id as after or
// Last-Event-ID is refused with 400 (nothing can come after it; Redis
// refuses it as a range start, which was answered 503).
func TestLargestMessageID(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hello")
	const maxID = "18446744073709551615-18446744073709551615"
	if r := e.do("GET", "/v1/chats/"+id+"/messages?after="+maxID, nil, "Authorization", "Bearer "+tok); r.code != 400 || r.errCode() != "invalid_after" {
		t.Errorf("after: %d %s", r.code, r.body)
	}
	if r := e.do("GET", "/v1/chats/"+id+"/messages?after=18446744073709551615-18446744073709551614", nil, "Authorization", "Bearer "+tok); r.code != 200 {
		t.Errorf("the id before it: %d %s", r.code, r.body)
	}
	for _, h := range [][]string{{"Last-Event-ID", maxID}, {"Last-Event-ID", "garbage"}} {
		if r := e.do("GET", "/v1/chats/"+id+"/events?token="+tok, nil, h...); r.code != 400 || r.errCode() != "invalid_last_event_id" {
			t.Errorf("%s: %d %s", h[1], r.code, r.body)
		}
	}
	if r := e.do("GET", "/v1/chats/"+id+"/events?token="+tok+"&last_event_id="+maxID, nil); r.code != 400 {
		t.Errorf("last_event_id: %d %s", r.code, r.body)
	}
}
