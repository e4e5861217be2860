// Package testlog is the logger tests hand to what they run: silent, unless
// ONDUTY_TEST_LOG is set, then every record at debug level on stderr.
package testlog

import (
	"log/slog"
	"os"
)

// Logger discards logs unless ONDUTY_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("ONDUTY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
