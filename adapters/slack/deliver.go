package slack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/onduty/onduty/bridge"
)

// defaultRetryAfter is the wait after a 429 that did not say how long.
const defaultRetryAfter = 30 * time.Second

// maxPaceWait is the longest Deliver sleeps to keep a channel's pace; a
// longer wait is handed back to the outbox as a RetryAfterError.
const maxPaceWait = 5 * time.Second

// permanent are Web API errors that no retry can fix.
var permanent = map[string]bool{
	"channel_not_found": true, "not_in_channel": true, "is_archived": true, "channel_is_archived": true,
	"invalid_blocks": true, "invalid_blocks_format": true, "msg_too_long": true, "no_text": true,
	"too_many_attachments": true, "invalid_arguments": true, "invalid_arg_name": true,
	"user_not_found": true, "user_not_in_channel": true, "cannot_dm_bot": true,
	"message_not_found": true, "cant_update_message": true, "edit_window_closed": true,
	"restricted_action": true, "messages_tab_disabled": true,
}

// steps walks a delivery's posts in order. Each post makes one object; the
// ones an earlier attempt made (Delivery.Done) are skipped, so a retry
// continues after them, and what this attempt makes is returned to the
// bridge (made).
type steps struct {
	done, made []bridge.RemoteRef
}

// step runs post unless an earlier attempt made its object, and returns
// that object.
func (s *steps) step(post func() (bridge.RemoteRef, error)) (bridge.RemoteRef, error) {
	if len(s.done) > 0 {
		r := s.done[0]
		s.done = s.done[1:]
		return r, nil
	}
	r, err := post()
	if err == nil {
		s.made = append(s.made, r)
	}
	return r, err
}

// rootMadeHere reports whether an earlier attempt of this delivery posted
// the chat's root: its steps then start with the root again (skipped).
func rootMadeHere(d bridge.Delivery) bool {
	return len(d.Done) > 0 && d.Done[0].Role == bridge.RefThread
}

// Deliver shows one outbox item and returns what it posted: a chat's root
// message (bridge.RefThread: the message its thread hangs off, with the
// visitor's first message in Extra to redraw it) and the messages posted
// in the thread or a DM (bridge.RefMessage). The root is edited through
// d.Thread; a retry skips what d.Done lists. Errors:
// *bridge.RetryAfterError on 429, *bridge.PermanentError when Slack says
// the request itself is wrong, anything else is worth retrying.
func (a *Adapter) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	s := &steps{done: d.Done}
	err := a.deliver(withBacklog(ctx, d.Backlog), d, s)
	if rej, ok := rejected(botTokenKey, err); ok {
		// Kept in the outbox (retried); the adapter stops until the token is fixed.
		a.rejected.Set(rej)
	}
	if err != nil {
		err = classify(err)
		a.log.Debug("slack: delivery failed", "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "err", err)
	}
	return s.made, err
}

func (a *Adapter) deliver(ctx context.Context, d bridge.Delivery, s *steps) error {
	ch, err := a.channel(d)
	if err != nil {
		return err
	}
	switch d.Kind {
	case bridge.KindMessage:
		if d.Message == nil {
			return &bridge.PermanentError{Err: errors.New("slack: message delivery without a message")}
		}
		return a.inThread(ctx, d, ch, s, renderMessage(*d.Message), d.Message.Attachment)
	case bridge.KindNotice:
		if d.Agent == "" && d.Chat.ID != "" {
			return a.inThread(ctx, d, ch, s, renderNotice(d.Text, nil), nil)
		}
		return a.post(ctx, s, ch, "", renderNotice(d.Text, nil))
	case bridge.KindPrompt:
		return a.post(ctx, s, ch, "", renderPrompt(d.Text))
	case bridge.KindOffer:
		if d.Thread != nil && !rootMadeHere(d) {
			// Offered here before (a re-offer, e.g. with Monitor): redraw.
			return a.update(ctx, *d.Thread, renderRoot(a.view(d, d.Thread.Extra))[0])
		}
		first := ""
		if d.Message != nil && d.Message.From == bridge.FromVisitor {
			first = d.Message.Text
		}
		_, err := a.root(ctx, ch, s, a.view(d, first))
		return err
	case bridge.KindTaken, bridge.KindWithdrawn, bridge.KindClosed:
		if d.Thread == nil {
			return nil // never shown here: nothing to edit
		}
		if err := a.update(ctx, *d.Thread, renderRoot(a.view(d, d.Thread.Extra))[0]); err != nil || d.Kind != bridge.KindClosed {
			return err
		}
		return a.inThread(ctx, d, ch, s, renderNotice(closedLine(d), nil), nil)
	}
	return &bridge.PermanentError{Err: fmt.Errorf("slack: unknown delivery kind %q", d.Kind)}
}

