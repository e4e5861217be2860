package widget

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/presence"
)

// Server is the widget HTTP server: a composition of parts, one concern
// each, whose handlers it routes, and the listener it runs them on.
type Server struct {
	cfg    Config
	app    *fiber.App
	rdb    redis.UniversalClient // /readyz
	log    *slog.Logger
	mounts []string // paths of platform callbacks (Mount)

	visitor *visitorAPI // the visitor API (chats.go, status.go, email.go)
	admin   *adminAPI   // the admin API and board (admin.go, board.go, blocks.go)
	assets  *assets     // widget.js, the demo page, the admin page (assets.go)
	cors    *corsPolicies
	streams *streamer    // the event streams' transport and life (sse.go)
	hub     *statusHub   // held status streams (hub.go)
	conns   *connTracker // connections and stream caps (conns.go, listener.go)
	clients *limiter     // client IPs, rate limits, upload quotas (ratelimit.go)
	reg     *prometheus.Registry
	coll    *collector   // gauges computed at scrape time (collector.go)
	metrics http.Handler // /metrics (metrics.go)
}

// New builds the server and its routes. core is what the server uses of
// the bridge; rdb is used only by /readyz and the rate limiter; presence
// comes from watcher (hot path) and store (admin).
func New(cfg Config, watcher *presence.Watcher, store *presence.Store, core Bridge, rdb redis.UniversalClient, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	log = log.With("component", "widget")
	dir := store.Directory()
	props := dir.Properties()
	s := &Server{cfg: cfg, rdb: rdb, log: log, reg: prometheus.NewRegistry()}
	s.assets = newAssets()
	s.cors = newCORS(props, cfg.Properties)
	s.clients = newLimiter(cfg, rdb, log)
	s.conns = newConnTracker(cfg.Limits)
	statuses := newHotStatuses(watcher, props)
	s.hub = newStatusHub(watcher, statuses, s.conns, props, cfg.Heartbeat, cfg.StreamWriteTimeout)
	s.streams = newStreamer(s.conns, s.clients, s.hub, cfg.Heartbeat, log)
	s.visitor = &visitorAPI{
		props: cfg.Properties, dir: dir, watcher: watcher, chats: core, statuses: statuses,
		cors: s.cors, limits: s.clients, streams: s.streams, log: log,
	}
	s.admin = newAdminAPI(cfg.AdminToken, cfg.Adapters, store, watcher, core, s.streams, s.assets, log)
	s.coll = &collector{watcher: watcher, dir: dir, chats: core, ctx: s.streams.ctx, log: log, ttl: countsTTL}
	s.reg.MustRegister(s.coll)
	s.metrics = metricsHandler(s.reg, cfg.MetricsToken, log)
	s.app = fiber.New(fiber.Config{
		// Not Immutable: it costs the hot path several allocations per
		// request. Every value a handler keeps or hands on (to the bridge,
		// the store, a stream goroutine, a metric label) is cloned there.
		Immutable: false,
		// Bodies are streamed: fasthttp reads at most 8 KiB of one before
		// the handler runs, and handle reads the rest up to the route's own
		// limit (refusing a larger Content-Length before reading any), so a
		// connection announcing a large body holds no more memory than it
		// has sent. BodyLimit is what fasthttp reads ahead at most.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		BodyLimit:                    MaxBodyBytes,
		ReadBufferSize:               headerBytes,
		DisableStartupMessage:        true,
		ErrorHandler:                 s.errorHandler,
		ReadTimeout:                  30 * time.Second,
		IdleTimeout:                  2 * time.Minute,
		// Event streams are long responses: no write timeout (they set their own deadlines).
	})
	s.app.Server().HeaderReceived = s.headerReceived
	// A held status stream is only its connection: fasthttp frees the
	// request's buffers when the hijack handler returns and leaves the
	// connection open (goroutine streams close theirs themselves).
	s.app.Server().KeepHijackedConns = true
	s.routes()
	return s
}

// App returns the Fiber app (tests, load tests).
func (s *Server) App() *fiber.App { return s.app }

// Mount adds a platform callback (Telegram webhook, Slack events…) at path and
// everything below it. Call it before Run.
func (s *Server) Mount(path string, h http.Handler) {
	fh := adaptor.HTTPHandler(h)
	o := routeOpts{maxBody: callbackBodyBytes}
	s.mounts = append(s.mounts, path)
	s.handle(fiber.MethodPost, path, o, fh)
	s.handle(fiber.MethodGet, path, o, fh)
	s.handle(fiber.MethodPost, path+"/*", o, fh)
}

// Run listens on cfg.Listen and serves until ctx is done, then stops the
// event streams and shuts the server down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("widget: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on an existing listener (tests use one on port 0). A Server
// serves once: after Serve returns, build a new one.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var mln net.Listener
	if s.cfg.MetricsListen != "" {
		var err error
		if mln, err = net.Listen("tcp", s.cfg.MetricsListen); err != nil {
			_ = ln.Close()
			return fmt.Errorf("widget: listen for metrics: %w", err)
		}
	}
	return s.serve(ctx, ln, mln)
}

