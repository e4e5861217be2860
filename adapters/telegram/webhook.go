package telegram

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
)

// maxWebhookBody bounds an update's size.
const maxWebhookBody = 1 << 20

// runWebhook registers the webhook with its secret, retrying until Telegram
// takes it, then waits for ctx: WebhookHandler receives the updates.
func (a *Adapter) runWebhook(ctx context.Context) error {
	for failures := 0; ; failures++ {
		_, err := a.bot.SetWebhook(ctx, &bot.SetWebhookParams{
			URL:            a.cfg.WebhookURL,
			SecretToken:    a.cfg.WebhookSecret,
			AllowedUpdates: []string{"message", "callback_query"},
		})
		if err == nil {
			a.log.Info("webhook registered", "url", a.cfg.WebhookURL)
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if rej, ok := rejectedSDK(err); ok {
			rej.Err = classify("set webhook", err)
			return rej
		}
		a.log.Warn("setWebhook failed; retrying", "err", classify("set webhook", err))
		if !sleep(ctx, retryBackoff.Delay(failures)) {
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// WebhookHandler serves POST /telegram/webhook. It answers 401 unless the
// X-Telegram-Bot-Api-Secret-Token header matches Config.WebhookSecret,
// 503 before Run has started, and 500 when the update should be sent again
// (Telegram retries); updates of one Telegram chat are handled one at a time.
func (a *Adapter) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		got := r.Header.Get("X-Telegram-Bot-Api-Secret-Token")
		if a.cfg.WebhookSecret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.WebhookSecret)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
		if err != nil {
			http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		var u models.Update
		if err := json.Unmarshal(body, &u); err != nil {
			http.Error(w, "not an update", http.StatusBadRequest)
			return
		}
		box := a.handler.Load()
		if box == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		mu := &a.chatLocks[chatIndex(updateChat(&u), len(a.chatLocks))]
		mu.Lock()
		err = a.handleUpdate(r.Context(), box.h, &u)
		mu.Unlock()
		if err != nil {
			a.log.Warn("webhook update not handled; Telegram will retry", "update_id", u.ID, "err", err)
			http.Error(w, "try again", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}
