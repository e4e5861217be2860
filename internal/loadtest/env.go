package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/adapters/telegram"
	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/presence"
	"github.com/onduty/onduty/widget"
)

// Properties and agents of the in-process deployment.
const (
	propStatus = presence.PropertyID("load")  // status load and propagation; one agent, "duty"
	propTG     = presence.PropertyID("tg")    // relay through the Telegram adapter
	propProbe  = presence.PropertyID("probe") // relay through the probe adapter
	propCap    = presence.PropertyID("cap")   // held visitor streams; no agents
	dutyAgent  = presence.AgentID("duty")
	tgToken    = "4242:LOADTEST"
	adminToken = "loadtest-admin-token"
	tgUserBase = int64(700000)
)

// defaultRedisURL is tried first when no Redis URL is given.
const defaultRedisURL = "redis://127.0.0.1:6379/15"

// instance is one onduty process: its own Redis client, presence store and
// watcher, bridge (Telegram and probe adapters) and widget server.
type instance struct {
	name    string
	rdb     *redis.Client
	rt      *roundTrips
	store   *presence.Store
	watcher *presence.Watcher
	bridge  *bridge.Bridge
	server  *widget.Server
	ep      endpoint
}

// env is everything the in-process run starts on loopback.
type env struct {
	log       *slog.Logger
	prefix    string
	redisDesc string
	newClient func() *redis.Client
	closeRdb  func()
	driver    *redis.Client // setup and cleanup only

	dir      *presence.Directory
	tgAgents []presence.Agent
	prAgents []presence.Agent
	inst     [2]*instance
	bare     endpoint
	tg       *tgfake.Server
	book     *relayBook
	// statusEvents counts status events the relay visitors' streams got.
	statusEvents atomic.Int64

	stop func() // stops everything started; waits for it
}

// openRedis connects to rawURL; "" tries defaultRedisURL and falls back to
// an embedded Redis; "embedded" asks for the embedded one.
// redisTarget is the Redis a run uses: how to connect to it, a URL another
// process can use, and how to say it in the report.
type redisTarget struct {
	newClient func() *redis.Client
	url       string
	desc      string
	close     func()
}

