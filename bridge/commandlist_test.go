package bridge

import (
	"strings"
	"testing"
)

// TestCommandListIsWhatHandleKnows: every command platforms offer in their
// menu (Commands) is one Handle understands, and /help tells of it.
func TestCommandListIsWhatHandleKnows(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	seen := map[string]bool{}
	for _, c := range Commands {
		t.Run(c.Name, func(t *testing.T) {
			if seen[c.Name] {
				t.Fatalf("%s is listed twice", c.Name)
			}
			seen[c.Name] = true
			if c.Help == "" || strings.ContainsAny(c.Name, " /") || c.Name != strings.ToLower(c.Name) {
				t.Fatalf("bad entry %+v", c)
			}
			if r := in.cmd(t, "alice", c.Name); strings.Contains(r.Text, "I don't know") {
				t.Errorf("/%s is in the menu but Handle answers %q", c.Name, r.Text)
			}
			if c.Name != "start" && c.Name != "help" && !strings.Contains(helpText, "/"+c.Name) {
				t.Errorf("/help does not mention /%s", c.Name)
			}
		})
	}
	if r := in.cmd(t, "alice", "nosuchcommand"); !strings.Contains(r.Text, "I don't know") {
		t.Errorf("an unknown command is answered %q", r.Text)
	}
}