// channel is where d goes: the property's channel (d.Agent empty) or the
// agent's DM (by user id: posting there opens it).
func (a *Adapter) channel(d bridge.Delivery) (string, error) {
	if d.Agent == "" {
		if ch := a.cfg.Channels[d.Chat.Property]; ch != "" {
			return ch, nil
		}
		return "", &bridge.PermanentError{Err: fmt.Errorf("slack: property %q has no slack channel", d.Chat.Property)}
	}
	if ag, ok := a.dir.Agent(d.Agent); ok && ag.Account(Surface) != "" {
		return ag.Account(Surface), nil
	}
	return "", &bridge.PermanentError{Err: fmt.Errorf("slack: agent %q has no slack user", d.Agent)}
}

// view is what the chat's root shows after d.
func (a *Adapter) view(d bridge.Delivery, first string) rootView {
	v := rootView{Chat: d.Chat, Property: a.dir.PropertyName(d.Chat.Property), First: first}
	owner := "an agent"
	if d.Chat.Owner != "" {
		owner = a.dir.AgentName(d.Chat.Owner)
	}
	switch {
	case d.Kind == bridge.KindOffer:
		v.Accept, v.Monitor = true, d.Monitor
		v.Status = "Waiting for an agent"
		if d.Chat.Offline {
			v.Status = "Offline message: answer in the thread"
		}
	case d.Kind == bridge.KindTaken:
		v.Status = ":white_check_mark: Taken by *" + escape(cmp.Or(d.TakenBy, owner)) + "*"
	case d.Kind == bridge.KindWithdrawn:
		v.Status = ":no_entry_sign: " + escape(cmp.Or(d.Text, "No longer open"))
	case d.Kind == bridge.KindClosed:
		v.Status = ":lock: " + escape(closedLine(d))
	case d.Chat.State == bridge.Closed:
		v.Status = ":lock: Closed"
	case d.Chat.Owner != "":
		v.Status = ":white_check_mark: Taken by *" + escape(owner) + "*"
	}
	return v
}

func closedLine(d bridge.Delivery) string {
	if d.Text == "" {
		return "Chat closed."
	}
	return "Chat closed: " + d.Text
}

// root posts a chat's root message; pages beyond the first (never for
// texts within the bridge's limits) go into its thread.
func (a *Adapter) root(ctx context.Context, channel string, s *steps, v rootView) (bridge.RemoteRef, error) {
	pages := renderRoot(v)
	r, err := s.step(func() (bridge.RemoteRef, error) {
		ch, ts, err := a.send(ctx, channel, "", pages[0])
		return bridge.RemoteRef{Role: bridge.RefThread, Conversation: ch, Message: ts, Thread: ts, Extra: v.First}, err
	})
	if err != nil {
		return r, err
	}
	return r, a.post(ctx, s, r.Conversation, r.Thread, pages[1:])
}

