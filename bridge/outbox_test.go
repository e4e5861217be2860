package bridge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// TestIdleInstanceSendsAlmostNoCommands: once its work is done, an instance
// with the production safety poll (5m) sends Redis nothing while idle: no
// outbox shard is read and no lease renewed until something is queued, and
// the timer loop sleeps until the earliest timer (an hour away). Polling
// outbox shards or timers, as before (every 250ms, each of the 4 shards),
// sends dozens of commands in the window.
func TestIdleInstanceSendsAlmostNoCommands(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	e.pollEvery = 5 * time.Minute
	e.autoTimers = true
	var n redistest.Counter
	rdb := e.r.NewClient(t)
	rdb.AddHook(&n)
	in := e.startWith(nil, rdb)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, "then silence", nil); err != nil {
		t.Fatal(err)
	}
	e.drain(in)
	wait.For(t, "the outbox leases given back", func() bool {
		keys, err := e.r.Client.Keys(context.Background(), e.r.Prefix+"outbox:*:lease").Result()
		return err == nil && len(keys) == 0
	})
	before := n.All.Load()
	time.Sleep(2 * time.Second)
	if got := n.All.Load() - before; got > 2 {
		t.Errorf("an idle instance sent %d commands in 2s, want at most 2", got)
	}
	// Still awake: work queued now is delivered at once.
	if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, "after the silence", nil); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the message after the silence", func() bool {
		return len(in.ad.find(func(d Delivery) bool {
			return d.Kind == KindMessage && d.Message != nil && d.Message.Text == "after the silence"
		})) == 1
	})
}

// crash stops an instance the way kill -9 would as far as Redis can tell:
// its connection goes first, so it neither renews nor gives back a lease.
func (in *instance) crash(t *testing.T) {
	t.Helper()
	in.b.rdb.Close()
	in.stop()
}

// TestOutboxTakeoverAfterCrash: an instance dies while a chat's deliveries
// wait in its shard (the platform was failing). Another instance already
// running resumes them once the dead one's lease runs out (LeaseTTL 300ms
// here, renewed every 100ms while it lived); an instance restarted under the
// dead one's name (Config.Instance) takes them over at once, though the
// lease (an hour in that case) has not run out. Nothing is lost, reordered
// or shown twice.
func TestOutboxTakeoverAfterCrash(t *testing.T) {
	for _, tt := range []struct {
		name    string
		lease   time.Duration
		restart bool // the survivor starts after the crash, under the dead one's name
	}{
		{"second instance running", 300 * time.Millisecond, false},
		{"restarted with the same instance name", time.Hour, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
			e.lease = tt.lease
			e.instance = "web-1"
			down := &fakeAdapter{name: "fake", fail: func(int, Delivery) error { return errFlaky }}
			a := e.startWith(down, e.r.NewClient(t))
			e.instance = ""
			e.status(presence.Online, "alice")
			c, _ := a.startChat(t, "V", "hello")
			for i := range 3 {
				if _, err := a.b.PostVisitorMessage(context.Background(), c.ID, fmt.Sprintf("m%d", i), nil); err != nil {
					t.Fatal(err)
				}
			}
			lease := a.b.keys.OutboxLease("fake", Shard(string(c.ID), a.b.cfg.Shards))
			wait.For(t, "the dying instance to hold the chat's shard", func() bool {
				down.mu.Lock()
				defer down.mu.Unlock()
				holder, _ := e.r.Client.Get(context.Background(), lease).Result()
				return down.calls > 2 && holder == "web-1"
			})
			var other *instance
			if !tt.restart {
				other = e.start(nil) // running, and told of nothing queued before it started
			}
			a.crash(t)
			crashed := time.Now()
			if tt.restart {
				e.instance = "web-1"
				other = e.start(nil)
			}
			e.waitAll("the offer, resumed", 1, func(d Delivery) bool { return d.Kind == KindOffer && d.Chat.ID == c.ID })
			t.Logf("first delivery %s after the crash", time.Since(crashed).Round(time.Millisecond))
			e.drain(other)
			if got := messageLines(other.ad.find(func(d Delivery) bool { return d.Kind == KindMessage && d.Chat.ID == c.ID })); !slices.Equal(got, []string{"m0", "m1", "m2"}) {
				t.Errorf("delivered %q after the crash", got)
			}
			if n := len(other.ad.find(kindFor(KindOffer, "alice", c.ID))); n != 1 {
				t.Errorf("offer delivered %d times", n)
			}
		})
	}
}

