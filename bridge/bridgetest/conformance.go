package bridgetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/outage"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// The conformance suite's cast: one property and its one agent. Every
// scenario starts a new bridge with its own Redis keys.
const (
	SuiteProperty  presence.PropertyID = "acme"
	SuiteAgent     presence.AgentID    = "alice"
	SuiteAgentName                     = "Alice"
)

// Env is what the suite gives a platform driver for one scenario.
type Env struct {
	// Redis is the scenario's Redis (the bridge's keys live under its
	// Prefix); an adapter that keeps keys of its own uses the same.
	Redis *redistest.Redis
}

// Caps says which scenarios can apply to a platform. A scenario the
// platform cannot take part in is skipped, naming the reason.
type Caps struct {
	// Files: files travel both ways (visitor → agent, agent → visitor).
	Files bool
	// Outage: the platform can fail for a while (Outage, Recovered).
	Outage bool
	// RateLimit: the platform can answer 429 with retry_after (RateLimit).
	RateLimit bool
	// Duplicates: the platform can deliver one inbound event twice
	// (ReplyTwice).
	Duplicates bool
	// Forgery: the platform can hand the adapter forged input (Forge).
	Forgery bool
}

// Platform drives one adapter and its (fake) platform for the suite: what
// an agent does there and what the agent is shown. Every method fails t
// itself; the waits use internal/wait's limits.
type Platform interface {
	// Surface is the adapter's name (presence.Surface, Adapter.Name).
	Surface() presence.Surface
	// Account is SuiteAgent's account on the platform ("" if the adapter
	// knows its agent otherwise).
	Account() string
	// Caps says which scenarios apply.
	Caps() Caps
	// Adapter builds the adapter under test for dir; the suite adds it to
	// a bridge and runs it.
	Adapter(t *testing.T, dir *presence.Directory) bridge.Adapter
	// Ready waits until the running adapter takes the agent's input.
	Ready(t *testing.T)
	// WaitOffer waits until the agent is offered chat, showing first (the
	// visitor's first message).
	WaitOffer(t *testing.T, chat bridge.ChatID, first string)
	// Accept presses the offer's Accept button (or its equivalent).
	Accept(t *testing.T, chat bridge.ChatID)
	// Reply writes text as the agent where the platform ties it to chat:
	// a reply to a message shown for it, or a message in its thread.
	Reply(t *testing.T, chat bridge.ChatID, text string)
	// Command runs a chat command (without the slash: "close") for chat.
	Command(t *testing.T, chat bridge.ChatID, command string)
	// Seen is every text shown to the agent so far (sent messages and
	// notices, not edits; a platform's rendering), in the order sent.
	Seen(t *testing.T) []string
	// WaitFile waits until a file called name was shown to the agent and
	// returns its bytes.
	WaitFile(t *testing.T, chat bridge.ChatID, name string) []byte
	// SendFile sends a file called name as the agent for chat and returns
	// the bytes sent.
	SendFile(t *testing.T, chat bridge.ChatID, name string) []byte
	// Outage makes the platform fail in mode (outage.ServerError,
	// outage.Timeout, outage.RateLimited) for outage.Minute from now.
	Outage(t *testing.T, mode string)
	// Recovered waits until the outage is over and fails t if it refused
	// no call.
	Recovered(t *testing.T)
	// RateLimit makes the next n sends answer 429 with retry_after. The
	// returned check, called once they all went through, fails t if a send
	// was retried sooner than retryAfter after its 429.
	RateLimit(t *testing.T, n int, retryAfter time.Duration) (check func(t *testing.T))
	// ReplyTwice is Reply delivered twice by the platform as the same event
	// (same update or event id).
	ReplyTwice(t *testing.T, chat bridge.ChatID, text string)
	// Forge hands the adapter every forged input the platform can carry
	// against chat (a bad signature, an unknown user pressing Accept or
	// replying, a stranger's command) and returns once each was answered.
	Forge(t *testing.T, chat bridge.ChatID)
}

