package widget

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// mailbox is the outbox target EmailTarget as the bridge sees it: it records
// the emails the bridge queues (the SMTP sender has its own tests).
type mailbox struct {
	mu     sync.Mutex
	emails []bridge.Delivery
}

func (m *mailbox) Name() string                                 { return bridge.EmailTarget }
func (m *mailbox) Reaches(presence.AgentID) bool                { return false }
func (m *mailbox) Shared(presence.PropertyID) bool              { return false }
func (m *mailbox) Run(ctx context.Context, _ bridge.Host) error { <-ctx.Done(); return nil }
func (m *mailbox) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	return nil, m.deliverOne(ctx, d)
}

func (m *mailbox) deliverOne(_ context.Context, d bridge.Delivery) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.emails = append(m.emails, d)
	return nil
}

func (m *mailbox) all() []bridge.Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]bridge.Delivery(nil), m.emails...)
}

const propForm = presence.PropertyID("form")

func prechatDirectory(t testing.TB) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{
			{ID: propDemo, Name: "Demo", OfflineMode: presence.ModeForm, Email: true},
			{ID: propForm, Name: "Form & Co", OfflineMode: presence.ModeForm, Email: true,
				Prechat: presence.Prechat{Name: presence.FieldRequired, Email: presence.FieldHidden, Consent: "I agree to the privacy policy"}},
		},
		[]presence.Agent{
			{ID: agentAlice, Name: "Alice", Properties: []presence.PropertyID{propDemo, propForm}, Condition: presence.Always},
		})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// emailEnv is a server on the real bridge with an email target.
func emailEnv(t *testing.T) (*env, *bridge.Bridge, *mailbox) {
	t.Helper()
	return bridgeEnv(t, true)
}

// bridgeEnv is a server on the real bridge, with an email target if withMail.
func bridgeEnv(t *testing.T, withMail bool) (*env, *bridge.Bridge, *mailbox) {
	t.Helper()
	e := newEnvDir(t, prechatDirectory(t))
	b, err := bridge.New(bridge.Config{
		Prefix:     e.redis.Prefix,
		Properties: map[presence.PropertyID]bridge.Routing{propDemo: {}, propForm: {}},
		PollEvery:  20 * time.Millisecond,
		PublicURL:  "https://chat.example",
		Now:        e.clock.Now,
	}, e.redis.Client, e.store, e.watcher, e.log)
	if err != nil {
		t.Fatal(err)
	}
	mb := &mailbox{}
	if withMail {
		b.AddAdapter(mb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.srv = New(e.cfg, e.watcher, e.store, b, e.redis.Client, e.log)
	return e, b, mb
}

func TestStatusTellsEmailAndPrechat(t *testing.T) {
	e := newEnvDir(t, prechatDirectory(t))
	for _, tc := range []struct {
		p    presence.PropertyID
		want string
	}{
		{propDemo, `"email":true,"prechat":{"name":"optional","email":"optional","consent":""}`},
		{propForm, `"email":true,"prechat":{"name":"required","email":"hidden","consent":"I agree to the privacy policy"}`},
	} {
		r := e.do("GET", "/v1/properties/"+string(tc.p)+"/status", nil)
		if r.code != 200 || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%s: %d %s, want %s", tc.p, r.code, r.body, tc.want)
		}
	}
	// Without email the widget is told so, and never promises it.
	e = newEnv(t)
	if r := e.do("GET", "/v1/properties/demo/status", nil); !strings.Contains(string(r.body), `"email":false`) {
		t.Errorf("no email: %s", r.body)
	}
}

func TestPrechatEnforced(t *testing.T) {
	e, b, _ := emailEnv(t)
	tests := []struct {
		name    string
		path    string
		body    map[string]any
		code    int
		errCode string
		errText string
	}{
		{"required name missing", "/v1/properties/form/chats", map[string]any{"message": "hi", "consent": true}, 400, "missing_field", "name"},
		{"required name blank", "/v1/properties/form/chats", map[string]any{"message": "hi", "name": "  ", "consent": true}, 400, "missing_field", "name"},
		{"consent missing", "/v1/properties/form/chats", map[string]any{"message": "hi", "name": "Vic"}, 400, "missing_field", "consent"},
		{"all there", "/v1/properties/form/chats", map[string]any{"message": "hi", "name": "Vic", "consent": true}, 201, "", ""},
		{"optional fields absent", "/v1/properties/demo/chats", map[string]any{"message": "hi"}, 201, "", ""},
		{"invalid email", "/v1/properties/demo/chats", map[string]any{"message": "hi", "email": "vic@@example.com"}, 400, "invalid_email", "email"},
		{"offline: required name missing", "/v1/properties/form/offline-messages", map[string]any{"text": "hi", "email": "v@example.com", "consent": true}, 400, "missing_field", "name"},
		{"offline: email missing", "/v1/properties/demo/offline-messages", map[string]any{"text": "hi"}, 400, "missing_field", "email"},
		{"offline: invalid email", "/v1/properties/demo/offline-messages", map[string]any{"text": "hi", "email": "v@example"}, 400, "invalid_email", "email"},
		{"offline: all there", "/v1/properties/form/offline-messages", map[string]any{"text": "hi", "name": "Vic", "email": "v@example.com", "consent": true}, 201, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", tc.path, tc.body)
			if r.code != tc.code || r.errCode() != tc.errCode || !strings.Contains(string(r.body), tc.errText) {
				t.Fatalf("got %d %s, want %d %s naming %q", r.code, r.body, tc.code, tc.errCode, tc.errText)
			}
			if tc.code != 201 {
				return
			}
			var out startChatResponse
			r.json(t, &out)
			chat, err := b.AuthVisitor(context.Background(), out.ChatID, out.VisitorToken)
			if err != nil {
				t.Fatal(err)
			}
			if tc.path == "/v1/properties/form/chats" && (chat.Visitor.Email != "" || !chat.Visitor.Consent) {
				t.Errorf("visitor %+v: the hidden email must not be kept, the consent must", chat.Visitor)
			}
		})
	}
}

