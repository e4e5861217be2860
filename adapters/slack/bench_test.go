package slack

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/onduty/onduty/bridge"
)

// BenchmarkEventToHandler measures a signed Events API message from the HTTP
// handler to the bridge's Handle (verification, parsing, the worker hand-off).
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

// BenchmarkDeliverMessage measures one thread message: render and
// chat.postMessage to the fake over loopback HTTP (the adapter reads and
// writes nothing in Redis; the bridge hands it the thread).
// Pacing is off here: with it, one channel takes a message a second.
func BenchmarkDeliverMessage(b *testing.B) {
	hs := newHarnessPrep(b, ModeEvents, func(a *Adapter) { a.pace = newPacer(0, 1) })
	ts := hs.offer("bench", "hello")
	thread := bridge.RemoteRef{Role: bridge.RefThread, Conversation: "C1", Message: ts, Thread: ts, Extra: "hello"}
	ctx := context.Background()
	text := strings.Repeat("Fish & chips <3 ", 60)
	b.ResetTimer()
	for i := range b.N {
		_, err := hs.a.Deliver(ctx, bridge.Delivery{ID: fmt.Sprintf("bm%d", i), Kind: bridge.KindMessage, Thread: &thread,
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
