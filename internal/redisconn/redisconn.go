// Package redisconn opens the Redis onduty keeps its state in: a single
// server, a Sentinel-managed one, a Cluster, or, with no URL, an embedded
// in-process Redis for a single instance.
package redisconn

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Open connects to the Redis named by rawURL:
//   - "" starts an embedded Redis (not durable, one instance only);
//   - a URL with master_name=… is a Sentinel setup (the host and addr=… are sentinels);
//   - a URL with addr=… names more nodes of a Cluster;
//   - anything else is one server.
//
// It pings before returning. close releases the client and the embedded server.
func Open(ctx context.Context, rawURL string, log *slog.Logger) (rdb redis.UniversalClient, closeFn func(), err error) {
	RouteLogs(log)
	if rawURL == "" {
		mr := miniredis.NewMiniRedis()
		// Without this, TTLs of the embedded Redis never run down.
		mr.ClockTTL(true)
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, nil, fmt.Errorf("redis: start embedded: %w", err)
		}
		log.Warn("no redis_url: using an embedded in-process Redis; state is lost on exit and only this one instance may run",
			"addr", mr.Addr())
		c := redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: 2})
		return c, func() { c.Close(); mr.Close() }, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("redis: bad redis_url")
	}
	q := u.Query()
	switch {
	case q.Get("master_name") != "":
		o, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("redis: redis_url: %w", err)
		}
		rdb = redis.NewFailoverClient(o)
	case q.Has("addr"):
		o, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("redis: redis_url: %w", err)
		}
		rdb = redis.NewClusterClient(o)
	default:
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("redis: redis_url: %w", err)
		}
		rdb = redis.NewClient(o)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("redis: connect to %s: %w", u.Redacted(), err)
	}
	log.Info("connected to redis", "url", u.Redacted())
	return rdb, func() { rdb.Close() }, nil
}

// RouteLogs sends go-redis's own log lines (dial failures, retries) to log at
// debug level: the components that see the failure report it once, in context.
func RouteLogs(log *slog.Logger) {
	redis.SetLogger(slogPrinter{log.With("component", "go-redis")})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
