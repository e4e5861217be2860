package telegram

import (
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/redistest"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(telegramLimits, func() time.Time { return now })
	// A private chat: a burst of 3, then one a second.
	for i := range 3 {
		if w := l.take(42); w != 0 {
			t.Fatalf("send %d waited %v", i, w)
		}
	}
	if w := l.take(42); w <= 0 || w > time.Second {
		t.Fatalf("4th send in the same instant: wait %v, want (0,1s]", w)
	}
	if w := l.take(43); w != 0 {
		t.Errorf("another chat is not held up: %v", w)
	}
	now = now.Add(time.Second)
	if w := l.take(42); w != 0 {
		t.Errorf("after a second: wait %v", w)
	}
	// A group: 20 a minute, so after the burst about 3s apart.
	g := int64(-100)
	sent := 0
	for range 60 {
		now = now.Add(time.Second)
		if l.take(g) == 0 {
			sent++
		}
	}
	if sent < 20 || sent > 26 {
		t.Errorf("group got %d sends in a minute, want about 20 (+burst)", sent)
	}
	// The bot: at most ~30 a second across chats.
	now = now.Add(time.Minute)
	ok := 0
	for c := range int64(100) {
		if l.take(1000+c) == 0 {
			ok++
		}
	}
	if ok != 30 {
		t.Errorf("bot burst %d, want 30", ok)
	}
}

// TestSharedLimiter: two instances pacing for the same bot draw from the
// same buckets in Redis, so together they keep within one bot's limits.
func TestSharedLimiter(t *testing.T) {
	r := redistest.New(t)
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	k := keys{prefix: r.Prefix}
	a := newSharedLimiter(r.Client, k, telegramLimits, clock, testLogger(t))
	b := newSharedLimiter(r.NewClient(t), k, telegramLimits, clock, testLogger(t))
	ctx := t.Context()
	both := []*sharedLimiter{a, b}

	// A private chat: a burst of 3 between them, then one a second.
	for i := range 3 {
		if w := both[i%2].wait(ctx, 42); w != 0 {
			t.Fatalf("send %d waited %v", i, w)
		}
	}
	for _, l := range both {
		if w := l.wait(ctx, 42); w <= 0 || w > time.Second {
			t.Fatalf("4th send to the chat in the same instant: wait %v, want (0,1s]", w)
		}
	}
	now = now.Add(time.Second)
	if w := b.wait(ctx, 42); w != 0 {
		t.Errorf("after a second: wait %v", w)
	}

	// A group: 20 a minute for both together, so about 3s apart.
	sent := 0
	for i := range 60 {
		now = now.Add(time.Second)
		if both[i%2].wait(ctx, -100) == 0 {
			sent++
		}
	}
	if sent < 20 || sent > 26 {
		t.Errorf("group got %d sends in a minute from two instances, want about 20 (+burst)", sent)
	}

	// The bot: 30 in one instant across chats and instances, not 2×30.
	now = now.Add(time.Minute)
	ok := 0
	for c := range int64(100) {
		if both[c%2].wait(ctx, 1000+c) == 0 {
			ok++
		}
	}
	if ok != 30 {
		t.Errorf("bot burst over two instances: %d, want 30", ok)
	}
	if w := a.wait(ctx, 5000); w <= 0 || w > 100*time.Millisecond {
		t.Errorf("31st send: wait %v, want about 1/30 s", w)
	}
}

// TestSharedLimiterWithoutRedis: Redis away, sends are still paced, by the
// instance's own buckets.
func TestSharedLimiterWithoutRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { down.Close() })
	now := time.Unix(1_700_000_000, 0)
	l := newSharedLimiter(down, keys{}, telegramLimits, func() time.Time { return now }, testLogger(t))
	for i := range 3 {
		if w := l.wait(t.Context(), 42); w != 0 {
			t.Fatalf("send %d waited %v", i, w)
		}
	}
	if w := l.wait(t.Context(), 42); w <= 0 || w > time.Second {
		t.Fatalf("4th send in the same instant: wait %v, want (0,1s]", w)
	}
}