func TestOfflineMessageTokenOpensChat(t *testing.T) {
	e, _, _ := emailEnv(t)
	base := e.serve()
	r := e.do("POST", "/v1/properties/demo/offline-messages", map[string]string{"name": "Vic", "email": "vic@example.com", "text": "Call me back"})
	if r.code != http.StatusCreated {
		t.Fatalf("offline message: %d %s", r.code, r.body)
	}
	var out startChatResponse
	r.json(t, &out)
	auth := []string{"Authorization", "Bearer " + out.VisitorToken}
	if tr := e.do("GET", "/v1/chats/"+string(out.ChatID)+"/messages", nil, auth...); tr.code != 200 || !strings.Contains(string(tr.body), "Call me back") {
		t.Errorf("transcript: %d %s", tr.code, tr.body)
	}
	s := openSSE(t, base+"/v1/chats/"+string(out.ChatID)+"/events?token="+out.VisitorToken)
	defer s.Close()
	s.next("status")
	// An agent's answer reaches the visitor's stream.
	r = e.do("POST", "/v1/admin/agents/alice/actions", map[string]string{"chat_id": string(out.ChatID), "text": "Calling you now."}, adminBearer...)
	if r.code != 200 {
		t.Fatalf("answer: %d %s", r.code, r.body)
	}
	if ev := s.next("message", "status", "agent_joined"); !strings.Contains(ev.Data, "Calling you now.") {
		t.Errorf("event %s", ev.Data)
	}
}

