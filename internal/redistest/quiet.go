package redistest

import (
	"log/slog"

	"github.com/onduty/onduty/internal/redisconn"
)

// Tests kill and restart Redis on purpose; go-redis's dial errors would
// flood their output.
func init() { redisconn.RouteLogs(slog.New(slog.DiscardHandler)) }
