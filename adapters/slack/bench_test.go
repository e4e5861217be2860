package slack

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/onduty/onduty/bridge"
)

// BenchmarkEventToHandler measures a signed Events API message from the HTTP
// handler to the bridge's Handle (verification, parsing, dedup in Redis).
func BenchmarkEventToHandler(b *testing.B) {
	hs := newHarness(b, ModeEvents)
	b.ResetTimer()
	for i := range b.N {
		body := eventBody(fmt.Sprintf("EvB%d", i), map[string]any{"type": "message", "user": "U111", "text": "hi", "channel": "D111", "channel_type": "im", "ts": "1.1"})
		if rec := hs.post("/slack/events", "application/json", body, nil); rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
	hs.h.WaitN(b, b.N)
}

// BenchmarkDeliverMessage measures one thread message: Redis lookups, render,
// chat.postMessage to the fake over loopback HTTP, and the delivery record.
// Pacing is off here: with it, one channel takes a message a second.
func BenchmarkDeliverMessage(b *testing.B) {
	hs := newHarnessPrep(b, ModeEvents, func(a *Adapter) { a.pace = newPacer(0, 1) })
	hs.offer("bench", "hello")
	ctx := context.Background()
	text := strings.Repeat("Fish & chips <3 ", 60)
	b.ResetTimer()
	for i := range b.N {
		_, err := hs.a.Deliver(ctx, bridge.Delivery{ID: fmt.Sprintf("bm%d", i), Kind: bridge.KindMessage,
			Chat: bridge.Chat{ID: "bench", Property: "acme"}, Message: &bridge.Message{From: bridge.FromVisitor, Text: text}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderRoot(b *testing.B) {
	v := rootView{Chat: bridge.Chat{ID: "c", Visitor: bridge.Visitor{Name: "Vera", Email: "v@example.com"}}, Property: "Acme", First: strings.Repeat("a & b ", 600), Accept: true}
	for range b.N {
		renderRoot(v)
	}
}
