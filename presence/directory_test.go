package presence

import (
	"slices"
	"testing"
)

func accountsDirectory(t *testing.T, order ...Surface) *Directory {
	t.Helper()
	d, err := NewDirectory([]Property{{ID: "acme"}}, []Agent{
		{ID: "alice", Properties: []PropertyID{"acme"}, Accounts: map[Surface]string{"telegram": "111", "slack": "U111", "matrix": "@alice:x"}},
		{ID: "bob", Properties: []PropertyID{"acme"}, Accounts: map[Surface]string{"slack": "U222", "telegram": ""}},
		{ID: "carol", Properties: []PropertyID{"acme"}},
		// Validation rejects a shared account; should one slip through, the
		// first configured agent keeps it.
		{ID: "dup", Properties: []PropertyID{"acme"}, Accounts: map[Surface]string{"slack": "U111"}},
	}, order...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirectoryAgentByAccount(t *testing.T) {
	d := accountsDirectory(t)
	for _, tc := range []struct {
		name    string
		surface Surface
		id      string
		want    AgentID // "" means not found
	}{
		{"telegram", "telegram", "111", "alice"},
		{"slack", "slack", "U222", "bob"},
		{"a surface no other agent uses", "matrix", "@alice:x", "alice"},
		{"first configured keeps a shared account", "slack", "U111", "alice"},
		{"the id on another surface", "telegram", "U111", ""},
		{"unknown id", "telegram", "999", ""},
		{"unknown surface", "email", "111", ""},
		{"empty id never matches an agent without the account", "telegram", "", ""},
		{"empty surface", "", "111", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ok := d.AgentByAccount(tc.surface, tc.id)
			if ok != (tc.want != "") || a.ID != tc.want {
				t.Errorf("AgentByAccount(%q, %q) = %q, %v; want %q", tc.surface, tc.id, a.ID, ok, tc.want)
			}
		})
	}
}

func TestDirectorySurfaces(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order []Surface
		agent AgentID
		want  []Surface
	}{
		{"configured order first, the rest by name", []Surface{"telegram", "slack"}, "alice", []Surface{"telegram", "slack", "matrix"}},
		{"no order: by name", nil, "alice", []Surface{"matrix", "slack", "telegram"}},
		{"an empty account is no surface", []Surface{"telegram", "slack"}, "bob", []Surface{"slack"}},
		{"no accounts: empty, not nil", []Surface{"telegram"}, "carol", []Surface{}},
		{"unknown agent", nil, "nobody", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := accountsDirectory(t, tc.order...).Surfaces(tc.agent)
			if !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("Surfaces(%q) = %#v, want %#v", tc.agent, got, tc.want)
			}
		})
	}
}

func TestAgentAccount(t *testing.T) {
	a := Agent{Accounts: map[Surface]string{"slack": "U1"}}
	if a.Account("slack") != "U1" || a.Account("telegram") != "" || (Agent{}).Account("slack") != "" {
		t.Errorf("Account: %q %q", a.Account("slack"), a.Account("telegram"))
	}
}
