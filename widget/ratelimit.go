package widget

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
)

// limiter counts requests and uploads per client in Redis, so that the
// limits hold across instances, and says who the client is: its IP, taken
// from the proxy header behind trusted proxies.
type limiter struct {
	rdb     redis.UniversalClient
	prefix  string           // Config.Prefix
	now     func() time.Time // Config.Now
	rates   RateLimits
	proxies []netip.Prefix // Config.TrustedProxies
	header  string         // Config.ProxyHeader
	log     *slog.Logger
}

func newLimiter(cfg Config, rdb redis.UniversalClient, log *slog.Logger) *limiter {
	return &limiter{rdb: rdb, prefix: cfg.Prefix, now: cfg.Now, rates: cfg.RateLimits, proxies: cfg.TrustedProxies, header: cfg.ProxyHeader, log: log}
}

// Rate-limit kinds (part of the key).
const (
	limitChats    = "chats"
	limitMessages = "messages"
)

// limit counts one request of kind from ip in the current one-minute window
// and refuses it with 429 past perMinute. The count is in Redis (INCR, then
// EXPIRE), so every instance sees the same one. When Redis cannot count,
// the request is refused with 503: whatever it asked for needs Redis too.
func (l *limiter) limit(ctx context.Context, kind, ip string, perMinute int) error {
	pipe := l.rdb.Pipeline()
	check := l.queue(ctx, pipe, kind, ip, perMinute)
	var err error
	if pipe.Len() > 0 {
		_, err = pipe.Exec(ctx)
	}
	return check(err)
}

// queue is limit with its count queued on pipe, to go in one round trip
// with other commands; the function it returns says what limit would,
// given pipe's error.
func (l *limiter) queue(ctx context.Context, pipe redis.Pipeliner, kind, ip string, perMinute int) func(execErr error) error {
	if perMinute < 0 {
		return func(error) error { return nil }
	}
	now := l.now()
	window := now.Unix() / 60
	key := l.prefix + "ratelimit:" + kind + ":{" + limitKey(ip) + "}:" + strconv.FormatInt(window, 10)
	n := pipe.Incr(ctx, key)
	pipe.Expire(ctx, key, 2*time.Minute)
	return func(execErr error) error {
		if execErr != nil || n.Err() != nil {
			l.log.Warn("rate limit: redis", "kind", kind, "err", cmp.Or(execErr, n.Err()))
			return errUnavailable
		}
		if n.Val() > int64(perMinute) {
			e := *newErr(http.StatusTooManyRequests, "rate_limited", "too many requests, try again later")
			e.RetryAfter = int(60 - now.Unix()%60)
			return &e
		}
		return nil
	}
}

// errBadClientIP refuses a request whose forwarded client address is not
// an IP address.
var errBadClientIP = newErr(http.StatusBadRequest, "invalid_client_ip", "the forwarded client address is not an IP address")

// clientIP is the visitor's address. It is the TCP peer, unless the peer is
// a trusted proxy: then it is the rightmost entry of Config.ProxyHeader
// that is not a trusted proxy (entries left of it were written by the
// client and prove nothing). An entry that is not an IP address is refused.
// When every entry is a trusted proxy, it is the leftmost of them.
func (l *limiter) clientIP(c *fiber.Ctx) (string, error) {
	peer := peerAddr(c.Context().RemoteAddr())
	if !peer.IsValid() {
		return "unknown", nil
	}
	if !l.trustedProxy(peer) {
		return peer.String(), nil
	}
	ip := peer
	values := c.Request().Header.PeekAll(l.header)
	for i := len(values) - 1; i >= 0; i-- {
		v := string(values[i])
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, err := netip.ParseAddr(entry)
			if err != nil {
				return "", errBadClientIP
			}
			ip = a.Unmap().WithZone("")
			if !l.trustedProxy(ip) {
				return ip.String(), nil
			}
		}
	}
	return ip.String(), nil
}

// limitKey is what per-IP limits, quotas and caps count a client IP as:
// the address, or for IPv6 its /64 (capKey), so rotating addresses inside
// one's own /64 does not multiply one's limits.
func limitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return capKey(a).String()
}

// trustedProxy reports whether ip is in Config.TrustedProxies.
func (l *limiter) trustedProxy(ip netip.Addr) bool {
	for _, p := range l.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Upload quotas (part of the key).
const (
	quotaChat     = "uploads_per_chat"
	quotaIP       = "uploads_per_ip"
	quotaProperty = "uploads_per_property"
)

// chatQuotaTTL keeps a chat's upload count longer than any chat lives
// after its last message.
const chatQuotaTTL = 31 * 24 * time.Hour

// uploadQuota counts one upload against the chat's, the IP's (per hour) and
// the property's (per UTC day) quotas, before any of the body is read. Over
// any of them, the counts are given back and the upload is refused with 429.
func (l *limiter) uploadQuota(ctx context.Context, chat bridge.Chat, ip string) error {
	now := l.now().UTC()
	rl := l.rates
	hour, day := now.Unix()/3600, now.Unix()/86400
	type quota struct {
		name  string
		key   string
		limit int
		ttl   time.Duration
		retry int
		n     *redis.IntCmd
	}
	qs := []*quota{
		{name: quotaChat, key: l.prefix + "quota:" + quotaChat + ":{" + string(chat.ID) + "}", limit: rl.UploadsPerChat, ttl: chatQuotaTTL},
		{name: quotaIP, key: l.prefix + "quota:" + quotaIP + ":{" + limitKey(ip) + "}:" + strconv.FormatInt(hour, 10), limit: rl.UploadsPerIPPerHour, ttl: 2 * time.Hour, retry: int(3600 - now.Unix()%3600)},
		{name: quotaProperty, key: l.prefix + "quota:" + quotaProperty + ":{" + string(chat.Property) + "}:" + strconv.FormatInt(day, 10), limit: rl.UploadsPerPropertyPerDay, ttl: 48 * time.Hour, retry: int(86400 - now.Unix()%86400)},
	}
	pipe := l.rdb.Pipeline()
	for _, q := range qs {
		if q.limit < 0 {
			continue
		}
		q.n = pipe.Incr(ctx, q.key)
		pipe.Expire(ctx, q.key, q.ttl)
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		l.log.Warn("upload quota: redis", "err", err)
		return errUnavailable
	}
	var over *quota
	for _, q := range qs {
		if q.n != nil && q.n.Val() > int64(q.limit) {
			over = q
			break
		}
	}
	if over == nil {
		return nil
	}
	undo := l.rdb.Pipeline()
	for _, q := range qs {
		if q.n != nil {
			undo.Decr(ctx, q.key)
		}
	}
	if _, err := undo.Exec(ctx); err != nil {
		l.log.Warn("upload quota: give back", "err", err)
	}
	metrics.Refused.WithLabelValues(over.name).Inc()
	e := *newErr(http.StatusTooManyRequests, "upload_quota", "")
	switch over.name {
	case quotaChat:
		e.Message = fmt.Sprintf("this chat has reached its limit of %d files", over.limit)
	case quotaIP:
		e.Message = "too many files from your address this hour, try again later"
	default:
		e.Message = "this site has received too many files today, try again tomorrow"
	}
	e.RetryAfter = over.retry
	return &e
}
