package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/onduty/onduty/bridge"
)

// refusal is what a Slack user who is not a configured agent is told, once a day.
const refusal = "Sorry, you are not set up as an onduty agent, so I can't do anything for you. Ask an admin to add your Slack user id to the configuration."

// onEventsAPI takes one Events API event (from either mode) and queues the
// work it asks for; the channel it returns is closed once that work is done.
// Only messages matter: from an agent they are replies in a chat's thread,
// DMs to the bot, or at least activity.
func (a *Adapter) onEventsAPI(ctx context.Context, ev slackevents.EventsAPIEvent) (*job, error) {
	cb, ok := ev.Data.(*slackevents.EventsAPICallbackEvent)
	if !ok {
		return handled, nil
	}
	msg, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	if !ok || a.ignoreMessage(msg) {
		return handled, nil
	}
	dedup := ""
	if cb.EventID != "" {
		dedup = "slack:" + cb.EventID
	}
	return a.enqueue(ctx, msg.User, func(ctx context.Context, h bridge.Host) bool {
		return a.onMessage(ctx, h, msg, dedup)
	})
}

// ignoreMessage drops what is not a person's new message: bots (ourselves
// included, so nothing loops), edits, deletions, joins.
func (a *Adapter) ignoreMessage(m *slackevents.MessageEvent) bool {
	botUser, botID := a.bot()
	if m.BotID != "" || m.SubType == "bot_message" || m.User == "" || m.User == botUser || (botID != "" && m.BotID == botID) {
		return true
	}
	switch m.SubType {
	case "", "thread_broadcast", "file_share":
		return false
	}
	return true
}

// onMessage hands an agent's message to the bridge; true means (part of)
// it was left to Slack's next try.
func (a *Adapter) onMessage(ctx context.Context, h bridge.Host, m *slackevents.MessageEvent, dedup string) (again bool) {
	log := a.log.With("slack_user", m.User, "channel", m.Channel)
	im := m.ChannelType == slackevents.ChannelTypeIM
	// A message in a thread answers the thread's chat, if it has one: the
	// bridge finds it (ReplyTo), unless it is needed here first.
	var in *bridge.RemoteRef
	if m.ThreadTimeStamp != "" {
		in = &bridge.RemoteRef{Conversation: m.Channel, Thread: m.ThreadTimeStamp}
	}
	chatOf := func() (chat bridge.ChatID, err error) {
		err = a.whileStorageDown(ctx, func() (err error) {
			if chat, err = h.ChatOf(ctx, a.Name(), *in); err != nil {
				log.Warn("slack: thread lookup; trying again", "err", err)
			}
			return err
		})
		return chat, err
	}
	agent, ok := a.dir.AgentByAccount(Surface, m.User)
	if !ok {
		// Strangers talking among themselves in the channel are none of our
		// business; those who talk to the bot or in a chat's thread are told once.
		if im {
			a.refuse(ctx, m.Channel, m.User, m.ThreadTimeStamp)
		} else if in != nil {
			if chat, err := h.ChatOf(ctx, a.Name(), *in); err == nil && chat != "" {
				a.refuse(ctx, m.Channel, m.User, m.ThreadTimeStamp)
			}
		}
		return false
	}
	base := bridge.Action{Surface: a.Name(), Agent: agent.ID, DedupKey: dedup, Kind: bridge.ActActivity}
	acts := []bridge.Action{base}
	var note string
	if im || in != nil {
		text := strings.TrimSpace(plainText(m.Text))
		var chat bridge.ChatID
		var atts []*bridge.Attachment
		if m.Message != nil && len(m.Message.Files) > 0 {
			// Files are stored for their chat before the bridge gets them.
			if in != nil {
				var err error
				if chat, err = chatOf(); err != nil { // the adapter is stopping
					return false
				}
			}
			if chat != "" || im {
				atts, note = a.fetchFiles(ctx, h, chat, m.Message.Files)
			}
		}
		// In a channel's chat thread the team already sees the message; from
		// a DM the bridge copies it into the thread. Talk in a channel thread
		// that is no chat's is activity (the bridge tells).
		base.Shared, base.ReplyTo = !im, in
		acts = messageActions(base, chat, text, atts)
	}
	var replies []string
	for _, act := range acts {
		var reply bridge.Reply
		err := a.whileStorageDown(ctx, func() (err error) {
			reply, err = h.Handle(ctx, act)
			return err
		})
		switch {
		case errors.Is(err, bridge.ErrInProgress):
			again = true // another instance has it now: Slack tries again later
			continue
		case err != nil:
			log.Warn("slack: bridge refused message", "agent_id", agent.ID, "err", err)
			reply = bridge.Reply{Text: failureText(err)}
		}
		if reply.Text != "" {
			replies = append(replies, reply.Text)
		}
	}
	if note != "" {
		replies = append(replies, note)
	}
	if len(replies) > 0 {
		a.ephemeral(ctx, m.Channel, m.User, m.ThreadTimeStamp, bridge.Reply{Text: strings.Join(replies, "\n"), Private: true})
	}
	return again
}

