package telegram

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
)

// TestVerify: getMe tells a refused token (401, or 404 for something that
// is not a token) from Telegram being unreachable; only the first names
// the key to fix.
func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name     string
		token    string
		fail     int // getMe answers this status once
		closed   bool
		rejected string // the RejectedError's Reason; "" means none
		ok       bool
	}{
		{name: "accepted", token: testToken, ok: true},
		{name: "wrong token", token: "123456:replace-me", rejected: "token rejected (401)"},
		{name: "not a token", token: testToken, fail: 404, rejected: "token rejected (404)"},
		{name: "telegram failing", token: testToken, fail: 502},
		{name: "unreachable", token: testToken, closed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.fail != 0 {
				e.api.FailNext("getMe", 1, tc.fail, "Not Found", 0)
			}
			a := e.adapter(t, "i1", nil, func(c *Config) { c.Token = tc.token })
			if tc.closed {
				e.api.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := a.Verify(ctx)
			var rej *bridge.RejectedError
			isRej := errors.As(err, &rej)
			switch {
			case tc.ok:
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if a.botName() == "" {
					t.Error("bot name not learnt")
				}
			case tc.rejected != "":
				if !isRej || rej.Reason != tc.rejected || !strings.Contains(err.Error(), "telegram.token") || !strings.Contains(err.Error(), "TELEGRAM_BOT_TOKEN") {
					t.Fatalf("Verify: %v (rejected %v), want %q naming telegram.token", err, isRej, tc.rejected)
				}
				if strings.Contains(err.Error(), tc.token) {
					t.Errorf("the error shows the token: %v", err)
				}
			default:
				if err == nil || isRej {
					t.Fatalf("Verify: %v, want a retryable error, not a rejection", err)
				}
			}
		})
	}
}

// TestRunStopsWhenTokenRejected: a token revoked while onduty runs stops
// the adapter with a RejectedError (instead of polling getUpdates forever);
// in webhook mode setWebhook's refusal does the same. A Telegram outage
// (5xx) does not stop it.
func TestRunStopsWhenTokenRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   string
		method string
	}{
		{"polling, revoked while running", ModePolling, "getUpdates"},
		{"webhook", ModeWebhook, "setWebhook"},
		{"at start", ModePolling, "getMe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.adapter(t, "i1", nil, func(c *Config) {
				c.Mode = tc.mode
				if tc.mode == ModeWebhook {
					c.WebhookURL, c.WebhookSecret = "https://chat.example/telegram/webhook", "s3cret"
				}
			})
			a.retryWait = func(int) time.Duration { return time.Millisecond }
			if tc.method != "getMe" { // getMe is asked once: a failure there is only logged
				e.api.FailNext(tc.method, 2, 502, "Bad Gateway", 0) // an outage first: retried
			}
			e.api.FailNext(tc.method, 1000, 401, "Unauthorized", 0)
			done := make(chan error, 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { done <- a.Run(ctx, &fakeHandler{}) }()
			select {
			case err := <-done:
				var rej *bridge.RejectedError
				if !errors.As(err, &rej) || rej.Reason != "token rejected (401)" {
					t.Fatalf("Run returned %v, want token rejected (401)", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run still running with a rejected token")
			}
		})
	}
}

// TestDeliveryStopsRunWhenTokenRejected: in webhook mode nothing but a
// delivery talks to Telegram: a delivery refused for the token is kept for
// a retry and stops Run with a RejectedError.
func TestDeliveryStopsRunWhenTokenRejected(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "i1", nil, func(c *Config) {
		c.Mode = ModeWebhook
		c.WebhookURL, c.WebhookSecret = "https://chat.example/telegram/webhook", "s3cret"
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, &fakeHandler{}) }()
	waitCalls(t, e.api, "setWebhook", 1, nil)
	e.api.FailNext("sendMessage", 1, 401, "Unauthorized", 0)
	_, err := a.Deliver(ctx, bridge.Delivery{ID: "n1", Kind: bridge.KindNotice, Agent: "alice", Text: "hi"})
	if err == nil || asPermanent(err) {
		t.Fatalf("Deliver: %v, want an error worth retrying", err)
	}
	select {
	case err := <-done:
		var rej *bridge.RejectedError
		if !errors.As(err, &rej) || rej.Reason != "token rejected (401)" {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running with a rejected token")
	}
}
