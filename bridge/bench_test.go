package bridge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/presence"
)

// BenchmarkVisitorMessageToAdapter measures a visitor message from
// PostVisitorMessage to the adapter's Deliver call, at 500 messages/s spread
// over 500 active chats, and counts Redis round trips per relayed message.
// Run it with, e.g.:
//
//	ONDUTY_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test ./bridge -run '^$' -bench VisitorMessage -benchtime 5000x
func BenchmarkVisitorMessageToAdapter(b *testing.B) {
	const chats, rate = 500, 500
	e := newEnv(b, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	rdb := e.r.NewClient(b)
	var rtt redistest.Counter
	rdb.AddHook(&rtt)

	var (
		mu      sync.Mutex
		sent    = map[string]time.Time{}
		lat     []time.Duration
		settled = make(chan struct{}, 1<<16)
	)
	ad := &fakeAdapter{name: "fake", onDeliver: func(d Delivery) {
		if d.Kind != KindMessage || d.Message == nil {
			return
		}
		now := time.Now()
		mu.Lock()
		if t0, ok := sent[d.Message.Text]; ok {
			lat = append(lat, now.Sub(t0))
			delete(sent, d.Message.Text)
		}
		mu.Unlock()
		settled <- struct{}{}
	}}
	in := e.startWith(ad, rdb)
	in.b.cfg.PollEvery = 5 * time.Minute // production default of the safety poll
	e.status(presence.Online, "alice")
	ids := make([]ChatID, chats)
	for i := range ids {
		c, _ := in.startChat(b, fmt.Sprintf("V%d", i), "hello")
		in.act(b, Action{Kind: ActAccept, Agent: "alice", Chat: c.ID})
		ids[i] = c.ID
	}
	e.drain(in)
	for len(settled) > 0 {
		<-settled
	}
	ctx := redistest.Mark(context.Background())
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	all0, api0 := rtt.All.Load(), rtt.Marked.Load()
	b.ResetTimer()
	start := time.Now()
	// Each tick starts one request, as independent visitors would: a slow
	// request does not hold back the next one.
	var wg sync.WaitGroup
	for i := range b.N {
		<-tick.C
		text := fmt.Sprintf("m%d", i)
		wg.Go(func() {
			mu.Lock()
			sent[text] = time.Now()
			mu.Unlock()
			if _, err := in.b.PostVisitorMessage(ctx, ids[i%chats], text, nil); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	sendRate := float64(b.N) / time.Since(start).Seconds()
	for range b.N {
		select {
		case <-settled:
		case <-time.After(30 * time.Second):
			b.Fatal("deliveries missing")
		}
	}
	b.StopTimer()
	all, api := rtt.All.Load()-all0, rtt.Marked.Load()-api0
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(api)/float64(b.N), "api_rtt/msg")
	b.ReportMetric(float64(all)/float64(b.N), "all_rtt/msg")
	b.ReportMetric(sendRate, "msgs/s")
}
