package main

import (
	"testing"

	"github.com/onduty/onduty/adapters/slack"
	"github.com/onduty/onduty/adapters/telegram"
	"github.com/onduty/onduty/internal/config"
	"github.com/onduty/onduty/presence"
)

// The configuration files agents' accounts under the names the adapters look
// them up by; a mismatch would leave every agent unreachable on that app.
func TestAccountsReachTheAdapters(t *testing.T) {
	if config.SurfaceTelegram != telegram.Surface || config.SurfaceSlack != slack.Surface {
		t.Fatalf("config surfaces %q %q, adapters %q %q", config.SurfaceTelegram, config.SurfaceSlack, telegram.Surface, slack.Surface)
	}
	file := writeFile(t, `
properties: [{id: acme, slack_channel: C0123456789}]
agents:
  - {id: alice, name: Alice, properties: [acme], telegram_user_id: 111, slack_user_id: U111}
  - {id: bob, name: Bob, properties: [acme], slack_user_id: U222}
  - {id: carol, name: Carol, properties: [acme]}
telegram: {token: "123:abc"}
slack: {bot_token: "xoxb-1", app_token: "xapp-1"}
`)
	c, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := c.Directory()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		surface presence.Surface
		account string
		want    presence.AgentID
	}{
		{telegram.Surface, "111", "alice"},
		{slack.Surface, "U111", "alice"},
		{slack.Surface, "U222", "bob"},
		{telegram.Surface, "222", ""},
		{slack.Surface, "111", ""},
	} {
		a, ok := dir.AgentByAccount(tc.surface, tc.account)
		if ok != (tc.want != "") || a.ID != tc.want {
			t.Errorf("AgentByAccount(%s, %s) = %q, %v; want %q", tc.surface, tc.account, a.ID, ok, tc.want)
		}
	}
	for id, want := range map[presence.AgentID]string{"alice": "telegram,slack", "bob": "slack", "carol": ""} {
		got := ""
		for i, s := range dir.Surfaces(id) {
			if i > 0 {
				got += ","
			}
			got += string(s)
		}
		if got != want {
			t.Errorf("%s: surfaces %q, want %q", id, got, want)
		}
	}
}