// Suite is a running scenario: the real bridge with the adapter under
// test, and the platform.
type Suite struct {
	B     *bridge.Bridge
	Store *presence.Store
	P     Platform
}

// Run runs the conformance scenarios against the platform newPlatform
// builds (a new one per scenario).
func Run(t *testing.T, newPlatform func(t *testing.T, env Env) Platform) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			// Each scenario has its own platform, Redis prefix and bridge;
			// most of their time is waiting out outages and retry_after.
			t.Parallel()
			p := newPlatform(t, Env{Redis: redistest.New(t)})
			if why := sc.needs(p.Caps()); why != "" {
				t.Skipf("%s: %s", p.Surface(), why)
			}
			sc.run(t, start(t, p, nil))
		})
	}
}

// Start starts a bridge with the adapter p builds (for drivers' own extra
// scenarios); it stops with the test.
func Start(t *testing.T, p Platform, env Env) *Suite { return start(t, p, env.Redis) }

func start(t *testing.T, p Platform, r *redistest.Redis) *Suite {
	t.Helper()
	if r == nil {
		r = redistest.New(t)
	}
	accounts := map[presence.Surface]string{}
	if acc := p.Account(); acc != "" {
		accounts[p.Surface()] = acc
	}
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: SuiteProperty, Name: "Acme"}},
		[]presence.Agent{{ID: SuiteAgent, Name: SuiteAgentName, Properties: []presence.PropertyID{SuiteProperty},
			Accounts: accounts, Condition: presence.Always}})
	if err != nil {
		t.Fatal(err)
	}
	log := testlog.Logger()
	store := presence.NewStore(r.Client, dir, presence.Keys{Prefix: r.Prefix}, time.Now)
	watcher := presence.NewWatcher(store, log)
	ctx, cancel := context.WithCancel(context.Background())
	if err := watcher.Load(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{
		Prefix:     r.Prefix + "b:",
		Properties: map[presence.PropertyID]bridge.Routing{SuiteProperty: {Strategy: bridge.Broadcast}},
		Shards:     2, RetryMin: 10 * time.Millisecond, RetryMax: 300 * time.Millisecond, PollEvery: 20 * time.Millisecond,
		// A request the platform leaves unanswered is given up after 2s
		// (10s in production): the outage scenarios wait it out.
		DeliverTimeout: 2 * time.Second,
	}, r.Client, store, watcher, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	b.AddAdapter(p.Adapter(t, dir))
	var wg sync.WaitGroup
	wg.Go(func() { _ = watcher.Run(ctx) })
	wg.Go(func() {
		if err := b.Run(ctx); err != nil {
			t.Errorf("bridge Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	p.Ready(t)
	if _, err := b.SetPresence(ctx, SuiteAgent, presence.Online, ""); err != nil {
		t.Fatal(err)
	}
	return &Suite{B: b, Store: store, P: p}
}

type scenario struct {
	name  string
	needs func(Caps) string // why it cannot apply, "" if it can
	run   func(t *testing.T, s *Suite)
}

func always(Caps) string { return "" }

var scenarios = []scenario{
	{"Offer", always, func(t *testing.T, s *Suite) { s.Offered(t, "Is anyone there?") }},
	{"Accept", always, testAccept},
	{"Reply", always, testReply},
	{"Note", always, testNote},
	{"CloseByAgent", always, testCloseByAgent},
	{"CloseByVisitor", always, testCloseByVisitor},
	{"Files", func(c Caps) string { return unless(c.Files, "no files on this surface") }, testFiles},
	outageScenario(outage.ServerError),
	outageScenario(outage.Timeout),
	outageScenario(outage.RateLimited),
	{"RateLimit", func(c Caps) string { return unless(c.RateLimit, "the platform never answers 429") }, testRateLimit},
	{"DuplicateInbound", func(c Caps) string { return unless(c.Duplicates, "the platform never delivers an event twice") }, testDuplicate},
	{"Forged", func(c Caps) string { return unless(c.Forgery, "every input is the agent's own (nothing to forge)") }, testForged},
}

func unless(ok bool, why string) string {
	if ok {
		return ""
	}
	return why
}

// Visit is a chat the suite started, with the visitor's token.
type Visit struct {
	ID    bridge.ChatID
	Token string
}

// Offered starts a chat whose first message is first and waits until the
// agent is offered it.
func (s *Suite) Offered(t *testing.T, first string) Visit {
	t.Helper()
	chat, token, err := s.B.StartChat(t.Context(), SuiteProperty, bridge.Visitor{Name: "Vera"}, first)
	if err != nil {
		t.Fatal(err)
	}
	s.P.WaitOffer(t, chat.ID, first)
	return Visit{ID: chat.ID, Token: token}
}

// Accepted is Offered, then the agent accepts: the visitor is told who
// joined, and the chat is the agent's.
func (s *Suite) Accepted(t *testing.T, first string) Visit {
	t.Helper()
	chat := s.Offered(t, first)
	events, cancel := s.B.SubscribeVisitor(chat.ID)
	defer cancel()
	s.P.Accept(t, chat.ID)
	if ev := NextEvent(t, events, bridge.EventAgentJoined); ev.Agent != SuiteAgentName {
		t.Errorf("visitor told %q joined, want %q", ev.Agent, SuiteAgentName)
	}
	got := s.Chat(t, chat)
	if got.State != bridge.Active || got.Owner != SuiteAgent {
		t.Fatalf("after Accept the chat is %s owned by %q", got.State, got.Owner)
	}
	return chat
}

// Chat reads the chat as the visitor's widget does.
func (s *Suite) Chat(t *testing.T, v Visit) bridge.Chat {
	t.Helper()
	c, err := s.B.AuthVisitor(t.Context(), v.ID, v.Token)
	if err != nil {
		t.Fatalf("chat %s: %v", v.ID, err)
	}
	return c
}

// WaitAgentTexts waits until the visitor's transcript has n agent
// messages and returns their texts.
func (s *Suite) WaitAgentTexts(t *testing.T, chat bridge.ChatID, n int) []string {
	t.Helper()
	var got []string
	wait.Long(t, fmt.Sprintf("%d agent messages in the transcript", n), func() bool {
		got = AgentTexts(t.Context(), s.B, chat)
		return len(got) >= n
	})
	return got
}

// WaitSeen waits until every one of marks was shown to the agent and
// returns the marks in the order shown, a mark shown twice twice. A
// platform may show several in one message (a backlog sent at once).
func (s *Suite) WaitSeen(t *testing.T, marks ...string) []string {
	t.Helper()
	var got []string
	defer func() {
		if t.Failed() {
			t.Logf("shown to the agent: %q", s.P.Seen(t))
		}
	}()
	wait.Long(t, fmt.Sprintf("%q shown to the agent", marks), func() bool {
		got = shownMarks(s.P.Seen(t), marks)
		for _, m := range marks {
			if !slices.Contains(got, m) {
				return false
			}
		}
		return true
	})
	return got
}

// shownMarks lists the marks found in texts, in order of appearance.
func shownMarks(texts, marks []string) []string {
	var out []string
	for _, txt := range texts {
		for {
			first, at := "", -1
			for _, m := range marks {
				if i := strings.Index(txt, m); i >= 0 && (at < 0 || i < at) {
					first, at = m, i
				}
			}
			if at < 0 {
				break
			}
			out = append(out, first)
			txt = txt[at+len(first):]
		}
	}
	return out
}

// NextEvent reads the visitor's next event of type typ (for messages: the
// next agent or system message; the visitor's own are skipped), failing t
// after 20s.
func NextEvent(t *testing.T, events <-chan bridge.VisitorEvent, typ bridge.VisitorEventType) bridge.VisitorEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("visitor stream closed")
			}
			if ev.Type == typ && (ev.Message == nil || ev.Message.From != bridge.FromVisitor) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event for the visitor", typ)
		}
	}
}

