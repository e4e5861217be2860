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

// TestHelpText: /help, built from the command table, reads word for word
// as agents know it.
func TestHelpText(t *testing.T) {
	const want = `Commands:
/online, /away, /invisible, /offline — set your status
/alwayson on|off — stay online without activity (or not)
/status — your status and each widget's
/team — your teammates' statuses
/chats — your chats; pick one to make it current
/accept — take the waiting chat
/close — close the current chat
/transfer NAME — hand the current chat to a teammate
/monitor — watch the current chat without taking it
/reply NAME — send a canned reply in the current chat; /reply alone lists them
/block [DURATION] — block the current chat's visitor (default 30 days); /unblock lifts it
Reply to a visitor's message to answer it. Start with // for a note only the team sees.`
	if helpText != want {
		t.Errorf("/help reads\n%s\nwant\n%s", helpText, want)
	}
	e := newEnv(t, Routing{})
	in := e.start(nil)
	for _, cmd := range []string{"help", "", "/HELP"} {
		if r := in.cmd(t, "alice", cmd); r.Text != want || !r.Private {
			t.Errorf("%q is answered %+v", cmd, r)
		}
	}
	for _, c := range Commands {
		if c.Name == "alwayson" && c.Help != "on|off: stay online without activity" {
			t.Errorf("a menu line puts the arguments first: %q", c.Help)
		}
	}
}
