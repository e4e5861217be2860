package widget

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

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
	// uploadBodyBytes caps the whole multipart body of an upload: the file,
	// a caption and the form's framing.
	uploadBodyBytes = MaxUploadBytes + 64<<10
	// callbackBodyBytes caps a platform callback (Telegram webhook, Slack
	// events): a Telegram update with a 4096-character message of emoji is
	// over 16 KiB.
	callbackBodyBytes = 1 << 20
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
	// TrustedProxies are the networks of the reverse proxies in front of the
	// server. A request whose TCP peer is in them has its client IP taken
	// from ProxyHeader: the rightmost entry not in them. Empty: the client IP
	// is the TCP peer, and ProxyHeader is not read.
	TrustedProxies []netip.Prefix
	// ProxyHeader names the header the trusted proxies append the client IP
	// to. Zero means "X-Forwarded-For".
	ProxyHeader string
	// Limits caps connections and event streams.
	Limits Limits
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string
	// MetricsListen, when set, is the address /metrics is served on instead
	// of Listen (e.g. "127.0.0.1:9090"); Listen then answers it 404.
	MetricsListen string
	// StreamWriteTimeout bounds one write to a held status stream: a client
	// that does not take its event (or heartbeat) in time is dropped and
	// reconnects. Zero means 2s.
	StreamWriteTimeout time.Duration
	// ShutdownTimeout bounds Run's graceful shutdown. Zero means 10s.
	ShutdownTimeout time.Duration
	// Adapters reports the chat platforms' health (bridge.Bridge.Adapters):
	// /readyz answers 503 naming any that stopped, and the admin board
	// shows them. Nil means there are none to report.
	Adapters func() []bridge.AdapterState
}

// PropertyConfig is one property's HTTP settings.
type PropertyConfig struct {
	// AllowedOrigins are the origins ("https://acme.example") whose pages may
	// call the visitor API. Empty: any origin, without credentials.
	AllowedOrigins []string
	// IdentitySecret verifies the identities sites send (SPEC §10). Empty:
	// identities are kept, shown as unverified.
	IdentitySecret string
}

// RateLimits are counted in Redis across instances. Zero means the
// default given with each; a negative value turns the limit off.
type RateLimits struct {
	// ChatsPerMinute counts chat creations and offline messages per client
	// IP. Default 20.
	ChatsPerMinute int
	// MessagesPerMinute counts visitor messages (files too) per client IP.
	// Default 120.
	MessagesPerMinute int
	// UploadsPerChat counts the files of one chat, over its life. Default 20.
	UploadsPerChat int
	// UploadsPerIPPerHour counts files per client IP and hour. Default 30.
	UploadsPerIPPerHour int
	// UploadsPerPropertyPerDay counts files per property and UTC day.
	// Default 500.
	UploadsPerPropertyPerDay int
}

// Limits cap what one instance holds open. Zero means the default given
// with each; a negative value turns the cap off.
type Limits struct {
	// ConnectionsPerIP caps the open connections of one TCP peer (an IPv6
	// /64 counts as one); more are answered 429 with Retry-After and closed.
	// Trusted proxies are not capped. Default 256.
	ConnectionsPerIP int
	// Streams caps the event streams this instance holds; more are answered
	// 503 with Retry-After. Default 10000.
	Streams int
	// StreamsPerIP caps one client IP's event streams on this instance; more
	// are answered 429 with Retry-After. Default 32.
	StreamsPerIP int
}

// Defaults of the caps and quotas.
const (
	DefaultConnectionsPerIP         = 256
	DefaultStreams                  = 10000
	DefaultStreamsPerIP             = 32
	DefaultUploadsPerChat           = 20
	DefaultUploadsPerIPPerHour      = 30
	DefaultUploadsPerPropertyPerDay = 500
)

