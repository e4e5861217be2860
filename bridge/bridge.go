package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// Routing strategies (SPEC §4).
const (
	LeastLoaded = "least_loaded"
	Broadcast   = "broadcast"
)

// Routing is how a property's chats reach its agents.
type Routing struct {
	// Strategy is LeastLoaded or Broadcast. Zero means LeastLoaded.
	Strategy string
	// MaxChats caps the active chats an agent is auto-offered. Zero means no cap.
	MaxChats int
	// AcceptTimeout: a least_loaded offer not accepted in this time goes to the
	// next agent. Zero means 30s.
	AcceptTimeout time.Duration
	// FallbackAfter: a chat still pending after this is offered to invisible
	// agents too. Zero means off.
	FallbackAfter time.Duration
	// QueueTimeout: a chat nobody accepted in this time becomes an offline
	// message. Zero means 5m.
	QueueTimeout time.Duration
	// CloseAfterIdle closes an active chat nobody wrote in for this long. Zero means 24h.
	CloseAfterIdle time.Duration
	// EmailAfter: an agent's reply the visitor has not read in this time is
	// emailed (with an email sender, to a visitor who gave an address), at
	// most one email per chat per EmailAfter. Zero means 2m.
	EmailAfter time.Duration
	// Canned holds the property's canned replies by name (lower case):
	// "/reply NAME" sends one as the agent. Nil means none.
	Canned map[string]string
}

func (r Routing) withDefaults() Routing {
	if r.Strategy != Broadcast {
		r.Strategy = LeastLoaded
	}
	if r.AcceptTimeout <= 0 {
		r.AcceptTimeout = 30 * time.Second
	}
	if r.QueueTimeout <= 0 {
		r.QueueTimeout = 5 * time.Minute
	}
	if r.CloseAfterIdle <= 0 {
		r.CloseAfterIdle = 24 * time.Hour
	}
	if r.EmailAfter <= 0 {
		r.EmailAfter = 2 * time.Minute
	}
	return r
}

// Config configures a Bridge.
type Config struct {
	// Prefix starts every Redis key and channel. Zero means "onduty:".
	Prefix string
	// Properties holds the routing of every property chats may start in.
	Properties map[presence.PropertyID]Routing
	// Now is the clock of every rule and timer. Nil means time.Now.
	Now func() time.Time
	// Shards is the number of outbox streams per adapter; deliveries of one
	// chat always use the same shard. Zero means 16.
	Shards int
	// PublicURL is the server's base URL (links to attachments, continue
	// links in emails). Optional; without it emails carry no continue link.
	PublicURL string

	// RetryMin and RetryMax bound the outbox's exponential backoff.
	// Zero means 200ms and 30s.
	RetryMin, RetryMax time.Duration
	// GiveUpAfter moves a delivery that kept failing this long to the
	// dead-letter stream so it stops holding up its chat. Zero means 1h.
	GiveUpAfter time.Duration
	// PollEvery is the safety poll: how often an idle outbox shard and the
	// timer loop look for work whose wake-up was missed. Work is normally
	// announced on a pub/sub channel, and the timer loop sleeps until the
	// earliest timer. Zero means 5m.
	PollEvery time.Duration
	// LeaseTTL is how long an outbox shard's lease lasts without renewal.
	// The instance working a shard renews it every LeaseTTL/3 and gives it
	// back when the shard is empty; another instance takes over a dead
	// one's shards after at most LeaseTTL plus LeaseTTL/3. Zero means 3s.
	LeaseTTL time.Duration
	// DeliverTimeout bounds each platform request of a delivery (not the
	// pacing wait before it); a request that may have reached the platform
	// without an answer is retried only after this. Zero means 10s.
	DeliverTimeout time.Duration
	// Instance names this process in outbox leases. An instance restarted
	// with the same name takes over at once the shards it held when it
	// died; two running instances must never share a name. Empty means a
	// random name per start (a restart then waits up to LeaseTTL).
	Instance string
	// MaxFileBytes caps an attachment. Zero means 10 MiB.
	MaxFileBytes int
	// FileTTL is how long attachments are kept (config file_retention).
	// Zero means 7 days.
	FileTTL time.Duration
	// ClosedChatTTL is how long a closed chat (its transcript, and its
	// visitor's token) is kept after it closed. Zero means 30 days.
	ClosedChatTTL time.Duration
}

// Bridge is the core: it keeps chats in Redis, routes them to agents, relays
// messages both ways through a durable outbox and fires durable timers. Any
// number of Bridges may share one Redis.
type Bridge struct {
	cfg     Config
	rdb     redis.UniversalClient
	store   *presence.Store
	watcher *presence.Watcher
	dir     *presence.Directory
	log     *slog.Logger
	keys    keys
	now     func() time.Time
	// instance names this process in outbox leases.
	instance string

	mu       sync.Mutex
	adapters []Adapter
	started  bool
	stopped  map[string]string          // adapter → why it stopped (Run returned an error)
	kicks    map[string][]chan struct{} // adapter → shard → wake-up

	timerKick chan struct{}
	// manualTimers stops Run's timer loop: tests fire timers with fireDue.
	manualTimers bool

	subMu     sync.Mutex
	subs      map[ChatID]map[*visitorSub]struct{}
	feedReady chan struct{} // closed once the visitor feed is subscribed
	readyOnce sync.Once

	propCache sync.Map // ChatID → presence.PropertyID (never changes)
	propCount atomic.Int64
}

