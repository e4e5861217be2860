package telegram

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-telegram/bot"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/lease"
)

// runPolling tries to take the polling lease every LeaseTTL/3; while held,
// it polls. It returns when ctx is done, with the lease released, or with
// a *bridge.RejectedError once Telegram stops accepting the token.
func (a *Adapter) runPolling(ctx context.Context, h bridge.Host) error {
	every := a.cfg.LeaseTTL / 3
	for {
		ok, err := a.rdb.SetNX(ctx, a.keys.lease(), a.owner, a.cfg.LeaseTTL).Result()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			a.log.Warn("polling lease: redis", "err", err)
		case ok:
			if err := a.lead(ctx, h); err != nil {
				return err
			}
		}
		if !sleep(ctx, every) {
			return nil
		}
	}
}

// lead polls while the lease holds: a renewal goroutine cancels the polling
// the moment the lease is lost (or cannot be confirmed). It returns poll's
// error, the lease released.
func (a *Adapter) lead(ctx context.Context, h bridge.Host) error {
	a.log.Info("polling lease taken; polling Telegram", "owner", a.owner)
	a.leading.Store(true)
	defer a.leading.Store(false)
	term, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		a.keepLease(term)
	}()
	// A webhook left from webhook mode makes getUpdates fail with 409.
	if _, err := a.bot.DeleteWebhook(term, &bot.DeleteWebhookParams{}); err != nil && term.Err() == nil {
		a.log.Warn("deleteWebhook failed", "err", classify("delete webhook", err))
	}
	perr := a.poll(term, h)
	cancel()
	wg.Wait()
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer rcancel()
	if err := lease.Release(rctx, a.rdb, a.keys.lease(), a.owner); err != nil {
		a.log.Warn("polling lease: release", "err", err)
	}
	a.log.Info("polling stopped", "owner", a.owner)
	return perr
}

// keepLease renews the lease every LeaseTTL/2 (its script is three Redis
// commands, the bulk of an idle instance's traffic) and returns when it is lost,
// when Redis cannot confirm it, or when ctx is done.
func (a *Adapter) keepLease(ctx context.Context) {
	t := time.NewTicker(a.cfg.LeaseTTL / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A renewal that hangs must not outlive the lease it renews.
		rctx, cancel := context.WithTimeout(ctx, a.cfg.LeaseTTL/3)
		held, err := lease.Renew(rctx, a.rdb, a.keys.lease(), a.owner, a.cfg.LeaseTTL)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || !held {
			if err == nil {
				err = errors.New("held by another instance")
			}
			a.log.Warn("polling lease lost; stop polling", "err", err)
			return
		}
	}
}