// orDefault is v, or def when v is zero.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
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
	hub                *statusHub  // held status streams
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
	mounts   []string // paths of platform callbacks (Mount)

	// Event streams held, in total and per client IP (caps in cfg.Limits).
	streamsMu   sync.Mutex
	streamsByIP map[string]int
	streamsAll  int
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
	if cfg.StreamWriteTimeout <= 0 {
		cfg.StreamWriteTimeout = 2 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.ProxyHeader == "" {
		cfg.ProxyHeader = fiber.HeaderXForwardedFor
	}
	rl := &cfg.RateLimits
	rl.ChatsPerMinute = orDefault(rl.ChatsPerMinute, 20)
	rl.MessagesPerMinute = orDefault(rl.MessagesPerMinute, 120)
	rl.UploadsPerChat = orDefault(rl.UploadsPerChat, DefaultUploadsPerChat)
	rl.UploadsPerIPPerHour = orDefault(rl.UploadsPerIPPerHour, DefaultUploadsPerIPPerHour)
	rl.UploadsPerPropertyPerDay = orDefault(rl.UploadsPerPropertyPerDay, DefaultUploadsPerPropertyPerDay)
	lim := &cfg.Limits
	lim.ConnectionsPerIP = orDefault(lim.ConnectionsPerIP, DefaultConnectionsPerIP)
	lim.Streams = orDefault(lim.Streams, DefaultStreams)
	lim.StreamsPerIP = orDefault(lim.StreamsPerIP, DefaultStreamsPerIP)
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
	s.hub = newStatusHub(s, s.dir.Properties())
	if cfg.AdminToken != "" {
		s.adminOn = true
		s.adminHash = sha256.Sum256([]byte(cfg.AdminToken))
	}
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

// refusedLength marks (on the request header) a request whose announced
// body is over its route's limit. headerReceived sets it and empties the
// Content-Length, so fasthttp reads none of the body; handle refuses the
// request with 413 and closes the connection. A client cannot set it
// itself: it is deleted from every request first.
const refusedLength = "X-Onduty-Refused-Length"

// headerReceived runs when a request's header has been read, before any of
// its body: with streamed bodies fasthttp would otherwise wait for the
// first 8 KiB of a body it is going to refuse.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	h.Del(refusedLength)
	if cl := h.ContentLength(); cl > 0 && cl > s.bodyLimit(h.Method(), h.RequestURI()) {
		h.Set(refusedLength, strconv.Itoa(cl))
		h.SetContentLength(0)
	}
	return fasthttp.RequestConfig{}
}

// bodyLimit is the body limit of the route of method and uri: the upload
// and the platform callbacks have their own; every other route has
// MaxBodyBytes. Paths are compared as registered, so a differently spelled
// path gets the smaller limit.
func (s *Server) bodyLimit(method, uri []byte) int {
	path := string(uri)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if string(method) == fiber.MethodPost {
		if rest, ok := strings.CutPrefix(path, "/v1/chats/"); ok {
			if id, ok := strings.CutSuffix(rest, "/files"); ok && !strings.Contains(id, "/") {
				return uploadBodyBytes
			}
		}
	}
	for _, m := range s.mounts {
		if path == m || strings.HasPrefix(path, m+"/") {
			return callbackBodyBytes
		}
	}
	return MaxBodyBytes
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
	ln = &trackingListener{Listener: newGuardedListener(ln, s.cfg.Limits.ConnectionsPerIP, s.trustedProxy, s.log), set: &s.conns}
	s.mu.Lock()
	if !s.stopping {
		s.hub.start(s.stop, &s.streams)
	}
	s.mu.Unlock()
	go func() { errc <- s.app.Listener(ln) }()
	var msrv *http.Server
	mdone := make(chan struct{})
	if mln != nil {
		s.log.Info("metrics listening", "addr", mln.Addr().String())
		msrv = &http.Server{Handler: s.metricsHTTP(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
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
		s.hub.close()
	}
}

// routeOpts are per-route behaviours of handle.
type routeOpts struct {
	// maxBody replaces MaxBodyBytes as the route's body limit when not zero.
	maxBody int
	// streamBody leaves the body unread for the handler, which reads it from
	// c.Context().RequestBodyStream() (bounded by maxBody); handle only
	// refuses a Content-Length over maxBody.
	streamBody bool
}

// handle registers a route whose handler's errors become the JSON error body
// and whose responses are counted in metrics.HTTPRequests by route pattern.
// The body is bounded before it is read: a Content-Length over the route's
// limit is refused at once, and a body without one is read up to the limit.
func (s *Server) handle(method, path string, o routeOpts, h fiber.Handler) {
	rm := &routeMetrics{route: path}
	limit := MaxBodyBytes
	if o.maxBody > 0 {
		limit = o.maxBody
	}
	s.app.Add(method, path, func(c *fiber.Ctx) error {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panicked", "method", c.Method(), "route", path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				s.writeError(c, errInternal)
				rm.inc(c.Response().StatusCode())
			}
		}()
		var err error
		switch {
		case c.Request().Header.Peek(refusedLength) != nil || c.Request().Header.ContentLength() > limit:
			c.Context().SetConnectionClose()
			err = tooLarge(limit)
		case o.streamBody:
			err = h(c)
		default:
			if err = readBody(c, limit); err == nil {
				err = h(c)
			}
		}
		if err != nil {
			s.writeError(c, err)
		}
		if c.Context().RequestBodyStream() != nil {
			// Part of the body may be unread (refused, or a handler that
			// stopped early): the connection cannot carry another request.
			c.Context().SetConnectionClose()
		}
		rm.inc(c.Response().StatusCode())
		return nil
	})
}

