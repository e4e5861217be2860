package bridge

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/onduty/onduty/presence"
)

// cannedReply answers "/reply NAME": the property's canned text, sent in the
// chat the command names (the topic, thread or replied-to message) or the
// agent's current chat, exactly as if the agent had typed it (owner rules,
// claiming a pending chat, notes never). "/reply" alone lists the replies.
func (b *Bridge) cannedReply(ctx context.Context, agent presence.Agent, act Action, name string) (Reply, error) {
	if name == "" {
		return b.listCanned(ctx, agent, act), nil
	}
	cv, why, err := b.resolveChat(ctx, agent, act.Chat, false)
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	r, _ := b.routing(cv.Property)
	text, ok := r.Canned[strings.ToLower(name)]
	if !ok {
		return Reply{Text: fmt.Sprintf("There is no canned reply %q for %s. Send /reply to list them.", name, b.propertyName(cv.Property)), Private: true}, nil
	}
	msg := act
	msg.Kind, msg.Command, msg.Args, msg.Text, msg.Chat = ActMessage, "", "", text, cv.ID
	// The command itself is not shown in a shared place: the team sees the
	// sent text copied there like any message written elsewhere.
	msg.Shared = false
	return b.agentMessage(ctx, agent, msg)
}

// listCanned lists the canned replies of the properties the agent works on
// (only the chat's property when the command was given in a chat).
func (b *Bridge) listCanned(ctx context.Context, agent presence.Agent, act Action) Reply {
	props := agent.Properties
	if act.Chat != "" {
		if p, err := b.propertyOf(ctx, act.Chat); err == nil && slices.Contains(agent.Properties, p) {
			props = []presence.PropertyID{p}
		}
	}
	var sb strings.Builder
	for _, p := range props {
		r, ok := b.routing(p)
		if !ok || len(r.Canned) == 0 {
			continue
		}
		names := make([]string, 0, len(r.Canned))
		for n := range r.Canned {
			names = append(names, n)
		}
		slices.Sort(names)
		if sb.Len() > 0 {
			sb.WriteString("\n")
		}
		fmt.Fprintf(&sb, "Canned replies for %s:", b.propertyName(p))
		for _, n := range names {
			fmt.Fprintf(&sb, "\n• %s — %s", n, preview(r.Canned[n], 80))
		}
	}
	if sb.Len() == 0 {
		return Reply{Text: "No canned replies are set up. An admin can add them (canned: in the property's configuration).", Private: true}
	}
	sb.WriteString("\nSend /reply NAME in a chat to send one.")
	return Reply{Text: sb.String(), Private: true}
}

func (b *Bridge) propertyName(p presence.PropertyID) string { return b.dir.PropertyName(p) }

// preview shortens s to at most n runes on one line.
func preview(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
