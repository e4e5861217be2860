package telegram

import (
	"errors"
	"fmt"
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
