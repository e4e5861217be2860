// Package lease holds the Redis scripts of a lease: a key naming the one
// instance that may do a job (work an outbox shard, poll Telegram) until it
// expires. Only the holder renews or releases it.
package lease

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

var renewScript = redis.NewScript(`
-- KEYS[1] lease   ARGV[1] owner   ARGV[2] ttl ms   ARGV[3] "1": take it if free
-- Renews the lease for its holder (or takes a free one when asked);
-- returns 1 if owner holds it now.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur and ARGV[3] == '1' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
`)

var releaseScript = redis.NewScript(`
-- KEYS[1] lease   ARGV[1] owner
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Acquire takes the lease at key for owner if it is free, or renews it if
// owner holds it already, for ttl. It reports whether owner holds it.
func Acquire(ctx context.Context, rdb redis.Scripter, key, owner string, ttl time.Duration) (bool, error) {
	return run(ctx, rdb, key, owner, ttl, "1")
}

// Renew extends the lease for ttl if owner holds it; it reports whether
// owner still does. A lost lease is not taken back.
func Renew(ctx context.Context, rdb redis.Scripter, key, owner string, ttl time.Duration) (bool, error) {
	return run(ctx, rdb, key, owner, ttl, "0")
}

func run(ctx context.Context, rdb redis.Scripter, key, owner string, ttl time.Duration, take string) (bool, error) {
	n, err := renewScript.Run(ctx, rdb, []string{key}, owner, ttl.Milliseconds(), take).Int()
	return n == 1, err
}

// Release gives the lease back if owner holds it, so that another instance
// need not wait for it to expire.
func Release(ctx context.Context, rdb redis.Scripter, key, owner string) error {
	return releaseScript.Run(ctx, rdb, []string{key}, owner).Err()
}
