package widget

import (
	"net/netip"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
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

// withDefaults is cfg with every zero value replaced by its default.
func (cfg Config) withDefaults() Config {
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
	return cfg
}