func testAccept(t *testing.T, s *Suite) { s.Accepted(t, "I need help") }

// testReply: the agent's reply reaches the visitor; the visitor's answer
// reaches the agent.
func testReply(t *testing.T, s *Suite) {
	chat := s.Accepted(t, "Where is my order?")
	s.P.Reply(t, chat.ID, "It ships today.")
	if got := s.WaitAgentTexts(t, chat.ID, 1); got[0] != "It ships today." {
		t.Errorf("visitor got %q", got)
	}
	if _, err := s.B.PostVisitorMessage(t.Context(), chat.ID, "Thanks, bye-zq1", nil); err != nil {
		t.Fatal(err)
	}
	s.WaitSeen(t, "Thanks, bye-zq1")
}

// testNote: a note ("//…") never reaches the visitor, while the agent's
// next message does.
func testNote(t *testing.T, s *Suite) {
	chat := s.Accepted(t, "Refund please")
	s.P.Reply(t, chat.ID, "// VIP customer")
	s.P.Reply(t, chat.ID, "Refund is on its way.")
	got := s.WaitAgentTexts(t, chat.ID, 1)
	ms, err := s.B.Transcript(t.Context(), chat.ID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.Contains(m.Text, "VIP") || m.Note {
			t.Errorf("the note reached the visitor: %+v", m)
		}
	}
	if len(got) != 1 || got[0] != "Refund is on its way." {
		t.Errorf("visitor got %q", got)
	}
}

