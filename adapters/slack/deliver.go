package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	slackapi "github.com/slack-go/slack"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
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

// where is a chat's place on Slack: the property's channel (agent empty) or
// an agent's DM.
type where struct {
	agent   presence.AgentID
	channel string // channel id, or the user id for a DM not yet opened
}

// root is the message a chat's thread hangs off.
type root struct {
	Channel string
	TS      string
	First   string
}

// Deliver shows one outbox item. Items already shown (by d.ID) are skipped.
// Errors: *bridge.RetryAfterError on 429, *bridge.PermanentError when Slack
// says the request itself is wrong, anything else is worth retrying.
func (a *Adapter) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	return nil, a.deliverOne(ctx, d)
}

func (a *Adapter) deliverOne(ctx context.Context, d bridge.Delivery) error {
	err := a.deliver(withBacklog(ctx, d.Backlog), d)
	if rej, ok := rejected(botTokenKey, err); ok {
		// Kept in the outbox (retried); the adapter stops until the token is fixed.
		a.rejected.Set(rej)
	}
	if err != nil {
		err = classify(err)
		a.log.Debug("slack: delivery failed", "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "err", err)
	}
	return err
}

func (a *Adapter) deliver(ctx context.Context, d bridge.Delivery) error {
	w, err := a.where(d)
	if err != nil {
		return err
	}
	// Posts record each page as shown (inThread, post), so a retry skips what
	// was shown without a record of the whole item: on the relay's hot path
	// that saves two Redis round trips per message.
	switch d.Kind {
	case bridge.KindMessage:
		if d.Message == nil {
			return &bridge.PermanentError{Err: errors.New("slack: message delivery without a message")}
		}
		return a.inThread(ctx, d, w, "msg", renderMessage(*d.Message), d.Message.Attachment)
	case bridge.KindNotice:
		if w.agent == "" && d.Chat.ID != "" {
			return a.inThread(ctx, d, w, "notice", renderNotice(d.Text, nil), nil)
		}
		return a.post(ctx, d.ID, w.channel, "", renderNotice(d.Text, nil))
	case bridge.KindPrompt:
		return a.post(ctx, d.ID, w.channel, "", renderPrompt(d.Text))
	}
	// Root messages are recorded as a whole, so a retry neither posts nor
	// redraws them again.
	return a.once(ctx, d.ID, func() error {
		switch d.Kind {
		case bridge.KindOffer:
			return a.deliverOffer(ctx, d, w)
		case bridge.KindTaken, bridge.KindWithdrawn:
			return a.updateRoot(ctx, d, w)
		case bridge.KindClosed:
			r, ok, err := a.loadRoot(ctx, d.Chat.ID, w)
			if err != nil || !ok {
				return err // never shown here: nothing to close
			}
			if err := a.update(ctx, r, renderRoot(a.view(d, r.First))[0]); err != nil {
				return err
			}
			return a.inThread(ctx, d, w, "closed", renderNotice(closedLine(d), nil), nil)
		}
		return &bridge.PermanentError{Err: fmt.Errorf("slack: unknown delivery kind %q", d.Kind)}
	})
}

func (a *Adapter) where(d bridge.Delivery) (where, error) {
	if d.Agent == "" {
		ch := a.cfg.Channels[d.Chat.Property]
		if ch == "" {
			return where{}, &bridge.PermanentError{Err: fmt.Errorf("slack: property %q has no slack channel", d.Chat.Property)}
		}
		return where{channel: ch}, nil
	}
	ag, ok := a.dir.Agent(d.Agent)
	if !ok || ag.Account(Surface) == "" {
		return where{}, &bridge.PermanentError{Err: fmt.Errorf("slack: agent %q has no slack user", d.Agent)}
	}
	return where{agent: d.Agent, channel: ag.Account(Surface)}, nil
}

// once runs fn unless step id was done before, and records it when done.
func (a *Adapter) once(ctx context.Context, id string, fn func() error) error {
	if id == "" {
		return fn()
	}
	k := a.keys.delivered(id)
	n, err := a.rdb.Exists(ctx, k).Result()
	if err != nil {
		return fmt.Errorf("slack: delivery record: %w", err)
	}
	if n > 0 {
		return nil
	}
	if err := fn(); err != nil {
		return err
	}
	if err := a.rdb.Set(ctx, k, "1", dedupTTL).Err(); err != nil {
		// Shown but not recorded: a retry may show it twice, which beats losing it.
		a.log.Warn("slack: record delivery", "delivery_id", id, "err", err)
	}
	return nil
}

func (a *Adapter) loadRoot(ctx context.Context, chat bridge.ChatID, w where) (root, bool, error) {
	m, err := a.rdb.HGetAll(ctx, a.keys.root(chat, w.agent)).Result()
	if err != nil {
		return root{}, false, fmt.Errorf("slack: load root: %w", err)
	}
	if m["ts"] == "" {
		return root{}, false, nil
	}
	return root{Channel: m["channel"], TS: m["ts"], First: m["first"]}, true, nil
}

func (a *Adapter) saveRoot(ctx context.Context, chat bridge.ChatID, w where, r root) error {
	rk, tk := a.keys.root(chat, w.agent), a.keys.thread(r.Channel, r.TS)
	_, err := a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, rk, "channel", r.Channel, "ts", r.TS, "first", r.First)
		p.Expire(ctx, rk, rootTTL)
		p.Set(ctx, tk, string(chat), rootTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("slack: save root: %w", err)
	}
	return nil
}

