package email

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/smtptest"
	"github.com/onduty/onduty/internal/testlog"
)

const from = "Acme Support <support@acme.example>"

func newSender(t *testing.T, srv *smtptest.Server) *Sender {
	t.Helper()
	s, err := New(Config{SMTPURL: srv.URL(), From: from, TLSConfig: srv.TLSConfig(), Timeout: 5 * time.Second}, testlog.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func replies(to, name string, texts ...string) bridge.Delivery {
	at := time.Date(2026, 12, 4, 15, 4, 0, 0, time.UTC)
	d := bridge.Delivery{ID: "d1", Kind: bridge.KindEmail, Chat: bridge.Chat{ID: "chat1", Property: "acme"},
		Email: &bridge.Email{Kind: bridge.EmailReplies, To: to, ToName: name, Property: "Acme",
			ContinueURL: "https://chat.acme.example/c/chat1#tok3n"}}
	for _, tx := range texts {
		d.Email.Messages = append(d.Email.Messages, bridge.Message{ID: "1-0", Chat: "chat1", From: bridge.FromAgent, Name: "Alice", Text: tx, At: at})
	}
	return d
}

func TestSendModes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		srv     func(t *testing.T) *smtptest.Server
		tls     bool
		authed  bool
		urlPart string
	}{
		{"STARTTLS and AUTH PLAIN", func(t *testing.T) *smtptest.Server { return smtptest.New(t) }, true, true, "smtp://"},
		{"SMTPS", func(t *testing.T) *smtptest.Server { return smtptest.New(t, smtptest.Implicit) }, true, true, "smtps://"},
		{"plain local catcher", func(t *testing.T) *smtptest.Server { return smtptest.New(t, smtptest.Plain) }, false, false, "smtp://127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.srv(t)
			if !strings.HasPrefix(srv.URL(), tc.urlPart) {
				t.Fatalf("url %s", srv.URL())
			}
			s := newSender(t, srv)
			if _, err := s.Deliver(context.Background(), replies("vic@example.com", "Vic", "It ships today.")); err != nil {
				t.Fatal(err)
			}
			m := srv.WaitN(t, 1)[0]
			if m.TLS != tc.tls || m.Authed != tc.authed {
				t.Errorf("tls %v authed %v, want %v %v", m.TLS, m.Authed, tc.tls, tc.authed)
			}
			if m.From != "support@acme.example" || len(m.To) != 1 || m.To[0] != "vic@example.com" {
				t.Errorf("envelope %s → %v", m.From, m.To)
			}
		})
	}
}

func TestComposedMessage(t *testing.T) {
	srv := smtptest.New(t)
	s := newSender(t, srv)
	if _, err := s.Deliver(context.Background(), replies("vic@example.com", "Vic Müller", "It ships <b>today</b> & tomorrow.", "Anything else?")); err != nil {
		t.Fatal(err)
	}
	m := srv.WaitN(t, 1)[0]
	h := m.Header
	if got := h.Get("Content-Type"); !strings.HasPrefix(got, "multipart/alternative") {
		t.Errorf("content type %q", got)
	}
	if m.Subject != "Acme replied to your message" || !strings.Contains(h.Get("From"), "support@acme.example") ||
		!strings.Contains(h.Get("To"), "vic@example.com") || h.Get("Auto-Submitted") != "auto-generated" || h.Get("Message-Id") == "" {
		t.Errorf("headers %v (subject %q)", h, m.Subject)
	}
	for _, want := range []string{"Hello Vic Müller,", "Acme answered you while you were away (2 messages):", "Alice (4 Dec 2026 15:04 UTC):",
		"It ships <b>today</b> & tomorrow.", "Anything else?", "Continue the conversation: https://chat.acme.example/c/chat1#tok3n"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, m.Text)
		}
	}
	for _, want := range []string{"It ships &lt;b&gt;today&lt;/b&gt; &amp; tomorrow.", `href="https://chat.acme.example/c/chat1#tok3n"`, "Hello Vic Müller,"} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("html lacks %q:\n%s", want, m.HTML)
		}
	}
	if strings.Contains(m.HTML, "<b>today") {
		t.Error("agent text reached the HTML unescaped")
	}
}

func TestHeaderInjection(t *testing.T) {
	srv := smtptest.New(t)
	s := newSender(t, srv)
	d := replies("vic@example.com", "Vic\r\nBcc: everyone@example.com", "hi")
	d.Email.Property = "Acme\r\nX-Injected: yes"
	if _, err := s.Deliver(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	m := srv.WaitN(t, 1)[0]
	if len(m.To) != 1 || m.Header.Get("Bcc") != "" || m.Header.Get("X-Injected") != "" {
		t.Errorf("injected: rcpt %v headers %v", m.To, m.Header)
	}
	if strings.ContainsAny(m.Subject, "\r\n") || !strings.HasPrefix(m.Subject, "Acme X-Injected: yes") {
		t.Errorf("subject %q", m.Subject)
	}
	for _, bad := range []string{"vic@example.com\r\nBcc: everyone@example.com", "vic@example.com\n", "Vic <vic@example.com>", "not an address"} {
		_, err := s.Deliver(context.Background(), replies(bad, "Vic", "hi"))
		var perm *bridge.PermanentError
		if !errors.As(err, &perm) {
			t.Errorf("address %q: %v, want a permanent error", bad, err)
		}
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages reached the server", n)
	}
}

func TestServerAnswers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    error
		permanent bool
	}{
		{"550 mailbox unknown", smtptest.Reply(550, "5.1.1", "no such user"), true},
		{"553 bad address", smtptest.Reply(553, "5.1.3", "bad address"), true},
		{"451 try later", smtptest.Reply(451, "4.3.0", "try later"), false},
		{"421 going away", smtptest.Reply(421, "4.3.2", "closing"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.New(t)
			srv.SetRcptAnswer(func(string) error { return tc.answer })
			_, err := newSender(t, srv).Deliver(context.Background(), replies("vic@example.com", "Vic", "hi"))
			var perm *bridge.PermanentError
			if err == nil || errors.As(err, &perm) != tc.permanent {
				t.Errorf("err %v, permanent %v, want %v", err, errors.As(err, &perm), tc.permanent)
			}
		})
	}
	t.Run("server down", func(t *testing.T) {
		srv := smtptest.New(t)
		srv.Stop()
		_, err := newSender(t, srv).Deliver(context.Background(), replies("vic@example.com", "Vic", "hi"))
		var perm *bridge.PermanentError
		if err == nil || errors.As(err, &perm) {
			t.Errorf("err %v: want a retryable error", err)
		}
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{
		{SMTPURL: "http://mail.example", From: from},
		{SMTPURL: "smtp://", From: from},
		{SMTPURL: "smtp://mail.example:99999", From: from},
		{SMTPURL: "smtp://mail.example", From: "nobody"},
		{SMTPURL: "smtp://mail.example", From: "a@b.example\r\nBcc: x@y.example"},
	} {
		if _, err := New(c, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