func testCloseByAgent(t *testing.T, s *Suite) {
	chat := s.Accepted(t, "Just a question")
	events, cancel := s.B.SubscribeVisitor(chat.ID)
	defer cancel()
	s.P.Command(t, chat.ID, "close")
	NextEvent(t, events, bridge.EventChatClosed)
	if got := s.Chat(t, chat); got.State != bridge.Closed || got.ClosedBy != "agent:"+string(SuiteAgent) {
		t.Errorf("chat %s closed by %q", got.State, got.ClosedBy)
	}
}

func testCloseByVisitor(t *testing.T, s *Suite) {
	chat := s.Accepted(t, "Never mind")
	if err := s.B.CloseByVisitor(t.Context(), chat.ID); err != nil {
		t.Fatal(err)
	}
	s.WaitSeen(t, "The visitor closed the chat")
}

// testFiles: the visitor's file is shown to the agent with its bytes; the
// agent's file reaches the visitor's transcript with its bytes.
func testFiles(t *testing.T, s *Suite) {
	ctx := t.Context()
	chat := s.Accepted(t, "I have a screenshot")
	att, err := s.B.PutFile(ctx, chat.ID, "screen.png", "image/png", []byte("PNGBYTES"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.B.PostVisitorMessage(ctx, chat.ID, "here", &att); err != nil {
		t.Fatal(err)
	}
	if got := s.P.WaitFile(t, chat.ID, "screen.png"); !bytes.Equal(got, []byte("PNGBYTES")) {
		t.Errorf("agent was shown %q", got)
	}
	sent := s.P.SendFile(t, chat.ID, "guide.txt")
	var file *bridge.Attachment
	wait.Long(t, "the agent's file in the transcript", func() bool {
		ms, err := s.B.Transcript(ctx, chat.ID, "", 0)
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.From == bridge.FromAgent && m.Attachment != nil {
				file = m.Attachment
				return true
			}
		}
		return false
	})
	if file.Name != "guide.txt" {
		t.Errorf("visitor got a file called %q", file.Name)
	}
	_, data, err := s.B.File(ctx, chat.ID, file.Key)
	if err != nil || !bytes.Equal(data, sent) {
		t.Errorf("visitor's file holds %q (%v), the agent sent %q", data, err, sent)
	}
}

// relay has the visitor and the agent write n messages each (pause
// between pairs), then checks that each side got all of the other's,
// once, in order; after is run between the writing and the checks.
func relay(t *testing.T, s *Suite, chat bridge.ChatID, tag string, n int, pause time.Duration, after func()) {
	t.Helper()
	for i := range n {
		if _, err := s.B.PostVisitorMessage(t.Context(), chat, fmt.Sprintf("%s visitor %02d", tag, i), nil); err != nil {
			t.Fatal(err)
		}
		s.P.Reply(t, chat, fmt.Sprintf("%s agent %02d", tag, i))
		time.Sleep(pause)
	}
	if after != nil {
		after()
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("%s visitor %02d", tag, i))
	}
	if got := s.WaitSeen(t, want...); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("agent was shown %q,\nwant each once, in order: %q", got, want)
	}
	for i := range want {
		want[i] = fmt.Sprintf("%s agent %02d", tag, i)
	}
	if agent := s.WaitAgentTexts(t, chat, n); strings.Join(agent, ",") != strings.Join(want, ",") {
		t.Errorf("visitor got %q,\nwant each once, in order: %q", agent, want)
	}
	// One more round trip: nothing arrived twice meanwhile.
	last := tag + " visitor last"
	if _, err := s.B.PostVisitorMessage(t.Context(), chat, last, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.WaitSeen(t, last); len(got) != 1 {
		t.Errorf("agent was shown %q once each", got)
	}
	for i := range want {
		want[i] = fmt.Sprintf("%s visitor %02d", tag, i)
	}
	if got := shownMarks(s.P.Seen(t), want); len(got) != n {
		t.Errorf("agent was shown %q, want each of %d once", got, n)
	}
}

