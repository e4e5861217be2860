package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// dedupTTL is how long a handled platform event id is remembered.
const dedupTTL = 24 * time.Hour

// A platform event's dedup mark is dedupBusy while an instance handles it
// (for at most dedupBusyTTL: one that dies mid-event leaves it to the
// platform's next try) and dedupDone once handled (for dedupTTL).
const (
	dedupBusy    = "busy"
	dedupDone    = "done"
	dedupBusyTTL = 20 * time.Second
)

// Handle takes one agent action from an adapter. Every action counts as
// activity. A platform event seen before (same DedupKey) is ignored; one
// being handled by another instance right now gets ErrInProgress. The
// claim on the event and the lookup of the chat its ReplyTo names take one
// round trip together.
func (b *Bridge) Handle(ctx context.Context, act Action) (Reply, error) {
	agent, ok := b.dir.Agent(act.Agent)
	if !ok {
		return Reply{Text: "You're not set up as an agent here.", Private: true}, nil
	}
	// One round trip: the event's claim, the lookup of the chat its
	// ReplyTo names, and the agent's activity (a repeat of an event the
	// agent sent counts as activity again, which changes nothing that
	// matters: the first one already did).
	before := b.watcher.Effective(agent.ID)
	var claim *redis.BoolCmd
	var thread, msg *redis.StringCmd
	pipe := b.rdb.Pipeline()
	key := b.keys.Dedup(act.DedupKey)
	if act.DedupKey != "" {
		claim = pipe.SetNX(ctx, key, dedupBusy, dedupBusyTTL)
	}
	if act.Chat == "" && act.ReplyTo != nil {
		thread, msg = b.chatOfCmds(ctx, pipe, act.Surface, *act.ReplyTo)
	}
	mine := pipe.Len()
	touched := b.store.QueueTouch(ctx, pipe, agent.ID)
	cmds, _ := pipe.Exec(ctx)       // each command's error is looked at here
	for _, c := range cmds[:mine] { // the touch's is touched()'s
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return Reply{}, unavailable("claim action", err)
		}
	}
	act.Chat = cmp.Or(act.Chat, chatOfResult(thread, msg))
	st, err := touched()
	if err != nil {
		return Reply{}, fmt.Errorf("bridge: touch: %w", err)
	}
	if act.Kind == ActMessage && act.Shared && act.Chat == "" {
		// Talk in the shared place outside any chat: activity, not a reply.
		act.Kind, act.Shared = ActActivity, false
	}
	b.applyState(ctx, agent, st, false)
	if claim == nil {
		return b.handle(ctx, agent, act, before)
	}
	if !claim.Val() {
		state, err := b.rdb.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return Reply{}, fmt.Errorf("%w: claim expired meanwhile", ErrInProgress)
		case err != nil:
			return Reply{}, unavailable("claim action", err)
		case state == dedupBusy:
			return Reply{}, ErrInProgress
		}
		b.log.Debug("duplicate platform event ignored", "dedup_key", act.DedupKey, "agent_id", act.Agent)
		return Reply{}, nil
	}
	// The first batch the action writes marks the event done in the same
	// round trip (see flush); an action that writes none is marked here.
	mark := &doneMark{key: key}
	reply, err := b.handle(context.WithValue(ctx, doneMarkKey{}, mark), agent, act, before)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err != nil {
		// Let the platform's retry through; if the claim stays, the retry
		// waits for it to expire.
		if derr := b.rdb.Del(dctx, key).Err(); derr != nil {
			b.log.Error("dedup claim not cleared; a retry of this action waits for it to expire", "dedup_key", act.DedupKey, "agent_id", act.Agent, "err", derr)
		}
		return reply, err
	}
	if mark.written.Load() {
		return reply, nil
	}
	if serr := b.rdb.Set(dctx, key, dedupDone, dedupTTL).Err(); serr != nil {
		b.log.Warn("platform event not marked handled; a repeat of it may be handled again", "dedup_key", act.DedupKey, "err", serr)
	}
	return reply, nil
}