func TestTranscriptEmail(t *testing.T) {
	e, _, mb := emailEnv(t)
	with := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "Where is my parcel?", "email": "vic@example.com", "name": "Vic"})
	without := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "Anonymous question"})
	var a, n startChatResponse
	with.json(t, &a)
	without.json(t, &n)

	r := e.do("POST", "/v1/chats/"+string(n.ChatID)+"/transcript", nil, "Authorization", "Bearer "+n.VisitorToken)
	if r.code != http.StatusConflict || r.errCode() != "no_email" {
		t.Errorf("without an email: %d %s", r.code, r.body)
	}
	if r := e.do("POST", "/v1/chats/"+string(a.ChatID)+"/transcript", nil, "Authorization", "Bearer "+n.VisitorToken); r.code != http.StatusForbidden {
		t.Errorf("another chat's token: %d %s", r.code, r.body)
	}
	r = e.do("POST", "/v1/chats/"+string(a.ChatID)+"/transcript", nil, "Authorization", "Bearer "+a.VisitorToken)
	if r.code != http.StatusAccepted {
		t.Fatalf("transcript: %d %s", r.code, r.body)
	}
	wait.For(t, "transcript email queued and delivered", func() bool { return len(mb.all()) == 1 })
	d := mb.all()[0]
	if d.Kind != bridge.KindEmail || d.Email == nil || d.Email.Kind != bridge.EmailTranscript || d.Email.To != "vic@example.com" ||
		d.Email.Property != "Demo" || len(d.Email.Messages) != 1 || d.Email.Messages[0].Text != "Where is my parcel?" ||
		d.Email.ContinueURL != "https://chat.example/c/"+string(a.ChatID)+"#"+a.VisitorToken {
		t.Errorf("email %+v %+v", d, d.Email)
	}
}

func TestRating(t *testing.T) {
	e, b, _ := emailEnv(t)
	id, tok := e.startChat(propDemo, "Hello")
	auth := []string{"Authorization", "Bearer " + tok}
	path := "/v1/chats/" + id + "/rating"
	if r := e.do("POST", path, map[string]any{"score": 5}, auth...); r.code != http.StatusConflict || r.errCode() != "chat_open" {
		t.Errorf("before close: %d %s", r.code, r.body)
	}
	if r := e.do("POST", "/v1/chats/"+id+"/close", nil, auth...); r.code != 200 {
		t.Fatalf("close: %d %s", r.code, r.body)
	}
	for _, tc := range []struct {
		name string
		body any
	}{
		{"no score", map[string]any{"comment": "meh"}},
		{"zero", map[string]any{"score": 0}},
		{"six", map[string]any{"score": 6}},
		{"fraction", map[string]any{"score": 4.5}},
		{"text", map[string]any{"score": "5"}},
		{"long comment", map[string]any{"score": 3, "comment": strings.Repeat("x", 1001)}},
	} {
		if r := e.do("POST", path, tc.body, auth...); r.code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", tc.name, r.code, r.body)
		}
	}
	if r := e.do("POST", path, map[string]any{"score": 2, "comment": "slow"}, auth...); r.code != 200 || !strings.Contains(string(r.body), `"score":2`) {
		t.Errorf("rate: %d %s", r.code, r.body)
	}
	if r := e.do("POST", path, map[string]any{"score": 4, "comment": "better after all"}, auth...); r.code != 200 {
		t.Errorf("rate again: %d %s", r.code, r.body)
	}
	chat, err := b.AuthVisitor(context.Background(), bridge.ChatID(id), tok)
	if err != nil {
		t.Fatal(err)
	}
	if chat.Rating == nil || chat.Rating.Score != 4 || chat.Rating.Comment != "better after all" {
		t.Errorf("stored rating %+v: the second must replace the first", chat.Rating)
	}
}

func TestContinuePage(t *testing.T) {
	e, _, _ := emailEnv(t)
	r := e.do("POST", "/v1/properties/form/chats", map[string]any{"message": "hi", "name": "Vic", "consent": true})
	var out startChatResponse
	r.json(t, &out)
	for _, tc := range []struct {
		name, path string
		code       int
		want       []string
	}{
		{"known chat", "/c/" + string(out.ChatID), 200, []string{
			`<script src="/widget.js" data-property="form" data-chat="` + string(out.ChatID) + `"`,
			"<title>Form &amp; Co: your conversation</title>",
		}},
		{"unknown chat", "/c/nosuchchat", 404, []string{"no longer exists"}},
		{"malformed id", "/c/" + strings.Repeat("a", 40), 404, []string{"no longer exists"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("GET", tc.path, nil)
			if r.code != tc.code || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
				t.Fatalf("%d %s %s", r.code, r.header.Get("Content-Type"), r.body)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(r.body), w) {
					t.Errorf("page lacks %s:\n%s", w, r.body)
				}
			}
			if strings.Contains(string(r.body), out.VisitorToken) {
				t.Error("the page must not carry the token: it lives in the link's fragment")
			}
		})
	}
}