// openRedis connects to rawURL (default: the local one if it answers, else
// an embedded Redis served on 127.0.0.1; "embedded" forces that).
func openRedis(ctx context.Context, rawURL string) (redisTarget, error) {
	embedded := func() (redisTarget, error) {
		mr := miniredis.NewMiniRedis()
		mr.ClockTTL(true)
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return redisTarget{}, fmt.Errorf("loadtest: start embedded redis: %w", err)
		}
		nc := func() *redis.Client { return redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: 2}) }
		return redisTarget{nc, "redis://" + mr.Addr(), "embedded (miniredis, in this process)", mr.Close}, nil
	}
	if rawURL == "embedded" {
		return embedded()
	}
	try := rawURL
	if try == "" {
		try = defaultRedisURL
	}
	o, err := redis.ParseURL(try)
	if err != nil {
		return redisTarget{}, fmt.Errorf("loadtest: redis url: %w", err)
	}
	c := redis.NewClient(o)
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err = c.Ping(pctx).Err()
	cancel()
	c.Close()
	if err != nil {
		if rawURL == "" {
			return embedded()
		}
		return redisTarget{}, fmt.Errorf("loadtest: redis %s: %w", redact(try), err)
	}
	nc := func() *redis.Client { return redis.NewClient(o) }
	return redisTarget{nc, try, redact(try), func() {}}, nil
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "redis"
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startEnv starts Redis (or connects), two onduty instances, a bare Fiber
// server and the fake Telegram, all on 127.0.0.1.
func startEnv(ctx context.Context, cfg *Config) (_ *env, err error) {
	e := &env{log: cfg.componentLog(), prefix: "loadtest:" + randomHex(4) + ":", book: newRelayBook()}
	rt, err := openRedis(ctx, cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	e.newClient, e.redisDesc, e.closeRdb = rt.newClient, rt.desc, rt.close
	e.driver = e.newClient()
	var cleanups []func()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			e.deleteKeys()
			e.driver.Close()
			e.closeRdb()
		})
	}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()

	props := []presence.Property{
		{ID: propStatus, Name: "Load"}, {ID: propTG, Name: "Relay via Telegram"},
		{ID: propProbe, Name: "Relay via probe"}, {ID: propCap, Name: "Capacity"},
	}
	agents := []presence.Agent{{ID: dutyAgent, Name: "Duty", Properties: []presence.PropertyID{propStatus}, Condition: presence.Always}}
	for i := range cfg.RelayAgents {
		t := presence.Agent{ID: presence.AgentID(fmt.Sprintf("tg%03d", i)), Name: fmt.Sprintf("TG %d", i),
			Properties: []presence.PropertyID{propTG}, Condition: presence.Always,
			Accounts: map[presence.Surface]string{telegram.Surface: strconv.FormatInt(tgUserBase+int64(i), 10)}}
		p := presence.Agent{ID: presence.AgentID(fmt.Sprintf("pr%03d", i)), Name: fmt.Sprintf("Probe %d", i),
			Properties: []presence.PropertyID{propProbe}, Condition: presence.Always}
		e.tgAgents = append(e.tgAgents, t)
		e.prAgents = append(e.prAgents, p)
		agents = append(agents, t, p)
	}
	if e.dir, err = presence.NewDirectory(props, agents); err != nil {
		return nil, fmt.Errorf("loadtest: directory: %w", err)
	}

	// The fake keeps counts, not calls: a run makes tens of thousands.
	e.tg = tgfake.New(tgfake.Options{Token: tgToken, BotName: "onduty_load_bot", MaxHold: 5 * time.Second,
		CountOnly: true, OnSend: e.book.telegramSent})
	cleanups = append(cleanups, e.tg.Close)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	cleanups = append(cleanups, func() { cancel(); wg.Wait() })

	probeAgents := map[presence.AgentID]bool{}
	for _, a := range e.prAgents {
		probeAgents[a.ID] = true
	}
	routing := map[presence.PropertyID]bridge.Routing{}
	for _, p := range props {
		routing[p.ID] = bridge.Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour}
	}
	for i := range e.inst {
		in := &instance{name: fmt.Sprintf("onduty-%c", 'a'+i), rt: &roundTrips{}}
		in.rdb = e.newClient()
		in.rdb.AddHook(in.rt)
		cleanups = append(cleanups, func() { in.rdb.Close() })
		log := e.log.With("instance", in.name)
		in.store = presence.NewStore(in.rdb, e.dir, presence.Keys{Prefix: e.prefix}, nil)
		if err := in.store.Init(withOrigin(ctx, originDriver)); err != nil {
			return nil, fmt.Errorf("loadtest: presence: %w", err)
		}
		in.watcher = presence.NewWatcher(in.store, log)
		in.bridge, err = bridge.New(bridge.Config{Prefix: e.prefix, Properties: routing, PollEvery: cfg.BridgePollEvery}, in.rdb, in.store, in.watcher, log)
		if err != nil {
			return nil, err
		}
		tg, err := telegram.New(telegram.Config{
			Token: tgToken, APIURL: e.tg.URL(), Prefix: e.prefix, PollTimeout: 2 * time.Second,
			HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
			}},
		}, e.dir, in.rdb, log)
		if err != nil {
			return nil, err
		}
		in.bridge.AddAdapter(tg)
		in.bridge.AddAdapter(&probeAdapter{agents: probeAgents, onDeliver: e.book.probeDelivered})
		in.server = widget.New(widget.Config{
			Prefix: e.prefix, ShutdownTimeout: 5 * time.Second, AdminToken: adminToken,
			// Counted as in production (one Redis round trip per message), never refusing.
			RateLimits: widget.RateLimits{ChatsPerMinute: 1 << 30, MessagesPerMinute: 1 << 30},
			// Every simulated visitor comes from 127.0.0.1, and the capacity
			// figures go past the default stream cap: no caps.
			Limits: widget.Limits{ConnectionsPerIP: -1, Streams: -1, StreamsPerIP: -1},
		}, in.watcher, in.store, in.bridge, in.rdb, log)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("loadtest: listen: %w", err)
		}
		in.ep = endpoint{addr: ln.Addr().String(), host: ln.Addr().String()}
		bg := withOrigin(runCtx, originBackground)
		wg.Add(3)
		go func() { defer wg.Done(); in.watcher.Run(bg) }()
		go func() { defer wg.Done(); in.bridge.Run(bg) }()
		go func() {
			defer wg.Done()
			if err := in.server.Serve(runCtx, ln); err != nil {
				e.log.Error("widget server", "instance", in.name, "err", err)
			}
		}()
		e.inst[i] = in
	}

	bare, err := startBare(runCtx, &wg)
	if err != nil {
		return nil, err
	}
	e.bare = bare

	// Ready when both watchers follow the presence feed: a change made now
	// reaches both.
	st, err := e.inst[0].store.SetStatus(withOrigin(ctx, originDriver), dutyAgent, presence.Offline)
	if err != nil {
		return nil, fmt.Errorf("loadtest: set status: %w", err)
	}
	for _, in := range e.inst {
		if err := waitUntil(ctx, 10*time.Second, func() bool {
			_, ok := in.watcher.Snapshot(propStatus)
			return ok && in.watcher.State(dutyAgent).Version >= st.Version
		}); err != nil {
			return nil, fmt.Errorf("loadtest: %s: presence not in sync: %w", in.name, err)
		}
	}
	return e, nil
}

// startBare serves a constant JSON status on the same route as onduty.
func startBare(ctx context.Context, wg *sync.WaitGroup) (endpoint, error) {
	body := []byte(`{"property":"load","status":"offline","mode":"form","greeting":"Leave us a message"}`)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/v1/properties/:p/status", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return endpoint{}, fmt.Errorf("loadtest: listen: %w", err)
	}
	wg.Add(2)
	go func() { defer wg.Done(); app.Listener(ln) }()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		app.ShutdownWithContext(sctx)
	}()
	return endpoint{addr: ln.Addr().String(), host: ln.Addr().String()}, nil
}

// deleteKeys removes every key of this run from a shared Redis.
func (e *env) deleteKeys() { deleteUnder(e.driver, e.prefix) }

// deleteUnder deletes every key under prefix (what a run left).
func deleteUnder(c *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			c.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Unlink(ctx, batch...)
	}
}

// roundTrips reads both instances' counters.
func (e *env) roundTrips() rtSnapshot {
	return e.inst[0].rt.read().add(e.inst[1].rt.read())
}

// waitUntil polls cond every 5ms until it holds or d passed.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out after " + d.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
