package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/onduty/onduty/bridge"
)

// maxUpdateAttempts bounds how often one update is retried after transient
// failures before it is given up (and logged) so later updates can flow.
// An outage of Redis or the bridge's storage does not count: the update
// (and every later one) waits for it to end, however long it lasts.
const maxUpdateAttempts = 8

// allowedUpdates are the update types the adapter acts on.
const allowedUpdates = `["message","callback_query"]`

// poll long-polls getUpdates and hands each update to the worker of its
// chat (dispatch.go): one chat's updates are handled in order, different
// chats' at once, so a slow answer to one agent holds no other agent. The
// offset moves past an update only after it was handled (or given up), so
// an update being handled when the process dies comes again (and the update
// claim stops a repeat). poll returns once its workers have stopped.
//
// The library's own poller confirms updates before its handlers finish, so
// the adapter makes this one request itself and uses the library for the rest.
//
// It returns a *bridge.RejectedError when Telegram stops accepting the
// token (revoked while running); every other failure is retried.
func (a *Adapter) poll(ctx context.Context, h bridge.Host) error {
	win := newWindow()
	workers := newChatQueues(chatWorkers, maxPending)
	defer workers.close()
	failures := 0
	for ctx.Err() == nil {
		// While updates are being handled, Telegram hands them again at
		// once: ask only when they are done, or now and then for newer ones.
		win.settle(ctx, busyRepoll)
		offset, busy := win.offset()
		wait := a.cfg.PollTimeout
		if busy {
			wait = 0
		}
		ups, err := a.getUpdates(ctx, offset, wait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var rej *bridge.RejectedError
			if errors.As(err, &rej) {
				return err
			}
			pause := a.retryWait(failures)
			var ra *bridge.RetryAfterError
			if errors.As(err, &ra) {
				pause = ra.After
			}
			failures++
			a.log.Warn("getUpdates failed", "err", err, "retry_in", pause)
			sleep(ctx, pause)
			continue
		}
		failures = 0
		for i := range ups {
			u := &ups[i]
			if !win.take(u.ID) {
				continue // dispatched before, maybe still being handled
			}
			workers.run(updateChat(u), func() {
				defer win.done(u.ID)
				a.handlePolled(ctx, h, u)
			})
		}
	}
	return nil
}

// handlePolled handles a polled update, trying again after transient
// failures (the chat's later updates wait behind it): up to
// maxUpdateAttempts times, and for as long as storage is unavailable.
func (a *Adapter) handlePolled(ctx context.Context, h bridge.Host, u *models.Update) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := a.handleUpdate(ctx, h, u)
		if err == nil || ctx.Err() != nil {
			return
		}
		if attempt >= maxUpdateAttempts && !isStorageOutage(err) {
			a.log.Error("update given up after retries", "update_id", u.ID, "err", err)
			return
		}
		a.log.Warn("update not handled; will retry", "update_id", u.ID, "attempt", attempt, "err", err)
		sleep(ctx, a.retryWait(attempt))
	}
}

// apiResponse is the Bot API's answer envelope.
type apiResponse struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

// getUpdates asks for updates from offset, waiting up to wait (at most
// PollTimeout; 0 answers at once).
func (a *Adapter) getUpdates(ctx context.Context, offset int64, wait time.Duration) ([]models.Update, error) {
	form := url.Values{}
	if offset > 0 {
		form.Set("offset", strconv.FormatInt(offset, 10))
	}
	timeout := 0
	if wait > 0 {
		timeout = max(1, int(wait/time.Second))
	}
	form.Set("timeout", strconv.Itoa(timeout))
	form.Set("allowed_updates", allowedUpdates)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.PollTimeout+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.methodURL("getUpdates"), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("telegram: getUpdates: %w", a.redact(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("telegram: getUpdates: %w", a.redact(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("telegram: getUpdates: read: %w", a.redact(err))
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("telegram: getUpdates: HTTP %d, undecodable answer: %w", resp.StatusCode, err)
	}
	if !r.OK {
		err := fmt.Errorf("telegram: getUpdates: %d %s", r.ErrorCode, r.Description)
		if r.ErrorCode == http.StatusTooManyRequests {
			return nil, &bridge.RetryAfterError{After: retryAfter(r.Parameters.RetryAfter), Err: err}
		}
		if rej, ok := rejected(r.ErrorCode, err); ok {
			return nil, rej
		}
		return nil, err
	}
	var ups []models.Update
	if err := json.Unmarshal(r.Result, &ups); err != nil {
		return nil, fmt.Errorf("telegram: getUpdates: decode updates: %w", err)
	}
	return ups, nil
}

func (a *Adapter) methodURL(method string) string {
	return a.cfg.APIURL + "/bot" + a.cfg.Token + "/" + method
}

// redact keeps the token out of errors (net/http puts the URL in them).
func (a *Adapter) redact(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = strings.ReplaceAll(ue.URL, a.cfg.Token, "***")
	}
	if strings.Contains(err.Error(), a.cfg.Token) {
		return errors.New(strings.ReplaceAll(err.Error(), a.cfg.Token, "***"))
	}
	return err
}