// doneMark is the dedup key of the action being handled, carried on its
// context so that the first batch it flushes marks it done.
type doneMark struct {
	key     string
	written atomic.Bool
}

type doneMarkKey struct{}

// queueDoneMark adds the context's dedup mark to pipe unless written; the
// caller calls the function it returns once pipe succeeded.
func queueDoneMark(ctx context.Context, pipe redis.Pipeliner) (written func()) {
	m, _ := ctx.Value(doneMarkKey{}).(*doneMark)
	if m == nil || m.written.Load() {
		return func() {}
	}
	pipe.Set(ctx, m.key, dedupDone, dedupTTL)
	return func() { m.written.Store(true) }
}

// handle runs an action whose activity Handle recorded; before is the
// agent's effective status before it.
func (b *Bridge) handle(ctx context.Context, agent presence.Agent, act Action, before presence.Status) (Reply, error) {
	var reply Reply
	var err error
	switch act.Kind {
	case ActCommand:
		reply, err = b.command(ctx, agent, act)
	case ActMessage:
		reply, err = b.agentMessage(ctx, agent, act)
	case ActAccept:
		reply, err = b.accept(ctx, agent, act)
	case ActMonitor:
		reply, err = b.monitor(ctx, agent, act)
	case ActSwitch:
		reply, err = b.switchTo(ctx, agent, act.Chat)
	case ActStillHere:
		reply = Reply{Text: "Thanks — you're still on duty."}
	case ActActivity:
	default:
		reply = Reply{Text: "I didn't understand that. Try /help."}
	}
	if err != nil {
		return reply, err
	}
	if before != presence.Online && b.watcher.Effective(agent.ID) == presence.Online {
		if err := b.offerPendingTo(ctx, agent.ID); err != nil {
			b.log.Warn("offer pending chats", "agent_id", agent.ID, "err", err)
		}
	}
	return reply, nil
}

// applyState feeds a stored state to the local watcher at once (the pub/sub
// copy follows) and moves the agent's "Still on duty?" prompt. Mere activity
// (changed false) never cancels one: a prompt left from before fires, finds
// the agent not heading offline and asks nothing (firePrompt checks), and an
// always-online agent's every message saves a round trip.
func (b *Bridge) applyState(ctx context.Context, agent presence.Agent, st presence.State, changed bool) {
	b.watcher.Apply(agent.ID, st)
	var o batch
	b.schedulePrompt(&o, agent, st, changed)
	if err := b.flush(ctx, &o); err != nil {
		b.log.Warn("schedule prompt", "agent_id", agent.ID, "err", err)
	}
}

// SetPresence is an admin's change of an agent's chosen status and/or
// condition (an empty one stays as it is). Unlike the agent's own commands
// it is not bound by the agent's permissions, but it has the same
// consequences: the "Still on duty?" prompt moves with the new state (an
// agent made activity-based is asked before going offline), and an agent
// who comes online is offered the pending chats (followPresence).
func (b *Bridge) SetPresence(ctx context.Context, id presence.AgentID, s presence.Status, c presence.Condition) (presence.State, error) {
	agent, ok := b.dir.Agent(id)
	if !ok {
		return presence.State{}, presence.ErrUnknownAgent
	}
	if (s != "" && !s.IsValid()) || (c != "" && !c.IsValid()) {
		return presence.State{}, fmt.Errorf("bridge: set presence: invalid status %q or condition %q", s, c)
	}
	var st presence.State
	var err error
	if c != "" {
		if st, err = b.store.SetCondition(ctx, id, c); err != nil {
			return st, fmt.Errorf("bridge: set condition: %w", err)
		}
	}
	if s != "" {
		if st, err = b.store.SetStatus(ctx, id, s); err != nil {
			return st, fmt.Errorf("bridge: set status: %w", err)
		}
	}
	if c != "" || s != "" {
		b.applyState(ctx, agent, st, true)
	}
	return st, nil
}

