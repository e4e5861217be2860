package widget

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// Limits of the HTTP API (SPEC §6).
const (
	// MaxBodyBytes caps the body of every /v1 request.
	MaxBodyBytes = 16 << 10
	// MaxUploadBytes caps a file a visitor sends (POST /v1/chats/{c}/files).
	MaxUploadBytes = 5 << 20
	// mountBodyBytes is the server-wide cap, larger than MaxBodyBytes so that
	// platform callbacks (a Telegram update with a 4096-character message of
	// emoji is over 16 KiB) and visitors' files (with their multipart form)
	// are not refused; each route has its own, smaller limit.
	mountBodyBytes = MaxUploadBytes + 1<<20
	// headerBytes bounds the request line and headers together (fasthttp's
	// read buffer). Longer requests get a 431; one much longer may see its
	// connection closed before the client has finished sending it.
	headerBytes = 8 << 10
)

// Config configures the widget server.
type Config struct {
	// Listen is the address Run listens on. Zero means ":8080".
	Listen string
	// AdminToken is the bearer token of the admin API. Empty disables the
	// admin API: its routes answer 404.
	AdminToken string
	// Properties holds per-property HTTP settings. A property missing here
	// (or with no AllowedOrigins) accepts requests from any origin.
	Properties map[presence.PropertyID]PropertyConfig
	// RateLimits are per client IP, counted in Redis across instances.
	RateLimits RateLimits
	// Prefix starts every Redis key this package writes. Zero means "onduty:".
	Prefix string
	// Now is the clock of the rate-limit windows. Nil means time.Now.
	Now func() time.Time

	// Heartbeat is how often an idle event stream gets a comment line, which
	// is also how a gone client is noticed. Zero means 20s.
	Heartbeat time.Duration
	// ProxyHeader names the header holding the client IP when the server runs
	// behind a reverse proxy (e.g. "X-Forwarded-For"). Empty: the TCP peer.
	// Set it only behind a proxy that overwrites the header.
	ProxyHeader string
	// ShutdownTimeout bounds Run's graceful shutdown. Zero means 10s.
	ShutdownTimeout time.Duration
}

// PropertyConfig is one property's HTTP settings.
type PropertyConfig struct {
	// AllowedOrigins are the origins ("https://acme.example") whose pages may
	// call the visitor API. Empty: any origin, without credentials.
	AllowedOrigins []string
}

// RateLimits per client IP and minute. Zero means the default (20 chats,
// 120 messages); a negative value turns the limit off.
type RateLimits struct {
	// ChatsPerMinute counts chat creations and offline messages.
	ChatsPerMinute int
	// MessagesPerMinute counts visitor messages.
	MessagesPerMinute int
}

// Server is the widget HTTP server.
type Server struct {
	cfg     Config
	app     *fiber.App
	watcher *presence.Watcher
	store   *presence.Store
	dir     *presence.Directory
	chats   bridge.VisitorService
	rdb     redis.UniversalClient
	log     *slog.Logger

	hot       map[presence.PropertyID]*atomic.Pointer[hot] // fixed keys: read without a lock
	cors      map[presence.PropertyID]originPolicy
	anyOrigin originPolicy // the union of every property's policy (chat routes before auth)

	adminOn   bool
	adminHash [sha256.Size]byte

	js, demo           asset
	adminHTML, adminJS asset
	board              *boardCache // nil unless the VisitorService has Board
	reg                *prometheus.Registry
	coll               *collector

	// Event streams: stopping is set once, under mu, before stop is closed;
	// no stream starts after that, so streams.Wait is safe.
	mu       sync.Mutex
	stopping bool
	stop     chan struct{}
	stopCtx  context.Context // cancelled with stop: bounds work a stream does
	stopAll  context.CancelFunc
	streams  sync.WaitGroup
	open     atomic.Int64
	conns    connSet
}

