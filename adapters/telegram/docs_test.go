package telegram

import (
	"os"
	"strings"
	"testing"

	"github.com/onduty/onduty/bridge"
)

// TestCommandsDocumented: every command in the bot's menu is in
// docs/COMMANDS.md, for Telegram ("`/cmd") and Slack ("`/onduty cmd").
func TestCommandsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/COMMANDS.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, c := range bridge.Commands {
		for _, form := range []string{"`/" + c.Name, "`/onduty " + c.Name} {
			if !strings.Contains(doc, form) {
				t.Errorf("docs/COMMANDS.md does not document %s`: add a row for it", form)
			}
		}
	}
}
