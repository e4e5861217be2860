package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// acceptScript makes an agent the owner of an unowned chat. It is the only
// place a pending chat gets its owner, so two simultaneous Accepts (from any
// instances) leave exactly one owner.
var acceptScript = redis.NewScript(`
-- KEYS[1] chat hash  KEYS[2] owners hash  KEYS[3] load zset
-- KEYS[4] pending zset  KEYS[5] offline zset
-- ARGV[1] chat id  ARGV[2] agent  ARGV[3] now, unix ms
-- Returns {'ok'} | {'mine'} | {'taken', owner} | {'closed'} | {'missing'}.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing'} end
if st == 'closed' then return {'closed'} end
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= '' then
  if owner == ARGV[2] then return {'mine'} end
  return {'taken', owner}
end
redis.call('HSET', KEYS[1], 'state', 'active', 'owner', ARGV[2], 'accepted', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZINCRBY', KEYS[3], 1, ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return {'ok'}
`)

// transferScript hands a chat from its owner (or, unowned, from nobody) to another agent.
var transferScript = redis.NewScript(`
-- KEYS[1] chat hash  KEYS[2] owners hash  KEYS[3] load zset
-- KEYS[4] pending zset  KEYS[5] offline zset
-- ARGV[1] chat id  ARGV[2] from agent  ARGV[3] to agent  ARGV[4] now, unix ms
-- Returns {'ok', previous owner} | {'notyours', owner} | {'same'} | {'closed'} | {'missing'}.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing'} end
if st == 'closed' then return {'closed'} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if owner ~= '' and owner ~= ARGV[2] then return {'notyours', owner} end
if owner == ARGV[3] then return {'same'} end
if owner ~= '' then redis.call('ZINCRBY', KEYS[3], -1, owner) end
redis.call('HSET', KEYS[1], 'state', 'active', 'owner', ARGV[3])
redis.call('HSETNX', KEYS[1], 'accepted', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZINCRBY', KEYS[3], 1, ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return {'ok', owner}
`)

// closeScript closes a chat once.
var closeScript = redis.NewScript(`
-- KEYS[1] chat hash  KEYS[2] owners hash  KEYS[3] load zset
-- KEYS[4] pending zset  KEYS[5] offline zset
-- KEYS[6] messages stream  KEYS[7] offered set  KEYS[8] monitors set
-- ARGV[1] chat id  ARGV[2] closed_by  ARGV[3] now, unix ms
-- ARGV[4] how long the closed chat is kept, ms
-- Returns {'ok', owner} | {'closed'} | {'missing'}.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing'} end
if st == 'closed' then return {'closed'} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_by', ARGV[2], 'closed_at', ARGV[3])
if owner ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  if tonumber(redis.call('ZINCRBY', KEYS[3], -1, owner)) <= 0 then redis.call('ZREM', KEYS[3], owner) end
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
for i = 6, 8 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'ok', owner}
`)

// queueTimeoutScript turns a chat nobody accepted into an offline message.
var queueTimeoutScript = redis.NewScript(`
-- KEYS[1] chat hash  KEYS[2] pending zset  KEYS[3] offline zset
-- ARGV[1] chat id  ARGV[2] now, unix ms
-- Returns 1 if the chat was converted.
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
local owner = redis.call('HGET', KEYS[1], 'owner')
if (owner and owner ~= '') or redis.call('HGET', KEYS[1], 'offline') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'offline', '1')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
`)

func (b *Bridge) chatKeys(cv *chatView) []string {
	p := cv.Property
	return []string{b.keys.Chat(p, cv.ID), b.keys.Owners(p), b.keys.Load(p), b.keys.Pending(p), b.keys.Offline(p)}
}

// Timer kinds; a timer's member is "kind|property|target".
const (
	timerOffer    = "offer"    // accept_timeout: offer to the next agent
	timerFallback = "fallback" // invisible_fallback_after
	timerQueue    = "queue"    // queue_timeout: becomes an offline message
	timerIdle     = "idle"     // close_after_idle
	timerPrompt   = "prompt"   // "Still on duty?"
)

func timerMember(kind string, p presence.PropertyID, target string) string {
	return kind + "|" + string(p) + "|" + target
}