// TestReadInWidgetNotEmailed: an agent's reply that went out on the
// visitor's open event stream, or in a transcript fetched with the token,
// is not emailed; one the visitor never saw is, after email_after.
func TestReadInWidgetNotEmailed(t *testing.T) {
	e, _, mb := emailEnv(t)
	base := e.serve()
	ctx := context.Background()
	start := func() startChatResponse {
		t.Helper()
		r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "Hello", "email": "vic@example.com"})
		var out startChatResponse
		r.json(t, &out)
		return out
	}
	answer := func(c startChatResponse, text string) {
		t.Helper()
		if r := e.do("POST", "/v1/admin/agents/alice/actions", map[string]string{"chat_id": string(c.ChatID), "text": text}, adminBearer...); r.code != 200 {
			t.Fatalf("answer: %d %s", r.code, r.body)
		}
	}
	timerDone := func(c startChatResponse) {
		t.Helper()
		wait.For(t, "email timer fired", func() bool {
			_, err := e.redis.Client.ZScore(ctx, e.redis.Prefix+"timers", "email|demo|"+string(c.ChatID)).Result()
			return err != nil
		})
	}
	readMark := func(c startChatResponse) string {
		v, _ := e.redis.Client.HGet(ctx, e.redis.Prefix+"{demo}:chat:"+string(c.ChatID), "read").Result()
		return v
	}

	onStream, byTranscript, away := start(), start(), start()
	s := openSSE(t, base+"/v1/chats/"+string(onStream.ChatID)+"/events?token="+onStream.VisitorToken)
	defer s.Close()
	s.next("status")
	answer(onStream, "Seen live.")
	ev := s.next("message", "status", "agent_joined")
	wait.For(t, "the stream marks the reply read", func() bool { return readMark(onStream) == ev.ID })

	answer(byTranscript, "Seen in the transcript.")
	if r := e.do("GET", "/v1/chats/"+string(byTranscript.ChatID)+"/messages", nil, "Authorization", "Bearer "+byTranscript.VisitorToken); r.code != 200 {
		t.Fatalf("transcript: %d", r.code)
	}
	if readMark(byTranscript) == "" {
		t.Error("the transcript did not mark the chat read")
	}
	answer(away, "Nobody saw this.")

	e.clock.Advance(2 * time.Minute) // the default email_after
	for _, c := range []startChatResponse{onStream, byTranscript, away} {
		timerDone(c)
	}
	wait.For(t, "the unread reply emailed", func() bool { return len(mb.all()) >= 1 })
	wait.For(t, "the email outbox drained", func() bool {
		keys, _ := e.redis.Client.Keys(ctx, e.redis.Prefix+"outbox:{email:*}").Result()
		for _, k := range keys {
			if n, _ := e.redis.Client.XLen(ctx, k).Result(); n > 0 {
				return false
			}
		}
		return true
	})
	got := mb.all()
	if len(got) != 1 || got[0].Chat.ID != away.ChatID || len(got[0].Email.Messages) != 1 || got[0].Email.Messages[0].Text != "Nobody saw this." {
		t.Fatalf("emails %+v: want only the unread reply", got)
	}
}

func TestTranscriptWithoutEmailServer(t *testing.T) {
	e, _, _ := bridgeEnv(t, false)
	r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "Hello", "email": "vic@example.com"})
	var c startChatResponse
	r.json(t, &c)
	r = e.do("POST", "/v1/chats/"+string(c.ChatID)+"/transcript", nil, "Authorization", "Bearer "+c.VisitorToken)
	if r.code != http.StatusConflict || r.errCode() != "email_disabled" {
		t.Errorf("%d %s", r.code, r.body)
	}
}
