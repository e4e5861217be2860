package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/onduty/onduty/adapters/console"
	"github.com/onduty/onduty/adapters/slack"
	"github.com/onduty/onduty/adapters/telegram"
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
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	c, err := config.Load(configFile(*file), nil)
	if err != nil {
		return err
	}
	log := newLogger(stderr, c.LogLevel)
	app, err := build(ctx, c, os.Stdin, log)
	if err != nil {
		return err
	}
	defer app.close()
	return app.run(ctx, nil)
}

// service is everything serve runs, built from one configuration.
type service struct {
	watcher *presence.Watcher
	bridge  *bridge.Bridge
	server  *widget.Server
	close   func()
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
		}
		httpProps[id] = widget.PropertyConfig{AllowedOrigins: p.AllowedOrigins}
		if p.TelegramGroup != 0 {
			tgGroups[id] = p.TelegramGroup
		}
		if p.SlackChannel != "" {
			slackChannels[id] = p.SlackChannel
		}
	}
	b, err := bridge.New(bridge.Config{Prefix: c.RedisPrefix, Properties: routing, PublicURL: c.PublicURL, ClosedChatTTL: c.ClosedChatRetention}, rdb, store, watcher, log)
	if err != nil {
		closeRedis()
		return nil, err
	}
	adminToken := c.AdminToken.Reveal()
	if c.Demo && adminToken == "" {
		// The demo agent may also answer from the admin API, and the board
		// should be there to look at: a token for this run only.
		adminToken = randomToken()
		log.Info("demo: admin board at http://localhost"+listenPort(c.Listen)+"/admin; this run's admin token (set ONDUTY_ADMIN_TOKEN to choose one)",
			"admin_token", adminToken)
	}
	server := widget.New(widget.Config{
		Listen: c.Listen, AdminToken: adminToken, Properties: httpProps, Prefix: c.RedisPrefix, ProxyHeader: c.ProxyHeader,
		RateLimits: widget.RateLimits{ChatsPerMinute: c.RateLimits.ChatsPerIPPerMinute, MessagesPerMinute: c.RateLimits.MessagesPerIPPerMinute},
	}, watcher, store, b, rdb, log)

	if c.Demo {
		b.AddAdapter(console.New("demo", stdin, log))
		log.Info("demo: open http://localhost" + listenPort(c.Listen) + "/ and start a chat; the demo agent's inbox is this log — type an answer here and press Enter, " +
			"or answer through the admin API: POST /v1/admin/agents/demo/actions {\"text\":\"…\"}")
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
		if s.Mode == "events" {
			for path, h := range sl.HTTPHandlers() {
				server.Mount(path, h)
			}
		}
	}
	return &service{watcher: watcher, bridge: b, server: server, close: closeRedis}, nil
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