// cancelChatTimers cancels the chat's timers of the given kinds.
func (o *batch) cancelChatTimers(cv *chatView, kinds ...string) {
	for _, k := range kinds {
		o.cancelTimer(timerMember(k, cv.Property, string(cv.ID)))
	}
}

// loads counts each agent's active chats over all of their properties.
func (b *Bridge) loads(ctx context.Context, agents []presence.AgentID) (map[presence.AgentID]int, error) {
	pipe := b.rdb.Pipeline()
	cmds := map[presence.AgentID][]*redis.FloatCmd{}
	for _, id := range agents {
		a, _ := b.dir.Agent(id)
		for _, p := range a.Properties {
			cmds[id] = append(cmds[id], pipe.ZScore(ctx, b.keys.Load(p), string(id)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("bridge: load counts: %w", err)
	}
	out := make(map[presence.AgentID]int, len(agents))
	for id, cs := range cmds {
		for _, c := range cs {
			out[id] += int(c.Val())
		}
	}
	return out, nil
}

// agentsWith lists the property's agents whose effective status is st and
// who were not offered the chat yet.
func (b *Bridge) agentsWith(cv *chatView, st presence.Status) []presence.AgentID {
	var out []presence.AgentID
	for _, id := range b.dir.AgentsOf(cv.Property) {
		if !slices.Contains(cv.offered, id) && b.watcher.Effective(id) == st {
			out = append(out, id)
		}
	}
	return out
}

// route offers a new chat: to the shared places, to online agents per the
// property's strategy (to away agents when nobody is online), and sets the
// queue and fallback timers.
func (b *Bridge) route(ctx context.Context, cv *chatView, first *Message, o *batch) error {
	r, _ := b.routing(cv.Property)
	now := b.now()
	// Everyone in a shared place sees the offer, invisible agents too: it
	// carries their Monitor button (SPEC §7).
	b.deliverTo(o, cv, Delivery{Kind: KindOffer, Message: first, Monitor: true}, audience{Shared: true})
	o.timer(timerMember(timerQueue, cv.Property, string(cv.ID)), now.Add(r.QueueTimeout))
	if r.FallbackAfter > 0 {
		o.timer(timerMember(timerFallback, cv.Property, string(cv.ID)), now.Add(r.FallbackAfter))
	}
	err := b.offerNext(ctx, cv, first, o)
	// Listed as pending only now, after its first offers are recorded, so
	// an agent coming online meanwhile (followPresence) is not offered it
	// on top of the online agent least_loaded picked.
	pending, id := b.keys.Pending(cv.Property), string(cv.ID)
	o.op(func(ctx context.Context, p redis.Pipeliner) {
		p.ZAdd(ctx, pending, redis.Z{Score: float64(ms(cv.CreatedAt)), Member: id})
	})
	return err
}

// offerNext offers a pending chat to the online agents the strategy picks
// among those not offered yet. With nobody online and nobody offered yet,
// away agents are told (they may take it by hand).
func (b *Bridge) offerNext(ctx context.Context, cv *chatView, first *Message, o *batch) error {
	r, _ := b.routing(cv.Property)
	online := b.agentsWith(cv, presence.Online)
	if len(online) == 0 {
		if len(cv.offered) == 0 {
			return b.offerTo(ctx, cv, b.agentsWith(cv, presence.Away), false, first, o)
		}
		return nil
	}
	load, err := b.loads(ctx, online)
	if err != nil {
		return err
	}
	var fit []presence.AgentID
	for _, id := range online {
		if r.MaxChats <= 0 || load[id] < r.MaxChats {
			fit = append(fit, id)
		}
	}
	if len(fit) == 0 {
		return nil
	}
	if r.Strategy == Broadcast {
		return b.offerTo(ctx, cv, fit, false, first, o)
	}
	best := fit[0] // AgentsOf is sorted by id: ties go to the first
	for _, id := range fit[1:] {
		if load[id] < load[best] {
			best = id
		}
	}
	o.timer(timerMember(timerOffer, cv.Property, string(cv.ID)), b.now().Add(r.AcceptTimeout))
	return b.offerTo(ctx, cv, []presence.AgentID{best}, false, first, o)
}

// offerTo records offers and queues them on every non-shared adapter
// reaching each agent (shared places got the chat once, in route). An offer
// is recorded (SADD) before it is queued and queued only if the record is
// new, so two instances offering the same chat at once offer it once.
func (b *Bridge) offerTo(ctx context.Context, cv *chatView, agents []presence.AgentID, monitor bool, first *Message, o *batch) error {
	if len(agents) == 0 {
		return nil
	}
	key := b.keys.Offered(cv.Property, cv.ID)
	pipe := b.rdb.Pipeline()
	added := make([]*redis.IntCmd, len(agents))
	for i, id := range agents {
		added[i] = pipe.SAdd(ctx, key, string(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("bridge: record offers: %w", err)
	}
	var fresh []presence.AgentID
	for i, id := range agents {
		if added[i].Val() == 1 {
			fresh = append(fresh, id)
		}
	}
	cv.offered = append(cv.offered, fresh...)
	b.offerDeliveries(cv, fresh, monitor, first, o)
	return nil
}

// offerDeliveries queues offers on every non-shared adapter reaching each agent.
func (b *Bridge) offerDeliveries(cv *chatView, agents []presence.AgentID, monitor bool, first *Message, o *batch) {
	b.deliverTo(o, cv, Delivery{Kind: KindOffer, Message: first, Monitor: monitor}, audience{Agents: agents})
}

// offerOffline delivers an offline message to every agent of the property
// (and each shared place), whatever their status: it waits there until
// someone answers. Agents offered the live chat get it again: it is news.
// It runs once per chat (creation, or the queue timeout's script).
func (b *Bridge) offerOffline(cv *chatView, first *Message, o *batch) {
	agents := b.dir.AgentsOf(cv.Property)
	if len(agents) > 0 {
		members := make([]any, len(agents))
		for i, id := range agents {
			members[i] = string(id)
		}
		key := b.keys.Offered(cv.Property, cv.ID)
		o.op(func(ctx context.Context, p redis.Pipeliner) { p.SAdd(ctx, key, members...) })
	}
	b.deliverTo(o, cv, Delivery{Kind: KindOffer, Message: first}, audience{Shared: true, Agents: agents})
	for _, id := range agents {
		if !slices.Contains(cv.offered, id) {
			cv.offered = append(cv.offered, id)
		}
	}
}

// firstMessage is the visitor's opening message, shown on offers.
func (b *Bridge) firstMessage(ctx context.Context, cv *chatView) *Message {
	ms, err := b.readMessages(ctx, cv.Property, cv.ID, "", 1)
	if err != nil || len(ms) == 0 {
		return nil
	}
	return &ms[0]
}

// claim makes agent the owner of an unowned chat and tells everyone. It
// returns the reply for the agent and whether the agent now owns the chat.
func (b *Bridge) claim(ctx context.Context, cv *chatView, agent presence.AgentID, o *batch) (Reply, bool, error) {
	res, err := acceptScript.Run(ctx, b.rdb, b.chatKeys(cv), string(cv.ID), string(agent), ms(b.now())).StringSlice()
	if err != nil {
		return Reply{}, false, fmt.Errorf("bridge: accept: %w", err)
	}
	switch res[0] {
	case "missing":
		return Reply{Text: "I can't find that chat any more."}, false, nil
	case "closed":
		return Reply{Text: "That chat is already closed."}, false, nil
	case "mine":
		return Reply{Text: "That chat is already yours."}, true, nil
	case "taken":
		owner := presence.AgentID(res[1])
		cv.Owner, cv.State = owner, Active
		return Reply{Text: fmt.Sprintf("Already taken by %s.", b.agentName(owner))}, false, nil
	}
	cv.Owner, cv.State = agent, Active
	name := b.agentName(agent)
	b.offersTaken(o, cv)
	o.cancelChatTimers(cv, timerOffer, timerFallback, timerQueue)
	b.scheduleIdle(o, cv)
	b.setCurrent(o, agent, cv.ID)
	line := name + " joined the chat."
	if _, err := b.appendMessage(ctx, cv.Property, Message{Chat: cv.ID, From: FromSystem, Text: line, At: b.now()}); err != nil {
		b.log.Warn("store join line", "chat_id", cv.ID, "err", err)
	}
	o.event(VisitorEvent{Type: EventAgentJoined, Chat: cv.ID, Agent: name})
	return Reply{Text: fmt.Sprintf("You're now chatting with %s. Reply here to answer.", cv.Visitor.Label())}, true, nil
}

// offersTaken edits the offers of a chat that just got its owner (cv.Owner)
// to say who took it: the shared places' and those of every agent it was
// offered to but the owner.
func (b *Bridge) offersTaken(o *batch, cv *chatView) {
	b.deliverTo(o, cv, Delivery{Kind: KindTaken, TakenBy: b.agentName(cv.Owner)}, audience{Shared: true, Agents: cv.offered, Except: cv.Owner})
}

// Label is how agents see the visitor: "Name (email)", or what there is of it.
func (v Visitor) Label() string {
	switch {
	case v.Name != "" && v.Email != "":
		return fmt.Sprintf("%s (%s)", v.Name, v.Email)
	case v.Name != "":
		return v.Name
	case v.Email != "":
		return v.Email
	}
	return "a visitor"
}

func (b *Bridge) scheduleIdle(o *batch, cv *chatView) {
	r, _ := b.routing(cv.Property)
	o.timer(timerMember(timerIdle, cv.Property, string(cv.ID)), b.now().Add(r.CloseAfterIdle))
}

func (b *Bridge) setCurrent(o *batch, agent presence.AgentID, id ChatID) {
	key := b.keys.Current(agent)
	o.op(func(ctx context.Context, p redis.Pipeliner) { p.Set(ctx, key, string(id), 0) })
}

// closeChat closes a chat once and tells the visitor and the agents. It
// reports false if the chat was already closed.
func (b *Bridge) closeChat(ctx context.Context, cv *chatView, by, why string) (bool, error) {
	prop := cv.Property
	keys := append(b.chatKeys(cv), b.keys.Messages(prop, cv.ID), b.keys.Offered(prop, cv.ID), b.keys.Monitors(prop, cv.ID))
	res, err := closeScript.Run(ctx, b.rdb, keys, string(cv.ID), by, ms(b.now()), b.cfg.ClosedChatTTL.Milliseconds()).StringSlice()
	if err != nil {
		return false, unavailable("close chat", err)
	}
	switch res[0] {
	case "missing":
		return false, ErrUnknownChat
	case "closed":
		return false, nil
	}
	wasPending := res[1] == ""
	cv.State, cv.ClosedBy = Closed, by
	var o batch
	if wasPending {
		// The offers are withdrawn; monitors who had no offer are told it closed.
		b.deliverTo(&o, cv, Delivery{Kind: KindWithdrawn, Text: why}, audience{Shared: true, Agents: cv.offered})
		var unoffered []presence.AgentID
		for _, id := range cv.Monitors {
			if !slices.Contains(cv.offered, id) {
				unoffered = append(unoffered, id)
			}
		}
		b.deliverTo(&o, cv, Delivery{Kind: KindClosed, Text: why}, audience{Agents: unoffered})
	} else {
		b.deliverTo(&o, cv, Delivery{Kind: KindClosed, Text: why}, followers(cv, "", ""))
	}
	o.cancelChatTimers(cv, timerOffer, timerFallback, timerQueue, timerIdle)
	chatp, ttl := b.keys.ChatProperty(cv.ID), b.cfg.ClosedChatTTL
	o.op(func(ctx context.Context, p redis.Pipeliner) { p.PExpire(ctx, chatp, ttl) })
	if len(cv.Monitors) > 0 {
		pairs := make([]any, len(cv.Monitors))
		for i, m := range cv.Monitors {
			pairs[i] = string(m) + "|" + string(cv.ID)
		}
		key := b.keys.Monitoring(cv.Property)
		o.op(func(ctx context.Context, p redis.Pipeliner) { p.SRem(ctx, key, pairs...) })
	}
	reason := "closed"
	switch {
	case by == "visitor":
		reason = "closed by visitor"
	case by == "idle":
		reason = "closed after inactivity"
	case strings.HasPrefix(by, "agent:"):
		reason = "closed by agent"
	}
	o.event(VisitorEvent{Type: EventChatClosed, Chat: cv.ID, Reason: reason})
	b.notify(&o, cv, HookChatClosed, nil, nil)
	if err := b.flush(ctx, &o); err != nil {
		return true, unavailable("announce close", err)
	}
	return true, nil
}

// convertToOffline is the queue timeout: nobody accepted in time, so the
// visitor is told and the chat becomes an offline message for every agent.
func (b *Bridge) convertToOffline(ctx context.Context, cv *chatView) error {
	p := cv.Property
	n, err := queueTimeoutScript.Run(ctx, b.rdb,
		[]string{b.keys.Chat(p, cv.ID), b.keys.Pending(p), b.keys.Offline(p)}, string(cv.ID), ms(b.now())).Int()
	if err != nil {
		return fmt.Errorf("bridge: queue timeout: %w", err)
	}
	if n == 0 {
		return nil
	}
	cv.Offline = true
	metrics.MissedChats.WithLabelValues(string(p)).Inc()
	metrics.OfflineMessages.WithLabelValues(string(p), "queue_timeout").Inc()
	var o batch
	m, err := b.appendMessage(ctx, p, Message{Chat: cv.ID, From: FromSystem, At: b.now(),
		Text: "Sorry, nobody could answer right away. We've kept your message and will reply here as soon as we can."})
	if err == nil {
		o.event(VisitorEvent{Type: EventMessage, Chat: cv.ID, Message: &m})
		b.notify(&o, cv, HookChatMessage, &m, nil)
	}
	o.cancelChatTimers(cv, timerOffer, timerFallback)
	first := b.firstMessage(ctx, cv)
	b.notify(&o, cv, HookOfflineMessage, first, nil)
	b.offerOffline(cv, first, &o)
	return b.flush(ctx, &o)
}

// offerPendingTo offers an agent who just came online the pending chats of
// their properties (all of them, or only p) that they were not offered yet
// (under least_loaded, only chats no online agent holds an offer for).
func (b *Bridge) offerPendingTo(ctx context.Context, agent presence.AgentID, only ...presence.PropertyID) error {
	a, ok := b.dir.Agent(agent)
	if !ok {
		return nil
	}
	// The agent's load, read once: offers do not change it, and it counts
	// the chats of all their properties. nil until needed.
	var load *int
	full := func(max int) bool {
		if load == nil {
			l, err := b.loads(ctx, []presence.AgentID{agent})
			if err != nil {
				return false
			}
			n := l[agent]
			load = &n
		}
		return *load >= max
	}
	var o batch
	for _, p := range a.Properties {
		r, ok := b.routing(p)
		if !ok || len(only) > 0 && !slices.Contains(only, p) {
			continue
		}
		ids, err := b.rdb.ZRange(ctx, b.keys.Pending(p), 0, 49).Result()
		if err != nil {
			return fmt.Errorf("bridge: pending chats: %w", err)
		}
		for _, id := range ids {
			cv, err := b.loadChat(ctx, ChatID(id))
			if err != nil || cv.State != Pending || cv.Owner != "" || slices.Contains(cv.offered, agent) {
				continue
			}
			// least_loaded: an online agent holding the offer keeps it until
			// accept_timeout; the newcomer is only for chats nobody online has.
			if r.Strategy == LeastLoaded && slices.ContainsFunc(cv.offered, func(id presence.AgentID) bool {
				return b.watcher.Effective(id) == presence.Online
			}) {
				continue
			}
			if r.MaxChats > 0 && full(r.MaxChats) {
				continue
			}
			n := len(cv.offered)
			if err := b.offerTo(ctx, &cv, []presence.AgentID{agent}, false, b.firstMessage(ctx, &cv), &o); err != nil {
				return err
			}
			if len(cv.offered) > n && r.Strategy == LeastLoaded {
				o.timer(timerMember(timerOffer, p, string(cv.ID)), b.now().Add(r.AcceptTimeout))
			}
		}
	}
	return b.flush(ctx, &o)
}

// followPresence offers pending chats to agents who become online however
// it happens (a command on any instance, the admin API): it watches each
// property's snapshot and compares effective statuses.
func (b *Bridge) followPresence(ctx context.Context, p presence.PropertyID) {
	agents := b.dir.AgentsOf(p)
	prev := make(map[presence.AgentID]presence.Status, len(agents))
	for {
		changed := b.watcher.Changed(p)
		if changed == nil {
			return
		}
		for _, id := range agents {
			st := b.watcher.Effective(id)
			if was, seen := prev[id]; seen && was != presence.Online && st == presence.Online {
				if err := b.offerPendingTo(ctx, id, p); err != nil && ctx.Err() == nil {
					b.log.Warn("offer pending chats", "agent_id", id, "property", p, "err", err)
				}
			}
			prev[id] = st
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}
