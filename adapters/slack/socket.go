package slack

import (
	"context"
	"sync"

	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// readSocket acknowledges every Socket Mode envelope and queues its work.
// Events and buttons are acknowledged at once; a slash command's ack carries
// the answer when the bridge gives it within syncWait.
func (a *Adapter) readSocket(ctx context.Context, smc *socketmode.Client, wg *sync.WaitGroup) {
	for {
		var evt socketmode.Event
		select {
		case <-ctx.Done():
			return
		case evt = <-smc.Events:
		}
		switch evt.Type {
		case socketmode.EventTypeConnected:
			a.log.Info("slack socket mode connected")
		case socketmode.EventTypeConnectionError:
			if e, ok := evt.Data.(*slackapi.ConnectionErrorEvent); ok {
				a.log.Warn("slack socket mode connection error", "err", e.ErrorObj, "backoff", e.Backoff)
			}
		case socketmode.EventTypeInvalidAuth:
			a.log.Error("slack socket mode: invalid app token")
		case socketmode.EventTypeErrorBadMessage:
			if e, ok := evt.Data.(*socketmode.ErrorBadMessage); ok {
				a.log.Debug("slack socket mode: unreadable message", "err", e.Cause)
			}
		case socketmode.EventTypeEventsAPI:
			a.ack(ctx, smc, evt.Request, nil)
			ev, ok := evt.Data.(slackevents.EventsAPIEvent)
			if !ok {
				continue
			}
			if err := a.onEventsAPI(ctx, ev); err != nil {
				return
			}
		case socketmode.EventTypeInteractive:
			a.ack(ctx, smc, evt.Request, nil)
			cb, ok := evt.Data.(slackapi.InteractionCallback)
			if !ok {
				continue
			}
			if err := a.onInteraction(ctx, cb, interactionKey(cb)); err != nil {
				return
			}
		case socketmode.EventTypeSlashCommand:
			cmd, ok := evt.Data.(slackapi.SlashCommand)
			if !ok {
				a.ack(ctx, smc, evt.Request, nil)
				continue
			}
			ans, err := a.onCommand(ctx, cmd, "")
			if err != nil {
				return
			}
			req := evt.Request
			wg.Go(func() {
				reply, ok := ans.wait(ctx, a.syncWait)
				var payload any
				if body := commandBody(reply); ok && body != nil {
					payload = body
					// Slack drops Socket Mode responses of 20 KB or more.
					if len(jsonOf(body)) > maxAckBytes {
						payload = nil
						defer a.lateAnswer(ctx, cmd, reply)
					}
				}
				a.ack(ctx, smc, req, payload)
			})
		}
	}
}

// maxAckBytes keeps an ack's payload under Socket Mode's 20 KB limit.
const maxAckBytes = 19 << 10

func (a *Adapter) ack(ctx context.Context, smc *socketmode.Client, req *socketmode.Request, payload any) {
	if req == nil || req.EnvelopeID == "" {
		return
	}
	if err := smc.AckCtx(ctx, req.EnvelopeID, payload); err != nil {
		a.log.Warn("slack socket mode ack", "envelope_id", req.EnvelopeID, "err", err)
	}
}

// interactionKey identifies one button press: Slack gives each interaction
// its own trigger id.
func interactionKey(cb slackapi.InteractionCallback) string {
	if cb.TriggerID == "" {
		return ""
	}
	return "slack:trigger:" + cb.TriggerID
}
