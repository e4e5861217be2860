package telegram

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/onduty/onduty/bridge"
)

// place is where a message goes: a Telegram chat, and a forum topic in it.
type place struct {
	chat   int64
	thread int
	// shared is a property's forum group (a topic per visitor chat).
	shared bool
}

// errPaced: the rate limiter asked for a longer wait than a caller takes.
var errPaced = fmt.Errorf("telegram: paced under Telegram's limits: %w", bridge.ErrPaced)

// pace waits for the rate limiter (shared by the instances through Redis).
// If the wait, in all, would be longer than maxWait, it returns a
// RetryAfterError wrapping bridge.ErrPaced instead. A backlogged delivery
// (see need) never sleeps: the outbox serves other chats meanwhile.
func (a *Adapter) pace(ctx context.Context, chat int64, maxWait time.Duration) error {
	if need(ctx) > 1 {
		maxWait = 0
	}
	deadline := time.Now().Add(maxWait)
	for {
		w := a.lim.wait(ctx, chat)
		if w == 0 {
			return nil
		}
		if time.Now().Add(w).After(deadline) {
			return &bridge.RetryAfterError{After: w, Err: errPaced}
		}
		if !sleep(ctx, w) {
			return ctx.Err()
		}
	}
}

var disabledPreview = &models.LinkPreviewOptions{IsDisabled: bot.True()}

// sendHTML posts one HTML message (with buttons when kb is not nil).
func (a *Adapter) sendHTML(ctx context.Context, p place, html string, kb *keyboard) (*models.Message, error) {
	params := &bot.SendMessageParams{
		ChatID:             p.chat,
		MessageThreadID:    p.thread,
		Text:               html,
		ParseMode:          models.ParseModeHTML,
		LinkPreviewOptions: disabledPreview,
	}
	if kb != nil {
		params.ReplyMarkup = kb
	}
	return a.bot.SendMessage(ctx, params)
}

// answer tells an agent the result of their own action: paced, a 429 waited
// out a few times, and a failure only logged (the action itself is done).
func (a *Adapter) answer(ctx context.Context, p place, r bridge.Reply) {
	if r.Text == "" && len(r.Choices) == 0 {
		return
	}
	text := r.Text
	if text == "" {
		text = "Choose:"
	}
	for _, s := range htmlSteps(rendered{body: text}.pieces(), choicesKeyboard(r.Choices)) {
		if err := a.sendWithRetry(ctx, p, s.html, s.kb); err != nil {
			a.log.Warn("answer to agent not sent", "chat_id", p.chat, "err", err)
			return
		}
	}
}

func (a *Adapter) sendWithRetry(ctx context.Context, p place, html string, kb *keyboard) error {
	for attempt := 0; ; attempt++ {
		if err := a.pace(ctx, p.chat, maxReplyWait); err != nil {
			return err
		}
		_, err := a.sendHTML(ctx, p, html, kb)
		if err == nil {
			return nil
		}
		err = classify("send message", err)
		var ra *bridge.RetryAfterError
		if attempt >= 3 || !errors.As(err, &ra) || ra.After > maxReplyWait {
			return err
		}
		if !sleep(ctx, ra.After) {
			return ctx.Err()
		}
	}
}

// answerCallback always answers a button press, so the agent's client stops
// its spinner; text shows as a toast (at most 200 characters).
func (a *Adapter) answerCallback(ctx context.Context, id, text string) {
	_, err := a.bot.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{
		CallbackQueryID: id,
		Text:            truncateRunes(text, 200),
	})
	if err != nil {
		a.log.Warn("answerCallbackQuery failed", "err", classify("answer callback", err))
	}
}

func errf(op string, err error) error { return fmt.Errorf("telegram: %s: %w", op, err) }
