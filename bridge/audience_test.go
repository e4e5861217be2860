package bridge

import (
	"slices"
	"testing"

	"github.com/onduty/onduty/presence"
)

// TestDeliverTo: the one rule for who gets an item about a chat. "team" is
// a shared place; "dm" reaches alice and bob, "dm2" only carol.
func TestDeliverTo(t *testing.T) {
	b := &Bridge{adapters: []Adapter{
		&fakeAdapter{name: "dm", reaches: map[presence.AgentID]bool{"alice": true, "bob": true}},
		&fakeAdapter{name: "team", shared: true}, // after one that sets Agent: the shared item must have none
		&fakeAdapter{name: "dm2", reaches: map[presence.AgentID]bool{"carol": true}},
	}}
	cv := &chatView{Chat: Chat{ID: "c1", Property: "acme"}}
	all := []presence.AgentID{"alice", "bob", "carol"}
	tests := []struct {
		name string
		to   audience
		want []string // adapter/agent ("" for the shared place)
	}{
		{"shared place and every reachable agent", audience{Shared: true, Agents: all}, []string{"dm/alice", "dm/bob", "team/", "dm2/carol"}},
		{"shared place only", audience{Shared: true}, []string{"team/"}},
		{"agents only", audience{Agents: all}, []string{"dm/alice", "dm/bob", "dm2/carol"}},
		{"but the agent who caused it", audience{Shared: true, Agents: all, Except: "bob"}, []string{"dm/alice", "team/", "dm2/carol"}},
		{"but the shared place it came from", audience{Shared: true, Agents: all, From: "team"}, []string{"dm/alice", "dm/bob", "dm2/carol"}},
		{"an agent no adapter reaches", audience{Agents: []presence.AgentID{"dave"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o batch
			b.deliverTo(&o, cv, Delivery{Kind: KindClosed, Text: "bye"}, tt.to)
			var got []string
			for _, it := range o.items {
				got = append(got, it.adapter+"/"+string(it.d.Agent))
				if it.d.Chat.ID != "c1" || it.d.Kind != KindClosed || it.d.Text != "bye" {
					t.Errorf("delivery %+v lost its content", it.d)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
