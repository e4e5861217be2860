package bridge

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/presence"
)

// boardEnv fills acme with pending and active chats.
func boardEnv(t testing.TB, pending, active int) (*instance, *redistest.Counter) {
	e := newEnv(t, Routing{})
	rdb := e.r.NewClient(t)
	rt := &redistest.Counter{}
	c, ok := rdb.(*redis.Client)
	if !ok {
		t.Skip("round trips are counted on a single-node client")
	}
	c.AddHook(rt)
	in := e.startWith(&fakeAdapter{name: "fake", reaches: map[presence.AgentID]bool{}}, rdb)
	e.status(presence.Online, "alice")
	for i := range active {
		ch, _ := in.startChat(t, fmt.Sprintf("Active %d", i), "hello")
		in.act(t, Action{Kind: ActAccept, Surface: "fake", Agent: "alice", Chat: ch.ID})
	}
	for i := range pending {
		in.startChat(t, fmt.Sprintf("Pending %d", i), "hello")
	}
	return in, rt
}

func TestBoardRoundTrips(t *testing.T) {
	in, rt := boardEnv(t, 30, 20)
	before := rt.Marked.Load()
	bc, err := in.b.Board(redistest.Mark(context.Background()), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if n := rt.Marked.Load() - before; n != 2 {
		t.Errorf("Board took %d round trips, want 2", n)
	}
	if len(bc.Pending) != 30 || len(bc.Active) != 20 || bc.Counts != (ChatCounts{Pending: 30, Active: 20}) {
		t.Errorf("board %+v", bc.Counts)
	}
	before = rt.Marked.Load()
	if _, err := in.b.ChatCounts(redistest.Mark(context.Background())); err != nil {
		t.Fatal(err)
	}
	if n := rt.Marked.Load() - before; n != 1 {
		t.Errorf("ChatCounts took %d round trips, want 1", n)
	}
}

// BenchmarkBoard reads a board of 100 pending and 100 active chats.
func BenchmarkBoard(b *testing.B) {
	in, _ := boardEnv(b, 100, 100)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := in.b.Board(ctx, "acme"); err != nil {
			b.Fatal(err)
		}
	}
}
