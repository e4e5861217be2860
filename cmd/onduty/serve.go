package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/onduty/onduty/adapters/console"
	"github.com/onduty/onduty/adapters/email"
	"github.com/onduty/onduty/adapters/slack"
	"github.com/onduty/onduty/adapters/telegram"
	"github.com/onduty/onduty/adapters/webhook"
	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/config"
	"github.com/onduty/onduty/internal/redisconn"
	"github.com/onduty/onduty/presence"
	"github.com/onduty/onduty/widget"
)

// serve wires config → logger → Redis → presence → bridge → adapters → widget server, and runs them.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "configuration file (default $ONDUTY_CONFIG, else the demo)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for measurements)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	c, err := config.Load(configFile(*file), nil)
	if err != nil {
		return err
	}
	log := newLogger(stderr, c.LogLevel)
	for _, w := range c.Warnings() {
		log.Warn("configuration: " + w.String())
	}
	// The port first: with it taken, nothing else starts and the demo
	// prints no address or token that would not work.
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %q (listen, or ONDUTY_LISTEN): %w", c.Listen, err)
	}
	app, err := build(ctx, c, os.Stdin, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer app.close()
	if err := app.verify(ctx, log); err != nil {
		ln.Close()
		return err
	}
	app.announce(log)
	return app.run(ctx, ln)
}

// verifier is an adapter that can check its credentials once.
type verifier interface {
	Name() string
	// Verify returns a *bridge.RejectedError when the platform refuses the
	// credentials, another error when it could not be asked.
	Verify(ctx context.Context) error
}

// verify checks every platform's credentials before serving: a refused one
// is an error naming its key (a typo should not look like a healthy
// service); a platform that cannot be reached is only logged, its adapter
// keeps trying with backoff once running.
func (s *service) verify(ctx context.Context, log *slog.Logger) error {
	for _, v := range s.verifiers {
		vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
		err := v.Verify(vctx)
		cancel()
		var rej *bridge.RejectedError
		switch {
		case err == nil:
			log.Info("credentials accepted", "adapter", v.Name())
		case errors.As(err, &rej):
			return fmt.Errorf("%s: %s: %s refused the credentials: %s", s.file, rej.Key, v.Name(), rej.Reason)
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			log.Warn("cannot check credentials now; the adapter keeps trying", "adapter", v.Name(), "err", err)
		}
	}
	return nil
}

// verifyTimeout bounds each platform's credential check at start.
const verifyTimeout = 15 * time.Second

// announce tells a demo's user where to go, once the listener is up.
func (s *service) announce(log *slog.Logger) {
	if !s.demo {
		return
	}
	if s.demoToken != "" {
		log.Info("demo: admin board at http://localhost"+s.port+"/admin; this run's admin token (set ONDUTY_ADMIN_TOKEN to choose one)",
			"admin_token", s.demoToken)
	}
	log.Info("demo: open http://localhost" + s.port + "/ and start a chat; the demo agent's inbox is this log — type an answer here and press Enter, " +
		"or answer through the admin API: POST /v1/admin/agents/demo/actions {\"text\":\"…\"}")
}

// service is everything serve runs, built from one configuration.
type service struct {
	watcher   *presence.Watcher
	bridge    *bridge.Bridge
	server    *widget.Server
	verifiers []verifier
	close     func()

	file      string // the configuration file, for errors ("" in the demo)
	demo      bool
	demoToken string // the demo's admin token made for this run, if any
	port      string // ":8080"
}

