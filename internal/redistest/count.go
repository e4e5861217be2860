package redistest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a redis.Hook that counts round trips (a command, or a whole
// pipeline), leaving out a new connection's own set-up (HELLO, AUTH, SELECT
// of a non-zero database, READONLY, CLIENT SETNAME/SETINFO/TRACKING), which
// go-redis sends through the same hooks.
// Round trips made with a context from Mark also count in Marked, so a test
// can tell its own calls from background work.
type Counter struct{ All, Marked atomic.Int64 }

var _ redis.Hook = (*Counter)(nil)

type mark struct{}

// Mark returns ctx with the mark Counter.Marked counts.
func Mark(ctx context.Context) context.Context { return context.WithValue(ctx, mark{}, true) }

// connSetup names the commands go-redis sends when it opens a connection.
var connSetup = map[string]bool{"hello": true, "auth": true, "select": true, "readonly": true, "client": true}

func (c *Counter) count(ctx context.Context, cmds ...redis.Cmder) {
	setup := true
	for _, cmd := range cmds {
		setup = setup && connSetup[cmd.Name()]
	}
	if setup { // also an empty pipeline: nothing is sent
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
		c.count(ctx, cmds...)
		return next(ctx, cmds)
	}
}
