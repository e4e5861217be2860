package bridge

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/backoff"
)

// visitorSub is one open visitor event stream on this instance.
type visitorSub struct {
	ch chan VisitorEvent
}

// SubscribeVisitor streams the chat's events from any instance until cancel.
// Events are published on one Redis channel that every instance follows
// (see visitorFeed), so a visitor's stream may be served by any instance.
// A subscriber too slow to keep 64 events buffered misses events; the widget
// catches up with Transcript(after=last id).
func (b *Bridge) SubscribeVisitor(id ChatID) (<-chan VisitorEvent, func()) {
	s := &visitorSub{ch: make(chan VisitorEvent, 64)}
	b.subMu.Lock()
	m := b.subs[id]
	if m == nil {
		m = make(map[*visitorSub]struct{})
		b.subs[id] = m
	}
	m[s] = struct{}{}
	b.subMu.Unlock()
	cancel := func() {
		b.subMu.Lock()
		defer b.subMu.Unlock()
		if m, ok := b.subs[id]; ok {
			if _, ok := m[s]; ok {
				delete(m, s)
				close(s.ch)
				if len(m) == 0 {
					delete(b.subs, id)
				}
			}
		}
	}
	return s.ch, cancel
}

func (b *Bridge) fanOut(e VisitorEvent) {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	for s := range b.subs[e.Chat] {
		select {
		case s.ch <- e:
		default:
			b.log.Warn("visitor stream too slow; event dropped", "chat_id", e.Chat, "type", e.Type)
		}
	}
}

// visitorFeed follows the visitor-event channel and fans events out to the
// streams open on this instance; it also follows the outbox kicks. go-redis resubscribes after a lost
// connection; events published meanwhile are in the transcript.
func (b *Bridge) visitorFeed(ctx context.Context) {
	var wait time.Duration
	for ctx.Err() == nil {
		ps := b.rdb.Subscribe(ctx, b.keys.VisitorChannel(), b.keys.KickChannel())
		if _, err := ps.Receive(ctx); err != nil {
			ps.Close()
			if ctx.Err() == nil {
				b.log.Warn("visitor event feed: subscribe failed", "err", err)
				wait = feedBackoff.Next(wait)
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
			continue
		}
		wait = 0
		if b.isFeedReady() {
			// Resubscribed: kicks published meanwhile are lost.
			b.kickAll()
		}
		b.markFeedReady()
		// go-redis pings an idle subscription to notice a dead connection
		// (every 3s by default); every 30s is enough, since a kick lost
		// meanwhile is made up for by kickAll once it resubscribes.
		ch := ps.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(feedHealthCheck))
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case msg, ok := <-ch:
				if !ok {
					break loop
				}
				m, isMsg := msg.(*redis.Message)
				if !isMsg {
					// go-redis subscribed again after a lost connection.
					b.kickAll()
					continue
				}
				if m.Channel == b.keys.KickChannel() {
					b.kickFromChannel(m.Payload)
					continue
				}
				var e VisitorEvent
				if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
					b.log.Warn("bad visitor event", "err", err)
					continue
				}
				b.fanOut(e)
			}
		}
		ps.Close()
	}
}

// feedBackoff paces resubscribing to a lost feed: 100ms doubling to 5s.
var feedBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}

// feedHealthCheck is how long the visitor feed's subscription may be
// silent before go-redis pings it.
const feedHealthCheck = 30 * time.Second

func (b *Bridge) isFeedReady() bool {
	select {
	case <-b.feedReady:
		return true
	default:
		return false
	}
}

func (b *Bridge) markFeedReady() {
	b.readyOnce.Do(func() { close(b.feedReady) })
}
