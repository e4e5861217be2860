package slack

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/presence"
)

func TestNewValidates(t *testing.T) {
	dir := testDirectory(t)
	rdb := redistest.New(t).Client
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; empty means valid
	}{
		{"socket needs app token", Config{BotToken: "b"}, "app_token"},
		{"events needs signing secret", Config{BotToken: "b", Mode: ModeEvents}, "signing_secret"},
		{"bot token", Config{AppToken: "xapp-a"}, "bot_token"},
		{"bad mode", Config{BotToken: "b", Mode: "rtm"}, `slack.mode: "rtm"`},
		{"unknown property", Config{BotToken: "b", AppToken: "xapp-a", Channels: map[presence.PropertyID]string{"nope": "C9"}}, `"nope"`},
		{"app token shape", Config{BotToken: "b", AppToken: "a"}, "slack.app_token: must start with xapp-"},
		{"bad api url", Config{BotToken: "b", AppToken: "xapp-a", APIURL: "slack.example/api/"}, "slack.api_url"},
		{"socket ok", Config{BotToken: "b", AppToken: "xapp-a"}, ""},
		{"events ok", Config{BotToken: "b", SigningSecret: "s", Mode: ModeEvents, APIURL: "http://localhost:1/api"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg, dir, rdb, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasSuffix(a.cfg.APIURL, "/api/") {
					t.Errorf("APIURL %q lacks the trailing /api/", a.cfg.APIURL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one naming %s", err, tt.want)
			}
		})
	}
	// An empty channel means none, and the caller's map is left alone.
	chans := map[presence.PropertyID]string{"acme": "C1", "beta": ""}
	a, err := New(Config{BotToken: "b", AppToken: "xapp-a", Channels: chans}, dir, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Shared("acme") || a.Shared("beta") || len(chans) != 2 {
		t.Errorf("channels %v, caller's %v", a.cfg.Channels, chans)
	}
	if a.Name() != "slack" {
		t.Errorf("Name %q", a.Name())
	}
}

func TestRunRefusesBadToken(t *testing.T) {
	fake := newFakeSlack(t)
	fake.failNext("auth.test", failure{Err: "invalid_auth"})
	a := newAdapter(t, fake, redistest.New(t), ModeSocket, testDirectory(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.Run(ctx, &fakeHandler{})
	var rej *bridge.RejectedError
	if !errors.As(err, &rej) || !strings.HasPrefix(rej.Key, "slack.bot_token") || rej.Reason != "token rejected (invalid_auth)" {
		t.Fatalf("Run: %v, want slack.bot_token rejected (invalid_auth)", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run waited for the deadline instead of failing")
	}
}

func TestRunRefusesBadAppToken(t *testing.T) {
	fake := newFakeSlack(t)
	fake.failNext("apps.connections.open", failure{Err: "invalid_auth"})
	a := newAdapter(t, fake, redistest.New(t), ModeSocket, testDirectory(t), func(c *Config) { c.UsePresence = true })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.Run(ctx, &fakeHandler{})
	var rej *bridge.RejectedError
	if !errors.As(err, &rej) || !strings.HasPrefix(rej.Key, "slack.app_token") || rej.Reason != "token rejected (invalid_auth)" {
		t.Fatalf("Run: %v, want slack.app_token rejected (invalid_auth)", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run hung until the deadline")
	}
}
