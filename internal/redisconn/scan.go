package redisconn

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Scan calls f with every key matching pattern (SCAN's MATCH), on every
// master of a Cluster or on the one server, one key at a time; it stops at
// f's first error.
func Scan(ctx context.Context, rdb redis.UniversalClient, pattern string, f func(key string) error) error {
	one := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			if err := f(it.Val()); err != nil {
				return err
			}
		}
		return it.Err()
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return one(ctx, rdb)
	}
	var mu sync.Mutex // masters are scanned concurrently; f sees one key at a time
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		return one(ctx, c)
	})
}

// GlobEscape quotes the characters SCAN's MATCH treats specially, so that
// s (a key prefix) matches only itself.
func GlobEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`).Replace(s)
}
