package telegram

import (
	"testing"

	"github.com/onduty/onduty/presence"
)

// An agent's Telegram account is their user id in decimal; anything else
// leaves them unreachable on Telegram rather than misdirected.
func TestAgentAccounts(t *testing.T) {
	dir, err := presence.NewDirectory([]presence.Property{{ID: "acme"}}, []presence.Agent{
		{ID: "alice", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(111)},
		{ID: "bob", Properties: []presence.PropertyID{"acme"}, Accounts: map[presence.Surface]string{"slack": "U222"}},
		{ID: "eve", Properties: []presence.PropertyID{"acme"}, Accounts: map[presence.Surface]string{Surface: "@eve"}},
		{ID: "zed", Properties: []presence.PropertyID{"acme"}, Accounts: map[presence.Surface]string{Surface: "0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &Adapter{dir: dir}
	for _, tc := range []struct {
		agent presence.AgentID
		user  int64 // 0: unreachable
	}{
		{"alice", 111},
		{"bob", 0},    // only on Slack
		{"eve", 0},    // not a number
		{"zed", 0},    // no user has id 0
		{"nobody", 0}, // not configured
	} {
		user, ok := a.userID(tc.agent)
		if ok != (tc.user != 0) || user != tc.user || a.Reaches(tc.agent) != ok {
			t.Errorf("%s: userID %d, %v, reaches %v; want %d", tc.agent, user, ok, a.Reaches(tc.agent), tc.user)
		}
	}
	for _, tc := range []struct {
		user int64
		want presence.AgentID
	}{{111, "alice"}, {222, ""}, {0, ""}} {
		ag, ok := a.agentByUser(tc.user)
		if ok != (tc.want != "") || ag.ID != tc.want {
			t.Errorf("agentByUser(%d) = %q, %v; want %q", tc.user, ag.ID, ok, tc.want)
		}
	}
}
