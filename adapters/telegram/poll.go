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

// poll long-polls getUpdates and handles each update in order. The offset
// moves past an update only after it was handled, so an update being handled
// when the process dies comes again (and the update claim stops a repeat).
//
// The library's own poller confirms updates before its handlers finish, so
// the adapter makes this one request itself and uses the library for the rest.
//
// It returns a *bridge.RejectedError when Telegram stops accepting the
// token (revoked while running); every other failure is retried.
func (a *Adapter) poll(ctx context.Context, h bridge.Handler) error {
	var offset int64
	failures := 0
	attempts := map[int64]int{}
	for ctx.Err() == nil {
		ups, err := a.getUpdates(ctx, offset)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var rej *bridge.RejectedError
			if errors.As(err, &rej) {
				return err
			}
			wait := a.retryWait(failures)
			var ra *bridge.RetryAfterError
			if errors.As(err, &ra) {
				wait = ra.After
			}
			failures++
			a.log.Warn("getUpdates failed", "err", err, "retry_in", wait)
			sleep(ctx, wait)
			continue
		}
		failures = 0
	updates:
		for i := range ups {
			u := &ups[i]
			if err := a.handleUpdate(ctx, h, u); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				attempts[u.ID]++
				if attempts[u.ID] < maxUpdateAttempts || isStorageOutage(err) {
					a.log.Warn("update not handled; will retry", "update_id", u.ID, "attempt", attempts[u.ID], "err", err)
					sleep(ctx, a.retryWait(attempts[u.ID]))
					break updates
				}
				a.log.Error("update given up after retries", "update_id", u.ID, "err", err)
			}
			delete(attempts, u.ID)
			offset = u.ID + 1
		}
	}
	return nil
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

// getUpdates asks for updates from offset, waiting up to PollTimeout.
func (a *Adapter) getUpdates(ctx context.Context, offset int64) ([]models.Update, error) {
	form := url.Values{}
	if offset > 0 {
		form.Set("offset", strconv.FormatInt(offset, 10))
	}
	form.Set("timeout", strconv.Itoa(max(1, int(a.cfg.PollTimeout/time.Second))))
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
