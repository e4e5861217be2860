// Package backoff is the capped exponential backoff that every retry loop of
// onduty uses: the outbox, the pub/sub feeds, the listener and the adapters.
// A platform's own retry-after, where it gives one, is honoured by the caller
// on top of it.
package backoff

import (
	"context"
	"time"
)

// Policy doubles the pause from Min after each consecutive failure, up to Max.
type Policy struct {
	Min, Max time.Duration
}

// Delay is the pause after the given number of consecutive failures before
// it (0 for the first retry): Min·2^failures, at most Max.
func (p Policy) Delay(failures int) time.Duration {
	d := p.Min
	for i := 0; i < failures && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// Next is the pause that follows a pause of prev: Min when prev is zero
// (nothing failed yet), else twice prev, at most Max. Loops that keep
// the last pause rather than a count of failures use it, and reset prev to
// zero after a success.
func (p Policy) Next(prev time.Duration) time.Duration {
	if prev <= 0 {
		return p.Min
	}
	return min(prev*2, p.Max)
}

// Sleep waits d, or until ctx is done; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
