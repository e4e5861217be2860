package bridge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeAdapter records successful deliveries under a mutex. fail, if set,
// decides per call whether Deliver fails.
type fakeAdapter struct {
	name   string
	shared bool
	// reaches nil means every agent.
	reaches map[presence.AgentID]bool

	mu    sync.Mutex
	got   []Delivery
	calls int
	fail  func(call int, d Delivery) error
	// onDeliver, if set, is called after a successful delivery (outside mu).
	onDeliver func(d Delivery)
	// runErr, if set, is what Run returns at once (a platform refusing us).
	runErr error
	// makes, if set, says what each call made on the platform (and may
	// fail after making part of it).
	makes func(call int, d Delivery) ([]RemoteRef, error)
}

func (f *fakeAdapter) Name() string { return f.name }
func (f *fakeAdapter) Reaches(a presence.AgentID) bool {
	return f.reaches == nil || f.reaches[a]
}
func (f *fakeAdapter) Shared(presence.PropertyID) bool { return f.shared }
func (f *fakeAdapter) Run(ctx context.Context, _ Host) error {
	if f.runErr != nil {
		return f.runErr
	}
	<-ctx.Done()
	return nil
}

func (f *fakeAdapter) Deliver(_ context.Context, d Delivery) ([]RemoteRef, error) {
	f.mu.Lock()
	f.calls++
	var made []RemoteRef
	if f.makes != nil {
		var err error
		if made, err = f.makes(f.calls, d); err != nil {
			f.mu.Unlock()
			return made, err
		}
	}
	if f.fail != nil {
		if err := f.fail(f.calls, d); err != nil {
			f.mu.Unlock()
			return nil, err
		}
	}
	f.got = append(f.got, d)
	cb := f.onDeliver
	f.mu.Unlock()
	if cb != nil {
		cb(d)
	}
	return made, nil
}

func (f *fakeAdapter) setFail(fn func(call int, d Delivery) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

// messageLines lists the lines of message deliveries in order: visitor
// messages that queued up may arrive merged, one per line.
func messageLines(ds []Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, strings.Split(d.Message.Text, "\n")...)
	}
	return out
}

// find lists deliveries matching all given conditions.
func (f *fakeAdapter) find(match func(Delivery) bool) []Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Delivery
	for _, d := range f.got {
		if match(d) {
			out = append(out, d)
		}
	}
	return out
}

func kindFor(k DeliveryKind, agent presence.AgentID, chat ChatID) func(Delivery) bool {
	return func(d Delivery) bool { return d.Kind == k && d.Agent == agent && (chat == "" || d.Chat.ID == chat) }
}

// waitDelivered waits until f has n deliveries matching m.
func waitDelivered(t testing.TB, f *fakeAdapter, what string, n int, m func(Delivery) bool) []Delivery {
	t.Helper()
	var got []Delivery
	wait.For(t, what, func() bool { got = f.find(m); return len(got) >= n })
	return got
}

// testAgents: alice, bob, carol are always-online agents of acme; dave is
// activity-based; erin may only change her online status.
func testAgents() []presence.Agent {
	return []presence.Agent{
		{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Condition: presence.Always},
		{ID: "bob", Name: "Bob", Properties: []presence.PropertyID{"acme"}, Condition: presence.Always},
		{ID: "carol", Name: "Carol", Properties: []presence.PropertyID{"acme"}, Condition: presence.Always},
		{ID: "dave", Name: "Dave", Properties: []presence.PropertyID{"acme"}, Condition: presence.Activity},
		{ID: "erin", Name: "Erin", Properties: []presence.PropertyID{"acme"}, Condition: presence.Always,
			Permissions: []presence.Permission{presence.ChangeOnlineStatus}},
	}
}

// env is one Redis shared by one or more bridge instances.
type env struct {
	t     testing.TB
	r     *redistest.Redis
	clock *testClock
	dir   *presence.Directory
	route Routing
	insts []*instance
	// autoTimers lets instances run their own timer loop.
	autoTimers bool
	// pollEvery overrides the outbox workers' poll (20ms).
	pollEvery time.Duration
	// closedTTL overrides how long closed chats are kept (30 days).
	closedTTL time.Duration
	// extra adapters every instance gets besides its fakeAdapter.
	extra []Adapter
	// lease overrides the outbox lease (3s); instance names the next
	// instance started (random if empty).
	lease    time.Duration
	instance string
}

// instance is one running Bridge with its own presence watcher and adapter.
type instance struct {
	b       *Bridge
	store   *presence.Store
	watcher *presence.Watcher
	ad      *fakeAdapter
	stop    func()
}

func newEnv(t testing.TB, route Routing) *env {
	t.Helper()
	dir, err := presence.NewDirectory([]presence.Property{{ID: "acme", Name: "Acme"}}, testAgents())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, r: redistest.New(t), dir: dir, route: route,
		clock: &testClock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)},
	}
	return e
}

// start runs a new Bridge instance on the env's Redis (a fresh client, as a
// second process would have).
func (e *env) start(ad *fakeAdapter) *instance {
	e.t.Helper()
	return e.startWith(ad, e.r.NewClient(e.t))
}

