package telegram

import (
	"strconv"
	"testing"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/tgfake"
)

// BenchmarkDeliverMessage: one visitor message to an agent's private chat
// through the library to the fake Bot API (HTTP on loopback) plus the
// adapter's Redis bookkeeping (progress and reply route).
func BenchmarkDeliverMessage(b *testing.B) {
	e := newEnv(b)
	a := e.adapter(b, "A", nil, nil)
	chat := testChat("chatB1", "acme")
	m := &bridge.Message{ID: "1-0", Chat: chat.ID, From: bridge.FromVisitor, Text: "hello & <welcome>"}
	b.ResetTimer()
	for i := range b.N {
		d := bridge.Delivery{ID: "b" + strconv.Itoa(i), Kind: bridge.KindMessage, Agent: "alice", Chat: chat, Message: m}
		if _, err := a.Deliver(b.Context(), d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleUpdate: one agent message from an update to an Action
// (claim in Redis, route lookup), with a fake handler and no answer.
func BenchmarkHandleUpdate(b *testing.B) {
	e := newEnv(b)
	a := e.adapter(b, "A", nil, nil)
	h := &fakeHandler{}
	b.ResetTimer()
	for i := range b.N {
		u := decodeUpdate(b, tgfake.ReplyMessage(aliceTG, "an answer", 5), int64(i+1))
		if err := a.handleUpdate(b.Context(), h, u); err != nil {
			b.Fatal(err)
		}
	}
}