func (a *Adapter) view(d bridge.Delivery, first string) rootView {
	v := rootView{Chat: d.Chat, Property: a.dir.PropertyName(d.Chat.Property), First: first}
	switch d.Kind {
	case bridge.KindOffer:
		v.Accept, v.Monitor = true, d.Monitor
		v.Status = "Waiting for an agent"
		if d.Chat.Offline {
			v.Status = "Offline message: answer in the thread"
		}
	case bridge.KindTaken:
		v.Status = ":white_check_mark: Taken by *" + escape(takenBy(d, a.dir)) + "*"
	case bridge.KindWithdrawn:
		v.Status = ":no_entry_sign: " + escape(orDefault(d.Text, "No longer open"))
	case bridge.KindClosed:
		v.Status = ":lock: " + escape(closedLine(d))
	default:
		switch {
		case d.Chat.State == bridge.Closed:
			v.Status = ":lock: Closed"
		case d.Chat.Owner != "":
			v.Status = ":white_check_mark: Taken by *" + escape(agentDisplay(d.Chat.Owner, a.dir)) + "*"
		}
	}
	return v
}

func takenBy(d bridge.Delivery, dir *presence.Directory) string {
	if d.TakenBy != "" {
		return d.TakenBy
	}
	return agentDisplay(d.Chat.Owner, dir)
}

func agentDisplay(id presence.AgentID, dir *presence.Directory) string {
	if id == "" {
		return "an agent"
	}
	return dir.AgentName(id)
}

func closedLine(d bridge.Delivery) string {
	return "Chat closed" + orSuffix(d.Text)
}

