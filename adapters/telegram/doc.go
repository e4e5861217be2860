// Package telegram connects the bridge to Telegram through the Bot API
// (github.com/go-telegram/bot). It only translates: Telegram updates from
// configured agents become bridge.Actions, bridge.Deliveries become Telegram
// messages. Routing, permissions, ownership and command wording live in the
// bridge.
//
// Two places to talk to agents:
//   - private-chat mode: each agent's private chat with the bot. Offers come
//     with Accept (and Monitor) buttons; visitor messages are tagged
//     "[Name · #chat]"; a reply to one of them answers that chat, plain text
//     answers the agent's current chat (the bridge decides which).
//   - forum-topic mode (Config.Groups names a forum supergroup for a
//     property): one topic per visitor chat; anything an agent writes in the
//     topic is for that chat. A deleted topic is recreated and the message
//     sent again.
//   - group mode (Config.Groups names a basic group, or a supergroup without
//     topics): offers with Accept buttons and every chat's messages are
//     posted in the group, tagged like in a private chat; an agent answers
//     by replying to a visitor's message (or the offer), and other talk in
//     the group is not relayed. Which of the two a group is comes from
//     getChat (is_forum), or from createForumTopic refusing (groups.go).
//
// The adapter keeps no chat state: Deliver returns what it made on Telegram
// (each message as a bridge.RemoteRef, offers as RefOffer, a forum topic it
// created as RefThread) and the bridge keeps it, handing back the chat's
// topic (Delivery.Thread), its open offers (Delivery.Offers) and what a
// failed attempt already sent (Delivery.Done: one message per piece). What
// an agent answers is named in Action.ReplyTo (the message replied to, the
// topic written in) for the bridge to find its chat. MigrateRefs moves the
// keys earlier versions kept (tg:msg, tg:offer, tg:topic, tg:upd …) into
// the bridge at start (migrate.go).
//
// Receiving: long polling (default) or a webhook (WebhookHandler). With
// several instances exactly one polls, holding a lease in Redis that it
// renews; another instance takes over within about LeaseTTL when the holder
// dies. Each action carries its update's id (Action.DedupKey
// "telegram:<update_id>"): the bridge claims it, so a repeated update
// (webhook retry, restart, lease handover) acts once, and one being handled
// elsewhere (bridge.ErrInProgress) is tried again. Updates that never reach
// the bridge (strangers, foreign buttons) do nothing twice that matters:
// the refusal is sent once a day (tg:refused).
// Updates are handled per Telegram chat (the message's chat, or the user who
// pressed a button): one chat's in Telegram's order, different chats' at
// once, so a slow answer to one agent (pacing, a 429 waited out) holds no
// other agent. Polling hands each update to its chat's worker (dispatch.go)
// and moves the offset only past updates handled: it stays at the oldest
// update still being handled, which Telegram hands again to the next poller
// if this one dies; shutdown waits for the workers. The webhook handles the
// updates of one Telegram chat one at a time, each in its own request.
//
// Sending: Deliver may be called concurrently for different chats. Sends are
// paced under Telegram's limits (about 1/s per chat, 20/min per group, 30/s
// per bot) by token buckets kept in Redis, so that all instances share one
// budget (a local limiter stands in while Redis is away). When the wait
// would be long, or Telegram answers 429, Deliver returns
// *bridge.RetryAfterError and the bridge's outbox tries again later. Long
// texts are split into several messages.
//
// Redis keys (all under Config.Prefix; each operation touches one key, but
// for the pacing script, whose keys share the hash tag {tg}): only what
// exists on Telegram alone.
//
//	tg:lease                    string  owner token of the polling lease, PX LeaseTTL
//	tg:refused:<user_id>        string  refusal sent to a stranger, EX 24h
//	tg:group:<group>            string  "forum" or "plain" (no topics), EX 24h
//	tg:rate:{tg}:bot            hash    the bot's send bucket: t tokens, l last refill (ms), PX refill time + 1s
//	tg:rate:{tg}:<tg_chat>      hash    a chat's send bucket, likewise
//	tg:rate:{tg}:group:<id>     hash    a group's per-minute bucket, likewise
package telegram
