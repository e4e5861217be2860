package email

import (
	"context"
	"fmt"
	"html"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/smtptest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// The bridge and the sender together, against a real SMTP server and
// Redis: what a visitor who left gets by email. The bridge's clock is the
// test's; the outbox retries on real time (milliseconds).

const emailAfter = time.Minute

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type flow struct {
	t     *testing.T
	b     *bridge.Bridge
	r     *redistest.Redis
	smtp  *smtptest.Server
	clock *clock
}

func newFlow(t *testing.T, opts ...smtptest.Option) *flow {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := redistest.New(t)
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme <Shop>", Email: true}},
		[]presence.Agent{{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Condition: presence.Always, InitialStatus: presence.Online}})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano())
	log := testlog.Logger()
	store := presence.NewStore(r.Client, dir, presence.Keys{Prefix: r.Prefix}, c.Now)
	watcher := presence.NewWatcher(store, log)
	if err := watcher.Load(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{
		Prefix: r.Prefix, Properties: map[presence.PropertyID]bridge.Routing{"acme": {EmailAfter: emailAfter}},
		Now: c.Now, PublicURL: "https://chat.acme.example/",
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, PollEvery: 10 * time.Millisecond,
	}, r.Client, store, watcher, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := smtptest.New(t, opts...)
	b.AddAdapter(newSender(t, srv))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := b.Run(ctx); err != nil {
			t.Errorf("bridge: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &flow{t: t, b: b, r: r, smtp: srv, clock: c}
}

// reply is alice answering in a chat (taking it if nobody has).
func (f *flow) reply(id bridge.ChatID, text string) {
	f.t.Helper()
	if _, err := f.b.Handle(context.Background(), bridge.Action{Kind: bridge.ActMessage, Surface: "test", Agent: "alice", Chat: id, Text: text}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *flow) chat(email string) (bridge.ChatID, string) {
	f.t.Helper()
	c, tok, err := f.b.StartChat(context.Background(), "acme", bridge.Visitor{Name: "Vic", Email: email}, "Hello, where is my parcel?")
	if err != nil {
		f.t.Fatal(err)
	}
	return c.ID, tok
}

// emailTimerGone waits until the chat's email timer has fired and is done.
func (f *flow) emailTimerGone(id bridge.ChatID) {
	f.t.Helper()
	wait.For(f.t, "email timer of "+string(id)+" done", func() bool {
		_, err := f.r.Client.ZScore(context.Background(), f.r.Prefix+"timers", "email|acme|"+string(id)).Result()
		return err != nil
	})
}

// outboxEmpty is true when no email waits in the outbox.
func (f *flow) outboxEmpty() bool {
	ctx := context.Background()
	keys, _ := f.r.Client.Keys(ctx, f.r.Prefix+"outbox:{email:*}").Result()
	for _, k := range keys {
		if n, _ := f.r.Client.XLen(ctx, k).Result(); n > 0 {
			return false
		}
	}
	return true
}

func contains(t *testing.T, m smtptest.Message, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(m.Text, w) || !strings.Contains(m.HTML, html.EscapeString(w)) {
			t.Errorf("email %q lacks %q:\n%s", m.Subject, w, m.Text)
		}
	}
}

func TestOfflineMessageAnswerEmailed(t *testing.T) {
	f := newFlow(t)
	c, tok, err := f.b.LeaveOfflineMessage(context.Background(), "acme", bridge.Visitor{Name: "Vic", Email: "vic@example.com"}, "Please call me back")
	if err != nil {
		t.Fatal(err)
	}
	f.reply(c.ID, "We'll call you at 3pm.")
	f.clock.Advance(emailAfter)
	m := f.smtp.WaitN(t, 1)[0]
	if len(m.To) != 1 || m.To[0] != "vic@example.com" || !m.TLS || !m.Authed || m.Subject != "Acme <Shop> replied to your message" {
		t.Errorf("email to %v tls %v auth %v subject %q", m.To, m.TLS, m.Authed, m.Subject)
	}
	contains(t, m, "We'll call you at 3pm.", "Alice")
	if !strings.Contains(m.HTML, "Acme &lt;Shop&gt;") {
		t.Errorf("the property name is not escaped in the HTML:\n%s", m.HTML)
	}
	// The continue link opens the chat with the visitor's own token.
	link := "https://chat.acme.example/c/" + string(c.ID) + "#" + tok
	if !strings.Contains(m.Text, link) {
		t.Fatalf("no continue link %s in:\n%s", link, m.Text)
	}
	u, _ := url.Parse(link)
	if _, err := f.b.AuthVisitor(context.Background(), c.ID, u.Fragment); err != nil {
		t.Errorf("the link's token does not open the chat: %v", err)
	}
}

func TestRepliesBatchedPerWindow(t *testing.T) {
	f := newFlow(t)
	id, _ := f.chat("vic@example.com")
	f.reply(id, "First answer.")
	f.clock.Advance(10 * time.Second)
	f.reply(id, "Second answer.")
	f.clock.Advance(emailAfter - 10*time.Second)
	first := f.smtp.WaitN(t, 1)[0]
	contains(t, first, "First answer.", "Second answer.")

	f.clock.Advance(time.Second)
	f.reply(id, "Third answer.")
	f.clock.Advance(time.Second)
	f.reply(id, "Fourth answer.")
	f.clock.Advance(emailAfter)
	got := f.smtp.WaitN(t, 2)
	f.emailTimerGone(id)
	if len(got) != 2 {
		t.Fatalf("%d emails, want one per window", len(got))
	}
	contains(t, got[1], "Third answer.", "Fourth answer.")
	if strings.Contains(got[1].Text, "First answer.") {
		t.Error("the second email repeats the first one's replies")
	}
}

func TestReadRepliesNotEmailed(t *testing.T) {
	f := newFlow(t)
	ctx := context.Background()
	id, _ := f.chat("vic@example.com")
	f.reply(id, "Read in the widget.")
	msgs, err := f.b.Transcript(ctx, id, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	// The widget marks what went out on the open stream (or in a transcript).
	if err := f.b.MarkRead(ctx, id, msgs[len(msgs)-1].ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(emailAfter)
	f.emailTimerGone(id)
	if n := len(f.smtp.Messages()); n != 0 || !f.outboxEmpty() {
		t.Fatalf("%d emails sent for a read reply", n)
	}
	// A later reply the visitor did not read goes out alone.
	f.reply(id, "Not read.")
	f.clock.Advance(emailAfter)
	m := f.smtp.WaitN(t, 1)[0]
	contains(t, m, "Not read.")
	if strings.Contains(m.Text, "Read in the widget.") {
		t.Error("a read reply was emailed")
	}
	// Chats without an address get no email timer at all.
	anon, _ := f.chat("")
	f.reply(anon, "Nobody to email.")
	if _, err := f.r.Client.ZScore(ctx, f.r.Prefix+"timers", "email|acme|"+string(anon)).Result(); err == nil {
		t.Error("an email timer for a chat without an address")
	}
}

func TestSMTPDownThenUp(t *testing.T) {
	f := newFlow(t)
	retried := testutil.ToFloat64(metrics.Emails.WithLabelValues("retried"))
	f.smtp.Stop()
	for i := range 3 {
		id, _ := f.chat("vic" + string(rune('a'+i)) + "@example.com")
		f.reply(id, "Answer to chat "+string(rune('A'+i)))
	}
	f.clock.Advance(emailAfter)
	wait.For(t, "failed attempts while the server is down", func() bool {
		return testutil.ToFloat64(metrics.Emails.WithLabelValues("retried")) >= retried+3
	})
	f.smtp.Start()
	got := f.smtp.WaitN(t, 3)
	wait.For(t, "the outbox drained", f.outboxEmpty)
	if got = f.smtp.Messages(); len(got) != 3 {
		t.Fatalf("%d emails, want each once", len(got))
	}
	seen := map[string]int{}
	for _, m := range got {
		seen[m.To[0]]++
	}
	for _, to := range []string{"vica@example.com", "vicb@example.com", "vicc@example.com"} {
		if seen[to] != 1 {
			t.Errorf("%s got %d emails", to, seen[to])
		}
	}
}

func TestRefusedRecipientRecorded(t *testing.T) {
	f := newFlow(t)
	failed := testutil.ToFloat64(metrics.Emails.WithLabelValues("failed"))
	f.smtp.SetRcptAnswer(func(string) error { return smtptest.Reply(550, "5.1.1", "no such mailbox") })
	id, tok := f.chat("gone@example.com")
	f.reply(id, "Hello?")
	f.clock.Advance(emailAfter)
	var chat bridge.Chat
	wait.For(t, "the refusal recorded on the chat", func() bool {
		chat, _ = f.b.AuthVisitor(context.Background(), id, tok)
		return chat.EmailError != ""
	})
	if !strings.Contains(chat.EmailError, "550") || !strings.Contains(chat.EmailError, "no such mailbox") {
		t.Errorf("recorded %q", chat.EmailError)
	}
	// The admin board shows it with the chat.
	board, err := f.b.Board(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(board.Active) != 1 || board.Active[0].ID != id || !strings.Contains(board.Active[0].EmailError, "550") {
		t.Errorf("board %+v", board.Active)
	}
	wait.For(t, "the outbox drained", f.outboxEmpty)
	if n := f.smtp.RcptAttempts(); n != 1 {
		t.Errorf("%d attempts: a 5xx must not be retried", n)
	}
	if d := testutil.ToFloat64(metrics.Emails.WithLabelValues("failed")) - failed; d != 1 {
		t.Errorf("onduty_emails_total{result=failed} grew by %v", d)
	}
}

func TestTemporaryRefusalRetried(t *testing.T) {
	for _, code := range []int{421, 451} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			f := newFlow(t)
			var n atomic.Int32
			f.smtp.SetRcptAnswer(func(string) error {
				if n.Add(1) <= 2 {
					return smtptest.Reply(code, "4.3.0", "try again later")
				}
				return nil
			})
			id, _ := f.chat("vic@example.com")
			f.reply(id, "Worth the wait.")
			f.clock.Advance(emailAfter)
			m := f.smtp.WaitN(t, 1)[0]
			contains(t, m, "Worth the wait.")
			wait.For(t, "the outbox drained", f.outboxEmpty)
			if got := len(f.smtp.Messages()); got != 1 || n.Load() != 3 {
				t.Errorf("%d emails after %d attempts, want 1 after 3", got, n.Load())
			}
		})
	}
}

func TestTranscriptByEmail(t *testing.T) {
	f := newFlow(t)
	ctx := context.Background()
	id, _ := f.chat("vic@example.com")
	f.reply(id, "It ships today.")
	if err := f.b.EmailTranscript(ctx, id); err != nil {
		t.Fatal(err)
	}
	m := f.smtp.WaitN(t, 1)[0]
	if m.Subject != "Your conversation with Acme <Shop>" {
		t.Errorf("subject %q", m.Subject)
	}
	contains(t, m, "Hello, where is my parcel?", "It ships today.")
	if !strings.Contains(m.Text, "You (") || !strings.Contains(m.Text, "Alice (") || !strings.Contains(m.HTML, "<strong>You</strong>") {
		t.Errorf("who wrote what is not said:\n%s\n%s", m.Text, m.HTML)
	}
	anon, _ := f.chat("")
	if err := f.b.EmailTranscript(ctx, anon); err != bridge.ErrNoEmail {
		t.Errorf("without an address: %v", err)
	}
}
