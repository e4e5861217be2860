package bridge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/internal/redistest"
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

// TestEmailRelayRoundTrips: with an email sender, relaying a message either
// way costs the same round trips whether or not the visitor gave an
// address; arming the email timer rides in the reply's own pipeline.
func TestEmailRelayRoundTrips(t *testing.T) {
	e := newEnv(t, Routing{EmailAfter: time.Minute})
	mail := &fakeAdapter{name: EmailTarget, reaches: map[presence.AgentID]bool{}}
	e.extra = []Adapter{mail}
	rdb := e.r.NewClient(t)
	c, ok := rdb.(*redis.Client)
	if !ok {
		t.Skip("round trips are counted on a single-node client")
	}
	rt := &redistest.Counter{}
	c.AddHook(rt)
	in := e.startWith(&fakeAdapter{name: "fake"}, rdb)
	e.status(presence.Online, "alice")
	ctx := context.Background()
	counts := map[string][2]int64{}
	for _, email := range []string{"", "vic@example.com"} {
		ch, _, err := in.b.StartChat(ctx, "acme", Visitor{Name: "Vic", Email: email}, "hello")
		if err != nil {
			t.Fatal(err)
		}
		in.act(t, Action{Kind: ActAccept, Surface: "fake", Agent: "alice", Chat: ch.ID})
		toAgent := calls(rt, func(ctx context.Context) {
			if _, err := in.b.PostVisitorMessage(ctx, ch.ID, "still there?", nil); err != nil {
				t.Fatal(err)
			}
		})
		toVisitor := calls(rt, func(ctx context.Context) {
			if _, err := in.b.Handle(ctx, Action{Kind: ActMessage, Surface: "fake", Agent: "alice", Text: "yes"}); err != nil {
				t.Fatal(err)
			}
		})
		counts[email] = [2]int64{toAgent, toVisitor}
		armed, err := in.b.rdb.ZScore(ctx, in.b.keys.Timers(), timerMember(timerEmail, "acme", string(ch.ID))).Result()
		if (email != "") != (err == nil) || (err == nil && armed != float64(ms(e.clock.Now().Add(time.Minute)))) {
			t.Errorf("email %q: timer %v, %v", email, armed, err)
		}
	}
	if counts[""] != counts["vic@example.com"] || counts[""][1] != 5 {
		t.Errorf("round trips (to agents, to visitor): without email %v, with %v; want equal, 5 to the visitor", counts[""], counts["vic@example.com"])
	}
	t.Logf("round trips per relayed message (to agents, to visitor): %v", counts["vic@example.com"])
}

func TestEmailTranscriptNeedsSenderAndAddress(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil) // no email sender
	ctx := context.Background()
	ch, _, err := in.b.StartChat(ctx, "acme", Visitor{Email: "vic@example.com"}, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.b.EmailTranscript(ctx, ch.ID); !errors.Is(err, ErrEmailOff) {
		t.Errorf("without a sender: %v", err)
	}
	if err := in.b.MarkRead(ctx, ch.ID, "1-0"); err != nil {
		t.Errorf("MarkRead without a sender: %v", err)
	}
	if cv := in.chat(t, ch.ID); cv.link != "" || cv.read != "" {
		t.Errorf("without a sender nothing email-related is stored: link %q read %q", cv.link, cv.read)
	}
	if err := in.b.EmailTranscript(ctx, "nosuchchat"); !errors.Is(err, ErrEmailOff) {
		t.Errorf("unknown chat without a sender: %v", err)
	}
}

// TestReplyDuringEmailFiringNotLost: a reply that lands while an instance
// fires the chat's email timer (the timer held past any reply's due time)
// pulls the timer back, and the firing instance's release leaves it armed.
func TestReplyDuringEmailFiringNotLost(t *testing.T) {
	e := newEnv(t, Routing{EmailAfter: time.Minute})
	mail := &fakeAdapter{name: EmailTarget, reaches: map[presence.AgentID]bool{}}
	e.extra = []Adapter{mail}
	in := e.start(nil)
	e.status(presence.Online, "alice")
	ctx := context.Background()
	ch, _, err := in.b.StartChat(ctx, "acme", Visitor{Email: "vic@example.com"}, "hello")
	if err != nil {
		t.Fatal(err)
	}
	member := timerMember(timerEmail, "acme", string(ch.ID))
	hold := ms(e.clock.Now().Add(time.Minute + timerLease))
	// As fireEmail does first: the timer is held.
	if err := in.b.rdb.ZAdd(ctx, in.b.keys.Timers(), redis.Z{Score: float64(hold), Member: member}).Err(); err != nil {
		t.Fatal(err)
	}
	in.say(t, "alice", ch.ID, "Arrived while the timer fired")
	if err := releaseEmailTimerScript.Run(ctx, in.b.rdb, []string{in.b.keys.Timers()}, member, hold).Err(); err != nil {
		t.Fatal(err)
	}
	due, err := in.b.rdb.ZScore(ctx, in.b.keys.Timers(), member).Result()
	if err != nil || due != float64(ms(e.clock.Now().Add(time.Minute))) {
		t.Fatalf("timer after the release: %v, %v; want the reply's due time", due, err)
	}
	e.advance(in, time.Minute)
	got := waitDelivered(t, mail, "the email", 1, func(d Delivery) bool { return d.Kind == KindEmail })
	if len(got[0].Email.Messages) != 1 || got[0].Email.Messages[0].Text != "Arrived while the timer fired" {
		t.Errorf("email %+v", got[0].Email)
	}
}
