package telegram

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-telegram/bot"

	"github.com/onduty/onduty/bridge"
)

// classify turns an error of the Bot API into what the outbox understands:
// 429 → *bridge.RetryAfterError, requests Telegram refuses (400, 403, a
// migrated group) → *bridge.PermanentError, anything else (5xx, network,
// 401 while the token is being fixed) → a plain error that is retried.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("telegram: %s: %w", op, err)
	var tm *bot.TooManyRequestsError
	if errors.As(err, &tm) {
		return &bridge.RetryAfterError{After: retryAfter(tm.RetryAfter), Err: wrapped}
	}
	var mig *bot.MigrateError
	if errors.As(err, &mig) {
		return &bridge.PermanentError{Err: wrapped}
	}
	if errors.Is(err, bot.ErrorBadRequest) || errors.Is(err, bot.ErrorForbidden) {
		return &bridge.PermanentError{Err: wrapped}
	}
	return wrapped
}

// tokenKey is the setting a rejected token is fixed in.
const tokenKey = "telegram.token (or TELEGRAM_BOT_TOKEN)"

// rejected reports whether Telegram refused the token itself: 401
// Unauthorized for a revoked or wrong token, 404 Not Found for one that is
// not a token at all ("123456:replace-me"). It returns the error the
// adapter stops with.
func rejected(code int, err error) (*bridge.RejectedError, bool) {
	if code != http.StatusUnauthorized && code != http.StatusNotFound {
		return nil, false
	}
	return &bridge.RejectedError{Key: tokenKey, Reason: fmt.Sprintf("token rejected (%d)", code), Err: err}, true
}

// rejectedSDK is rejected for an error of the library.
func rejectedSDK(err error) (*bridge.RejectedError, bool) {
	switch {
	case errors.Is(err, bot.ErrorUnauthorized):
		return rejected(http.StatusUnauthorized, err)
	case errors.Is(err, bot.ErrorNotFound):
		return rejected(http.StatusNotFound, err)
	}
	return nil, false
}

func retryAfter(seconds int) time.Duration {
	if seconds < 1 {
		seconds = 1
	}
	return time.Duration(seconds) * time.Second
}

// isTopicGone reports whether Telegram refused a send because the forum
// topic no longer exists (or was closed): the topic is then recreated.
func isTopicGone(err error) bool {
	if err == nil || !errors.Is(err, bot.ErrorBadRequest) {
		return false
	}
	s := strings.ToLower(err.Error())
	for _, m := range []string{"message thread not found", "topic_deleted", "topic_closed", "topic deleted", "topic closed", "thread not found"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// isEditMoot: an edit that changes nothing, or of a message that is gone
// or too old; retrying cannot help and nothing is lost.
func isEditMoot(err error) bool {
	if err == nil || !errors.Is(err, bot.ErrorBadRequest) {
		return false
	}
	s := strings.ToLower(err.Error())
	for _, m := range []string{"message is not modified", "message to edit not found", "message can't be edited", "message_id_invalid"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