func (b *Bridge) setStatus(ctx context.Context, agent presence.Agent, s presence.Status, greeting string) (Reply, error) {
	if !agent.Can(presence.PermissionFor(s)) {
		return Reply{Text: fmt.Sprintf("Sorry, you're not allowed to set yourself %s. Ask an admin.", s), Private: true}, nil
	}
	st, err := b.store.SetStatus(ctx, agent.ID, s)
	if err != nil {
		return Reply{}, fmt.Errorf("bridge: set status: %w", err)
	}
	b.applyState(ctx, agent, st, true)
	if greeting != "" {
		return Reply{Text: greeting, Private: true}, nil
	}
	text := map[presence.Status]string{
		presence.Online:    "You're online. New chats will come to you.",
		presence.Away:      "You're away. You won't get new chats automatically, but you can still take them.",
		presence.Invisible: "You're invisible. Visitors don't see you; you can still monitor and take chats.",
		presence.Offline:   "You're offline. No more chat notifications until you come back.",
	}[s]
	if s != presence.Offline && st.ConditionOf(agent) == presence.Activity {
		text += " (You'll count as away after some silence; /alwayson on keeps you " + string(s) + ".)"
	}
	return Reply{Text: text, Private: true}, nil
}

func (b *Bridge) alwaysOn(ctx context.Context, agent presence.Agent, arg string) (Reply, error) {
	if !agent.Can(presence.ChangeAlwaysOnline) {
		return Reply{Text: "Sorry, you're not allowed to change always-online. Ask an admin.", Private: true}, nil
	}
	var c presence.Condition
	switch arg {
	case "on":
		c = presence.Always
	case "off":
		c = presence.Activity
	default:
		return Reply{Text: "Use /alwayson on or /alwayson off.", Private: true}, nil
	}
	st, err := b.store.SetCondition(ctx, agent.ID, c)
	if err != nil {
		return Reply{}, fmt.Errorf("bridge: set condition: %w", err)
	}
	b.applyState(ctx, agent, st, true)
	if c == presence.Always {
		return Reply{Text: fmt.Sprintf("Always-online is on: you stay %s until you change it.", st.Chosen(agent)), Private: true}, nil
	}
	return Reply{Text: "Always-online is off: after some silence you'll count as away, then offline.", Private: true}, nil
}

func (b *Bridge) statusReply(agent presence.Agent) Reply {
	st := b.watcher.State(agent.ID)
	eff, why := presence.Explain(agent, st, b.now())
	var sb strings.Builder
	fmt.Fprintf(&sb, "You: %s (%s).", eff, why)
	for _, p := range agent.Properties {
		snap, ok := b.watcher.Snapshot(p)
		if !ok || snap == nil {
			continue
		}
		fmt.Fprintf(&sb, "\n%s widget: %s — %s.", b.propertyName(p), snap.Report.Status, snap.Report.Reason)
	}
	return Reply{Text: sb.String(), Private: true}
}