// TestBackloggedVisitorMessagesMerge: while the platform's pacing holds a
// chat back, the visitor's messages queue up; they then go as one delivery,
// one line each, marked Backlog, in order, with a file (never merged)
// keeping its place between them. Another chat's first message, queued
// behind them in the same shard, is fresh and goes first.
func TestBackloggedVisitorMessagesMerge(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	var held atomic.Bool
	ad := &fakeAdapter{name: "fake"}
	in := e.start(ad)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	e.drain(in)
	held.Store(true)
	var heldBack atomic.Int64
	ad.setFail(func(_ int, d Delivery) error {
		if held.Load() && d.Chat.ID == c.ID {
			heldBack.Add(1)
			return &RetryAfterError{After: 20 * time.Millisecond, Err: ErrPaced}
		}
		return nil
	})
	ctx := context.Background()
	post := func(text string, att *Attachment) {
		t.Helper()
		if _, err := in.b.PostVisitorMessage(ctx, c.ID, text, att); err != nil {
			t.Fatal(err)
		}
	}
	post("a1", nil)
	wait.For(t, "the chat held back", func() bool { return heldBack.Load() > 0 })
	post("a2", nil)
	post("a3", nil)
	att, err := in.b.PutFile(ctx, c.ID, "f.txt", "text/plain", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	post("", &att)
	post("a4", nil)
	post("a5", nil)
	// A new chat whose deliveries share the held chat's shard.
	var other Chat
	for i := 0; other.ID == "" || Shard(string(other.ID), in.b.cfg.Shards) != Shard(string(c.ID), in.b.cfg.Shards); i++ {
		other, _ = in.startChat(t, fmt.Sprintf("W%d", i), "fresh")
	}
	waitDelivered(t, ad, "the new chat's offer while the other is held", 1, func(d Delivery) bool { return d.Kind == KindOffer && d.Chat.ID == other.ID })
	if got := ad.find(func(d Delivery) bool { return d.Kind == KindMessage && d.Chat.ID == c.ID }); len(got) != 0 {
		t.Fatalf("delivered while held: %+v", got)
	}
	held.Store(false)
	e.drain(in)
	var got []string
	for _, d := range ad.find(func(d Delivery) bool { return d.Kind == KindMessage && d.Chat.ID == c.ID }) {
		text := d.Message.Text
		if d.Message.Attachment != nil {
			text = "[file]"
		}
		if strings.Contains(text, "\n") && !d.Backlog {
			t.Errorf("merged delivery %q not marked Backlog", text)
		}
		got = append(got, text)
	}
	// a1 was tried alone before the others came, so it stays alone.
	if want := []string{"a1", "a2\na3", "[file]", "a4\na5"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if offers := ad.find(func(d Delivery) bool { return d.Kind == KindOffer && d.Chat.ID == other.ID }); len(offers) != 1 || offers[0].Backlog {
		t.Errorf("the new chat's offer: %+v, want one, not backlogged", offers)
	}
}

// TestOutboxResumesAfterLosingItsLease: a worker whose lease is taken from
// it mid-work stops, and asks for the lease again on its own timer (no new
// kick comes for what is already queued): once the lease is free it
// delivers the rest, with the safety poll an hour away.
func TestOutboxResumesAfterLosingItsLease(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	e.lease = 300 * time.Millisecond
	e.pollEvery = time.Hour
	var failing atomic.Bool
	ad := &fakeAdapter{name: "fake", fail: func(int, Delivery) error {
		if failing.Load() {
			return errFlaky
		}
		return nil
	}}
	in := e.start(ad)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	e.drain(in)
	failing.Store(true)
	if _, err := in.b.PostVisitorMessage(context.Background(), c.ID, "held up", nil); err != nil {
		t.Fatal(err)
	}
	lease := in.b.keys.OutboxLease("fake", Shard(string(c.ID), in.b.cfg.Shards))
	wait.For(t, "the worker holding the shard", func() bool {
		v, _ := e.r.Client.Get(context.Background(), lease).Result()
		return v == in.b.instance
	})
	// Another instance takes the lease (as after a pause longer than it).
	if err := e.r.Client.Set(context.Background(), lease, "intruder", 0).Err(); err != nil {
		t.Fatal(err)
	}
	failing.Store(false)
	time.Sleep(3 * in.b.leaseRetry()) // the keeper notices and the worker stops
	if err := e.r.Client.Del(context.Background(), lease).Err(); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, ad, "the queued message", 1, func(d Delivery) bool {
		return d.Kind == KindMessage && d.Message != nil && d.Message.Text == "held up"
	})
}