// New builds the server and its routes. rdb is used only by /readyz and the
// rate limiter; presence comes from watcher (hot path) and store (admin).
func New(cfg Config, watcher *presence.Watcher, store *presence.Store, chats bridge.VisitorService, rdb redis.UniversalClient, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = ":8080"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "onduty:"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 20 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.RateLimits.ChatsPerMinute == 0 {
		cfg.RateLimits.ChatsPerMinute = 20
	}
	if cfg.RateLimits.MessagesPerMinute == 0 {
		cfg.RateLimits.MessagesPerMinute = 120
	}
	s := &Server{
		cfg: cfg, watcher: watcher, store: store, dir: store.Directory(), chats: chats, rdb: rdb,
		log:  log.With("component", "widget"),
		stop: make(chan struct{}),
		js:   newAsset(widgetJS, "application/javascript; charset=utf-8", "public, max-age=300"),
		demo: newAsset(demoHTML, "text/html; charset=utf-8", "no-cache"),

		adminHTML: newAsset(adminPageHTML, "text/html; charset=utf-8", "no-cache"),
		adminJS:   newAsset(adminPageJS, "application/javascript; charset=utf-8", "no-cache"),
		reg:       prometheus.NewRegistry(),
	}
	if src, ok := chats.(boardSource); ok {
		s.board = &boardCache{src: src, m: make(map[presence.PropertyID]*boardEntry)}
	}
	s.coll = &collector{s: s, ttl: countsTTL}
	s.reg.MustRegister(s.coll)
	s.stopCtx, s.stopAll = context.WithCancel(context.Background())
	s.buildCORS()
	s.hot = make(map[presence.PropertyID]*atomic.Pointer[hot])
	for _, p := range s.dir.Properties() {
		s.hot[p] = new(atomic.Pointer[hot])
	}
	if cfg.AdminToken != "" {
		s.adminOn = true
		s.adminHash = sha256.Sum256([]byte(cfg.AdminToken))
	}
	s.app = fiber.New(fiber.Config{
		// Not Immutable: it costs the hot path several allocations per
		// request. Every value a handler keeps or hands on (to the bridge,
		// the store, a stream goroutine, a metric label) is cloned there.
		Immutable:             false,
		BodyLimit:             mountBodyBytes,
		ReadBufferSize:        headerBytes,
		DisableStartupMessage: true,
		ErrorHandler:          s.errorHandler,
		ProxyHeader:           cfg.ProxyHeader,
		ReadTimeout:           30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		// Event streams are long responses: no write timeout (they set their own deadlines).
	})
	s.routes()
	return s
}

// App returns the Fiber app (tests, load tests).
func (s *Server) App() *fiber.App { return s.app }

// Mount adds a platform callback (Telegram webhook, Slack events…) at path and
// everything below it. Call it before Run.
func (s *Server) Mount(path string, h http.Handler) {
	fh := adaptor.HTTPHandler(h)
	s.handle(fiber.MethodPost, path, routeOpts{}, fh)
	s.handle(fiber.MethodGet, path, routeOpts{}, fh)
	s.handle(fiber.MethodPost, path+"/*", routeOpts{}, fh)
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
	s.log.Info("widget server listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	ln = &trackingListener{Listener: ln, set: &s.conns}
	go func() { errc <- s.app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("widget: serve: %w", err)
	case <-ctx.Done():
	}
	began := time.Now()
	s.stopStreams()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	drained := make(chan struct{})
	go func() { s.streams.Wait(); close(drained) }()
	select {
	case <-drained:
		s.log.Info("event streams ended", "took", time.Since(began))
	case <-sctx.Done():
		s.log.Warn("event streams still open at shutdown deadline", "open", s.open.Load())
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

// stopStreams tells every event stream to end; no new stream starts after it.
func (s *Server) stopStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopping {
		s.stopping = true
		close(s.stop)
		s.stopAll()
	}
}

// routeOpts are per-route behaviours of handle.
type routeOpts struct {
	// limitBody refuses bodies over MaxBodyBytes (or maxBody) with 413.
	limitBody bool
	// maxBody replaces MaxBodyBytes for this route when not zero.
	maxBody int
}

// handle registers a route whose handler's errors become the JSON error body
// and whose responses are counted in metrics.HTTPRequests by route pattern.
func (s *Server) handle(method, path string, o routeOpts, h fiber.Handler) {
	rm := &routeMetrics{route: path}
	s.app.Add(method, path, func(c *fiber.Ctx) error {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panicked", "method", c.Method(), "route", path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				s.writeError(c, errInternal)
				rm.inc(c.Response().StatusCode())
			}
		}()
		limit := MaxBodyBytes
		if o.maxBody > 0 {
			limit = o.maxBody
		}
		var err error
		if o.limitBody && (c.Request().Header.ContentLength() > limit || len(c.Request().Body()) > limit) {
			err = errTooLarge
		} else {
			err = h(c)
		}
		if err != nil {
			s.writeError(c, err)
		}
		rm.inc(c.Response().StatusCode())
		return nil
	})
}