// outageScenario: the platform fails in mode for "a minute" while both
// sides keep writing; once it is back, nothing is lost, nothing doubled,
// order kept.
func outageScenario(mode string) scenario {
	return scenario{"Outage" + mode, func(c Caps) string { return unless(c.Outage, "no network platform to take down") },
		func(t *testing.T, s *Suite) {
			chat := s.Accepted(t, "Hello?")
			const n = 6
			s.P.Outage(t, mode)
			relay(t, s, chat.ID, "out", n, outage.Minute/(2*n), func() { s.P.Recovered(t) })
		}}
}

// testRateLimit: the platform answers 429 for a few sends; they are sent
// again after retry_after, each once, in order.
func testRateLimit(t *testing.T, s *Suite) {
	chat := s.Accepted(t, "Hello?")
	check := s.P.RateLimit(t, 3, time.Second)
	relay(t, s, chat.ID, "rl", 3, 0, nil)
	check(t)
}

// testDuplicate: an inbound event delivered twice is applied once.
func testDuplicate(t *testing.T, s *Suite) {
	chat := s.Accepted(t, "Hello?")
	s.P.ReplyTwice(t, chat.ID, "only once")
	s.P.Reply(t, chat.ID, "after")
	got := s.WaitAgentTexts(t, chat.ID, 2)
	if strings.Join(got, ",") != "only once,after" {
		t.Errorf("visitor got %q, want the repeated event once", got)
	}
}

// testForged: forged input changes nothing: no presence, no owner, no
// message in the chat.
func testForged(t *testing.T, s *Suite) {
	chat, token, err := s.B.StartChat(t.Context(), SuiteProperty, bridge.Visitor{Name: "Vera"}, "Hello?")
	if err != nil {
		t.Fatal(err)
	}
	s.P.WaitOffer(t, chat.ID, "Hello?")
	before := Presence(t, t.Context(), s.Store)
	s.P.Forge(t, chat.ID)
	Untouched(t, t.Context(), s.Store, before, s.B, chat.ID, token)
}
