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