func (s *Server) routes() {
	v := routeOpts{limitBody: true}
	s.handle(fiber.MethodGet, "/healthz", routeOpts{}, s.healthz)
	s.handle(fiber.MethodGet, "/readyz", routeOpts{}, s.readyz)
	s.handle(fiber.MethodGet, "/metrics", routeOpts{}, adaptor.HTTPHandler(
		promhttp.HandlerFor(prometheus.Gatherers{metrics.Registry, s.reg}, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})))
	s.handle(fiber.MethodGet, "/widget.js", routeOpts{}, s.js.serve)
	s.handle(fiber.MethodGet, "/", routeOpts{}, s.demo.serve)

	s.handle(fiber.MethodGet, "/v1/properties/:p/status", v, s.status)
	s.handle(fiber.MethodGet, "/v1/properties/:p/status/stream", v, s.statusStream)
	s.handle(fiber.MethodPost, "/v1/properties/:p/chats", v, s.startChat)
	s.handle(fiber.MethodPost, "/v1/properties/:p/offline-messages", v, s.offlineMessage)
	s.handle(fiber.MethodOptions, "/v1/properties/:p/*", routeOpts{}, s.preflightProperty)

	s.handle(fiber.MethodPost, "/v1/chats/:c/messages", v, s.postMessage)
	s.handle(fiber.MethodGet, "/v1/chats/:c/messages", v, s.transcript)
	s.handle(fiber.MethodGet, "/v1/chats/:c/events", v, s.visitorEvents)
	s.handle(fiber.MethodPost, "/v1/chats/:c/close", v, s.closeChat)
	s.handle(fiber.MethodPost, "/v1/chats/:c/transcript", v, s.emailTranscript)
	s.handle(fiber.MethodPost, "/v1/chats/:c/rating", v, s.rate)
	s.handle(fiber.MethodGet, "/c/:c", routeOpts{}, s.continuePage)
	s.handle(fiber.MethodGet, "/v1/chats/:c/files/:key", v, s.file)
	s.handle(fiber.MethodPost, "/v1/chats/:c/files", routeOpts{limitBody: true, maxBody: MaxUploadBytes + 64<<10}, s.uploadFile)
	s.handle(fiber.MethodOptions, "/v1/chats/:c/*", routeOpts{}, s.preflightChat)

	s.handle(fiber.MethodGet, "/admin", routeOpts{}, s.adminPage)
	s.handle(fiber.MethodGet, "/admin.js", routeOpts{}, s.adminScript)
	s.handle(fiber.MethodGet, "/v1/admin/properties", v, s.adminProperties)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/presence", v, s.adminPresence)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/chats", v, s.adminChats)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/events", v, s.adminEvents)
	s.handle(fiber.MethodGet, "/v1/admin/events", v, s.adminEvents)
	s.handle(fiber.MethodPut, "/v1/admin/agents/:a/status", v, s.adminSetStatus)
	s.handle(fiber.MethodPost, "/v1/admin/agents/:a/actions", v, s.adminAction)
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
	return c.JSON(fiber.Map{"status": "ok"})
}

// routeMetrics caches one route's request counters by status code, so the
// hot path does no label hashing.
type routeMetrics struct {
	route string
	codes [600]atomic.Pointer[prometheus.Counter]
}

func (m *routeMetrics) inc(code int) {
	if code < 0 || code >= len(m.codes) {
		metrics.HTTPRequests.WithLabelValues(m.route, fmt.Sprint(code)).Inc()
		return
	}
	p := m.codes[code].Load()
	if p == nil {
		ctr := metrics.HTTPRequests.WithLabelValues(m.route, fmt.Sprint(code))
		p = &ctr
		m.codes[code].Store(p)
	}
	(*p).Inc()
}

// opCtx bounds a storage call made for one request.
func opCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), 10*time.Second)
}

// connSet tracks the server's connections so that shutdown can close those
// that never carried a request.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

func (cs *connSet) add(c *trackedConn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[*trackedConn]struct{})
	}
	cs.m[c] = struct{}{}
}

func (cs *connSet) remove(c *trackedConn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.m, c)
}

func (cs *connSet) closeUnused() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.m {
		if !c.used.Load() {
			_ = c.Conn.Close()
			delete(cs.m, c)
		}
	}
}

type trackingListener struct {
	net.Listener
	set *connSet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, set: l.set}
	l.set.add(tc)
	return tc, nil
}

// trackedConn notes whether the client ever sent anything.
type trackedConn struct {
	net.Conn
	set  *connSet
	used atomic.Bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.set.remove(c)
	return c.Conn.Close()
}
