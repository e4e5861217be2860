package telegram

import (
	"strings"
	"testing"

	"github.com/onduty/onduty/presence"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"polling", Config{Token: "1:x"}, nil},
		{"webhook", Config{Token: "1:x", Mode: ModeWebhook, WebhookURL: "https://h/telegram/webhook", WebhookSecret: "abc_DEF-1"}, nil},
		{"everything wrong", Config{Mode: "push", APIURL: "ftp://x"}, []string{"telegram.token", "telegram.api_url", "telegram.mode"}},
		{"webhook without url and secret", Config{Token: "1:x", Mode: ModeWebhook}, []string{"telegram.webhook_url", "telegram.webhook_secret"}},
		{"bad secret", Config{Token: "1:x", Mode: ModeWebhook, WebhookURL: "https://h/", WebhookSecret: "has space"}, []string{"telegram.webhook_secret"}},
		{"urls without a host", Config{Token: "1:x", APIURL: "https://", Mode: ModeWebhook, WebhookURL: "https:/telegram/webhook", WebhookSecret: "s"},
			[]string{`telegram.api_url: "https://": want an http(s) URL`, `telegram.webhook_url: "https:/telegram/webhook": want an http(s) URL`}},
		{"blank token", Config{Token: " "}, []string{"telegram.token: required when Telegram is enabled (or set TELEGRAM_BOT_TOKEN)"}},
		{"positive group", Config{Token: "1:x", Groups: map[presence.PropertyID]int64{"acme": 42}}, []string{"properties[acme].telegram_group"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
	if _, err := New(Config{}, testDirectory(t), nil, nil); err == nil {
		t.Error("New accepted an empty config")
	}
}
