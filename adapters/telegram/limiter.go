package telegram

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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

// wait returns how long until need tokens are available in b (need is 1,
// or 2 for a backlogged send, which leaves one for a fresh chat), after
// refilling it.
func (s rateSpec) wait(b *bucket, now time.Time, need float64) time.Duration {
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
	need = min(need, s.burst)
	if b.tokens >= need {
		return 0
	}
	return time.Duration((need - b.tokens) / s.perSecond * float64(time.Second))
}

// backlogKey marks a ctx whose send belongs to a backlogged delivery.
type backlogKey struct{}

func withBacklog(ctx context.Context, backlog bool) context.Context {
	if !backlog {
		return ctx
	}
	return context.WithValue(ctx, backlogKey{}, true)
}

// need is the tokens a send must find in each bucket: a backlogged
// delivery (bridge.Delivery.Backlog) leaves the last one to a fresh chat,
// so that no chat's backlog delays another chat's first message by more
// than one pacing interval. It still takes only one.
func need(ctx context.Context) float64 {
	if b, _ := ctx.Value(backlogKey{}).(bool); b {
		return 2
	}
	return 1
}

// takeNeed consumes one send to chat (a group when chat < 0) if need sends
// are free now, and otherwise returns how long to wait before asking again.
func (l *limiter) takeNeed(chat int64, need float64) time.Duration {
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
	wait := max(l.lim.bot.wait(&l.bot, now, need), l.lim.chat.wait(cb, now, need))
	var gb *bucket
	if chat < 0 {
		if gb = l.groups[chat]; gb == nil {
			gb = &bucket{}
			l.groups[chat] = gb
		}
		wait = max(wait, l.lim.group.wait(gb, now, need))
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

// pacer tells a send how long to wait for its turn (zero: go now, and the
// turn is taken).
type pacer interface {
	wait(ctx context.Context, chat int64) time.Duration
}

func (l *limiter) wait(ctx context.Context, chat int64) time.Duration {
	return l.takeNeed(chat, need(ctx))
}

// sharedLimiter keeps the buckets in Redis, so that every instance sending
// for the same bot shares Telegram's limits (30/s for the bot is one budget,
// however many instances deliver). While Redis cannot answer it paces with
// a local limiter, which is right for one instance and too generous for
// several; Telegram then answers the excess with 429, which the outbox
// retries.
type sharedLimiter struct {
	rdb   redis.UniversalClient
	keys  keys
	lim   limits
	now   func() time.Time
	local *limiter
	log   *slog.Logger
	down  atomic.Bool // Redis failed last time (logged once per outage)
	// botFree is when (unix ms, by now) the bot's bucket next has a token,
	// as Redis last said. Tokens are only ever taken, so no send can go
	// before then: until then a caller is told the rest of the wait without
	// asking Redis (under load, every outbox shard asks again and again).
	botFree atomic.Int64
}

func newSharedLimiter(rdb redis.UniversalClient, k keys, l limits, now func() time.Time, log *slog.Logger) *sharedLimiter {
	return &sharedLimiter{rdb: rdb, keys: k, lim: l, now: now, local: newLimiter(l, now), log: log}
}

// takeScript is limiter.take over buckets in Redis hashes (t: tokens, l:
// last refill in ms). KEYS are the buckets to draw from; ARGV[1] is the
// time in ms, ARGV[2] the tokens a send needs (see need), then the rate per
// second and burst of each key. It returns {0, 0} and takes a token from
// each, or {ms to wait, ms until KEYS[1] has a token} and takes nothing. The
// keys share a hash tag, so the script works on a Redis Cluster too.
var takeScript = redis.NewScript(`
local now, need = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait, first = 0, 0
local tokens = {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2*i+1]), tonumber(ARGV[2*i+2])
  local v = redis.call('HMGET', key, 't', 'l')
  local t, last = tonumber(v[1]), tonumber(v[2])
  if t == nil or last == nil then t, last = burst, now end
  if now > last then
    t = math.min(burst, t + (now - last) / 1000 * rate)
  end
  tokens[i] = t
  local n = math.min(need, burst)
  if t < n then
    local w = math.ceil((n - t) / rate * 1000)
    if w > wait then wait = w end
  end
  if i == 1 and t < 1 then first = math.ceil((1 - t) / rate * 1000) end
end
if wait > 0 then return {wait, first} end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2*i+1]), tonumber(ARGV[2*i+2])
  redis.call('HSET', key, 't', tostring(tokens[i] - 1), 'l', now)
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return {0, 0}
`)

func (s *sharedLimiter) wait(ctx context.Context, chat int64) time.Duration {
	var keys []string
	var args []any
	add := func(key string, spec rateSpec) {
		if spec.perSecond > 0 {
			keys = append(keys, key)
			args = append(args, spec.perSecond, spec.burst)
		}
	}
	add(s.keys.rate("bot"), s.lim.bot)
	botFirst := len(keys) == 1
	add(s.keys.rate(strconv.FormatInt(chat, 10)), s.lim.chat)
	if chat < 0 {
		add(s.keys.rate("group:"+strconv.FormatInt(chat, 10)), s.lim.group)
	}
	if len(keys) == 0 {
		return 0
	}
	now := s.now().UnixMilli()
	if free := s.botFree.Load(); now < free {
		return time.Duration(free-now) * time.Millisecond
	}
	n := need(ctx)
	args = append([]any{now, n}, args...)
	res, err := takeScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("telegram: pacing script answered %v", res)
	}
	if err != nil {
		if ctx.Err() == nil && !s.down.Swap(true) {
			s.log.Warn("telegram: shared rate limits unavailable, pacing this instance alone", "err", err)
		}
		return s.local.takeNeed(chat, n)
	}
	if s.down.Swap(false) {
		s.log.Info("telegram: shared rate limits back")
	}
	if botFirst && res[1] > 0 {
		s.botFree.Store(now + res[1])
	}
	return time.Duration(res[0]) * time.Millisecond
}
