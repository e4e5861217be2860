package presence

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
	"github.com/redis/go-redis/v9"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testDirectory(t *testing.T) *Directory {
	t.Helper()
	d, err := NewDirectory(
		[]Property{{ID: "acme", Name: "Acme"}, {ID: "demo", Name: "Demo"}},
		[]Agent{
			{ID: "alice", Name: "Alice", Properties: []PropertyID{"acme"}, Condition: Activity},
			{ID: "bob", Name: "Bob", Properties: []PropertyID{"acme"}, Condition: Always},
			{ID: "demo", Name: "Demo", Properties: []PropertyID{"demo"}, Condition: Always, InitialStatus: Online},
		})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newTestStore(t *testing.T) (*Store, *clock, *redistest.Redis) {
	r := redistest.New(t)
	c := &clock{t: t0}
	return NewStore(r.Client, testDirectory(t), Keys{Prefix: r.Prefix}, c.Now), c, r
}

func TestStoreTransitions(t *testing.T) {
	ctx := context.Background()
	s, c, _ := newTestStore(t)

	st, err := s.Get(ctx, "alice")
	if err != nil || st.Status != "" || st.Chosen(Agent{}) != Offline {
		t.Fatalf("fresh agent: %+v %v, want no status (offline)", st, err)
	}
	// First contact makes an agent online.
	st, err = s.Touch(ctx, "alice")
	if err != nil || st.Status != Online || !st.LastActivity.Equal(t0) || st.Version != 1 {
		t.Fatalf("first contact: %+v %v", st, err)
	}
	// Later activity does not override a chosen status.
	if _, err := s.SetStatus(ctx, "alice", Away); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Minute)
	st, _ = s.Touch(ctx, "alice")
	if st.Status != Away || !st.LastActivity.Equal(t0.Add(time.Minute)) || st.Version != 3 {
		t.Fatalf("touch after away: %+v", st)
	}
	st, _ = s.SetCondition(ctx, "alice", Always)
	if st.Condition != Always {
		t.Fatalf("condition: %+v", st)
	}
	got, _ := s.Get(ctx, "alice")
	if got != st {
		t.Fatalf("Get = %+v, want %+v", got, st)
	}
	// Errors.
	if _, err := s.SetStatus(ctx, "nobody", Online); !errors.Is(err, ErrUnknownAgent) {
		t.Errorf("unknown agent: %v", err)
	}
	if _, err := s.SetStatus(ctx, "alice", "busy"); err == nil {
		t.Error("invalid status accepted")
	}
	if _, err := s.SetCondition(ctx, "alice", "sometimes"); err == nil {
		t.Error("invalid condition accepted")
	}
}

func TestStoreInitDemoAgent(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newTestStore(t)
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Report(ctx, "demo")
	if err != nil || r.Status != Online {
		t.Fatalf("demo report %+v %v, want online", r, err)
	}
	// Init does not override a choice.
	s.SetStatus(ctx, "demo", Offline)
	s.Init(ctx)
	if st, _ := s.Get(ctx, "demo"); st.Status != Offline {
		t.Fatalf("Init overrode a chosen status: %+v", st)
	}
	if _, err := s.Report(ctx, "nope"); err == nil {
		t.Error("unknown property reported")
	}
}

func TestStoreAnnouncesChanges(t *testing.T) {
	ctx := context.Background()
	s, _, r := newTestStore(t)
	ps := r.NewClient(t).Subscribe(ctx, s.keys.Channel())
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	want, _ := s.SetStatus(ctx, "bob", Invisible)
	m, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, got, err := ParseAnnouncement(m.Payload)
	if err != nil || id != "bob" || got != want {
		t.Fatalf("announcement %q → %s %+v %v, want bob %+v", m.Payload, id, got, err, want)
	}
	for _, bad := range []string{"", "a\tb", "bob\tx\tonline\t\t", "bob\t1\tbusy\t\t"} {
		if _, _, err := ParseAnnouncement(bad); err == nil {
			t.Errorf("ParseAnnouncement(%q) accepted", bad)
		}
	}
}

func runWatcher(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
}

func TestWatcherFollowsChangesAcrossInstances(t *testing.T) {
	ctx := context.Background()
	s, c, r := newTestStore(t)
	// A second instance: its own client and watcher on the same Redis.
	s2 := NewStore(r.NewClient(t), s.dir, s.keys, c.Now)
	w := NewWatcher(s2, slog.New(slog.DiscardHandler))
	w.Tick = 10 * time.Millisecond
	if !w.Stale() {
		t.Error("a watcher that never loaded must say it is stale")
	}
	runWatcher(t, w)
	wait.For(t, "first sync", func() bool { return !w.Stale() })

	snap, _ := w.Snapshot("acme")
	if snap.Report.Status != Offline {
		t.Fatalf("initial acme status %s", snap.Report.Status)
	}
	changed := w.Changed("acme")
	s.SetStatus(ctx, "alice", Online) // on the first instance
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled")
	}
	wait.For(t, "acme online", func() bool { s, _ := w.Snapshot("acme"); return s.Report.Status == Online })
	snap2, _ := w.Snapshot("acme")
	if snap2.ETag == snap.ETag || string(snap2.Body) != `{"property":"acme","status":"online","mode":"live","greeting":"We're online. How can we help?","email":false,"prechat":{"name":"optional","email":"optional","consent":""}}` {
		t.Fatalf("snapshot not rebuilt: %s %s", snap2.ETag, snap2.Body)
	}
	// Silence alone moves an activity agent to away, then offline: no event needed.
	c.Add(10 * time.Minute)
	wait.For(t, "acme away after idle", func() bool { s, _ := w.Snapshot("acme"); return s.Report.Status == Away })
	c.Add(20 * time.Minute)
	wait.For(t, "acme offline after idle", func() bool { s, _ := w.Snapshot("acme"); return s.Report.Status == Offline })
	// An always agent keeps the widget online however long it is silent.
	s.SetStatus(ctx, "bob", Online)
	c.Add(48 * time.Hour)
	wait.For(t, "bob keeps acme online", func() bool { s, _ := w.Snapshot("acme"); return s.Report.Status == Online })
	if w.Effective("bob") != Online || w.Effective("alice") != Offline || w.Effective("nobody") != Offline {
		t.Errorf("effective: bob %s alice %s", w.Effective("bob"), w.Effective("alice"))
	}
	if _, ok := w.Snapshot("nope"); ok {
		t.Error("snapshot of unknown property")
	}
}

