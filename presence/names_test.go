package presence

import "testing"

func TestDisplayNames(t *testing.T) {
	d, err := NewDirectory(
		[]Property{{ID: "shop", Name: "The Shop"}, {ID: "blog"}},
		[]Agent{{ID: "ann", Name: "Ann Lee", Properties: []PropertyID{"shop"}}, {ID: "bob", Properties: []PropertyID{"shop"}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	agents := []struct {
		id   AgentID
		want string
	}{
		{"ann", "Ann Lee"}, // configured name
		{"bob", "bob"},     // no name: the id
		{"zed", "zed"},     // unknown: the id
		{"", ""},
	}
	for _, tt := range agents {
		if got := d.AgentName(tt.id); got != tt.want {
			t.Errorf("AgentName(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
	props := []struct {
		id   PropertyID
		want string
	}{
		{"shop", "The Shop"},
		{"blog", "blog"},
		{"none", "none"},
	}
	for _, tt := range props {
		if got := d.PropertyName(tt.id); got != tt.want {
			t.Errorf("PropertyName(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}
