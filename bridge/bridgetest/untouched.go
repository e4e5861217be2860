package bridgetest

import (
	"context"
	"testing"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// Presence reads every configured agent's stored state.
func Presence(t testing.TB, ctx context.Context, store *presence.Store) map[presence.AgentID]presence.State {
	t.Helper()
	states, err := store.GetMany(ctx, store.Directory().Agents())
	if err != nil {
		t.Fatal(err)
	}
	return states
}

// Untouched fails t unless every agent's presence is as it was before and
// the chat is still pending, unowned, with only the visitor's first message:
// what someone who is not an agent did changed nothing.
func Untouched(t testing.TB, ctx context.Context, store *presence.Store, before map[presence.AgentID]presence.State,
	b bridge.VisitorService, chat bridge.ChatID, token string) {
	t.Helper()
	for id, st := range Presence(t, ctx, store) {
		was := before[id]
		if !st.LastActivity.Equal(was.LastActivity) || st.Status != was.Status || st.Condition != was.Condition {
			t.Errorf("%s's presence changed: %+v, was %+v", id, st, was)
		}
	}
	got, err := b.AuthVisitor(ctx, chat, token)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != bridge.Pending || got.Owner != "" {
		t.Errorf("chat is %s owned by %q after the strangers' tries", got.State, got.Owner)
	}
	ms, err := b.Transcript(ctx, chat, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Errorf("transcript has %d messages, want only the visitor's first: %+v", len(ms), ms)
	}
}
