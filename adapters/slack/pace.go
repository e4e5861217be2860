package slack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/onduty/onduty/bridge"
)

// pacer keeps posts to each channel near Slack's pace of one message a
// second, allowing short bursts (a generic cell rate algorithm: each channel
// has a theoretical arrival time that every send pushes one interval on).
type pacer struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu  sync.Mutex
	tat map[string]time.Time
}

func newPacer(every time.Duration, burst int) *pacer {
	return &pacer{every: every, burst: max(burst, 1), now: time.Now, tat: make(map[string]time.Time)}
}

// reserve books a send to key and returns how long to wait before it. A wait
// longer than limit is not booked and returned with ok false. A backlogged
// send leaves the last turn of the burst to a fresh chat: it goes only when
// two could, so that no chat's backlog delays another chat's first message
// by more than one interval.
func (p *pacer) reserve(key string, limit time.Duration, backlog bool) (wait time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	tat := p.tat[key]
	if tat.Before(now) {
		tat = now
	}
	burst := p.burst
	if backlog && burst > 1 {
		burst--
	}
	wait = max(tat.Sub(now)-time.Duration(burst-1)*p.every, 0)
	if wait > limit {
		return wait, false
	}
	p.tat[key] = tat.Add(p.every)
	if len(p.tat) > 10000 {
		for k, t := range p.tat {
			if t.Before(now) {
				delete(p.tat, k)
			}
		}
	}
	return wait, true
}

// backlogKey marks a ctx whose send belongs to a backlogged delivery
// (bridge.Delivery.Backlog).
type backlogKey struct{}

func withBacklog(ctx context.Context, backlog bool) context.Context {
	if !backlog {
		return ctx
	}
	return context.WithValue(ctx, backlogKey{}, true)
}

// wait sleeps for the channel's turn, or returns a RetryAfterError wrapping
// bridge.ErrPaced when the turn is too far away to hold an outbox worker
// for. A backlogged delivery never sleeps: the outbox serves other chats
// meanwhile.
func (p *pacer) wait(ctx context.Context, key string) error {
	limit := maxPaceWait
	backlog, _ := ctx.Value(backlogKey{}).(bool)
	if backlog {
		limit = 0
	}
	d, ok := p.reserve(key, limit, backlog)
	if !ok {
		return &bridge.RetryAfterError{After: d, Err: fmt.Errorf("slack: pacing channel %s: %w", key, bridge.ErrPaced)}
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// penalize pushes the channel's next turn past a rate limit Slack reported,
// so other chats in the channel wait too instead of hitting it again.
func (p *pacer) penalize(key string, err error) {
	var rl *slackapi.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	until := p.now().Add(rl.RetryAfter + time.Duration(p.burst-1)*p.every)
	if until.After(p.tat[key]) {
		p.tat[key] = until
	}
}
