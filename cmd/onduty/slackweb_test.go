package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/wait"
)

// slackWeb is the little of Slack's Web API a process test in events mode
// needs: auth.test, chat.postMessage, chat.update, chat.postEphemeral,
// users.getPresence. Posts get ts 1700000000.NNNNNN in order; a post to a
// user id opens their DM, D… for U…. It also plays Slack's side of the
// events mode: signed event callbacks and button presses posted to the
// process (event, button).
type slackWeb struct {
	srv    *httptest.Server
	secret string // the signing secret of what it posts to the process

	mu       sync.Mutex
	seq      int
	posts    []slackPost
	triggers int // button presses sent
}

type slackPost struct {
	Method, Channel, TS, ThreadTS, Text string
}

// newSlackWeb starts the fake; events and button presses are signed with
// secret. lastTS continues a recorded deployment: the next post gets the ts
// after it ("" starts at 1700000000.000001).
func newSlackWeb(t *testing.T, secret, lastTS string) *slackWeb {
	t.Helper()
	s := &slackWeb{secret: secret}
	if lastTS != "" {
		_, frac, ok := strings.Cut(lastTS, ".")
		n, err := strconv.Atoi(frac)
		if !ok || err != nil || !strings.HasPrefix(lastTS, "1700000000.") {
			t.Fatalf("slackWeb: last ts %q is not 1700000000.NNNNNN", lastTS)
		}
		s.seq = n
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// apiURL is the process's slack.api_url.
func (s *slackWeb) apiURL() string { return s.srv.URL + "/api/" }

func (s *slackWeb) serve(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	form := url.Values{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &m)
		for k, v := range m {
			if s, ok := v.(string); ok {
				form.Set(k, s)
			} else {
				j, _ := json.Marshal(v)
				form.Set(k, string(j))
			}
		}
	} else {
		_ = r.ParseForm()
		form = r.Form
	}
	channel := form.Get("channel")
	if strings.HasPrefix(channel, "U") {
		channel = "D" + channel[1:]
	}
	text := form.Get("text") + " " + form.Get("blocks")
	s.mu.Lock()
	s.seq++
	ts := fmt.Sprintf("1700000000.%06d", s.seq)
	if method == "chat.update" {
		ts = form.Get("ts")
	}
	s.posts = append(s.posts, slackPost{Method: method, Channel: channel, TS: ts, ThreadTS: form.Get("thread_ts"), Text: text})
	s.mu.Unlock()
	var res map[string]any
	switch method {
	case "auth.test":
		res = map[string]any{"ok": true, "user_id": "UBOT", "bot_id": "BBOT", "team": "Acme", "user": "onduty"}
	case "chat.postMessage", "chat.update":
		res = map[string]any{"ok": true, "channel": channel, "ts": ts, "message": map[string]any{"text": form.Get("text"), "ts": ts}}
	case "chat.postEphemeral":
		res = map[string]any{"ok": true, "message_ts": ts}
	case "users.getPresence":
		res = map[string]any{"ok": true, "presence": "active"}
	default:
		res = map[string]any{"ok": false, "error": "unknown_method"}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// postsWhere lists the calls (posts and updates) keep accepts.
func (s *slackWeb) postsWhere(keep func(slackPost) bool) []slackPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []slackPost
	for _, p := range s.posts {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// waitPost waits for a chat.postMessage to channel (or to the DM of a user
// id) whose text or blocks contain want.
func (s *slackWeb) waitPost(t *testing.T, channel, want string) slackPost {
	t.Helper()
	if strings.HasPrefix(channel, "U") {
		channel = "D" + channel[1:]
	}
	var got slackPost
	wait.Within(t, 15*time.Second, fmt.Sprintf("Slack post to %s with %q", channel, want), func() bool {
		posts := s.postsWhere(func(p slackPost) bool {
			return p.Method == "chat.postMessage" && p.Channel == channel && strings.Contains(p.Text, want)
		})
		if len(posts) > 0 {
			got = posts[0]
		}
		return len(posts) > 0
	})
	return got
}

// updatesOf is the text of every chat.update of the message ts.
func (s *slackWeb) updatesOf(ts string) string {
	var b strings.Builder
	for _, p := range s.postsWhere(func(p slackPost) bool { return p.Method == "chat.update" && p.TS == ts }) {
		b.WriteString(p.Text)
	}
	return b.String()
}

func (s *slackWeb) lastTS() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("1700000000.%06d", s.seq)
}

// signedPost posts body to the process as Slack would, signed with secret.
func signedPost(t *testing.T, secret, u, contentType string, body []byte) {
	t.Helper()
	stamp := strconv.FormatInt(time.Now().Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%s:%s", stamp, body)
	req, _ := http.NewRequest("POST", u, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", stamp)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", u, resp.StatusCode, b)
	}
}

// event posts a Slack Events API callback with event id id; the process
// answers once it has handled it.
func (s *slackWeb) event(t *testing.T, base, id string, inner map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{
		"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
		"event_id": id, "event_time": time.Now().Unix(), "event": inner,
	})
	signedPost(t, s.secret, base+"/slack/events", "application/json", b)
}

// button posts user's press of an offer's Accept button for chat, on the
// message ts in channel.
func (s *slackWeb) button(t *testing.T, base, user, chat, channel, ts string) {
	t.Helper()
	s.mu.Lock()
	s.triggers++
	trigger := fmt.Sprintf("trig-%d-%d", s.seq, s.triggers) // unique after a recorded run too
	s.mu.Unlock()
	payload, _ := json.Marshal(map[string]any{
		"type": "block_actions", "trigger_id": trigger, "api_app_id": "A1",
		"user":      map[string]any{"id": user, "username": "u"},
		"team":      map[string]any{"id": "T1"},
		"channel":   map[string]any{"id": channel, "name": "dm"},
		"container": map[string]any{"type": "message", "message_ts": ts, "channel_id": channel},
		"actions": []map[string]any{{
			"action_id": "onduty_accept", "block_id": "offer", "value": chat, "type": "button",
			"text": map[string]any{"type": "plain_text", "text": "Accept"}, "action_ts": "1700000001.000001",
		}},
	})
	signedPost(t, s.secret, base+"/slack/interactions", "application/x-www-form-urlencoded", []byte(url.Values{"payload": {string(payload)}}.Encode()))
}