// inThread posts pages into the chat's thread, starting it if needed, then
// the message's file if it has one.
func (a *Adapter) inThread(ctx context.Context, d bridge.Delivery, channel string, s *steps, pages []rendered, att *bridge.Attachment) error {
	var r bridge.RemoteRef
	if d.Thread != nil && !rootMadeHere(d) {
		r = *d.Thread
	} else {
		var err error
		if r, err = a.root(ctx, channel, s, a.view(bridge.Delivery{Kind: bridge.KindMessage, Chat: d.Chat}, "")); err != nil {
			return err
		}
	}
	if err := a.post(ctx, s, r.Conversation, r.Thread, pages); err != nil || att == nil {
		return err
	}
	// The file is the last step: once it is up, the delivery is done.
	return a.uploadFile(ctx, d.Chat.ID, *att, r.Conversation, r.Thread)
}

// post sends pages to a channel, a user's DM or a thread (threadTS).
func (a *Adapter) post(ctx context.Context, s *steps, channel, threadTS string, pages []rendered) error {
	for _, p := range pages {
		if _, err := s.step(func() (bridge.RemoteRef, error) {
			ch, ts, err := a.send(ctx, channel, threadTS, p)
			return bridge.RemoteRef{Role: bridge.RefMessage, Conversation: ch, Message: ts, Thread: threadTS}, err
		}); err != nil {
			return err
		}
	}
	return nil
}

// send is one chat.postMessage, paced per channel.
func (a *Adapter) send(ctx context.Context, channel, threadTS string, p rendered) (string, string, error) {
	if err := a.pace.wait(ctx, channel); err != nil {
		return "", "", err
	}
	opts := []slackapi.MsgOption{slackapi.MsgOptionText(p.Text, false), slackapi.MsgOptionBlocks(p.Blocks...)}
	if threadTS != "" {
		opts = append(opts, slackapi.MsgOptionTS(threadTS))
	}
	var ch, ts string
	err := bridge.Call(ctx, func(ctx context.Context) (err error) {
		ch, ts, err = a.api.PostMessageContext(ctx, channel, opts...)
		return err
	})
	if err != nil {
		a.pace.penalize(channel, err)
		return "", "", fmt.Errorf("slack: chat.postMessage: %w", err)
	}
	if ch == "" {
		ch = channel
	}
	return ch, ts, nil
}

// update is one chat.update of a root message, paced per channel.
func (a *Adapter) update(ctx context.Context, r bridge.RemoteRef, p rendered) error {
	if err := a.pace.wait(ctx, r.Conversation); err != nil {
		return err
	}
	err := bridge.Call(ctx, func(ctx context.Context) error {
		_, _, _, err := a.api.UpdateMessageContext(ctx, r.Conversation, r.Message,
			slackapi.MsgOptionText(p.Text, false), slackapi.MsgOptionBlocks(p.Blocks...))
		return err
	})
	if err != nil {
		a.pace.penalize(r.Conversation, err)
		return fmt.Errorf("slack: chat.update: %w", err)
	}
	return nil
}

// classify turns Web API failures into the bridge's retry vocabulary.
func classify(err error) error {
	var ra *bridge.RetryAfterError
	var pe *bridge.PermanentError
	if errors.As(err, &ra) || errors.As(err, &pe) {
		return err
	}
	var rl *slackapi.RateLimitedError
	if errors.As(err, &rl) {
		after := rl.RetryAfter
		if after <= 0 {
			after = defaultRetryAfter
		}
		return &bridge.RetryAfterError{After: after, Err: err}
	}
	var sc slackapi.StatusCodeError
	if errors.As(err, &sc) {
		switch {
		case sc.Code == http.StatusTooManyRequests:
			return &bridge.RetryAfterError{After: defaultRetryAfter, Err: err}
		case sc.Code >= 500:
			return err
		case sc.Code == http.StatusBadRequest || sc.Code == http.StatusNotFound || sc.Code == http.StatusRequestEntityTooLarge:
			return &bridge.PermanentError{Err: err}
		}
		return err
	}
	var se slackapi.SlackErrorResponse
	if errors.As(err, &se) {
		switch {
		case se.Err == "ratelimited" || se.Err == "rate_limited":
			return &bridge.RetryAfterError{After: defaultRetryAfter, Err: err}
		case permanent[se.Err]:
			return &bridge.PermanentError{Err: err}
		}
	}
	return err // 5xx, network, Redis: worth retrying
}