func (e *env) startWith(ad *fakeAdapter, rdb redis.UniversalClient) *instance {
	e.t.Helper()
	keys := presence.Keys{Prefix: e.r.Prefix}
	store := presence.NewStore(rdb, e.dir, keys, e.clock.Now)
	w := presence.NewWatcher(store, testlog.Logger())
	ctx := context.Background()
	if err := w.Load(ctx); err != nil {
		e.t.Fatal(err)
	}
	poll := 20 * time.Millisecond
	if e.pollEvery > 0 {
		poll = e.pollEvery
	}
	b, err := New(Config{
		Prefix: e.r.Prefix, Properties: map[presence.PropertyID]Routing{"acme": e.route},
		Now: e.clock.Now, Shards: 4, RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond,
		PollEvery: poll, ClosedChatTTL: e.closedTTL, LeaseTTL: e.lease, Instance: e.instance,
	}, rdb, store, w, testlog.Logger())
	if err != nil {
		e.t.Fatal(err)
	}
	if ad == nil {
		ad = &fakeAdapter{name: "fake"}
	}
	b.AddAdapter(ad)
	for _, x := range e.extra {
		b.AddAdapter(x)
	}
	// Tests fire timers themselves (advance), so that a timer's effects are
	// visible when advance returns; TestTimerLoopFiresInBackground covers the loop.
	b.manualTimers = !e.autoTimers
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Run(rctx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	stopped := false
	in := &instance{b: b, store: store, watcher: w, ad: ad}
	in.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	e.t.Cleanup(in.stop)
	select {
	case <-b.feedReady:
	case <-time.After(10 * time.Second):
		e.t.Fatal("visitor feed never subscribed")
	}
	e.insts = append(e.insts, in)
	return in
}

// status sets agents' statuses and tells every instance's watcher at once.
func (e *env) status(s presence.Status, agents ...presence.AgentID) {
	e.t.Helper()
	for _, a := range agents {
		st, err := e.insts[0].store.SetStatus(context.Background(), a, s)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, in := range e.insts {
			in.watcher.Apply(a, st)
		}
	}
}

// advance moves the clock and fires what is due on the given instance.
func (e *env) advance(in *instance, d time.Duration) {
	e.t.Helper()
	e.clock.Advance(d)
	if _, err := in.b.fireDue(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (in *instance) act(t testing.TB, a Action) Reply {
	t.Helper()
	r, err := in.b.Handle(context.Background(), a)
	if err != nil {
		t.Fatalf("Handle(%+v): %v", a, err)
	}
	return r
}

func (in *instance) cmd(t testing.TB, agent presence.AgentID, command string) Reply {
	t.Helper()
	c, args, _ := strings.Cut(command, " ")
	return in.act(t, Action{Kind: ActCommand, Surface: "fake", Agent: agent, Command: c, Args: args})
}

func (in *instance) say(t testing.TB, agent presence.AgentID, chat ChatID, text string) Reply {
	t.Helper()
	return in.act(t, Action{Kind: ActMessage, Surface: "fake", Agent: agent, Chat: chat, Text: text})
}

func (in *instance) startChat(t testing.TB, name, text string) (Chat, string) {
	t.Helper()
	c, tok, err := in.b.StartChat(context.Background(), "acme", Visitor{Name: name}, text)
	if err != nil {
		t.Fatal(err)
	}
	return c, tok
}

// acceptedChat starts a chat with visitor V ("hello") that agent accepts.
func (in *instance) acceptedChat(t testing.TB, agent presence.AgentID) Chat {
	t.Helper()
	c, _ := in.startChat(t, "V", "hello")
	in.act(t, Action{Kind: ActAccept, Agent: agent, Chat: c.ID})
	return c
}

func (in *instance) chat(t testing.TB, id ChatID) chatView {
	t.Helper()
	cv, err := in.b.loadChat(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return cv
}

func (in *instance) transcript(t testing.TB, id ChatID) []string {
	t.Helper()
	ms, err := in.b.Transcript(context.Background(), id, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, string(m.From)+":"+m.Text)
	}
	return out
}

func offeredTo(ad *fakeAdapter, chat ChatID) []presence.AgentID {
	var out []presence.AgentID
	for _, d := range ad.find(func(d Delivery) bool { return d.Kind == KindOffer && d.Chat.ID == chat }) {
		if !slices.Contains(out, d.Agent) {
			out = append(out, d.Agent)
		}
	}
	slices.Sort(out)
	return out
}

var errFlaky = errors.New("platform down")

// drain waits until every outbox shard of the instance's adapter is empty,
// so every queued delivery was made.
func (e *env) drain(in *instance) {
	e.t.Helper()
	wait.For(e.t, "outbox drained", func() bool {
		for s := range in.b.cfg.Shards {
			n, err := e.r.Client.XLen(context.Background(), in.b.keys.Outbox(in.ad.name, s)).Result()
			if err != nil || n > 0 {
				return false
			}
		}
		return true
	})
}

// waitAll waits until the adapters of all instances together made n
// deliveries matching m (with several instances, any may hold a shard).
func (e *env) waitAll(what string, n int, m func(Delivery) bool) []Delivery {
	e.t.Helper()
	var got []Delivery
	wait.For(e.t, what, func() bool {
		got = nil
		for _, in := range e.insts {
			got = append(got, in.ad.find(m)...)
		}
		return len(got) >= n
	})
	return got
}
