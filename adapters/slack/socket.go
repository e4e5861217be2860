package slack

import (
	"context"
	"sync"

	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// readSocket queues the work of every Socket Mode envelope and acknowledges
// it. Events and buttons are acknowledged once handled (or after handleWait);
// a slash command's ack carries the answer when the bridge gives it within
// syncWait.
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
		case socketmode.EventTypeEventsAPI, socketmode.EventTypeInteractive:
			j, err := a.queueEnvelope(ctx, evt)
			if err != nil {
				return
			}
			a.ackWhenHandled(ctx, smc, evt.Request, j, wg)
		case socketmode.EventTypeSlashCommand:
			cmd, ok := evt.Data.(slackapi.SlashCommand)
			if !ok {
				a.ack(ctx, smc, evt.Request, nil)
				continue
			}
			ans, err := a.onCommand(ctx, cmd, commandKey(cmd, "", evt.Request.EnvelopeID))
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

// queueEnvelope queues the work of an event or a button press. What it
// cannot read needs no handling: its channel is closed already.
func (a *Adapter) queueEnvelope(ctx context.Context, evt socketmode.Event) (*job, error) {
	switch d := evt.Data.(type) {
	case slackevents.EventsAPIEvent:
		return a.onEventsAPI(ctx, d)
	case slackapi.InteractionCallback:
		return a.onInteraction(ctx, d, interactionKey(d))
	}
	return handled, nil
}

// ackWhenHandled acknowledges req once its work is done (see handleWait),
// without holding up the reading of further envelopes.
func (a *Adapter) ackWhenHandled(ctx context.Context, smc *socketmode.Client, req *socketmode.Request, j *job, wg *sync.WaitGroup) {
	wg.Go(func() {
		if a.waitHandled(ctx, j) {
			a.ack(ctx, smc, req, nil)
		}
	})
}

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
// commandKey de-duplicates a slash command: by its trigger_id, which Slack
// makes unique per invocation; without one, by the request's signature
// (which covers the timestamp and the body) in events mode, or else by the
// Socket Mode envelope. A replayed command within Slack's 5-minute
// signature window is then applied once.
func commandKey(cmd slackapi.SlashCommand, signature, envelope string) string {
	switch {
	case cmd.TriggerID != "":
		return "slack:trigger:" + cmd.TriggerID
	case signature != "":
		return "slack:cmdsig:" + signature
	case envelope != "":
		return "slack:cmdenv:" + envelope
	}
	return ""
}

func interactionKey(cb slackapi.InteractionCallback) string {
	if cb.TriggerID == "" {
		return ""
	}
	return "slack:trigger:" + cb.TriggerID
}
