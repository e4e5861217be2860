package bridge

import (
	"context"

	"github.com/onduty/onduty/presence"
)

// VisitorEventType names what a visitor's event stream carries.
type VisitorEventType string

// Visitor events (SPEC §6).
const (
	EventMessage     VisitorEventType = "message"
	EventAgentJoined VisitorEventType = "agent_joined"
	EventChatClosed  VisitorEventType = "chat_closed"
)

// VisitorEvent is one event for a visitor's open widget.
type VisitorEvent struct {
	Type VisitorEventType `json:"type"`
	Chat ChatID           `json:"chat_id"`
	// Message for EventMessage (never a note).
	Message *Message `json:"message,omitempty"`
	// Agent is the joining agent's display name (EventAgentJoined).
	Agent string `json:"agent,omitempty"`
	// Reason for EventChatClosed.
	Reason string `json:"reason,omitempty"`
}

// VisitorService is what a visitor can do with the bridge: the calls behind
// the widget's visitor API (the widget's own interface, widget.Bridge,
// includes it). *Bridge implements it.
type VisitorService interface {
	// StartChat stores a new pending chat with its first message and routes it.
	// It returns the chat and the visitor's bearer token (shown once).
	StartChat(ctx context.Context, p presence.PropertyID, v Visitor, text string) (Chat, string, error)
	// AuthVisitor checks a token against a chat in constant time.
	AuthVisitor(ctx context.Context, id ChatID, token string) (Chat, error)
	// PostVisitorMessage stores the message before returning, then relays it.
	PostVisitorMessage(ctx context.Context, id ChatID, text string, att *Attachment) (Message, error)
	// Transcript lists messages after the given id ("" for all), notes excluded.
	Transcript(ctx context.Context, id ChatID, after string, limit int) ([]Message, error)
	// CloseByVisitor closes the chat and tells its agents.
	CloseByVisitor(ctx context.Context, id ChatID) error
	// LeaveOfflineMessage stores an offline message and delivers it to
	// agents. It returns the chat and the visitor's bearer token, like StartChat.
	LeaveOfflineMessage(ctx context.Context, p presence.PropertyID, v Visitor, text string) (Chat, string, error)
	// PropertyOf names the property of a chat (ErrUnknownChat if none).
	PropertyOf(ctx context.Context, id ChatID) (presence.PropertyID, error)
	// MarkRead records that the visitor has seen the chat up to message id
	// (on an open event stream, or in a transcript fetched with the token),
	// so that no email repeats it. It does nothing when email is off.
	MarkRead(ctx context.Context, id ChatID, msgID string) error
	// EmailTranscript queues the chat's transcript for the visitor's email
	// address: ErrNoEmail without one, ErrEmailOff when email is off.
	EmailTranscript(ctx context.Context, id ChatID) error
	// Rate records the visitor's rating of a closed chat (ErrChatOpen
	// before; a second rating replaces the first) and tells its agents.
	Rate(ctx context.Context, id ChatID, score int, comment string) (Rating, error)
	// SubscribeVisitor streams the chat's events from any instance until cancel.
	SubscribeVisitor(id ChatID) (events <-chan VisitorEvent, cancel func())
	// File returns an attachment's bytes if it belongs to the chat.
	File(ctx context.Context, id ChatID, key string) (Attachment, []byte, error)
}
