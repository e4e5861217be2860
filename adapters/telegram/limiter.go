package telegram

import (
	"sync"
	"time"
)

// bucket is a token bucket: rate tokens per second, at most burst saved up.
type bucket struct {
	tokens float64
	last   time.Time
}

type rateSpec struct {
	perSecond float64
	burst     float64
}

// limits are Telegram's documented sending limits, with small bursts.
type limits struct {
	bot   rateSpec // every send
	chat  rateSpec // per chat (private or group)
	group rateSpec // per group or supergroup, on top of chat
}

var telegramLimits = limits{
	bot:   rateSpec{perSecond: 30, burst: 30},
	chat:  rateSpec{perSecond: 1, burst: 3},
	group: rateSpec{perSecond: 20.0 / 60, burst: 5},
}

// limiter paces sends locally. It never sleeps itself: take reports how long
// the caller must wait, and consumes nothing unless the wait is zero.
type limiter struct {
	mu     sync.Mutex
	lim    limits
	now    func() time.Time
	bot    bucket
	chats  map[int64]*bucket
	groups map[int64]*bucket
}

func newLimiter(l limits, now func() time.Time) *limiter {
	return &limiter{lim: l, now: now, chats: map[int64]*bucket{}, groups: map[int64]*bucket{}}
}

// wait returns how long until a token is available in b, after refilling it.
func (s rateSpec) wait(b *bucket, now time.Time) time.Duration {
	if s.perSecond <= 0 {
		return 0
	}
	if b.last.IsZero() {
		b.tokens, b.last = s.burst, now
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(s.burst, b.tokens+el*s.perSecond)
		b.last = now
	}
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / s.perSecond * float64(time.Second))
}

// take consumes one send to chat (a group when chat < 0) if it may go now,
// and otherwise returns how long to wait before asking again.
func (l *limiter) take(chat int64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.chats) > 4096 {
		l.prune(now)
	}
	cb := l.chats[chat]
	if cb == nil {
		cb = &bucket{}
		l.chats[chat] = cb
	}
	wait := max(l.lim.bot.wait(&l.bot, now), l.lim.chat.wait(cb, now))
	var gb *bucket
	if chat < 0 {
		if gb = l.groups[chat]; gb == nil {
			gb = &bucket{}
			l.groups[chat] = gb
		}
		wait = max(wait, l.lim.group.wait(gb, now))
	}
	if wait > 0 {
		return wait
	}
	l.bot.tokens--
	cb.tokens--
	if gb != nil {
		gb.tokens--
	}
	return 0
}

// prune forgets chats whose buckets are full again.
func (l *limiter) prune(now time.Time) {
	for id, b := range l.chats {
		if now.Sub(b.last) > time.Minute {
			delete(l.chats, id)
		}
	}
	for id, b := range l.groups {
		if now.Sub(b.last) > 5*time.Minute {
			delete(l.groups, id)
		}
	}
}
