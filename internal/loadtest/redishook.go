package loadtest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// origin says on whose behalf a Redis round trip was made. The load test
// marks the contexts it hands out; everything else is a request handler of
// the widget server (handlers run on a context of their own).
type origin int

const (
	originRequest    origin = iota // a widget HTTP handler (unmarked context)
	originBackground               // bridge.Run and watcher.Run: outbox, timers, Telegram poller, presence feed
	originDriver                   // the load test's own setup calls
	originReply                    // an agent reply handed to the bridge directly
	numOrigins
)

type originKey struct{}

func withOrigin(ctx context.Context, o origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

func originOf(ctx context.Context) origin {
	if o, ok := ctx.Value(originKey{}).(origin); ok {
		return o
	}
	return originRequest
}

// roundTrips counts Redis round trips by origin: one per command, one per
// pipeline or transaction (however many commands it holds).
type roundTrips struct {
	n [numOrigins]atomic.Int64
}

var _ redis.Hook = (*roundTrips)(nil)

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n[originOf(ctx)].Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n[originOf(ctx)].Add(1)
		return next(ctx, cmds)
	}
}

// rtSnapshot is a reading of one or more counters.
type rtSnapshot [numOrigins]int64

func (r *roundTrips) read() rtSnapshot {
	var s rtSnapshot
	for i := range s {
		s[i] = r.n[i].Load()
	}
	return s
}

func (s rtSnapshot) add(o rtSnapshot) rtSnapshot {
	for i := range s {
		s[i] += o[i]
	}
	return s
}

func (s rtSnapshot) sub(o rtSnapshot) rtSnapshot {
	for i := range s {
		s[i] -= o[i]
	}
	return s
}