// propCacheMax bounds the chat → property cache; it is simply emptied when full.
const propCacheMax = 100_000

func (b *Bridge) cacheProperty(id ChatID, p presence.PropertyID) {
	if b.propCount.Add(1) > propCacheMax {
		b.propCache.Clear()
		b.propCount.Store(0)
	}
	b.propCache.Store(id, p)
}

// Compile-time checks: the bridge is both seams' implementation.
var (
	_ Host           = (*Bridge)(nil)
	_ VisitorService = (*Bridge)(nil)
	_ FileStore      = (*Bridge)(nil)
)

// New returns a bridge. Add adapters with AddAdapter, then call Run.
func New(cfg Config, rdb redis.UniversalClient, store *presence.Store, watcher *presence.Watcher, log *slog.Logger) (*Bridge, error) {
	if rdb == nil || store == nil || watcher == nil {
		return nil, errors.New("bridge: redis, presence store and watcher are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := store.Directory()
	props := make(map[presence.PropertyID]Routing, len(cfg.Properties))
	for p, r := range cfg.Properties {
		if _, ok := dir.Property(p); !ok {
			return nil, fmt.Errorf("bridge: routing for unknown property %q", p)
		}
		props[p] = r.withDefaults()
	}
	cfg.Properties = props
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 16
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 200 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = time.Hour
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 5 * time.Minute
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.DeliverTimeout <= 0 {
		cfg.DeliverTimeout = DefaultDeliverTimeout
	}
	if cfg.Instance == "" {
		cfg.Instance = randomString(9)
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = 10 << 20
	}
	if cfg.ClosedChatTTL <= 0 {
		cfg.ClosedChatTTL = 30 * 24 * time.Hour
	}
	if cfg.FileTTL <= 0 {
		cfg.FileTTL = 7 * 24 * time.Hour
	}
	return &Bridge{
		cfg: cfg, rdb: rdb, store: store, watcher: watcher, dir: dir,
		log:       log.With("component", "bridge"),
		keys:      newKeys(cfg.Prefix),
		now:       cfg.Now,
		instance:  cfg.Instance,
		kicks:     make(map[string][]chan struct{}),
		stopped:   make(map[string]string),
		timerKick: make(chan struct{}, 1),
		subs:      make(map[ChatID]map[*visitorSub]struct{}),
		feedReady: make(chan struct{}),
	}, nil
}

// AddAdapter registers a platform. Call it before Run.
func (b *Bridge) AddAdapter(a Adapter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		b.log.Error("adapter added after Run; ignored", "adapter", a.Name())
		return
	}
	b.adapters = append(b.adapters, a)
	ks := make([]chan struct{}, b.cfg.Shards)
	for i := range ks {
		ks[i] = make(chan struct{}, 1)
	}
	b.kicks[a.Name()] = ks
}

// AdapterState is one adapter's health, as /readyz and the admin board show it.
type AdapterState struct {
	Name string `json:"name"`
	// Up is false once the adapter stopped on an error (Run returned).
	Up bool `json:"up"`
	// Reason says why it stopped: "token rejected (401)".
	Reason string `json:"reason,omitempty"`
}

// Adapters reports every adapter's health, in the order they were added.
func (b *Bridge) Adapters() []AdapterState {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]AdapterState, 0, len(b.adapters))
	for _, a := range b.adapters {
		why, down := b.stopped[a.Name()]
		out = append(out, AdapterState{Name: a.Name(), Up: !down, Reason: why})
	}
	return out
}

func (b *Bridge) adapterList() []Adapter {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.adapters
}

// Run works the outbox, fires timers, follows visitor events from every
// instance and runs every adapter, until ctx is done. It waits for all of
// them before returning; the first adapter error is returned.
func (b *Bridge) Run(ctx context.Context) error {
	b.mu.Lock()
	b.started = true
	adapters := b.adapters
	b.mu.Unlock()

	// Adapters' chat state written before the bridge kept it moves into
	// the bridge's records before anything is delivered.
	b.migrateRefs(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, len(adapters))
	for _, a := range adapters {
		for shard := range b.cfg.Shards {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.outboxWorker(ctx, a, shard)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			up := metrics.AdapterUp.WithLabelValues(a.Name())
			up.Set(1)
			if err := a.Run(ctx, b); err != nil && ctx.Err() == nil {
				up.Set(0)
				why := err.Error()
				var rej *RejectedError
				if errors.As(err, &rej) {
					why = rej.Reason
				}
				b.mu.Lock()
				b.stopped[a.Name()] = why
				b.mu.Unlock()
				b.log.Error("adapter stopped; its agents get nothing until onduty restarts", "adapter", a.Name(), "err", err)
				errc <- fmt.Errorf("bridge: adapter %s: %w", a.Name(), err)
			}
		}()
	}
	for p := range b.cfg.Properties {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.followPresence(ctx, p)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if !b.manualTimers {
			b.timerLoop(ctx)
		}
	}()
	go func() {
		defer wg.Done()
		b.visitorFeed(ctx)
	}()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func randomString(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic("bridge: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

// unavailable wraps a Redis failure for the visitor API.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

func (b *Bridge) agentName(id presence.AgentID) string { return b.dir.AgentName(id) }

func (b *Bridge) routing(p presence.PropertyID) (Routing, bool) {
	r, ok := b.cfg.Properties[p]
	return r, ok
}