func orSuffix(s string) string {
	if s == "" {
		return "."
	}
	return ": " + s
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// deliverOffer posts a chat's root message with its buttons, or redraws it
// when the chat was offered here before (a re-offer, e.g. with Monitor).
func (a *Adapter) deliverOffer(ctx context.Context, d bridge.Delivery, w where) error {
	r, ok, err := a.loadRoot(ctx, d.Chat.ID, w)
	if err != nil {
		return err
	}
	if ok {
		return a.update(ctx, r, renderRoot(a.view(d, r.First))[0])
	}
	first := ""
	if d.Message != nil && d.Message.From == bridge.FromVisitor {
		first = d.Message.Text
	}
	_, err = a.newRoot(ctx, d, w, a.view(d, first))
	return err
}

// newRoot posts a chat's root message; pages beyond the first (never for
// texts within the bridge's limits) go into its thread.
func (a *Adapter) newRoot(ctx context.Context, d bridge.Delivery, w where, v rootView) (root, error) {
	pages := renderRoot(v)
	channel, ts, err := a.send(ctx, w.channel, "", pages[0])
	if err != nil {
		return root{}, err
	}
	r := root{Channel: channel, TS: ts, First: v.First}
	if err := a.saveRoot(ctx, d.Chat.ID, w, r); err != nil {
		return root{}, err
	}
	for i, p := range pages[1:] {
		if err := a.once(ctx, d.ID+":root:"+strconv.Itoa(i+1), func() error {
			_, _, err := a.send(ctx, r.Channel, r.TS, p)
			return err
		}); err != nil {
			return root{}, err
		}
	}
	return r, nil
}

// updateRoot redraws the root to show the owner or the end, without buttons.
func (a *Adapter) updateRoot(ctx context.Context, d bridge.Delivery, w where) error {
	r, ok, err := a.loadRoot(ctx, d.Chat.ID, w)
	if err != nil {
		return err
	}
	if !ok {
		return nil // never shown here: nothing to edit
	}
	return a.update(ctx, r, renderRoot(a.view(d, r.First))[0])
}

// inThread posts pages into the chat's thread, starting it if needed, then
// the message's file if it has one.
func (a *Adapter) inThread(ctx context.Context, d bridge.Delivery, w where, step string, pages []rendered, att *bridge.Attachment) error {
	r, ok, err := a.loadRoot(ctx, d.Chat.ID, w)
	if err != nil {
		return err
	}
	if !ok {
		view := a.view(bridge.Delivery{Kind: bridge.KindMessage, Chat: d.Chat}, "")
		if r, err = a.newRoot(ctx, bridge.Delivery{ID: d.ID + ":newroot", Chat: d.Chat}, w, view); err != nil {
			return err
		}
	}
	for i, p := range pages {
		if err := a.once(ctx, d.ID+":"+step+":"+strconv.Itoa(i), func() error {
			_, _, err := a.send(ctx, r.Channel, r.TS, p)
			return err
		}); err != nil {
			return err
		}
	}
	if att != nil {
		return a.once(ctx, d.ID+":"+step+":file", func() error {
			return a.uploadFile(ctx, d.Chat.ID, *att, r.Channel, r.TS)
		})
	}
	return nil
}

// post sends pages to a channel (or a user's DM) outside any thread.
func (a *Adapter) post(ctx context.Context, id, channel, threadTS string, pages []rendered) error {
	for i, p := range pages {
		if err := a.once(ctx, id+":post:"+strconv.Itoa(i), func() error {
			_, _, err := a.send(ctx, channel, threadTS, p)
			return err
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
func (a *Adapter) update(ctx context.Context, r root, p rendered) error {
	if err := a.pace.wait(ctx, r.Channel); err != nil {
		return err
	}
	err := bridge.Call(ctx, func(ctx context.Context) error {
		_, _, _, err := a.api.UpdateMessageContext(ctx, r.Channel, r.TS,
			slackapi.MsgOptionText(p.Text, false), slackapi.MsgOptionBlocks(p.Blocks...))
		return err
	})
	if err != nil {
		a.pace.penalize(r.Channel, err)
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

var _ bridge.ChatEraser = (*Adapter)(nil)

// EraseChat deletes what the adapter keeps of a chat: its root messages
// (shared and per agent, with the first message's text) and the thread
// mappings back to the chat.
func (a *Adapter) EraseChat(ctx context.Context, chat bridge.ChatID) error {
	for _, agent := range append([]presence.AgentID{""}, a.dir.Agents()...) {
		rk := a.keys.root(chat, agent)
		m, err := a.rdb.HGetAll(ctx, rk).Result()
		if err != nil {
			return fmt.Errorf("slack: erase: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		keys := []string{rk}
		if m["ts"] != "" {
			keys = append(keys, a.keys.thread(m["channel"], m["ts"]))
		}
		for _, k := range keys {
			if err := a.rdb.Del(ctx, k).Err(); err != nil {
				return fmt.Errorf("slack: erase: %w", err)
			}
		}
	}
	return nil
}