// readBody reads the request body, up to limit bytes, from the stream
// fasthttp left and makes it the request's body.
func readBody(c *fiber.Ctx, limit int) error {
	rs := c.Context().RequestBodyStream()
	if rs == nil {
		if len(c.Request().Body()) > limit {
			return tooLarge(limit)
		}
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(rs, int64(limit)+1))
	switch {
	case len(data) > limit:
		return tooLarge(limit)
	case err != nil:
		return newErr(http.StatusBadRequest, "bad_body", "the request body could not be read")
	}
	c.Request().SetBodyRaw(data)
	return nil
}

// tooLarge is the 413 of a body over limit.
func tooLarge(limit int) error {
	if limit == MaxBodyBytes {
		return errTooLarge
	}
	return newErr(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is over %d KiB", limit>>10))
}

func (s *Server) routes() {
	v := routeOpts{}
	s.handle(fiber.MethodGet, "/healthz", v, s.healthz)
	s.handle(fiber.MethodGet, "/readyz", v, s.readyz)
	if s.cfg.MetricsListen == "" {
		s.handle(fiber.MethodGet, "/metrics", v, s.metrics())
	}
	s.handle(fiber.MethodGet, "/widget.js", v, s.js.serve)
	s.handle(fiber.MethodGet, "/", v, s.demo.serve)

	s.handle(fiber.MethodGet, "/v1/properties/:p/status", v, s.status)
	s.handle(fiber.MethodGet, "/v1/properties/:p/status/stream", v, s.statusStream)
	s.handle(fiber.MethodPost, "/v1/properties/:p/chats", v, s.startChat)
	s.handle(fiber.MethodPost, "/v1/properties/:p/offline-messages", v, s.offlineMessage)
	s.handle(fiber.MethodOptions, "/v1/properties/:p/*", v, s.preflightProperty)

	s.handle(fiber.MethodPost, "/v1/chats/:c/messages", v, s.postMessage)
	s.handle(fiber.MethodGet, "/v1/chats/:c/messages", v, s.transcript)
	s.handle(fiber.MethodGet, "/v1/chats/:c/events", v, s.visitorEvents)
	s.handle(fiber.MethodPost, "/v1/chats/:c/close", v, s.closeChat)
	s.handle(fiber.MethodPost, "/v1/chats/:c/transcript", v, s.emailTranscript)
	s.handle(fiber.MethodPost, "/v1/chats/:c/rating", v, s.rate)
	s.handle(fiber.MethodGet, "/c/:c", routeOpts{}, s.continuePage)
	s.handle(fiber.MethodGet, "/v1/chats/:c/files/:key", v, s.file)
	s.handle(fiber.MethodPost, "/v1/chats/:c/files", routeOpts{maxBody: uploadBodyBytes, streamBody: true}, s.uploadFile)
	s.handle(fiber.MethodOptions, "/v1/chats/:c/*", v, s.preflightChat)

	s.handle(fiber.MethodGet, "/admin", v, s.adminPage)
	s.handle(fiber.MethodGet, "/admin.js", v, s.adminScript)
	s.handle(fiber.MethodGet, "/v1/admin/properties", v, s.adminProperties)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/presence", v, s.adminPresence)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/chats", v, s.adminChats)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/events", v, s.adminEvents)
	s.handle(fiber.MethodGet, "/v1/admin/events", v, s.adminEvents)
	s.handle(fiber.MethodGet, "/v1/admin/properties/:p/blocks", v, s.adminBlocks)
	s.handle(fiber.MethodDelete, "/v1/admin/properties/:p/blocks/:id", v, s.adminUnblock)
	s.handle(fiber.MethodPut, "/v1/admin/agents/:a/status", v, s.adminSetStatus)
	s.handle(fiber.MethodPost, "/v1/admin/agents/:a/actions", v, s.adminAction)
	s.handle(fiber.MethodDelete, "/v1/admin/visitors", v, s.adminErase)
}

// metricsHTTP serves the Prometheus metrics, behind MetricsToken when set.
func (s *Server) metricsHTTP() http.Handler {
	h := promhttp.HandlerFor(prometheus.Gatherers{metrics.Registry, s.reg}, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
	if s.cfg.MetricsToken == "" {
		return h
	}
	want := sha256.Sum256([]byte(s.cfg.MetricsToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"a bearer token is required for /metrics"}}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// metrics is /metrics on the main listener.
func (s *Server) metrics() fiber.Handler { return adaptor.HTTPHandler(s.metricsHTTP()) }

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
	for _, a := range s.adapterStates() {
		if !a.Up {
			down = append(down, a.Name+": "+a.Reason)
		}
	}
	return down
}

func (s *Server) adapterStates() []bridge.AdapterState {
	if s.cfg.Adapters == nil {
		return nil
	}
	return s.cfg.Adapters()
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
