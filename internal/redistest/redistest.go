// Package redistest gives tests a Redis: the real one named by
// ONDUTY_TEST_REDIS_URL (CI sets it), else an embedded one. Each call gets a
// unique key prefix, and its keys are deleted when the test ends. Dump and
// Load copy the keys under one prefix, with their times to live, to JSON
// and back (fixtures of data an older version wrote).
package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

var counter atomic.Int64

// Redis is a connection for one test.
type Redis struct {
	Client redis.UniversalClient
	// Prefix is unique to this test; use it for every key and channel.
	Prefix string
	// URL reaches the same server (for a second client or instance).
	URL string
	// Embedded is the in-process server when no real one is configured.
	Embedded *miniredis.Miniredis
}

// New returns a Redis for t.
func New(t testing.TB) *Redis {
	t.Helper()
	prefix := fmt.Sprintf("test:%d:%d:%s:", os.Getpid(), counter.Add(1), sanitize(t.Name()))
	if url := os.Getenv("ONDUTY_TEST_REDIS_URL"); url != "" {
		o, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("ONDUTY_TEST_REDIS_URL: %v", err)
		}
		c := redis.NewClient(o)
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("ONDUTY_TEST_REDIS_URL %s: %v", url, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			var keys []string
			for iter.Next(ctx) {
				keys = append(keys, iter.Val())
			}
			if len(keys) > 0 {
				c.Del(ctx, keys...)
			}
			c.Close()
		})
		return &Redis{Client: c, Prefix: prefix, URL: url}
	}
	mr := miniredis.NewMiniRedis()
	mr.ClockTTL(true)
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatalf("embedded redis: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: 2})
	t.Cleanup(func() { c.Close(); mr.Close() })
	return &Redis{Client: c, Prefix: prefix, URL: "redis://" + mr.Addr(), Embedded: mr}
}

// NewClient opens one more client to the same server; closed with the test.
func (r *Redis) NewClient(t testing.TB) redis.UniversalClient {
	o, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	if r.Embedded != nil {
		o.Protocol = 2
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '{' || r == '}' || r == '*' {
			return '_'
		}
		return r
	}, s)
}