func (s *Server) serve(ctx context.Context, ln, mln net.Listener) error {
	s.log.Info("widget server listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	ln = s.conns.listener(ln, s.clients.trustedProxy, s.log)
	s.streams.start()
	go func() { errc <- s.app.Listener(ln) }()
	var msrv *http.Server
	mdone := make(chan struct{})
	if mln != nil {
		s.log.Info("metrics listening", "addr", mln.Addr().String())
		msrv = &http.Server{Handler: s.metrics, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
		go func() {
			defer close(mdone)
			if err := msrv.Serve(&guardedListener{Listener: mln, log: s.log, sleep: time.Sleep}); err != nil && err != http.ErrServerClosed {
				s.log.Error("metrics server stopped", "err", err)
			}
		}()
	} else {
		close(mdone)
	}
	stopMetrics := func() {
		if msrv != nil {
			_ = msrv.Close()
		}
		<-mdone
	}
	select {
	case err := <-errc:
		stopMetrics()
		return fmt.Errorf("widget: serve: %w", err)
	case <-ctx.Done():
	}
	defer stopMetrics()
	began := time.Now()
	s.streams.shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if s.streams.wait(sctx) {
		s.log.Info("event streams ended", "took", time.Since(began))
	} else {
		s.log.Warn("event streams still open at shutdown deadline", "open", s.OpenStreams())
	}
	// fasthttp counts a fresh connection as busy as soon as it is accepted,
	// so a browser's spare, never-used connection would hold shutdown until
	// the deadline. Close connections that never sent a byte while waiting.
	shut := make(chan error, 1)
	go func() { shut <- s.app.ShutdownWithContext(sctx) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-shut:
			break wait
		case <-tick.C:
			s.conns.closeUnused()
		}
	}
	// If shutdown ran before fasthttp registered the listener, it did not
	// close it: make sure the accept loop ends.
	_ = ln.Close()
	<-errc
	s.log.Info("widget server stopped", "took", time.Since(began), "err", err)
	if err != nil {
		return fmt.Errorf("widget: shutdown: %w", err)
	}
	return nil
}

func (s *Server) routes() {
	v, a := s.visitor, s.admin
	o := routeOpts{}
	s.handle(fiber.MethodGet, "/healthz", o, s.healthz)
	s.handle(fiber.MethodGet, "/readyz", o, s.readyz)
	if s.cfg.MetricsListen == "" {
		s.handle(fiber.MethodGet, "/metrics", o, adaptor.HTTPHandler(s.metrics))
	}
	s.handle(fiber.MethodGet, "/widget.js", o, s.assets.widgetScript)
	s.handle(fiber.MethodGet, "/", o, s.assets.demoPage)

	s.handle(fiber.MethodGet, "/v1/properties/:p/status", o, v.status)
	s.handle(fiber.MethodGet, "/v1/properties/:p/status/stream", o, v.statusStream)
	s.handle(fiber.MethodPost, "/v1/properties/:p/chats", o, v.startChat)
	s.handle(fiber.MethodPost, "/v1/properties/:p/offline-messages", o, v.offlineMessage)
	s.handle(fiber.MethodOptions, "/v1/properties/:p/*", o, s.cors.preflightProperty)

	s.handle(fiber.MethodPost, "/v1/chats/:c/messages", o, v.postMessage)
	s.handle(fiber.MethodGet, "/v1/chats/:c/messages", o, v.transcript)
	s.handle(fiber.MethodGet, "/v1/chats/:c/events", o, v.visitorEvents)
	s.handle(fiber.MethodPost, "/v1/chats/:c/close", o, v.closeChat)
	s.handle(fiber.MethodPost, "/v1/chats/:c/transcript", o, v.emailTranscript)
	s.handle(fiber.MethodPost, "/v1/chats/:c/rating", o, v.rate)
	s.handle(fiber.MethodGet, "/c/:c", o, v.continuePage)
	s.handle(fiber.MethodGet, "/v1/chats/:c/files/:key", o, v.file)
	s.handle(fiber.MethodPost, "/v1/chats/:c/files", routeOpts{maxBody: uploadBodyBytes, streamBody: true}, v.uploadFile)
	s.handle(fiber.MethodOptions, "/v1/chats/:c/*", o, s.cors.preflightChat)

	s.handle(fiber.MethodGet, "/admin", o, a.adminPage)
	s.handle(fiber.MethodGet, "/admin.js", o, a.adminScript)
	s.handle(fiber.MethodGet, "/v1/admin/properties", o, a.adminProperties)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/presence", o, a.adminPresence)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/chats", o, a.adminChats)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/events", o, a.adminEvents)
	s.handle(fiber.MethodGet, "/v1/admin/events", o, a.adminEvents)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/blocks", o, a.adminBlocks)
	s.handle(fiber.MethodDelete, "/v1/admin/properties/:p/blocks/:id", o, a.adminUnblock)
	s.handle(fiber.MethodPut, "/v1/admin/agents/:a/status", o, a.adminSetStatus)
	s.handle(fiber.MethodPost, "/v1/admin/agents/:a/actions", o, a.adminAction)
	s.handle(fiber.MethodDelete, "/v1/admin/visitors", o, a.adminErase)
}

func (s *Server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.log.Warn("readiness: redis ping failed", "err", err)
		return errUnavailable
	}
	if down := s.adaptersDown(); len(down) > 0 {
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.Status(http.StatusServiceUnavailable).JSON(fiber.Map{"not_ready": down})
	}
	return c.JSON(fiber.Map{"status": "ok"})
}

// adaptersDown lists every stopped adapter as "telegram: token rejected (401)".
func (s *Server) adaptersDown() []string {
	var down []string
	if s.cfg.Adapters == nil {
		return nil
	}
	for _, a := range s.cfg.Adapters() {
		if !a.Up {
			down = append(down, a.Name+": "+a.Reason)
		}
	}
	return down
}

// opCtx bounds a storage call made for one request.
func opCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), 10*time.Second)
}

// OpenStreams is the number of event streams open now.
func (s *Server) OpenStreams() int64 { return s.conns.open.Load() }
