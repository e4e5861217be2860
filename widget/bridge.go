package widget

import (
	"context"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// Bridge is everything the widget server uses from the core, handed to New:
// the visitor API's calls, storing a visitor's file, and the admin API's
// presence changes, erasure, chat lists, blocks and agent actions.
// *bridge.Bridge implements it; the widget's tests use a fake.
type Bridge interface {
	bridge.VisitorService

	// PutFile stores a file's bytes for a chat (size-capped, with a TTL)
	// and returns the Attachment to put on the visitor's message.
	PutFile(ctx context.Context, id bridge.ChatID, name, mime string, data []byte) (bridge.Attachment, error)

	// SetPresence sets an agent's chosen status and/or condition for an
	// admin ("" leaves one as it is), with the consequences of the agent's
	// own command (the "Still on duty?" prompt moves). It returns
	// presence.ErrUnknownAgent (wrapped or not) for an unknown agent; any
	// other error is storage failing.
	SetPresence(ctx context.Context, id presence.AgentID, s presence.Status, c presence.Condition) (presence.State, error)
	// EraseVisitor deletes every chat of the email address (in every
	// property), or the chat id, and returns how many it deleted (SPEC
	// §10). bridge.ErrBadErasure unless exactly one of them is given and
	// well-formed.
	EraseVisitor(ctx context.Context, email string, id bridge.ChatID) (int, error)

	// Board lists a property's pending, active and offline chats for the
	// admin board.
	Board(ctx context.Context, p presence.PropertyID) (bridge.BoardChats, error)
	// ChatCounts counts every property's open chats (the metrics' gauges).
	ChatCounts(ctx context.Context) (map[presence.PropertyID]bridge.ChatCounts, error)

	// Blocks lists the property's blocks in force, soonest to end first.
	Blocks(ctx context.Context, p presence.PropertyID) ([]bridge.Block, error)
	// Unblock lifts a block; false if there is no such block in force.
	Unblock(ctx context.Context, p presence.PropertyID, id string) (bool, error)

	// Handle runs an agent's action from the admin API as if it came from a
	// chat app, and returns what the agent would have been told there.
	Handle(ctx context.Context, a bridge.Action) (bridge.Reply, error)
}