func TestWatcherIgnoresOlderVersions(t *testing.T) {
	s, _, _ := newTestStore(t)
	w := NewWatcher(s, slog.New(slog.DiscardHandler))
	w.Apply("alice", State{Status: Online, LastActivity: t0, Version: 5})
	w.Apply("alice", State{Status: Offline, Version: 4})
	if st := w.State("alice"); st.Status != Online {
		t.Fatalf("older announcement applied: %+v", st)
	}
	w.Apply("ghost", State{Status: Online, Version: 9})
	if st := w.State("ghost"); st.Version != 0 {
		t.Fatalf("unknown agent stored: %+v", st)
	}
}

func TestWatcherStaleWithoutRedis(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newTestStore(t)
	w := NewWatcher(s, slog.New(slog.DiscardHandler))
	s.SetStatus(ctx, "bob", Online)
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// Now the same state behind a Redis that is not there.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { dead.Close() })
	w.store = NewStore(dead, s.dir, s.keys, s.now)
	w.stale.Store(false)
	w.Tick = 10 * time.Millisecond
	w.Resync = 20 * time.Millisecond
	runWatcher(t, w)
	wait.For(t, "stale", w.Stale)
	if snap, _ := w.Snapshot("acme"); snap.Report.Status != Online {
		t.Fatalf("lost the last known status: %s", snap.Report.Status)
	}
}

func TestWatcherStatusChangedOnlyOnWidgetChange(t *testing.T) {
	ctx := context.Background()
	s, c, _ := newTestStore(t)
	w := NewWatcher(s, slog.New(slog.DiscardHandler))
	s.SetStatus(ctx, "bob", Online)
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	anyChange, status := w.Changed("acme"), w.StatusChanged("acme")
	c.Add(time.Minute)
	st, _ := s.Touch(ctx, "bob") // activity: the board cares, widgets don't
	w.Apply("bob", st)
	select {
	case <-anyChange:
	default:
		t.Fatal("activity did not signal Changed")
	}
	select {
	case <-status:
		t.Fatal("activity signalled StatusChanged though the widget status is the same")
	default:
	}
	st, _ = s.SetStatus(ctx, "bob", Away)
	w.Apply("bob", st)
	select {
	case <-status:
	default:
		t.Fatal("online → away did not signal StatusChanged")
	}
	if w.StatusChanged("nope") != nil {
		t.Error("unknown property has a channel")
	}
}

// afterPipeline runs f after each pipeline the client sends that reads
// agents' states.
type afterPipeline func()

func (h afterPipeline) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h afterPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h afterPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if len(cmds) > 0 && cmds[0].Name() == "hmget" {
			h()
		}
		return err
	}
}

// A change applied while Load reads Redis (the bridge applies its own
// changes at once) is not overwritten by the older state Load read.
func TestWatcherLoadKeepsStateAppliedMeanwhile(t *testing.T) {
	ctx := context.Background()
	s, c, r := newTestStore(t)
	if _, err := s.SetStatus(ctx, "bob", Online); err != nil {
		t.Fatal(err)
	}
	var w *Watcher
	var once sync.Once
	rdb := r.NewClient(t)
	rdb.AddHook(afterPipeline(func() {
		once.Do(func() {
			st, err := s.SetStatus(ctx, "bob", Away)
			if err != nil {
				t.Error(err)
			}
			w.Apply("bob", st)
		})
	}))
	w = NewWatcher(NewStore(rdb, s.dir, s.keys, c.Now), slog.New(slog.DiscardHandler))
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.State("bob"); st.Status != Away || st.Version != 2 {
		t.Fatalf("bob %+v after Load, want away (version 2) as applied during it", st)
	}
	if snap, _ := w.Snapshot("acme"); snap.Report.Status != Away {
		t.Fatalf("acme %s, want away", snap.Report.Status)
	}
	// A later Load with nothing applied meanwhile takes Redis as it is, even
	// older versions (Redis lost its data): it is the only way back.
	if err := r.Client.Del(ctx, s.keys.Agent("bob")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.State("bob"); st.Version != 0 {
		t.Fatalf("bob %+v after Redis lost him, want the empty state", st)
	}
}
