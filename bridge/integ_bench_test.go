package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/presence"
)

// BenchmarkStartChat measures StartChat (store, count the returning
// visitor, route, queue offers and webhook events) and counts its Redis
// round trips, for a bare visitor and one with the full context and a
// verified identity. Run it with, e.g.:
//
//	ONDUTY_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test ./bridge -run '^$' -bench StartChat -benchtime 2000x
func BenchmarkStartChat(b *testing.B) {
	rich := Visitor{Name: "Ann", Email: "ann@example.com", PageURL: "https://acme.example/pricing", Referrer: "https://search.example/",
		Language: "de-DE", TimeZone: "Europe/Berlin", Browser: "Chrome 118", OS: "Windows",
		Identity: &Identity{UserID: "u-42", Verified: true, Attrs: map[string]string{"plan": "pro"}}}
	for _, tc := range []struct {
		name string
		v    Visitor
	}{{"bare", Visitor{Name: "V"}}, {"context", rich}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
			hook := &hookSink{fakeAdapter: fakeAdapter{name: "hook", reaches: map[presence.AgentID]bool{}}, wants: map[HookEvent]bool{HookChatStarted: true}}
			e.extra = []Adapter{hook}
			rdb := e.r.NewClient(b)
			var rtt redistest.Counter
			rdb.AddHook(&rtt)
			in := e.startWith(nil, rdb)
			e.status(presence.Online, "alice")
			ctx := redistest.Mark(context.Background())
			i := 0
			for b.Loop() {
				v := tc.v
				v.ID = fmt.Sprintf("visitor-id-%06d", i%50) // some return
				i++
				if _, _, err := in.b.StartChat(ctx, "acme", v, "hello"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rtt.Marked.Load())/float64(b.N), "redis-rt/op")
		})
	}
}

// BenchmarkEraseByEmail measures finding and erasing one visitor's chat by
// email among 5000 stored chats (the scan is the cost). Run it with, e.g.:
//
//	ONDUTY_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test ./bridge -run '^$' -bench EraseByEmail -benchtime 20x
func BenchmarkEraseByEmail(b *testing.B) {
	const stored = 5000
	e := newEnv(b, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	ctx := context.Background()
	pipe := e.r.Client.Pipeline()
	for i := range stored {
		// Stored directly: the scan reads chat hashes, not how they came.
		id := newChatID()
		pipe.HSet(ctx, in.b.keys.Chat("acme", id), "state", "closed", "visitor", fmt.Sprintf(`{"email":"v%d@example.com"}`, i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		addr := fmt.Sprintf("gone%d@example.com", i)
		i++
		b.StopTimer()
		if _, _, err := in.b.StartChat(ctx, "acme", Visitor{Email: addr}, "hello"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if n, err := in.b.EraseVisitor(ctx, addr, ""); err != nil || n != 1 {
			b.Fatalf("erased %d, %v", n, err)
		}
	}
}