func build(ctx context.Context, c *config.Config, stdin io.Reader, log *slog.Logger) (*service, error) {
	dir, err := c.Directory()
	if err != nil {
		return nil, err
	}
	rdb, closeRedis, err := redisconn.Open(ctx, c.RedisURL.Reveal(), log)
	if err != nil {
		return nil, err
	}
	store := presence.NewStore(rdb, dir, presence.Keys{Prefix: c.RedisPrefix}, nil)
	if err := store.Init(ctx); err != nil {
		closeRedis()
		return nil, err
	}
	watcher := presence.NewWatcher(store, log)

	routing := make(map[presence.PropertyID]bridge.Routing, len(c.Properties))
	httpProps := make(map[presence.PropertyID]widget.PropertyConfig, len(c.Properties))
	tgGroups := map[presence.PropertyID]int64{}
	slackChannels := map[presence.PropertyID]string{}
	for _, p := range c.Properties {
		id := presence.PropertyID(p.ID)
		routing[id] = bridge.Routing{
			Strategy: p.Assignment.Strategy, MaxChats: p.Assignment.MaxChats,
			AcceptTimeout: p.Assignment.AcceptTimeout, FallbackAfter: p.Assignment.FallbackAfter(),
			QueueTimeout: p.Assignment.QueueTimeout, CloseAfterIdle: p.CloseAfterIdle, EmailAfter: p.EmailAfter,
			Canned: p.Canned,
		}
		httpProps[id] = widget.PropertyConfig{AllowedOrigins: p.AllowedOrigins, IdentitySecret: p.IdentitySecret.Reveal()}
		if p.TelegramGroup != 0 {
			tgGroups[id] = p.TelegramGroup
		}
		if p.SlackChannel != "" {
			slackChannels[id] = p.SlackChannel
		}
	}
	b, err := bridge.New(bridge.Config{
		Prefix: c.RedisPrefix, Properties: routing, PublicURL: c.PublicURL, ClosedChatTTL: c.ClosedChatRetention, FileTTL: c.FileRetention,
		LeaseTTL: c.Outbox.Lease, PollEvery: c.Outbox.SafetyPoll, DeliverTimeout: c.Outbox.DeliverTimeout, Instance: c.Outbox.InstanceID,
	}, rdb, store, watcher, log)
	if err != nil {
		closeRedis()
		return nil, err
	}
	svc := &service{bridge: b, watcher: watcher, close: closeRedis, file: c.File, demo: c.Demo, port: listenPort(c.Listen)}
	if svc.file == "" {
		svc.file = "(environment)"
	}
	adminToken := c.AdminToken.Reveal()
	if c.Demo && adminToken == "" {
		// The demo agent may also answer from the admin API, and the board
		// should be there to look at: a token for this run only, printed
		// by announce.
		adminToken = randomToken()
		svc.demoToken = adminToken
	}
	proxies, err := c.TrustedProxyPrefixes()
	if err != nil { // Validate has refused it already
		closeRedis()
		return nil, err
	}
	rl := c.RateLimits
	server := widget.New(widget.Config{
		Listen: c.Listen, AdminToken: adminToken, Properties: httpProps, Prefix: c.RedisPrefix,
		TrustedProxies: proxies, ProxyHeader: c.ProxyHeader,
		MetricsToken: c.MetricsToken.Reveal(), MetricsListen: c.MetricsListen,
		RateLimits: widget.RateLimits{
			ChatsPerMinute: rl.ChatsPerIPPerMinute, MessagesPerMinute: rl.MessagesPerIPPerMinute,
			UploadsPerChat: rl.UploadsPerChat, UploadsPerIPPerHour: rl.UploadsPerIPPerHour, UploadsPerPropertyPerDay: rl.UploadsPerPropertyPerDay,
		},
		Limits:   widget.Limits{ConnectionsPerIP: c.Limits.ConnectionsPerIP, Streams: c.Limits.Streams, StreamsPerIP: c.Limits.StreamsPerIP},
		Adapters: b.Adapters,
	}, watcher, store, b, rdb, log)

	svc.server = server
	if c.Demo {
		b.AddAdapter(console.New("demo", stdin, log))
	}
	if e := c.Email; e != nil {
		sender, err := email.New(email.Config{SMTPURL: e.SMTPURL.Reveal(), From: e.From}, log)
		if err != nil {
			closeRedis()
			return nil, err
		}
		b.AddAdapter(sender)
	}
	for i, wc := range c.Webhooks {
		cfg := webhook.Config{URL: wc.URL.Reveal(), Secret: wc.Secret.Reveal()}
		for _, e := range wc.Events {
			cfg.Events = append(cfg.Events, bridge.HookEvent(e))
		}
		for _, p := range wc.Properties {
			cfg.Properties = append(cfg.Properties, presence.PropertyID(p))
		}
		wh, err := webhook.New(cfg, log)
		if err != nil {
			closeRedis()
			return nil, fmt.Errorf("%s: webhooks[%d]: %w", svc.file, i, err)
		}
		b.AddAdapter(wh)
	}
	if t := c.Telegram; t != nil {
		tg, err := telegram.New(telegram.Config{
			Token: t.Token.Reveal(), APIURL: t.APIURL, Mode: t.Mode,
			WebhookURL: t.WebhookURL, WebhookSecret: t.WebhookSecret.Reveal(), Groups: tgGroups, Prefix: c.RedisPrefix,
		}, dir, rdb, log)
		if err != nil {
			closeRedis()
			return nil, err
		}
		b.AddAdapter(tg)
		svc.verifiers = append(svc.verifiers, tg)
		if t.Mode == "webhook" {
			server.Mount("/telegram/webhook", tg.WebhookHandler())
		}
	}
	if s := c.Slack; s != nil {
		sl, err := slack.New(slack.Config{
			BotToken: s.BotToken.Reveal(), AppToken: s.AppToken.Reveal(), SigningSecret: s.SigningSecret.Reveal(),
			Mode: s.Mode, APIURL: s.APIURL, Channels: slackChannels, UsePresence: s.UsePresence, Prefix: c.RedisPrefix,
		}, dir, rdb, log)
		if err != nil {
			closeRedis()
			return nil, err
		}
		b.AddAdapter(sl)
		svc.verifiers = append(svc.verifiers, sl)
		if s.Mode == "events" {
			for path, h := range sl.HTTPHandlers() {
				server.Mount(path, h)
			}
		}
	}
	return svc, nil
}

// run serves until ctx is done, on ln if given, else on the configured address.
func (s *service) run(ctx context.Context, ln net.Listener) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.watcher.Run(ctx) })
	g.Go(func() error { return s.bridge.Run(ctx) })
	g.Go(func() error {
		if ln != nil {
			return s.server.Serve(ctx, ln)
		}
		return s.server.Run(ctx)
	})
	return g.Wait()
}

func listenPort(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i:]
		}
	}
	return ""
}

// newLogger logs text at level ("debug", "info", "warn", "error"; anything
// else, as "", means info: check-config has refused what is not a level).
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if l.UnmarshalText([]byte(level)) != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
