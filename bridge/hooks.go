package bridge

import (
	"time"

	"github.com/onduty/onduty/presence"
)

// HookEvent names a chat event sent to webhooks (SPEC §10).
type HookEvent string

// Webhook events.
const (
	// HookChatStarted: a visitor started a live chat (Message: the first one).
	HookChatStarted HookEvent = "chat.started"
	// HookChatMessage: a message the visitor sees, from either side (never
	// an agent's note). The first message of a chat comes with chat.started.
	HookChatMessage HookEvent = "chat.message"
	// HookChatClosed: the chat ended (by the agent, the visitor, or idle).
	HookChatClosed HookEvent = "chat.closed"
	// HookChatRated: the visitor rated the closed chat (Rating).
	HookChatRated HookEvent = "chat.rated"
	// HookOfflineMessage: an offline message was left through the form, or
	// a chat nobody accepted in queue_timeout became one (Message: the
	// visitor's first message).
	HookOfflineMessage HookEvent = "offline_message"
)

// HookEvents lists every webhook event, in the order of the docs.
var HookEvents = []HookEvent{HookChatStarted, HookChatMessage, HookChatClosed, HookChatRated, HookOfflineMessage}

// IsValid reports whether e is a known event.
func (e HookEvent) IsValid() bool {
	for _, x := range HookEvents {
		if e == x {
			return true
		}
	}
	return false
}

// Hook is the event a KindHook delivery carries.
type Hook struct {
	Event HookEvent `json:"event"`
	// At is when it happened.
	At     time.Time `json:"at"`
	Rating *Rating   `json:"rating,omitempty"`
}

// Subscriber is an optional Adapter capability: an outbox target that takes
// chat events (a webhook). It reaches no agent and has no shared place; the
// bridge queues a KindHook delivery for every event it Wants, in the chat's
// outbox shard, so one chat's events go out in order.
type Subscriber interface {
	// Wants reports whether the target takes event e of property p.
	Wants(e HookEvent, p presence.PropertyID) bool
}

// notify queues event e of the chat for every subscriber that wants it.
// Notes never leave the team.
func (b *Bridge) notify(o *batch, cv *chatView, e HookEvent, m *Message, r *Rating) {
	if m != nil && m.Note {
		return
	}
	for _, a := range b.adapterList() {
		if s, ok := a.(Subscriber); ok && s.Wants(e, cv.Property) {
			o.deliver(a.Name(), Delivery{Kind: KindHook, Chat: cv.Chat, Message: m, Hook: &Hook{Event: e, At: b.now(), Rating: r}})
		}
	}
}