// whileStorageDown runs f until it stops failing with bridge.ErrUnavailable
// or ctx ends, pausing between tries. It runs in the agent's worker, so the
// agent's later messages wait behind this one and keep their order: what an
// agent sends is delivered once Redis is back, not lost (SPEC §4).
func (a *Adapter) whileStorageDown(ctx context.Context, f func() error) error {
	for failures := 1; ; failures++ {
		err := f()
		if !errors.Is(err, bridge.ErrUnavailable) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(a.storageWait(failures)):
		}
	}
}

// messageActions turns an agent's message into actions: the text with the
// first file, then one action per further file (an Action carries one).
// Nothing to relay is still activity.
func messageActions(base bridge.Action, chat bridge.ChatID, text string, atts []*bridge.Attachment) []bridge.Action {
	if text == "" && len(atts) == 0 {
		return []bridge.Action{base}
	}
	first := base
	first.Kind, first.Chat, first.Text = bridge.ActMessage, chat, text
	if len(atts) > 0 {
		first.Attachment = atts[0]
	}
	acts := []bridge.Action{first}
	for i, att := range atts[min(1, len(atts)):] {
		more := first
		more.Text, more.Attachment = "", att
		if more.DedupKey != "" {
			more.DedupKey = fmt.Sprintf("%s:file%d", base.DedupKey, i+1)
		}
		acts = append(acts, more)
	}
	return acts
}

// refuse tells a stranger once a day that they are not an agent.
func (a *Adapter) refuse(ctx context.Context, channel, user, threadTS string) {
	if !a.refuseOnce(ctx, user) {
		return
	}
	a.ephemeral(ctx, channel, user, threadTS, bridge.Reply{Text: refusal})
}

func (a *Adapter) refuseOnce(ctx context.Context, user string) bool {
	ok, err := a.rdb.SetNX(ctx, a.keys.refused(user), "1", refusalTTL).Result()
	if err != nil {
		a.log.Warn("slack: refusal record", "slack_user", user, "err", err)
		return false // rather silent than chatty while Redis is down
	}
	return ok
}

func failureText(err error) string {
	switch {
	case errors.Is(err, bridge.ErrUnavailable):
		return "Sorry, that didn't go through (storage unavailable). Please try again in a moment."
	case errors.Is(err, bridge.ErrInvalidText):
		return fmt.Sprintf("Sorry, messages must be 1 to %d characters.", bridge.MaxTextRunes)
	case errors.Is(err, bridge.ErrUnknownChat):
		return "Sorry, I don't know that chat."
	case errors.Is(err, bridge.ErrChatClosed):
		return "That chat is closed."
	}
	return "Sorry, that didn't work: " + err.Error()
}

