package slack

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redistest"
)

// TestVerify: auth.test checks the bot token and, in socket mode,
// apps.connections.open the app-level token; a refusal names the key to
// fix, Slack being unreachable or failing is only worth a retry.
func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    string
		method  string
		fail    failure
		wantKey string // "" means no rejection
		wantErr bool
	}{
		{name: "socket, accepted", mode: ModeSocket},
		{name: "events, accepted", mode: ModeEvents},
		{name: "bot token refused", mode: ModeSocket, method: "auth.test", fail: failure{Err: "invalid_auth"}, wantKey: "slack.bot_token", wantErr: true},
		{name: "bot token revoked", mode: ModeEvents, method: "auth.test", fail: failure{Err: "token_revoked"}, wantKey: "slack.bot_token", wantErr: true},
		{name: "account inactive", mode: ModeSocket, method: "auth.test", fail: failure{Err: "account_inactive"}, wantKey: "slack.bot_token", wantErr: true},
		{name: "app token refused", mode: ModeSocket, method: "apps.connections.open", fail: failure{Err: "invalid_auth"}, wantKey: "slack.app_token", wantErr: true},
		{name: "bot token as app token", mode: ModeSocket, method: "apps.connections.open", fail: failure{Err: "not_allowed_token_type"}, wantKey: "slack.app_token", wantErr: true},
		{name: "slack failing", mode: ModeSocket, method: "auth.test", fail: failure{Status: 503}, wantErr: true},
		{name: "rate limited", mode: ModeSocket, method: "apps.connections.open", fail: failure{Status: 429, RetryAfter: "1"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeSlack(t)
			if tc.method != "" {
				fake.failNext(tc.method, tc.fail)
			}
			a := newAdapter(t, fake, redistest.New(t), tc.mode, testDirectory(t))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := a.Verify(ctx)
			var rej *bridge.RejectedError
			isRej := errors.As(err, &rej)
			switch {
			case !tc.wantErr:
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				opened := len(fake.callsOf("apps.connections.open")) > 0
				if opened != (tc.mode == ModeSocket) {
					t.Errorf("apps.connections.open called: %v in %s mode", opened, tc.mode)
				}
			case tc.wantKey != "":
				if !isRej || !strings.HasPrefix(rej.Key, tc.wantKey) || !strings.Contains(rej.Reason, tc.fail.Err) {
					t.Fatalf("Verify: %v, want a rejection naming %s", err, tc.wantKey)
				}
			default:
				if err == nil || isRej {
					t.Fatalf("Verify: %v, want a retryable error", err)
				}
			}
		})
	}
}

// TestRunStopsWhenBotTokenRevoked: a bot token revoked while the socket
// (opened with the app token) stays up shows first in a delivery: the
// delivery is kept for a retry (not dropped as permanent), and Run stops
// with a RejectedError naming slack.bot_token, in both modes.
func TestRunStopsWhenBotTokenRevoked(t *testing.T) {
	for _, mode := range []string{ModeSocket, ModeEvents} {
		t.Run(mode, func(t *testing.T) {
			fake := newFakeSlack(t)
			a := newAdapter(t, fake, redistest.New(t), mode, testDirectory(t))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx, &fakeHandler{}) }()
			fake.waitCall(t, "auth.test", 1)
			fake.failNext("chat.postMessage", failure{Err: "token_revoked"})
			_, err := a.Deliver(ctx, bridge.Delivery{ID: "n1", Kind: bridge.KindNotice, Agent: "bob", Text: "hi"})
			var pe *bridge.PermanentError
			if err == nil || errors.As(err, &pe) {
				t.Fatalf("Deliver: %v, want an error worth retrying", err)
			}
			select {
			case err := <-done:
				var rej *bridge.RejectedError
				if !errors.As(err, &rej) || !strings.HasPrefix(rej.Key, "slack.bot_token") || rej.Reason != "token rejected (token_revoked)" {
					t.Fatalf("Run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run still running with a revoked bot token")
			}
		})
	}
}
