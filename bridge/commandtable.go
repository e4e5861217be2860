package bridge

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/onduty/onduty/presence"
)

// Command is one chat command an agent can send, as a platform's menu
// shows it.
type Command struct {
	Name string // what the agent types after the slash
	Help string // one line for a menu: arguments first, then what it does
}

// Commands is the list of chat commands, in menu order: what a platform
// offers in its menu (Telegram's setMyCommands) and what Handle
// understands. It is built from commandTable, as /help's text is.
var Commands = menuOf(commandTable)

// commandFunc carries out one command for an agent.
type commandFunc func(b *Bridge, ctx context.Context, agent presence.Agent, act Action) (Reply, error)

// commandSpec is one row of commandTable.
type commandSpec struct {
	name string // what the agent types after the slash, in lower case
	args string // its arguments, as menus and /help show them ("NAME", "on|off")
	menu string // what it does, in a platform's menu (after the arguments)
	// help is what it does on its /help line. Neighbours with the same help
	// share one line; "" keeps the command off /help (it is named on
	// another line, or needs no telling).
	help string
	run  commandFunc // nil only for help, whose answer is built from this table
}

// commandTable is every chat command, in menu order: the one place that
// names a command, describes it and gives it its meaning. Commands, the
// text of /help and the dispatch of Handle (command) are all read from it.
var commandTable = []commandSpec{
	{name: "start", menu: "Start: go online", run: func(b *Bridge, ctx context.Context, agent presence.Agent, _ Action) (Reply, error) {
		return b.setStatus(ctx, agent, presence.Online, "Welcome! You're online and will get new chats. Send /help to see what I can do.")
	}},
	{name: "online", menu: "Go online", help: "set your status", run: setStatusTo(presence.Online)},
	{name: "away", menu: "Go away", help: "set your status", run: setStatusTo(presence.Away)},
	{name: "invisible", menu: "Go invisible", help: "set your status", run: setStatusTo(presence.Invisible)},
	{name: "offline", menu: "Go offline", help: "set your status", run: setStatusTo(presence.Offline)},
	{name: "alwayson", args: "on|off", menu: "stay online without activity", help: "stay online without activity (or not)",
		run: func(b *Bridge, ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
			return b.alwaysOn(ctx, agent, strings.ToLower(strings.TrimSpace(act.Args)))
		}},
	{name: "status", menu: "Your status and each site's widget status", help: "your status and each widget's",
		run: func(b *Bridge, _ context.Context, agent presence.Agent, _ Action) (Reply, error) {
			return b.statusReply(agent), nil
		}},
	{name: "team", menu: "Your teammates' statuses", help: "your teammates' statuses",
		run: func(b *Bridge, _ context.Context, agent presence.Agent, _ Action) (Reply, error) {
			return b.teamReply(agent), nil
		}},
	{name: "chats", menu: "List and switch chats", help: "your chats; pick one to make it current",
		run: func(b *Bridge, ctx context.Context, agent presence.Agent, _ Action) (Reply, error) {
			return b.listChats(ctx, agent)
		}},
	{name: "accept", menu: "Accept the pending chat", help: "take the waiting chat", run: (*Bridge).accept},
	{name: "close", menu: "Close the current chat", help: "close the current chat", run: (*Bridge).closeByAgent},
	{name: "transfer", args: "NAME", menu: "hand the current chat to a teammate", help: "hand the current chat to a teammate",
		run: withArgs((*Bridge).transfer)},
	{name: "monitor", menu: "Watch a chat without owning it", help: "watch the current chat without taking it", run: (*Bridge).monitor},
	{name: "reply", args: "NAME", menu: "send a canned reply; alone: list them",
		help: "send a canned reply in the current chat; /reply alone lists them", run: withArgs((*Bridge).cannedReply)},
	{name: "block", args: "[DURATION]", menu: "block the chat's visitor (30d)",
		help: "block the current chat's visitor (default 30 days); /unblock lifts it", run: withArgs((*Bridge).blockCommand)},
	{name: "unblock", menu: "Lift the chat's block", run: (*Bridge).unblockCommand},
	{name: "help", menu: "What the bot can do"},
}

func setStatusTo(s presence.Status) commandFunc {
	return func(b *Bridge, ctx context.Context, agent presence.Agent, _ Action) (Reply, error) {
		return b.setStatus(ctx, agent, s, "")
	}
}

// withArgs hands a command its arguments, trimmed.
func withArgs(f func(b *Bridge, ctx context.Context, agent presence.Agent, act Action, args string) (Reply, error)) commandFunc {
	return func(b *Bridge, ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
		return f(b, ctx, agent, act, strings.TrimSpace(act.Args))
	}
}

// helpText is the answer to /help.
var helpText = helpOf(commandTable)

// command carries out a command through its row of commandTable. No
// command at all means help.
func (b *Bridge) command(ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
	name := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(act.Command), "/"))
	if name == "" {
		name = "help"
	}
	i := slices.IndexFunc(commandTable, func(c commandSpec) bool { return c.name == name })
	switch {
	case i < 0:
		return Reply{Text: fmt.Sprintf("I don't know /%s. Send /help to see the commands.", name), Private: true}, nil
	case commandTable[i].run == nil:
		return Reply{Text: helpText, Private: true}, nil
	}
	return commandTable[i].run(b, ctx, agent, act)
}

// menuOf lists the commands for platforms' menus: "ARGS: what it does".
func menuOf(table []commandSpec) []Command {
	out := make([]Command, len(table))
	for i, c := range table {
		out[i] = Command{Name: c.name, Help: c.menu}
		if c.args != "" {
			out[i].Help = c.args + ": " + c.menu
		}
	}
	return out
}

// helpOf writes /help's text: a line per help text ("/cmd ARGS — what it
// does"; neighbours with the same help on one line), then how to answer.
func helpOf(table []commandSpec) string {
	var sb strings.Builder
	sb.WriteString("Commands:")
	for i, c := range table {
		if c.help == "" {
			continue
		}
		if i > 0 && table[i-1].help == c.help {
			sb.WriteString(", ")
		} else {
			sb.WriteString("\n")
		}
		sb.WriteString("/" + c.name)
		if c.args != "" {
			sb.WriteString(" " + c.args)
		}
		if i+1 == len(table) || table[i+1].help != c.help {
			sb.WriteString(" — " + c.help)
		}
	}
	sb.WriteString("\nReply to a visitor's message to answer it. Start with // for a note only the team sees.")
	return sb.String()
}
