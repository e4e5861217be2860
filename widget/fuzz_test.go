package widget

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz tests of the visitor and admin API bodies, through app.Test. In CI
// the seed corpus (below and testdata/fuzz) runs as plain tests; to fuzz:
//
//	go test -run XXX -fuzz FuzzVisitorAPI -fuzztime 60s ./widget

// fuzzEnv is a server whose rate limits are off (fuzzing sends thousands of
// requests from one address) with one chat started.
func fuzzEnv(f *testing.F) (e *env, chatID, token string) {
	e = newEnv(f, func(c *Config) { c.RateLimits = RateLimits{ChatsPerMinute: -1, MessagesPerMinute: -1} })
	chatID, token = e.startChat(propDemo, "hello")
	return e, chatID, token
}

// checkAnswer: no 500, and every error is the JSON error shape.
func checkAnswer(t *testing.T, what string, r resp, body []byte) {
	t.Helper()
	if r.code >= 500 && r.code != 503 {
		t.Errorf("%s: %d %s for %q", what, r.code, r.body, body)
	}
	if r.code >= 400 && r.errCode() == "" {
		t.Errorf("%s: %d without an error code: %s", what, r.code, r.body)
	}
}

func FuzzVisitorAPI(f *testing.F) {
	seeds := []string{
		`{"message":"hi","name":"Vic","email":"vic@example.com","page_url":"https://demo.example/"}`,
		`{"text":"hello"}`, `{"email":"a@b.example","text":"call me","name":"<b>"}`,
		`{"status":"away"}`, `{"condition":"always"}`, `{"status":"busy"}`, `{"status":5}`,
		`{"message":"` + strings.Repeat("é", 4000) + `"}`, `{"message":"x","message":"y"}`,
		`{"message":"\u0000\u001b[31m"}`, `{"text":"\ud800"}`, "{\"text\":\"\xff\"}", `{"text":null}`,
		`[]`, `null`, `"x"`, ``, `{`, `{"a":{"b":{"c":[[[[[[]]]]]]}}}`, `{"message":"hi"} {"message":"again"}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	e, chatID, token := fuzzEnv(f)
	bearer := []string{"Authorization", "Bearer " + token}
	admin := []string{"Authorization", "Bearer " + adminToken}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		before := len(e.chats.Calls())
		var r resp
		var what string
		switch which % 5 {
		case 0:
			what, r = "start chat", doApp(t, e.srv, "POST", "/v1/properties/demo/chats", body)
		case 1:
			what, r = "post message", doApp(t, e.srv, "POST", "/v1/chats/"+chatID+"/messages", body, bearer...)
		case 2:
			what, r = "offline message", doApp(t, e.srv, "POST", "/v1/properties/demo/offline-messages", body)
		case 3:
			what, r = "admin status", doApp(t, e.srv, "PUT", "/v1/admin/agents/alice/status", body, admin...)
		case 4:
			what, r = "post message without token", doApp(t, e.srv, "POST", "/v1/chats/"+chatID+"/messages", body)
			if r.code != 401 {
				t.Errorf("no token: %d %s", r.code, r.body)
			}
		}
		checkAnswer(t, what, r, body)
		if r.code < 300 && which%5 != 3 {
			var in map[string]any
			if err := json.Unmarshal(body, &in); err != nil || !utf8.Valid(body) {
				t.Errorf("%s: %d for a body that is not a JSON object: %q", what, r.code, body)
			}
			for _, field := range []string{"message", "text"} {
				if s, ok := in[field].(string); ok && (strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > 4000) {
					t.Errorf("%s: %d for %s %q", what, r.code, field, s)
				}
			}
		}
		if r.code >= 400 && which%5 != 3 && len(e.chats.Calls()) != before {
			t.Errorf("%s: refused with %d, yet the bridge was called: %v", what, r.code, e.chats.Calls()[before:])
		}
	})
}

// FuzzChatPaths fuzzes the ids and the after cursor in the URL: unknown or
// malformed ones are 4xx, never a 500 or another chat's data. It goes over a
// real listener, not app.Test: an id long enough to overflow fasthttp's read
// buffer must come back as our 431 JSON error, which only the server's own
// error path (not app.Test) produces.
func FuzzChatPaths(f *testing.F) {
	for _, s := range []string{"", "0-0", "1-1", "abc", "../../admin", "%00", "9999999999999-99999999999", "-", "1-", "x y", "é", strings.Repeat("é", 1500)} {
		f.Add(s, s)
	}
	e, chatID, token := fuzzEnv(f)
	e.startChat(propDemo, "someone else's secret")
	base := e.serve()
	client := &http.Client{Timeout: testTimeout}
	f.Fuzz(func(t *testing.T, id, after string) {
		for _, path := range []string{
			"/v1/chats/" + url.PathEscape(id) + "/messages",
			"/v1/chats/" + chatID + "/messages?after=" + url.QueryEscape(after),
			"/v1/properties/" + url.PathEscape(id) + "/status",
		} {
			req, err := http.NewRequest("GET", base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := client.Do(req)
			if err != nil && len(path)+1024 > headerBytes {
				// The server answers 431 after headerBytes and closes;
				// a client still writing a URL that long sees a reset.
				return
			}
			if err != nil {
				t.Fatalf("GET %.80s: %v", path, err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatalf("GET %.80s: %v", path, err)
			}
			r := resp{code: res.StatusCode, header: res.Header, body: body}
			checkAnswer(t, fmt.Sprintf("%.80s", path), r, nil)
			if strings.Contains(string(r.body), "someone else's secret") {
				t.Errorf("%.80s shows another chat's message", path)
			}
		}
	})
}
