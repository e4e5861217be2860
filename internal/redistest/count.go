package redistest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a redis.Hook that counts round trips (a command, or a whole
// pipeline), leaving out a new connection's own set-up (HELLO, CLIENT).
// Round trips made with a context from Mark also count in Marked, so a test
// can tell its own calls from background work.
type Counter struct{ All, Marked atomic.Int64 }

var _ redis.Hook = (*Counter)(nil)

type mark struct{}

// Mark returns ctx with the mark Counter.Marked counts.
func Mark(ctx context.Context) context.Context { return context.WithValue(ctx, mark{}, true) }

func (c *Counter) count(ctx context.Context, first redis.Cmder) {
	if first == nil || first.Name() == "hello" || first.Name() == "client" {
		return
	}
	c.All.Add(1)
	if ctx.Value(mark{}) != nil {
		c.Marked.Add(1)
	}
}

// DialHook implements redis.Hook.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(ctx, cmd)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 {
			c.count(ctx, cmds[0])
		}
		return next(ctx, cmds)
	}
}
