package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// histogramOf reads a histogram's count and sum.
func histogramOf(t testing.TB, h prometheus.Observer) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func TestBoard(t *testing.T) {
	e := newEnv(t, Routing{QueueTimeout: 2 * time.Minute})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	ctx := context.Background()
	fr := metrics.FirstResponse.WithLabelValues("acme")
	n0, sum0 := histogramOf(t, fr)

	vic, _ := in.startChat(t, "Vic", "Hello, anyone?")
	e.clock.Advance(10 * time.Second)
	wendy, _ := in.startChat(t, "Wendy", "Where is my order?")
	e.clock.Advance(20 * time.Second)
	in.act(t, Action{Kind: ActAccept, Surface: "fake", Agent: "alice", Chat: vic.ID})
	e.clock.Advance(15 * time.Second)
	in.say(t, "alice", vic.ID, "Hi Vic, Alice here.")

	t.Run("first response is timed from the chat's start, once", func(t *testing.T) {
		in.say(t, "alice", vic.ID, "How can I help?")
		n, sum := histogramOf(t, fr)
		if n-n0 != 1 || sum-sum0 != 45 {
			t.Errorf("first response: %d observations, %.1fs; want 1, 45s", n-n0, sum-sum0)
		}
	})

	t.Run("pending and active", func(t *testing.T) {
		bc, err := in.b.Board(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if bc.Counts != (ChatCounts{Pending: 1, Active: 1}) {
			t.Errorf("counts %+v", bc.Counts)
		}
		if len(bc.Pending) != 1 || bc.Pending[0].ID != wendy.ID || bc.Pending[0].WaitingSeconds != 35 || bc.Pending[0].Visitor.Name != "Wendy" ||
			bc.Pending[0].Last == nil || bc.Pending[0].Last.Text != "Where is my order?" {
			t.Errorf("pending %+v", bc.Pending)
		}
		if len(bc.Active) != 1 {
			t.Fatalf("active %+v", bc.Active)
		}
		a := bc.Active[0]
		if a.ID != vic.ID || a.Owner != "alice" || a.OwnerName != "Alice" || a.AcceptedAt == nil || !a.AcceptedAt.Equal(vic.CreatedAt.Add(30*time.Second)) ||
			a.WaitingSeconds != 0 || a.Last == nil || a.Last.Text != "How can I help?" || a.Last.From != FromAgent {
			t.Errorf("active %+v last %+v", a, a.Last)
		}
		if len(bc.Offline) != 0 {
			t.Errorf("offline %+v", bc.Offline)
		}
	})

	t.Run("queue timeout makes an offline message", func(t *testing.T) {
		e.advance(in, 2*time.Minute)
		bc, err := in.b.Board(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if bc.Counts != (ChatCounts{Active: 1, Offline: 1}) || len(bc.Pending) != 0 || len(bc.Offline) != 1 || bc.Offline[0].ID != wendy.ID || !bc.Offline[0].Offline {
			t.Errorf("board %+v", bc)
		}
		counts, err := in.b.ChatCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts["acme"] != bc.Counts {
			t.Errorf("ChatCounts %+v, board %+v", counts, bc.Counts)
		}
		// Answering an offline message is not a live first response.
		n, _ := histogramOf(t, fr)
		in.act(t, Action{Kind: ActAccept, Surface: "fake", Agent: "alice", Chat: wendy.ID})
		in.say(t, "alice", wendy.ID, "Sorry for the wait, Wendy.")
		if n2, _ := histogramOf(t, fr); n2 != n {
			t.Errorf("offline answer observed as first response")
		}
	})

	t.Run("closed chats leave the board", func(t *testing.T) {
		if err := in.b.CloseByVisitor(ctx, vic.ID); err != nil {
			t.Fatal(err)
		}
		bc, err := in.b.Board(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if bc.Counts != (ChatCounts{Active: 1}) || len(bc.Active) != 1 || bc.Active[0].ID != wendy.ID {
			t.Errorf("board %+v", bc)
		}
	})

	t.Run("unknown property", func(t *testing.T) {
		if _, err := in.b.Board(ctx, "nope"); err != ErrUnknownProperty {
			t.Errorf("err %v", err)
		}
	})
}
