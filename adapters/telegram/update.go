package telegram

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// Texts the adapter says by itself (everything else comes from the bridge).
const (
	refusalText = "Hello! This bot is for the support team only, so it cannot help you here. " +
		"If you need help, please use the chat on our website."
	refusalToast  = "This bot is for the support team only."
	badButtonText = "This button is no longer valid. Send /chats to see your chats."
	failedText    = "Sorry, that did not work. Please try again in a moment."
)

// refusalTTL is how long a stranger is not told again.
const refusalTTL = 24 * time.Hour

// transientError marks a failure worth handling the update again for.
// storage is set when Redis or the bridge's storage was unavailable: the
// update is then retried for as long as the outage lasts, never given up.
type transientError struct {
	err     error
	storage bool
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func transient(op string, err error) error { return &transientError{err: errf(op, err)} }

// storageDown is a transient failure of Redis or the bridge's storage.
func storageDown(op string, err error) error {
	return &transientError{err: errf(op, err), storage: true}
}

// isStorageOutage reports whether err says storage is unavailable (as
// opposed to, say, a file Telegram would not give us).
func isStorageOutage(err error) bool {
	var t *transientError
	return errors.As(err, &t) && t.storage || errors.Is(err, bridge.ErrUnavailable)
}

func isTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t) || errors.Is(err, bridge.ErrUnavailable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// handleUpdate acts on an update. It returns an error only when handling
// it again later may succeed (storage away, Telegram unreachable, or
// another instance handling the same update right now): the bridge's
// claim on the update (Action.DedupKey) is then dropped or still busy, and
// the repeat is acted on once. Updates that never reach the bridge
// (strangers, foreign buttons) are safe to repeat.
func (a *Adapter) handleUpdate(ctx context.Context, h bridge.Host, u *models.Update) error {
	err := a.process(ctx, h, u)
	if err != nil && !isTransient(err) {
		a.log.Warn("update failed", "update_id", u.ID, "err", err)
		return nil
	}
	return err
}

func (a *Adapter) process(ctx context.Context, h bridge.Host, u *models.Update) error {
	switch {
	case u.Message != nil:
		return a.onMessage(ctx, h, u.ID, u.Message)
	case u.CallbackQuery != nil:
		return a.onCallback(ctx, h, u.ID, u.CallbackQuery)
	}
	return nil
}

func dedupKey(updateID int64) string { return "telegram:" + strconv.FormatInt(updateID, 10) }

// groupProperty finds the property whose forum group chat is.
func (a *Adapter) groupProperty(chat int64) (presence.PropertyID, bool) {
	for p, g := range a.cfg.Groups {
		if g == chat {
			return p, true
		}
	}
	return "", false
}

func (a *Adapter) onMessage(ctx context.Context, h bridge.Host, updateID int64, m *models.Message) error {
	if m.From == nil || m.From.IsBot {
		return nil
	}
	where := place{chat: m.Chat.ID}
	private := m.Chat.Type == models.ChatTypePrivate
	if !private {
		if _, ok := a.groupProperty(m.Chat.ID); !ok {
			return nil // a group we were added to but do not serve
		}
		where.shared = true
		if m.IsTopicMessage {
			where.thread = m.MessageThreadID
		}
	}
	agent, ok := a.agentByUser(m.From.ID)
	if !ok {
		return a.refuse(ctx, m.From.ID, where)
	}
	// What the agent answered: the chat's topic, or the message replied
	// to; the bridge finds its chat. Written in the group, the team sees it
	// there already.
	act := bridge.Action{Surface: surface, Agent: agent.ID, DedupKey: dedupKey(updateID), Shared: where.shared}
	if where.thread != 0 || m.ReplyToMessage != nil {
		ref := bridge.RemoteRef{Conversation: strconv.FormatInt(m.Chat.ID, 10)}
		if where.thread != 0 {
			ref.Thread = strconv.Itoa(where.thread)
		}
		if m.ReplyToMessage != nil {
			ref.Message = strconv.Itoa(m.ReplyToMessage.ID)
		}
		act.ReplyTo = &ref
	}
	text := m.Text
	if text == "" {
		text = m.Caption
	}
	cmd, args, isCmd := parseCommand(text, a.botName())
	if hasFile(m) && !isCmd && act.ReplyTo != nil {
		// A file is stored for its chat before the bridge sees the action.
		chat, err := h.ChatOf(ctx, surface, *act.ReplyTo)
		if err != nil {
			return storageDown("find chat of file", err)
		}
		act.Chat = chat
	}
	switch {
	case isCmd && cmd == "":
		return nil // "/cmd@OtherBot" in a group
	case isCmd:
		act.Kind, act.Command, act.Args = bridge.ActCommand, cmd, args
	case hasFile(m) && act.Chat == "" && where.shared:
		// Talk in the group outside a chat's topic: activity, not a reply.
		act.Kind = bridge.ActActivity
	case hasFile(m) && act.Chat == "":
		// A file needs its chat to be stored in; the current chat is the
		// bridge's to know, so the agent is asked to reply instead.
		a.answer(ctx, where, bridge.Reply{Text: "To send a file, reply to one of the visitor's messages with it."})
		act.Kind, act.Text = bridge.ActActivity, ""
		if text != "" {
			act.Kind, act.Text = bridge.ActMessage, text
		}
	case text != "" || hasFile(m):
		act.Kind, act.Text = bridge.ActMessage, text
		if hasFile(m) {
			att, err := a.fetchAttachment(ctx, h, act.Chat, m)
			if err != nil {
				if isTransient(err) {
					return err
				}
				a.log.Warn("agent file not passed on", "agent_id", agent.ID, "err", err)
				a.answer(ctx, where, bridge.Reply{Text: "Your file could not be passed on: " + err.Error()})
				if text == "" {
					act.Kind = bridge.ActActivity
				}
			} else {
				act.Attachment = att
			}
		}
	default:
		act.Kind = bridge.ActActivity // a sticker, a location…: still activity
	}
	reply, err := h.Handle(ctx, act)
	if err != nil {
		// The bridge answers every business outcome with a Reply; an error is
		// storage trouble, so the update is handled again later.
		return storageDown("handle "+string(act.Kind), err)
	}
	a.answer(ctx, where, reply)
	return nil
}

// refuse tells a stranger, once a day, that the bot is for the team only.
func (a *Adapter) refuse(ctx context.Context, user int64, where place) error {
	first, err := a.rdb.SetNX(ctx, a.keys.refused(user), "1", refusalTTL).Result()
	if err != nil {
		return storageDown("refusal", err)
	}
	if first {
		a.log.Info("refused a user who is not an agent", "telegram_user_id", user)
		a.answer(ctx, where, bridge.Reply{Text: refusalText})
	}
	return nil
}

// parseCommand splits "/cmd@Bot args". ok is false for plain text (and for
// "//note", an internal note). cmd is "" when the command names another bot.
func parseCommand(text, botName string) (cmd, args string, ok bool) {
	if !strings.HasPrefix(text, "/") {
		return "", "", false
	}
	head, rest, _ := strings.Cut(text, " ")
	if i := strings.IndexAny(head, "\n\t"); i >= 0 {
		head, rest = head[:i], head[i+1:]+" "+rest
	}
	name, target, hasTarget := strings.Cut(head[1:], "@")
	if name == "" || len(name) > 32 {
		return "", "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "", "", false
		}
	}
	if hasTarget && botName != "" && !strings.EqualFold(target, botName) {
		return "", "", true
	}
	return strings.ToLower(name), strings.TrimSpace(rest), true
}

