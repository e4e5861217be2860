package telegram

import (
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
)

// TestLimiter paces sends under Telegram's limits: with one local limiter,
// with two instances sharing their buckets in Redis (together they keep
// within one bot's limits, not twice them), and with the shared limiter
// while Redis is away (each instance's own buckets stand in).
func TestLimiter(t *testing.T) {
	var now time.Time
	clock := func() time.Time { return now }
	r := redistest.New(t)
	k := keys{prefix: r.Prefix}
	tests := []struct {
		name string
		// pacers take turns sending, as instances would.
		pacers func(t *testing.T) []pacer
		// chatOnly stops after the per-chat checks: with Redis down each
		// send waits for a dial to fail, too slow for the hundreds below.
		chatOnly bool
	}{
		{"one local limiter", func(*testing.T) []pacer { return []pacer{newLimiter(telegramLimits, clock)} }, false},
		{"two instances sharing Redis", func(t *testing.T) []pacer {
			return []pacer{
				newSharedLimiter(r.Client, k, telegramLimits, clock, testlog.Logger()),
				newSharedLimiter(r.NewClient(t), k, telegramLimits, clock, testlog.Logger()),
			}
		}, false},
		{"shared limiter without Redis", func(t *testing.T) []pacer {
			return []pacer{newSharedLimiter(downRedis(t), k, telegramLimits, clock, testlog.Logger())}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = time.Unix(1_700_000_000, 0)
			ps := tt.pacers(t)
			turn := 0
			send := func(chat int64) time.Duration {
				turn++
				return ps[turn%len(ps)].wait(t.Context(), chat)
			}
			// A private chat: a burst of 3, then one a second.
			for i := range 3 {
				if w := send(42); w != 0 {
					t.Fatalf("send %d waited %v", i, w)
				}
			}
			if w := send(42); w <= 0 || w > time.Second {
				t.Fatalf("4th send in the same instant: wait %v, want (0,1s]", w)
			}
			if w := send(43); w != 0 {
				t.Errorf("another chat is not held up: %v", w)
			}
			now = now.Add(time.Second)
			if w := send(42); w != 0 {
				t.Errorf("after a second: wait %v", w)
			}
			if tt.chatOnly {
				return
			}
			// A group: 20 a minute, so after the burst about 3s apart.
			sent := 0
			for range 60 {
				now = now.Add(time.Second)
				if send(-100) == 0 {
					sent++
				}
			}
			if sent < 20 || sent > 26 {
				t.Errorf("group got %d sends in a minute, want about 20 (+burst)", sent)
			}
			// The bot: 30 in one instant across chats (and instances).
			now = now.Add(time.Minute)
			ok := 0
			for c := range int64(100) {
				if send(1000+c) == 0 {
					ok++
				}
			}
			if ok != 30 {
				t.Errorf("bot burst %d, want 30", ok)
			}
			if w := send(5000); w <= 0 || w > 100*time.Millisecond {
				t.Errorf("31st send: wait %v, want about 1/30 s", w)
			}
		})
	}
}

// downRedis is a client of a port nothing listens on.
func downRedis(t *testing.T) redis.UniversalClient {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSharedLimiterSparesRedisWhileTheBotWaits: once Redis has said the
// bot's bucket is empty, further sends before it refills are told to wait
// without asking Redis again; after the refill they ask (and go).
func TestSharedLimiterSparesRedisWhileTheBotWaits(t *testing.T) {
	r := redistest.New(t)
	now := time.Unix(1_700_000_000, 0)
	rdb := r.NewClient(t)
	var n redistest.Counter
	rdb.AddHook(&n)
	l := newSharedLimiter(rdb, keys{prefix: r.Prefix}, telegramLimits, func() time.Time { return now }, testlog.Logger())
	ctx := t.Context()
	for c := range int64(30) {
		if w := l.wait(ctx, 1000+c); w != 0 {
			t.Fatalf("send %d of the burst waited %v", c, w)
		}
	}
	before := n.All.Load()
	for c := range int64(50) {
		if w := l.wait(ctx, 2000+c); w <= 0 || w > 100*time.Millisecond {
			t.Fatalf("send %d with the bot's bucket empty: wait %v, want about 1/30 s", c, w)
		}
	}
	if asked := n.All.Load() - before; asked != 1 {
		t.Errorf("%d round trips for 50 sends while the bot's bucket was empty, want 1", asked)
	}
	now = now.Add(time.Second)
	if w := l.wait(ctx, 3000); w != 0 {
		t.Errorf("after the refill: wait %v", w)
	}
	if asked := n.All.Load() - before; asked != 2 {
		t.Errorf("%d round trips in all, want 2 (the refill asks Redis again)", asked)
	}
}

// TestLimiterLeavesAFreshChatItsTurn: backlogged deliveries (need 2) drain
// a forum group at Telegram's pace but always leave one send in the group's
// buckets, so a fresh chat's first message goes at once however long the
// backlog; locally and shared through Redis.
func TestLimiterLeavesAFreshChatItsTurn(t *testing.T) {
	var now time.Time
	clock := func() time.Time { return now }
	r := redistest.New(t)
	for name, p := range map[string]pacer{
		"local":  newLimiter(telegramLimits, clock),
		"shared": newSharedLimiter(r.Client, keys{prefix: r.Prefix}, telegramLimits, clock, testlog.Logger()),
	} {
		t.Run(name, func(t *testing.T) {
			now = time.Unix(1_700_000_000, 0)
			const group = int64(-100777)
			backlog := withBacklog(t.Context(), true)
			sent := 0
			for range 600 { // a minute of sends offered ten a second
				if p.wait(backlog, group) == 0 {
					sent++
				}
				now = now.Add(100 * time.Millisecond)
			}
			// 20 a minute, plus the burst of 5 less the one kept back.
			if sent < 20 || sent > 25 {
				t.Errorf("the backlog sent %d in a minute, want about 20 (Telegram's group limit)", sent)
			}
			if w := p.wait(t.Context(), group); w != 0 {
				t.Errorf("a fresh chat behind the backlog waits %s, want 0", w)
			}
		})
	}
}