// ephemeral shows a reply to one user only. Without a channel (a button on a
// message we can no longer see), it goes to the user's DM instead.
func (a *Adapter) ephemeral(ctx context.Context, channel, user, threadTS string, r bridge.Reply) {
	for _, page := range renderNotice(r.Text, r.Choices) {
		opts := []slackapi.MsgOption{slackapi.MsgOptionText(page.Text, false), slackapi.MsgOptionBlocks(page.Blocks...)}
		var err error
		if channel == "" {
			_, _, err = a.api.PostMessageContext(ctx, user, opts...)
		} else {
			if threadTS != "" {
				opts = append(opts, slackapi.MsgOptionTS(threadTS))
			}
			_, err = a.api.PostEphemeralContext(ctx, channel, user, opts...)
		}
		if err != nil {
			a.log.Warn("slack: ephemeral reply", "slack_user", user, "channel", channel, "err", err)
			return
		}
	}
}

// answer hands a slash command's reply from the worker to the caller that
// answers Slack synchronously; once that caller stopped waiting (gone is
// closed), the worker posts the reply itself.
type answer struct {
	reply chan bridge.Reply
	gone  chan struct{}
}

// wait returns the reply if it comes within d. Call it once.
func (p answer) wait(ctx context.Context, d time.Duration) (bridge.Reply, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-p.reply:
		return r, true
	case <-t.C:
	case <-ctx.Done():
	}
	close(p.gone)
	return bridge.Reply{}, false
}

// onCommand queues a slash command; the answer is given to the returned
// waiter, or posted ephemerally if the waiter gave up.
func (a *Adapter) onCommand(ctx context.Context, cmd slackapi.SlashCommand, dedup string) (answer, error) {
	ans := answer{reply: make(chan bridge.Reply), gone: make(chan struct{})}
	_, err := a.enqueue(ctx, cmd.UserID, func(ctx context.Context, h bridge.Host) bool {
		reply := a.runCommand(ctx, h, cmd, dedup)
		select {
		case ans.reply <- reply:
		case <-ans.gone:
			if reply.Text != "" {
				a.lateAnswer(ctx, cmd, reply)
			}
		}
		return false // Slack does not send a command again
	})
	return ans, err
}

// lateAnswer posts a slash command's answer that missed Slack's 3 s: through
// the command's response_url (it works in any conversation, even one the bot
// is not in), else as an ephemeral message.
func (a *Adapter) lateAnswer(ctx context.Context, cmd slackapi.SlashCommand, r bridge.Reply) {
	if cmd.ResponseURL != "" {
		page := renderNotice(r.Text, r.Choices)[0]
		_, _, err := a.api.PostMessageContext(ctx, cmd.ChannelID,
			slackapi.MsgOptionResponseURL(cmd.ResponseURL, slackapi.ResponseTypeEphemeral),
			slackapi.MsgOptionText(page.Text, false), slackapi.MsgOptionBlocks(page.Blocks...))
		if err == nil {
			return
		}
		a.log.Warn("slack: response_url", "slack_user", cmd.UserID, "err", err)
	}
	a.ephemeral(ctx, cmd.ChannelID, cmd.UserID, "", r)
}

// runCommand hands a slash command to the bridge and returns what to answer.
func (a *Adapter) runCommand(ctx context.Context, h bridge.Host, cmd slackapi.SlashCommand, dedup string) bridge.Reply {
	agent, ok := a.dir.AgentByAccount(Surface, cmd.UserID)
	if !ok {
		if a.refuseOnce(ctx, cmd.UserID) {
			return bridge.Reply{Text: refusal, Private: true}
		}
		return bridge.Reply{}
	}
	sub, args := parseCommand(plainText(cmd.Text))
	reply, err := h.Handle(ctx, bridge.Action{
		Kind: bridge.ActCommand, Surface: a.Name(), Agent: agent.ID,
		Command: sub, Args: args, DedupKey: dedup,
	})
	switch {
	case errors.Is(err, bridge.ErrInProgress):
		return bridge.Reply{} // another instance answers it
	case err != nil:
		a.log.Warn("slack: command failed", "agent_id", agent.ID, "command", sub, "err", err)
		return bridge.Reply{Text: failureText(err)}
	}
	return reply
}

