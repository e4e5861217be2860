package bridge

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// TestRatingReachesAgents: a rating waits for the close, reaches the chat's
// owner on their app, replaces an earlier one and counts once in the metric.
func TestRatingReachesAgents(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	ctx := context.Background()
	c := in.acceptedChat(t, "alice")
	if _, err := in.b.Rate(ctx, c.ID, 5, ""); !errors.Is(err, ErrChatOpen) {
		t.Fatalf("rating an open chat: %v", err)
	}
	if err := in.b.CloseByVisitor(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		score   int
		comment string
	}{{0, ""}, {6, ""}, {3, strings.Repeat("x", MaxRatingCommentRunes+1)}, {3, "\xff"}} {
		if _, err := in.b.Rate(ctx, c.ID, tc.score, tc.comment); !errors.Is(err, ErrInvalidRating) {
			t.Errorf("score %d comment %q: %v", tc.score, tc.comment, err)
		}
	}
	count := func() uint64 {
		t.Helper()
		var m dto.Metric
		if err := metrics.ChatRatings.WithLabelValues("acme").(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	n0 := count()
	if _, err := in.b.Rate(ctx, c.ID, 2, "Slow <answer>"); err != nil {
		t.Fatal(err)
	}
	got := waitDelivered(t, in.ad, "the rating for alice", 1, func(d Delivery) bool {
		return d.Kind == KindMessage && d.Agent == "alice" && d.Message != nil && strings.Contains(d.Message.Text, "rated this chat 2/5")
	})
	if !strings.Contains(got[0].Message.Text, "Slow <answer>") || got[0].Message.From != FromSystem {
		t.Errorf("rating message %+v", got[0].Message)
	}
	if _, err := in.b.Rate(ctx, c.ID, 4, "Fine after all"); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, in.ad, "the new rating for alice", 1, func(d Delivery) bool {
		return d.Kind == KindMessage && d.Agent == "alice" && d.Message != nil && strings.Contains(d.Message.Text, "4/5")
	})
	if cv := in.chat(t, c.ID); cv.Rating == nil || cv.Rating.Score != 4 || cv.Rating.Comment != "Fine after all" {
		t.Errorf("stored %+v: the second rating must replace the first", cv.Rating)
	}
	if n := count(); n != n0+1 {
		t.Errorf("onduty_chat_ratings counted %d ratings, want 1 per chat", n-n0)
	}
}
