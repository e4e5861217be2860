// Package console is the demo's chat surface: what the bridge delivers to an
// agent is written to the log, and lines typed on standard input are the
// agent's answers. It lets a newcomer hold a whole conversation with
// `onduty serve` and a browser, without Telegram or Slack.
package console

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// Adapter logs deliveries and reads one agent's answers from a reader.
type Adapter struct {
	agent presence.AgentID
	in    io.Reader
	log   *slog.Logger
}

var _ bridge.Adapter = (*Adapter)(nil)

// New returns an adapter for agent. in may be nil (answers come only from
// the admin API then); a nil log discards.
func New(agent presence.AgentID, in io.Reader, log *slog.Logger) *Adapter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Adapter{agent: agent, in: in, log: log.With("adapter", "console")}
}

// Name implements bridge.Adapter.
func (a *Adapter) Name() string { return "console" }

// Reaches implements bridge.Adapter: only the one agent.
func (a *Adapter) Reaches(agent presence.AgentID) bool { return agent == a.agent }

// Shared implements bridge.Adapter: the console has no shared place.
func (a *Adapter) Shared(presence.PropertyID) bool { return false }

// Deliver writes the delivery to the log.
func (a *Adapter) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	return nil, a.deliverOne(ctx, d)
}

func (a *Adapter) deliverOne(_ context.Context, d bridge.Delivery) error {
	attrs := []any{"kind", d.Kind, "chat_id", d.Chat.ID, "agent_id", d.Agent}
	switch d.Kind {
	case bridge.KindOffer:
		first := ""
		if d.Message != nil {
			first = d.Message.Text
		}
		what := "new chat: type an answer here (or /accept, /chats, /help)"
		if d.Chat.Offline {
			// Left through the form or timed out in the queue: the visitor
			// may be gone, the answer reaches them later.
			what = "offline message: the visitor may have left; type an answer here and they get it when they come back (or /chats, /help)"
			attrs = append(attrs, "email", d.Chat.Visitor.Email)
		}
		a.log.Info(what, append(attrs, "visitor", d.Chat.Visitor.Name, "page", d.Chat.Visitor.PageURL, "text", first)...)
	case bridge.KindMessage:
		if d.Message != nil {
			attrs = append(attrs, "from", d.Message.From, "name", d.Message.Name, "text", d.Message.Text)
			if f := d.Message.Attachment; f != nil {
				attrs = append(attrs, "file", fmt.Sprintf("%s (%s, %d bytes)", f.Name, f.MIME, f.Size))
			}
			a.log.Info("message", attrs...)
		}
	default:
		a.log.Info(string(d.Kind), append(attrs, "text", d.Text, "taken_by", d.TakenBy)...)
	}
	return nil
}

// Run reads answers, one a line: "/command args" or text for the current chat
// ("#CHATID text" names the chat). A read from a terminal cannot be
// interrupted: after ctx is done, the reading goroutine ends at the next line
// or at the end of input, not before; Run itself returns at once.
func (a *Adapter) Run(ctx context.Context, h bridge.Host) error {
	if a.in == nil {
		<-ctx.Done()
		return nil
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(a.in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				<-ctx.Done() // no more input (e.g. not a terminal): keep delivering to the log
				return nil
			}
			act, ok := Parse(line)
			if !ok {
				continue
			}
			act.Agent = a.agent
			reply, err := h.Handle(ctx, act)
			if err != nil {
				a.log.Warn("answer not taken", "err", err)
				continue
			}
			if act.Kind == bridge.ActMessage {
				// The bridge sends an agent's message to everyone but its
				// author: echo it, so the log reads as the conversation.
				attrs := []any{"text", act.Text}
				if act.Chat != "" {
					attrs = append(attrs, "chat_id", act.Chat)
				}
				what := "you wrote"
				if strings.HasPrefix(act.Text, "//") {
					what = "you noted (internal, the visitor does not see it)"
				}
				a.log.Info(what, attrs...)
			}
			if reply.Text != "" {
				a.log.Info("bot", "text", reply.Text)
			}
		}
	}
}

// Parse turns a typed line into an action; false for a blank line.
func Parse(line string) (bridge.Action, bool) {
	line = strings.TrimSpace(line)
	if line == "" {
		return bridge.Action{}, false
	}
	act := bridge.Action{Surface: "console"}
	if cmd, ok := strings.CutPrefix(line, "/"); ok && !strings.HasPrefix(cmd, "/") {
		name, args, _ := strings.Cut(cmd, " ")
		act.Kind, act.Command, act.Args = bridge.ActCommand, strings.ToLower(name), strings.TrimSpace(args)
		return act, true
	}
	act.Kind, act.Text = bridge.ActMessage, line
	if rest, ok := strings.CutPrefix(line, "#"); ok {
		id, text, _ := strings.Cut(rest, " ")
		if id != "" {
			act.Chat, act.Text = bridge.ChatID(id), strings.TrimSpace(text)
		}
	}
	return act, true
}