func (b *Bridge) teamReply(agent presence.Agent) Reply {
	var ids []presence.AgentID
	for _, p := range agent.Properties {
		for _, id := range b.dir.AgentsOf(p) {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	var sb strings.Builder
	sb.WriteString("Team:")
	for _, id := range ids {
		a, _ := b.dir.Agent(id)
		eff := b.watcher.Effective(id)
		me := ""
		if id == agent.ID {
			me = " (you)"
		}
		fmt.Fprintf(&sb, "\n%s%s: %s", b.agentName(a.ID), me, eff)
	}
	return Reply{Text: sb.String(), Private: true}
}

// agentChats lists the open chats an agent may act on: owned or monitored
// ones first, then their properties' unowned ones (pending and offline).
func (b *Bridge) agentChats(ctx context.Context, agent presence.Agent) (mine, waiting []chatView, err error) {
	var ids []ChatID
	seen := map[ChatID]bool{}
	var waitIDs []ChatID
	for _, p := range agent.Properties {
		if _, ok := b.routing(p); !ok {
			continue
		}
		pipe := b.rdb.Pipeline()
		own := pipe.HGetAll(ctx, b.keys.Owners(p))
		mon := pipe.SMembers(ctx, b.keys.Monitoring(p))
		pend := pipe.ZRange(ctx, b.keys.Pending(p), 0, 19)
		off := pipe.ZRevRange(ctx, b.keys.Offline(p), 0, 19)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, nil, fmt.Errorf("bridge: list chats: %w", err)
		}
		for c, owner := range own.Val() {
			if owner == string(agent.ID) && !seen[ChatID(c)] {
				seen[ChatID(c)] = true
				ids = append(ids, ChatID(c))
			}
		}
		for _, pair := range mon.Val() {
			a, c, _ := strings.Cut(pair, "|")
			if a == string(agent.ID) && !seen[ChatID(c)] {
				seen[ChatID(c)] = true
				ids = append(ids, ChatID(c))
			}
		}
		for _, c := range append(pend.Val(), off.Val()...) {
			if !seen[ChatID(c)] {
				seen[ChatID(c)] = true
				waitIDs = append(waitIDs, ChatID(c))
			}
		}
	}
	load := func(ids []ChatID) []chatView {
		var out []chatView
		for _, id := range ids {
			cv, err := b.loadChat(ctx, id)
			if err == nil && cv.State != Closed {
				out = append(out, cv)
			}
		}
		slices.SortFunc(out, func(x, y chatView) int { return x.CreatedAt.Compare(y.CreatedAt) })
		return out
	}
	return load(ids), load(waitIDs), nil
}

// mayActOn reports whether cv is one of the chats agentChats lists for the
// agent: open, in one of their routed properties, and theirs (owned or
// monitored) or nobody's (pending or an offline message).
func (b *Bridge) mayActOn(agent presence.Agent, cv *chatView) bool {
	if cv.State == Closed || !slices.Contains(agent.Properties, cv.Property) {
		return false
	}
	if _, ok := b.routing(cv.Property); !ok {
		return false
	}
	return cv.Owner == "" || cv.Owner == agent.ID || slices.Contains(cv.Monitors, agent.ID)
}

func (b *Bridge) listChats(ctx context.Context, agent presence.Agent) (Reply, error) {
	mine, waiting, err := b.agentChats(ctx, agent)
	if err != nil {
		return Reply{}, err
	}
	if len(mine) == 0 && len(waiting) == 0 {
		return Reply{Text: "No open chats.", Private: true}, nil
	}
	cur, _ := b.rdb.Get(ctx, b.keys.Current(agent.ID)).Result()
	var sb strings.Builder
	var r Reply
	r.Private = true
	if len(mine) > 0 {
		sb.WriteString("Your chats:")
		for _, cv := range mine {
			role := ""
			if cv.Owner != agent.ID {
				role = " (monitoring)"
			}
			mark := ""
			if string(cv.ID) == cur {
				mark = " ← current"
			}
			fmt.Fprintf(&sb, "\n• %s%s%s", cv.Visitor.Label(), role, mark)
			r.Choices = append(r.Choices, Choice{Label: cv.Visitor.Label(), Action: ActSwitch, Chat: cv.ID})
		}
	}
	if len(waiting) > 0 {
		if sb.Len() > 0 {
			sb.WriteString("\n")
		}
		sb.WriteString("Waiting for an agent:")
		for _, cv := range waiting {
			kind := "chat"
			if cv.Offline {
				kind = "offline message"
			}
			fmt.Fprintf(&sb, "\n• %s (%s, %s ago)", cv.Visitor.Label(), kind, b.now().Sub(cv.CreatedAt).Round(time.Second))
			r.Choices = append(r.Choices, Choice{Label: "Accept " + cv.Visitor.Label(), Action: ActAccept, Chat: cv.ID})
		}
	}
	r.Text = sb.String()
	return r, nil
}

func (b *Bridge) switchTo(ctx context.Context, agent presence.Agent, id ChatID) (Reply, error) {
	cv, err := b.loadChat(ctx, id)
	if err != nil {
		if errors.Is(err, ErrUnknownChat) {
			return Reply{Text: "I can't find that chat.", Private: true}, nil
		}
		return Reply{}, err
	}
	if !slices.Contains(agent.Properties, cv.Property) {
		return Reply{Text: "That chat isn't one of your properties'.", Private: true}, nil
	}
	if cv.State == Closed {
		return Reply{Text: "That chat is closed.", Private: true}, nil
	}
	if err := b.rdb.Set(ctx, b.keys.Current(agent.ID), string(id), 0).Err(); err != nil {
		return Reply{}, fmt.Errorf("bridge: set current chat: %w", err)
	}
	return Reply{Text: fmt.Sprintf("Plain messages now go to %s.", cv.Visitor.Label()), Private: true}, nil
}

// resolveChat finds the chat an action means: the one the platform named,
// else the agent's current chat, else their only chat.
func (b *Bridge) resolveChat(ctx context.Context, agent presence.Agent, id ChatID, wantPending bool) (chatView, string, error) {
	if id != "" {
		cv, err := b.loadChat(ctx, id)
		if errors.Is(err, ErrUnknownChat) {
			return chatView{}, "I can't find that chat.", nil
		}
		if err == nil && !slices.Contains(agent.Properties, cv.Property) {
			return chatView{}, "That chat isn't one of your properties'.", nil
		}
		return cv, "", err
	}
	// The current chat first: plain text is the relay's hot path, and
	// agentChats loads every chat the agent may act on.
	if cur, err := b.rdb.Get(ctx, b.keys.Current(agent.ID)).Result(); err == nil && cur != "" {
		if cv, err := b.loadChat(ctx, ChatID(cur)); err == nil && b.mayActOn(agent, &cv) && (!wantPending || cv.Owner == "") {
			return cv, "", nil
		}
	}
	mine, waiting, err := b.agentChats(ctx, agent)
	if err != nil {
		return chatView{}, "", err
	}
	pool := mine
	if wantPending || len(mine) == 0 && len(waiting) == 1 {
		// Plain text with no chat of one's own answers the one waiting chat:
		// a reply from a non-owner in a pending chat claims it (SPEC §4).
		pool = waiting
	}
	switch len(pool) {
	case 1:
		return pool[0], "", nil
	case 0:
		if wantPending {
			return chatView{}, "No chat is waiting for an agent.", nil
		}
		return chatView{}, "You have no open chat. Reply to a visitor's message, or use /chats.", nil
	}
	return chatView{}, "You have several chats: reply to a visitor's message, or use /chats to pick one.", nil
}

func (b *Bridge) accept(ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
	if b.watcher.Effective(agent.ID) == presence.Offline {
		return Reply{Text: "You're offline. Send /online (or /away) first to take chats.", Private: true}, nil
	}
	cv, why, err := b.resolveChat(ctx, agent, act.Chat, true)
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	var o batch
	reply, _, err := b.claim(ctx, &cv, agent.ID, &o)
	if err != nil {
		return Reply{}, err
	}
	if err := b.flush(ctx, &o); err != nil {
		return Reply{}, err
	}
	return reply, nil
}

func (b *Bridge) monitor(ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
	cv, why, err := b.resolveChat(ctx, agent, act.Chat, false)
	if act.Chat == "" && why != "" && err == nil {
		cv, why, err = b.resolveChat(ctx, agent, "", true)
	}
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	if cv.State == Closed {
		return Reply{Text: "That chat is closed.", Private: true}, nil
	}
	if cv.Owner == agent.ID {
		return Reply{Text: "That chat is yours already.", Private: true}, nil
	}
	if slices.Contains(cv.Monitors, agent.ID) {
		return Reply{Text: "You're already monitoring it.", Private: true}, nil
	}
	var o batch
	monKey, pairsKey := b.keys.Monitors(cv.Property, cv.ID), b.keys.Monitoring(cv.Property)
	o.op(func(ctx context.Context, p redis.Pipeliner) {
		p.SAdd(ctx, monKey, string(agent.ID))
		p.SAdd(ctx, pairsKey, string(agent.ID)+"|"+string(cv.ID))
	})
	b.setCurrent(&o, agent.ID, cv.ID)
	if err := b.flush(ctx, &o); err != nil {
		return Reply{}, err
	}
	return Reply{Text: fmt.Sprintf("You're monitoring the chat with %s: you'll see its messages; the visitor doesn't see you. Start a message with // to note something for the team.", cv.Visitor.Label()), Private: true}, nil
}

func (b *Bridge) closeByAgent(ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
	cv, why, err := b.resolveChat(ctx, agent, act.Chat, false)
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	if cv.Owner != "" && cv.Owner != agent.ID {
		return Reply{Text: fmt.Sprintf("%s is handling that chat; only they can close it.", b.agentName(cv.Owner)), Private: true}, nil
	}
	ok, err := b.closeChat(ctx, &cv, "agent:"+string(agent.ID), b.agentName(agent.ID)+" closed the chat.")
	if err != nil {
		return Reply{}, err
	}
	if !ok {
		return Reply{Text: "That chat was already closed.", Private: true}, nil
	}
	return Reply{Text: fmt.Sprintf("Closed the chat with %s.", cv.Visitor.Label())}, nil
}

func (b *Bridge) transfer(ctx context.Context, agent presence.Agent, act Action, name string) (Reply, error) {
	if name == "" {
		return Reply{Text: "Use /transfer NAME.", Private: true}, nil
	}
	to, ok := b.dir.AgentByName(name)
	if !ok {
		return Reply{Text: fmt.Sprintf("I don't know an agent called %q.", name), Private: true}, nil
	}
	if to.ID == agent.ID {
		return Reply{Text: "That's you.", Private: true}, nil
	}
	cv, why, err := b.resolveChat(ctx, agent, act.Chat, false)
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	if !slices.Contains(to.Properties, cv.Property) {
		return Reply{Text: fmt.Sprintf("%s doesn't work on that website.", b.agentName(to.ID)), Private: true}, nil
	}
	if b.watcher.Effective(to.ID) == presence.Offline {
		return Reply{Text: fmt.Sprintf("%s is offline, so I can't hand the chat over.", b.agentName(to.ID)), Private: true}, nil
	}
	res, err := transferScript.Run(ctx, b.rdb, b.chatKeys(&cv), string(cv.ID), string(agent.ID), string(to.ID), ms(b.now())).StringSlice()
	if err != nil {
		return Reply{}, fmt.Errorf("bridge: transfer: %w", err)
	}
	switch res[0] {
	case "missing":
		return Reply{Text: "I can't find that chat any more.", Private: true}, nil
	case "closed":
		return Reply{Text: "That chat is closed.", Private: true}, nil
	case "same":
		return Reply{Text: fmt.Sprintf("%s has it already.", b.agentName(to.ID)), Private: true}, nil
	case "notyours":
		return Reply{Text: fmt.Sprintf("%s is handling that chat; only they can transfer it.", b.agentName(presence.AgentID(res[1]))), Private: true}, nil
	}
	wasPending := res[1] == ""
	cv.Owner, cv.State = to.ID, Active
	toName := b.agentName(to.ID)
	var o batch
	m, err := b.appendMessage(ctx, cv.Property, Message{Chat: cv.ID, From: FromSystem, At: b.now(),
		Text: fmt.Sprintf("%s transferred the chat to %s.", b.agentName(agent.ID), toName)})
	if err == nil {
		b.deliverTo(&o, &cv, Delivery{Kind: KindMessage, Message: &m}, followers(&cv, to.ID, ""))
	}
	if wasPending {
		o.cancelChatTimers(&cv, timerOffer, timerFallback, timerQueue)
		b.offersTaken(&o, &cv)
	}
	b.agentDeliveries(&o, to.ID, Delivery{Kind: KindNotice, Chat: cv.Chat,
		Text: fmt.Sprintf("%s handed you the chat with %s. Reply here to answer.", b.agentName(agent.ID), cv.Visitor.Label())})
	b.setCurrent(&o, to.ID, cv.ID)
	b.scheduleIdle(&o, &cv)
	o.event(VisitorEvent{Type: EventAgentJoined, Chat: cv.ID, Agent: toName})
	if err := b.flush(ctx, &o); err != nil {
		return Reply{}, err
	}
	return Reply{Text: fmt.Sprintf("Transferred the chat with %s to %s.", cv.Visitor.Label(), toName)}, nil
}

// agentMessage relays an agent's text: a note to the team, a reply to the
// visitor from the owner, or a claim of an unowned chat.
func (b *Bridge) agentMessage(ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
	cv, why, err := b.resolveChat(ctx, agent, act.Chat, false)
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	if cv.State == Closed {
		return Reply{Text: "That chat is closed; the visitor won't see new messages.", Private: true}, nil
	}
	text := act.Text
	note := strings.HasPrefix(strings.TrimSpace(text), "//")
	if note {
		text = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(text), "//"))
	}
	if act.Attachment == nil || text != "" {
		if err := CheckText(text); err != nil {
			return Reply{Text: TextRuleHint, Private: true}, nil
		}
	}
	name := b.agentName(agent.ID)
	var o batch
	var claimed Reply
	if note {
		m, err := b.appendMessage(ctx, cv.Property, Message{Chat: cv.ID, From: FromAgent, Agent: agent.ID, Name: name,
			Text: text, Note: true, At: b.now(), Attachment: act.Attachment})
		if err != nil {
			return Reply{}, err
		}
		b.deliverTo(&o, &cv, Delivery{Kind: KindMessage, Message: &m}, followers(&cv, agent.ID, act.sharedSurface()))
		return Reply{}, b.flush(ctx, &o)
	}
	if cv.Owner != agent.ID {
		if cv.Owner != "" {
			return Reply{Text: fmt.Sprintf("%s is handling this chat, so your message was not sent to the visitor. Start with // to leave a note for the team.", b.agentName(cv.Owner)), Private: true}, nil
		}
		if b.watcher.Effective(agent.ID) == presence.Offline {
			return Reply{Text: "You're offline. Send /online (or /away) first to take chats.", Private: true}, nil
		}
		reply, owns, err := b.claim(ctx, &cv, agent.ID, &o)
		if err != nil {
			return Reply{}, err
		}
		claimed = reply
		if !owns {
			if cv.Owner != "" {
				reply.Text += " Your message was not sent to the visitor."
			}
			reply.Private = true
			return reply, b.flush(ctx, &o)
		}
	}
	m, err := b.appendMessage(ctx, cv.Property, Message{Chat: cv.ID, From: FromAgent, Agent: agent.ID, Name: name,
		Text: text, At: b.now(), Attachment: act.Attachment})
	if errors.Is(err, ErrChatClosed) {
		return Reply{Text: "That chat is closed; the visitor won't see new messages.", Private: true}, b.flush(ctx, &o)
	}
	if err != nil {
		return Reply{}, err
	}
	o.event(VisitorEvent{Type: EventMessage, Chat: cv.ID, Message: &m})
	b.notify(&o, &cv, HookChatMessage, &m, nil)
	b.deliverTo(&o, &cv, Delivery{Kind: KindMessage, Message: &m}, followers(&cv, agent.ID, act.sharedSurface()))
	b.scheduleIdle(&o, &cv)
	b.scheduleEmail(&o, &cv, m.At)
	b.setCurrent(&o, agent.ID, cv.ID)
	first := b.markFirstReply(&o, &cv, m.At)
	if err := b.flush(ctx, &o); err != nil {
		return Reply{}, err
	}
	metrics.MessagesRelayed.WithLabelValues("to_visitor").Inc()
	if first() {
		metrics.FirstResponse.WithLabelValues(string(cv.Property)).Observe(m.At.Sub(cv.CreatedAt).Seconds())
	}
	return claimed, nil
}

// markFirstReply records, in the batch, when the visitor first got an agent's
// answer (HSETNX "replied"); after the flush, the returned func reports true
// only for that first answer. Offline messages are not live chats and are
// not timed.
func (b *Bridge) markFirstReply(o *batch, cv *chatView, at time.Time) func() bool {
	if cv.Offline || cv.CreatedAt.IsZero() {
		return func() bool { return false }
	}
	var cmd *redis.BoolCmd
	key := b.keys.Chat(cv.Property, cv.ID)
	o.op(func(ctx context.Context, p redis.Pipeliner) { cmd = p.HSetNX(ctx, key, "replied", ms(at)) })
	return func() bool { return cmd != nil && cmd.Val() }
}
