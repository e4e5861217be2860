// Package bridgetest has test doubles of the bridge for adapter tests.
package bridgetest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
)

// Handler is a bridge.Handler that records every action it is handed and
// answers with the function set by SetReply (an empty reply without one).
// It is safe for concurrent use.
type Handler struct {
	mu      sync.Mutex
	actions []bridge.Action
	reply   func(bridge.Action) (bridge.Reply, error)
}

var _ bridge.Handler = (*Handler)(nil)

// Handle records a and answers it.
func (h *Handler) Handle(_ context.Context, a bridge.Action) (bridge.Reply, error) {
	h.mu.Lock()
	h.actions = append(h.actions, a)
	fn := h.reply
	h.mu.Unlock()
	if fn == nil {
		return bridge.Reply{}, nil
	}
	return fn(a)
}

// SetReply sets how later actions are answered; nil means an empty reply.
func (h *Handler) SetReply(fn func(bridge.Action) (bridge.Reply, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reply = fn
}

// Actions is a copy of the actions handled so far, in order.
func (h *Handler) Actions() []bridge.Action {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bridge.Action(nil), h.actions...)
}

// Reset forgets the actions handled so far.
func (h *Handler) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.actions = nil
}

// WaitN waits until at least n actions were handled and returns them all.
func (h *Handler) WaitN(t testing.TB, n int) []bridge.Action {
	t.Helper()
	var got []bridge.Action
	wait.For(t, fmt.Sprintf("%d handler actions", n), func() bool { got = h.Actions(); return len(got) >= n })
	return got
}

// NewHandler returns a Handler answering with reply (nil: empty replies).
func NewHandler(reply func(bridge.Action) (bridge.Reply, error)) *Handler {
	return &Handler{reply: reply}
}

// AgentTexts is the text of every agent message in a chat's transcript as
// the visitor sees it, in order; nil if the transcript cannot be read now.
func AgentTexts(ctx context.Context, b bridge.VisitorService, id bridge.ChatID) []string {
	ms, err := b.Transcript(ctx, id, "", 0)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		if m.From == bridge.FromAgent {
			out = append(out, m.Text)
		}
	}
	return out
}
