// Package bridge is onduty's core: it keeps visitor chats in Redis, routes
// them to agents (SPEC §4), relays messages both ways, and fires the timers
// the rules need. Adapters (Telegram, Slack) translate and keep no chat
// state: what they make on their platforms is recorded here (refs.go). The
// widget calls it through widget.Bridge; the rules live here. The seam and
// the life of a message are in docs/ARCHITECTURE.md.
//
// # Chat states
//
//	from      event                                   to        who / how
//	-         StartChat                               pending   visitor; offered per strategy
//	-         LeaveOfflineMessage                     pending*  visitor; offered to every agent
//	pending   Accept, or a reply from a non-owner     active    acceptScript: exactly one owner
//	pending   queue_timeout                           pending*  queueTimeoutScript; visitor told
//	pending*  Accept or reply                         active    acceptScript (answers later)
//	pending   /transfer NAME                          active    transferScript (owner = NAME)
//	active    /transfer NAME by the owner             active    transferScript (new owner)
//	any open  /close (owner; anyone while unowned)    closed    closeScript
//	any open  CloseByVisitor                          closed    closeScript
//	any open  /block (owner; anyone while unowned)    closed    closeScript; visitor blocked (block.go)
//	active    close_after_idle without messages       closed    idle timer → closeScript
//
// pending* is a pending chat with Offline set: an offline message.
//
// # Routing
//
// least_loaded offers a new chat to the online agent with the fewest active
// chats (over all their properties) under max_chats, and after
// accept_timeout to the next such agent not offered yet. broadcast offers it
// to every online agent under max_chats. With nobody online, away agents are
// told (they may take it by hand). After invisible_fallback_after (0 = off)
// invisible agents are offered it with a Monitor button. An agent who comes
// online (first contact, /online) while chats are pending is offered them.
// Adapters with a shared place (Adapter.Shared) get each chat event once,
// with an empty Delivery.Agent; other adapters get one Delivery per agent
// they reach. Notices and prompts are always per agent.
//
// # Redis keys
//
// All keys start with Config.Prefix ("onduty:"); {p} is the property as
// hash tag, so every multi-key script of a chat stays in one cluster slot.
// keys.go is the only place that builds them. A closed chat's own keys
// expire ClosedChatTTL (config closed_chat_retention, 30 days by default)
// after it closed; its attachments FileTTL after they came.
//
//	key                          type    content                                   expiry
//	{p}:chat:ID                  hash    state, owner, offline, created, last,     ClosedChatTTL after close
//	                                     accepted, replied (first agent answer),
//	                                     closed_by, closed_at, visitor (JSON),
//	                                     token (hex SHA-256); with an email
//	                                     sender and a visitor address: link
//	                                     (the token itself, for continue links),
//	                                     read (last message id the visitor saw),
//	                                     emailed (last reply id emailed),
//	                                     mailed_at, email_error (a 5xx answer);
//	                                     rating (JSON) once rated; always ip
//	                                     (the client address, an IPv6 one as
//	                                     its /64), vid (the widget's visitor id);
//	                                     returning (chats the visitor started
//	                                     before)
//	{p}:msgs:ID                  stream  transcript, field m = Message JSON        ClosedChatTTL after close
//	                                     (notes included, marked Note)
//	{p}:offered:ID               set     agents the chat was offered to            ClosedChatTTL after close
//	{p}:mon:ID                   set     agents monitoring the chat                ClosedChatTTL after close
//	{p}:monitoring               set     "agent|chat" pairs (for /chats)            none
//	{p}:owners                   hash    chat → owner, active chats                 none
//	{p}:load                     zset    agent → active chats owned                 none
//	{p}:pending                  zset    pending live chats by start (ms)           none
//	{p}:offline                  zset    unanswered offline messages by time        none
//	{p}:file:ID:KEY              hash    name, mime, data of an attachment          FileTTL
//	{p}:seen:HASH                string  chats started by one visitor identifier    365d after the last
//	                                     (hashed widget visitor id, verified user
//	                                     id or email): "returning visitor"
//	{p}:block:ID                 string  a block's record (Block JSON)              when the block ends
//	{p}:blocks                   zset    block ids by end (ms)                     none (ended ones pruned on read)
//	{p}:blocked:chat:ID          string  "blockid|until-ms": the chat is blocked   when the block ends
//	{p}:blocked:ip:ADDR          string  "blockid|until-ms": the address is blocked when the block ends
//	{p}:blocked:vid:VID          string  "blockid|until-ms": the visitor id is blocked when the block ends
//	chatp:ID                     string  the chat's property                        ClosedChatTTL after close
//	cur:{agent}                  string  the agent's current chat                   none
//	dedup:KEY                    string  platform event: "busy" while an instance   20s busy, 24h done
//	                                     handles it, "done" once handled
//	refs:{ID}:ADAPTER            hash    what the adapter made for the chat:        30d after the last write
//	                                     thread|TARGET and offer|TARGET|CONV|MSG
//	                                     (RemoteRef JSON), key|SUFFIX (the ref:
//	                                     keys written, for erasure)
//	ref:SURFACE:CONV:m:MSG       string  the chat a platform message belongs to     30d
//	ref:SURFACE:CONV:t:THREAD    string  the chat a thread or topic belongs to      30d
//	timers                       zset    "kind|property|target" → due (ms)          none
//	                                     (kind email: a chat's unread replies)
//	outbox:{adapter:N}           stream  field d = Delivery JSON, shard N           entries deleted when done
//	outbox:{adapter:N}:lease     string  instance working the shard (only while     LeaseTTL (3s), renewed
//	                                     it has work)
//	outbox:{adapter:N}:progress  hash    delivery id → what its failed attempts     30d; field removed when
//	                                     made (RemoteRef JSON list)                 the delivery is done
//	outbox:dead                  stream  adapter, d, err of failed deliveries       MAXLEN ~10000
//	visitor-events               channel VisitorEvent JSON for every instance       -
//	outbox-kick                  channel "adapter|shard …" that just got work,      -
//	                                     "timers" when a timer was set
//
// # Delivery and ordering
//
// Every delivery to an agent surface goes through the outbox: a state change
// writes its deliveries, visitor events and timer changes in one pipeline
// (batch/flush). A chat's deliveries always land in the same shard stream of
// each adapter, and one instance at a time (the lease holder) works a shard,
// so a chat's deliveries are made in order. The same pipeline publishes the
// shards it filled on the outbox-kick channel; every instance's worker of
// such a shard checks it (XLEN) and takes its lease (LeaseTTL, renewed every
// third of it in the background, also during a Deliver call), drains it and
// gives the lease back. An idle shard therefore costs nothing: no lease, no
// renewal, no read, only a safety poll (Config.PollEvery, 5m) for a kick lost
// otherwise than by a dropped subscription (after which every shard is
// checked). A worker that saw work while another instance held the lease
// asks again every LeaseTTL/3 until it gets it, so a dead holder's shards
// are taken over within LeaseTTL plus a third; an instance restarted under
// the same Config.Instance takes its own at once.
//
// Within a shard each chat (or, for notices, agent) has its own queue and
// the worker serves the chats in turn, one delivery each: a chat waiting for
// its retry or its platform's pacing does not hold up the others. Visitor
// messages queued one after another in a chat are merged into one delivery
// (one line each, within MaxTextRunes); a merged delivery the platform
// refuses for good is tried message by message. An item of a chat that has
// more queued, or had a delivery attempted in the last 10s, is marked
// Delivery.Backlog: adapters make it leave the last send their pacing allows
// to fresh chats and never sleep for its turn (RetryAfterError wrapping
// ErrPaced, not a failure), so no chat's backlog delays another chat's first
// message by more than one pacing interval.
//
// Deliver gets no deadline: adapters bound their pacing waits and run each
// platform request through Call, which applies Config.DeliverTimeout (10s)
// to the request alone. A request written out but never answered may have
// been shown (UncertainError): it is retried only after another
// DeliverTimeout, never at once. A failing Deliver is otherwise retried with
// capped exponential backoff (honouring *RetryAfterError) while the chat's
// later entries wait; *PermanentError, or failing for Config.GiveUpAfter,
// moves it to the dead-letter stream. Delivery is at least once: an
// instance dying after Deliver but before the entry's removal delivers it
// again.
//
// # What adapters make
//
// Deliver returns the objects it made on the platform (RemoteRef: a
// message, an offer, the chat's thread or forum topic), also when it fails
// partway. The worker records them in the same round trip that removes
// the entry (refs.go): the ref:… keys map each object to its chat, so an
// agent's reply to it finds the chat (Host.ChatOf, Action.ReplyTo, in the
// round trip that claims the event's dedup mark), and the chat's refs hash
// hands later deliveries their thread and open offers (Delivery.Thread,
// Delivery.Offers). Only the shard's worker writes a chat's refs hash, so
// it reads it once per lease and keeps it. What a failed attempt made is
// kept in the shard's progress hash and handed to the next attempt
// (Delivery.Done), which continues after it. Adapters keep no chat state;
// an adapter that did before (RefMigrator) moves it here at start.
//
// Visitor events are published on one channel every instance follows and
// fanned out to the streams open there; the transcript is the durable copy.
//
// # Email
//
// An adapter named EmailTarget (adapters/email) makes the bridge email
// visitors (SPEC §9). It reaches no agent and has no shared place, so chat
// events never go to it; the bridge queues KindEmail deliveries for it
// explicitly, through the same outbox, so emails are retried, ordered per
// chat and survive restarts like platform deliveries. A 5xx answer comes
// back as *PermanentError and is recorded on the chat (email_error).
// An agent's reply in a chat with a visitor address arms the chat's email
// timer at reply+email_after, in the reply's own pipeline (ZADD LT: a sooner
// one stays). When it fires, the agent replies after both the read and the
// emailed cursors go out in one email; emails of one chat are at least
// email_after apart. The firing instance first pushes the timer past any
// reply's due time and at the end removes it only if no reply pulled it
// back meanwhile, so a reply that lands during the firing is not lost.
//
// # Timers
//
// Timers (accept timeout, invisible fallback, queue timeout, idle close,
// "Still on duty?" prompt) are members of one sorted set scored by due time
// on the bridge's clock. Every instance's timer loop sleeps until the
// earliest one (or the safety poll), and is woken when any instance sets a
// timer ("timers" on the outbox-kick channel). claimTimersScript hands each
// due timer to one instance by pushing its score a lease (30s) ahead; it is
// removed when fired, unless rescheduled meanwhile. An instance that dies mid-fire leaves
// it to fire again after the lease. Handlers check the chat's state first,
// so firing twice, or after the chat moved on, changes nothing.
//
// # Concurrency
//
// Bridge methods are safe for concurrent use from any number of goroutines
// and instances; the atomic steps (accept, transfer, close, queue timeout,
// append to an open chat, timer claims, shard leases) are Lua scripts.
// Run starts one goroutine per adapter shard (and, while a shard is worked,
// one renewing its lease), one per adapter, one per
// property (offering pending chats to agents who come online), the timer
// loop and the visitor feed, and returns when all have stopped.
package bridge