// parseCommand splits "/onduty transfer Bob" text ("transfer Bob") into the
// subcommand and its arguments. No text means help.
func parseCommand(text string) (sub, args string) {
	text = strings.TrimSpace(text)
	sub, args, _ = strings.Cut(text, " ")
	sub = strings.ToLower(strings.TrimPrefix(sub, "/"))
	if sub == "" {
		sub = "help"
	}
	return sub, strings.TrimSpace(args)
}

// commandResponse is the body of an immediate slash command answer.
type commandResponse struct {
	ResponseType string           `json:"response_type"`
	Text         string           `json:"text"`
	Blocks       []slackapi.Block `json:"blocks,omitempty"`
}

func commandBody(r bridge.Reply) *commandResponse {
	if r.Text == "" {
		return nil
	}
	pages := renderNotice(r.Text, r.Choices)
	// One response carries one message; a reply never exceeds that (the
	// bridge's texts are short), but keep within limits if it does.
	return &commandResponse{ResponseType: "ephemeral", Text: pages[0].Text, Blocks: pages[0].Blocks}
}

// onInteraction queues a button press (block_actions): its actions, in
// order, as one job.
func (a *Adapter) onInteraction(ctx context.Context, cb slackapi.InteractionCallback, dedup string) (*job, error) {
	if cb.Type != slackapi.InteractionTypeBlockActions {
		return handled, nil
	}
	return a.enqueue(ctx, cb.User.ID, func(ctx context.Context, h bridge.Host) (again bool) {
		for i, act := range cb.ActionCallback.BlockActions {
			kind, ok := actionKinds[act.ActionID]
			if !ok {
				continue
			}
			key := dedup
			if key != "" && i > 0 {
				key += ":" + act.ActionID
			}
			again = a.runButton(ctx, h, cb, kind, act.Value, key) || again
		}
		return again
	})
}

// runButton hands one button's action to the bridge; true means it was
// left to Slack's next try.
func (a *Adapter) runButton(ctx context.Context, h bridge.Host, cb slackapi.InteractionCallback, kind bridge.ActionKind, value, dedup string) bool {
	channel := cb.Channel.ID
	if channel == "" {
		channel = cb.Container.ChannelID
	}
	threadTS := cb.Container.ThreadTs
	agent, ok := a.dir.AgentByAccount(Surface, cb.User.ID)
	if !ok {
		a.refuse(ctx, channel, cb.User.ID, threadTS)
		return false
	}
	act := bridge.Action{Kind: kind, Surface: a.Name(), Agent: agent.ID, DedupKey: dedup}
	if kind != bridge.ActStillHere {
		act.Chat = bridge.ChatID(value)
	}
	reply, err := h.Handle(ctx, act)
	if errors.Is(err, bridge.ErrInProgress) {
		return true // another instance has this press now
	}
	if err != nil {
		a.log.Warn("slack: button failed", "agent_id", agent.ID, "action", kind, "err", err)
		reply = bridge.Reply{Text: failureText(err)}
	} else if kind == bridge.ActStillHere && channel != "" && cb.Container.MessageTs != "" {
		// The prompt has served: replace it so it is not pressed again.
		page := renderNotice(":white_check_mark: Still on duty.", nil)[0]
		if _, _, _, err := a.api.UpdateMessageContext(ctx, channel, cb.Container.MessageTs,
			slackapi.MsgOptionText(page.Text, false), slackapi.MsgOptionBlocks(page.Blocks...)); err != nil {
			a.log.Debug("slack: update prompt", "err", err)
		}
	}
	if reply.Text != "" {
		a.ephemeral(ctx, channel, cb.User.ID, threadTS, reply)
	}
	return false
}

// jsonOf is json.Marshal for values that cannot fail to marshal.
func jsonOf(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("{}")
	}
	return b
}
