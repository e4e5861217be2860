package widget

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Rate-limit kinds (part of the key).
const (
	limitChats    = "chats"
	limitMessages = "messages"
)

// limit counts one request of kind from ip in the current one-minute window
// and refuses it with 429 past perMinute. The count is in Redis (INCR, then
// EXPIRE), so every instance sees the same one. When Redis cannot count,
// the request is refused with 503: whatever it asked for needs Redis too.
func (s *Server) limit(ctx context.Context, kind, ip string, perMinute int) error {
	if perMinute < 0 {
		return nil
	}
	now := s.cfg.Now()
	window := now.Unix() / 60
	key := s.cfg.Prefix + "ratelimit:" + kind + ":{" + ip + "}:" + strconv.FormatInt(window, 10)
	pipe := s.rdb.Pipeline()
	n := pipe.Incr(ctx, key)
	pipe.Expire(ctx, key, 2*time.Minute)
	if _, err := pipe.Exec(ctx); err != nil {
		s.log.Warn("rate limit: redis", "kind", kind, "err", err)
		return errUnavailable
	}
	if n.Val() > int64(perMinute) {
		e := *newErr(http.StatusTooManyRequests, "rate_limited", "too many requests, try again later")
		e.RetryAfter = int(60 - now.Unix()%60)
		return &e
	}
	return nil
}

// clientIP is the visitor's address: the TCP peer, or the first address of
// Config.ProxyHeader when set.
func (s *Server) clientIP(c *fiber.Ctx) string {
	ip := c.IP()
	if s.cfg.ProxyHeader != "" {
		if i := strings.IndexByte(ip, ','); i >= 0 {
			ip = ip[:i]
		}
		ip = strings.TrimSpace(ip)
	}
	if ip == "" {
		ip = "unknown"
	}
	return strings.Clone(ip)
}