func (a *Adapter) onCallback(ctx context.Context, h bridge.Host, updateID int64, cq *models.CallbackQuery) error {
	agent, ok := a.agentByUser(cq.From.ID)
	if !ok {
		a.answerCallback(ctx, cq.ID, refusalToast)
		return nil
	}
	kind, chat, ok := parseCallback(cq.Data)
	if !ok {
		a.answerCallback(ctx, cq.ID, badButtonText)
		return nil
	}
	act := bridge.Action{Kind: kind, Surface: surface, Agent: agent.ID, Chat: chat, DedupKey: dedupKey(updateID)}
	reply, err := h.Handle(ctx, act)
	if errors.Is(err, bridge.ErrInProgress) {
		return storageDown("handle "+string(kind), err) // the repeat of a press another instance is handling
	}
	if err != nil {
		// A press is not retried behind the agent's back: they are told to press again.
		a.log.Warn("button not handled", "agent_id", agent.ID, "kind", kind, "err", err)
		a.answerCallback(ctx, cq.ID, failedText)
		return nil
	}
	a.answerCallback(ctx, cq.ID, reply.Text)
	if len(reply.Choices) > 0 || textLen(reply.Text) > 200 {
		a.answer(ctx, callbackPlace(cq), reply)
	}
	return nil
}

// callbackPlace is where to answer a button at length: the message's chat
// and topic when Telegram still shows it, else the agent's private chat.
func callbackPlace(cq *models.CallbackQuery) place {
	switch {
	case cq.Message.Message != nil:
		m := cq.Message.Message
		p := place{chat: m.Chat.ID}
		if m.IsTopicMessage {
			p.thread = m.MessageThreadID
		}
		return p
	case cq.Message.InaccessibleMessage != nil && cq.Message.InaccessibleMessage.Chat.ID != 0:
		return place{chat: cq.Message.InaccessibleMessage.Chat.ID}
	}
	return place{chat: cq.From.ID}
}

func hasFile(m *models.Message) bool { return m.Document != nil || len(m.Photo) > 0 }
