// Package bridgetest has test doubles of the bridge for adapter tests, and
// the adapter conformance suite (Run) that every adapter runs on a real
// in-process bridge and its platform's fake.
package bridgetest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
)

// Handler is a bridge.Host that records every action it is handed and
// answers with the function set by SetReply (an empty reply without one).
// It keeps files in memory, and finds the chat of the platform objects
// given to Keep (as the bridge does with what Deliver returns). It is safe
// for concurrent use.
type Handler struct {
	mu      sync.Mutex
	actions []bridge.Action
	reply   func(bridge.Action) (bridge.Reply, error)
	refs    map[string]bridge.ChatID
	files   map[string]storedFile
}

type storedFile struct {
	chat bridge.ChatID
	att  bridge.Attachment
	data []byte
}

var _ bridge.Host = (*Handler)(nil)

// Keep records refs as made for chat on surface: ChatOf finds them.
func (h *Handler) Keep(surface string, chat bridge.ChatID, refs ...bridge.RemoteRef) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refs == nil {
		h.refs = map[string]bridge.ChatID{}
	}
	for _, r := range refs {
		if r.Thread != "" && r.Role == bridge.RefThread {
			h.refs[surface+"|"+r.Conversation+"|t|"+r.Thread] = chat
		}
		if r.Message != "" {
			h.refs[surface+"|"+r.Conversation+"|m|"+r.Message] = chat
		}
	}
}

// ChatOf finds what Keep recorded: the thread first, then the message.
func (h *Handler) ChatOf(_ context.Context, surface string, r bridge.RemoteRef) (bridge.ChatID, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.refs[surface+"|"+r.Conversation+"|t|"+r.Thread]; ok && r.Thread != "" {
		return c, nil
	}
	if c, ok := h.refs[surface+"|"+r.Conversation+"|m|"+r.Message]; ok && r.Message != "" {
		return c, nil
	}
	return "", nil
}

// PutFile keeps a file in memory.
func (h *Handler) PutFile(_ context.Context, chat bridge.ChatID, name, mime string, data []byte) (bridge.Attachment, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.files == nil {
		h.files = map[string]storedFile{}
	}
	att := bridge.Attachment{Key: fmt.Sprintf("f%d", len(h.files)+1), Name: name, MIME: mime, Size: int64(len(data))}
	h.files[att.Key] = storedFile{chat: chat, att: att, data: append([]byte(nil), data...)}
	return att, nil
}

// File returns a file PutFile kept for chat.
func (h *Handler) File(_ context.Context, chat bridge.ChatID, key string) (bridge.Attachment, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.files[key]
	if !ok || f.chat != chat {
		return bridge.Attachment{}, nil, bridge.ErrUnknownChat
	}
	return f.att, f.data, nil
}

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
