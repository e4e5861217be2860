package bridge

import (
	"hash/fnv"
	"strconv"

	"github.com/onduty/onduty/presence"
)

// keys builds every Redis key and channel of the bridge; nothing else in the
// package spells a key. Every key of a chat carries its property as hash tag
// ("{acme}"), so the multi-key scripts of a chat stay in one cluster slot.
// Keys that are not about one property (the timer set, outbox shards, the
// visitor channel, dedup marks, an agent's current chat) are single-key only.
type keys struct{ prefix string }

func newKeys(prefix string) keys {
	if prefix == "" {
		prefix = "onduty:"
	}
	return keys{prefix: prefix}
}

func (k keys) tag(p presence.PropertyID) string { return k.prefix + "{" + string(p) + "}:" }

// Chat is the hash holding one chat's fields (see doc.go).
func (k keys) Chat(p presence.PropertyID, id ChatID) string { return k.tag(p) + "chat:" + string(id) }

// Messages is the stream holding a chat's transcript, notes included.
func (k keys) Messages(p presence.PropertyID, id ChatID) string {
	return k.tag(p) + "msgs:" + string(id)
}

// Offered is the set of agents a chat was offered to.
func (k keys) Offered(p presence.PropertyID, id ChatID) string {
	return k.tag(p) + "offered:" + string(id)
}

// Monitors is the set of agents monitoring a chat.
func (k keys) Monitors(p presence.PropertyID, id ChatID) string {
	return k.tag(p) + "mon:" + string(id)
}

// Monitoring is the set of "agent|chat" pairs of a property (for /chats).
func (k keys) Monitoring(p presence.PropertyID) string { return k.tag(p) + "monitoring" }

// Owners is the hash chat → owner of a property's active chats.
func (k keys) Owners(p presence.PropertyID) string { return k.tag(p) + "owners" }

// Load is the sorted set agent → number of active chats owned in the property.
func (k keys) Load(p presence.PropertyID) string { return k.tag(p) + "load" }

// Pending is the sorted set of a property's pending live chats, by start time.
func (k keys) Pending(p presence.PropertyID) string { return k.tag(p) + "pending" }

// Offline is the sorted set of a property's unanswered offline messages.
func (k keys) Offline(p presence.PropertyID) string { return k.tag(p) + "offline" }

// File is the hash holding one attachment (name, mime, data).
func (k keys) File(p presence.PropertyID, id ChatID, key string) string {
	return k.tag(p) + "file:" + string(id) + ":" + key
}

// Seen counts the chats of one visitor identifier (hashed) in a property,
// which tells a returning visitor.
func (k keys) Seen(p presence.PropertyID, hash string) string { return k.tag(p) + "seen:" + hash }

// Block is one block's record (JSON), expiring when the block ends.
func (k keys) Block(p presence.PropertyID, id string) string { return k.tag(p) + "block:" + id }

// Blocks is the sorted set of a property's block ids by end (unix ms).
func (k keys) Blocks(p presence.PropertyID) string { return k.tag(p) + "blocks" }

// BlockChat marks a blocked chat: "blockid|until-ms".
func (k keys) BlockChat(p presence.PropertyID, id ChatID) string {
	return k.tag(p) + "blocked:chat:" + string(id)
}

// BlockIP marks a blocked client address (IPv4, or an IPv6 /64): "blockid|until-ms".
func (k keys) BlockIP(p presence.PropertyID, ip string) string {
	return k.tag(p) + "blocked:ip:" + ip
}

// BlockVisitor marks a blocked visitor id (the widget's): "blockid|until-ms".
func (k keys) BlockVisitor(p presence.PropertyID, vid string) string {
	return k.tag(p) + "blocked:vid:" + vid
}

// ChatProperty maps a chat id to its property (a chat id alone names no slot).
func (k keys) ChatProperty(id ChatID) string { return k.prefix + "chatp:" + string(id) }

// Current is the chat an agent's plain text goes to.
func (k keys) Current(a presence.AgentID) string { return k.prefix + "cur:{" + string(a) + "}" }

// Dedup marks a handled inbound platform event.
func (k keys) Dedup(key string) string { return k.prefix + "dedup:" + key }

// Refs is the hash of what adapter made on its platform for a chat (see
// refs.go for its fields).
func (k keys) Refs(adapter string, id ChatID) string {
	return k.prefix + "refs:{" + string(id) + "}:" + adapter
}

// RefChat maps one platform object to its chat: kind "m" for a message
// (id: its message id), "t" for a thread or forum topic (id: its thread id).
func (k keys) RefChat(surface, conversation, kind, id string) string {
	return k.prefix + k.refChatSuffix(surface, conversation, kind, id)
}

func (k keys) refChatSuffix(surface, conversation, kind, id string) string {
	return "ref:" + surface + ":" + conversation + ":" + kind + ":" + id
}

// Progress is the hash delivery id → the objects an attempt made before it
// failed (JSON []RemoteRef), for one outbox shard.
func (k keys) Progress(adapter string, shard int) string {
	return k.Outbox(adapter, shard) + ":progress"
}

// Timers is the sorted set of due timers (member "kind|property|target", score unix ms).
func (k keys) Timers() string { return k.prefix + "timers" }

// Outbox is one shard stream of an adapter's outbox.
func (k keys) Outbox(adapter string, shard int) string {
	return k.prefix + "outbox:{" + adapter + ":" + strconv.Itoa(shard) + "}"
}

// OutboxLease names the instance that works an outbox shard.
func (k keys) OutboxLease(adapter string, shard int) string {
	return k.Outbox(adapter, shard) + ":lease"
}

// DeadLetter is the stream of deliveries given up on.
func (k keys) DeadLetter() string { return k.prefix + "outbox:dead" }

// VisitorChannel carries visitor events to every instance.
func (k keys) VisitorChannel() string { return k.prefix + "visitor-events" }

// KickChannel tells every instance which outbox shards just got work, so the
// one holding a shard's lease delivers at once instead of at its next poll.
func (k keys) KickChannel() string { return k.prefix + "outbox-kick" }

// Shard spreads keys over n workers or shards: the same key always lands in
// the same one, which keeps one chat's work in order. The outbox uses it for
// its shards (by chat, or by agent for notices), the adapters for their
// per-chat workers. n must be positive.
func Shard(s string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int(h.Sum32() % uint32(n))
}
