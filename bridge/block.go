package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/presence"
)

// DefaultBlockFor is how long "/block" without a duration blocks a visitor.
const DefaultBlockFor = 30 * 24 * time.Hour

// maxBlockFor caps a block's duration (a typo like "/block 9999999h").
const maxBlockFor = 10 * 365 * 24 * time.Hour

// ErrBlocked refuses a blocked visitor's new chats, offline messages and
// messages.
var ErrBlocked = errors.New("bridge: the visitor is blocked")

// Block is one blocked visitor of a property: the chat it was made from,
// the client address that chat was started from (an IPv6 address as its
// /64) and the visitor id the widget sent with it, if any. A block ends at
// Until, or when lifted.
type Block struct {
	ID       string              `json:"id"`
	Property presence.PropertyID `json:"-"`
	Chat     ChatID              `json:"chat_id"`
	IP       string              `json:"ip"`
	Visitor  string              `json:"visitor_id,omitempty"`
	Until    time.Time           `json:"until"`
	// By is the agent who blocked.
	By presence.AgentID `json:"by,omitempty"`
}

// BlockStore is the admin's view of the blocks. *Bridge implements it; the
// widget's admin API uses it (widget.Bridge).
type BlockStore interface {
	// Blocks lists the property's blocks in force, soonest to end first.
	Blocks(ctx context.Context, p presence.PropertyID) ([]Block, error)
	// Unblock lifts a block; false if there is no such block in force.
	Unblock(ctx context.Context, p presence.PropertyID, id string) (bool, error)
}

var _ BlockStore = (*Bridge)(nil)

// blockKey is how a client address is blocked: an IPv4 address as it is,
// an IPv6 address as its /64 (one subscriber's network, as the rate limits
// count it). "" when ip is not an address.
func blockKey(ip string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return ""
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// parseBlockFor reads "/block" arguments: nothing (30 days), a Go duration
// ("12h", "90m") or whole days or weeks ("7d", "2w").
func parseBlockFor(arg string) (time.Duration, error) {
	arg = strings.ToLower(strings.TrimSpace(arg))
	if arg == "" {
		return DefaultBlockFor, nil
	}
	var d time.Duration
	if n, unit := arg[:len(arg)-1], arg[len(arg)-1]; unit == 'd' || unit == 'w' {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("bad duration")
		}
		if unit == 'w' {
			days *= 7
		}
		if days > int(maxBlockFor/(24*time.Hour)) {
			return 0, fmt.Errorf("too long")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(arg); err != nil {
			return 0, fmt.Errorf("bad duration")
		}
	}
	if d < time.Minute {
		return 0, fmt.Errorf("too short")
	}
	if d > maxBlockFor {
		return 0, fmt.Errorf("too long")
	}
	return d, nil
}

// blockedValue is what a block's index keys hold: "id|until-ms". A block
// ends at until by the bridge's clock, and its keys expire then too.
func blockedValue(id string, until time.Time) string {
	return id + "|" + strconv.FormatInt(ms(until), 10)
}

// inForce reads an index key's value: the block's id if it has not ended.
func inForce(v string, now time.Time) (string, bool) {
	id, u, ok := strings.Cut(v, "|")
	if !ok {
		return "", false
	}
	until, err := strconv.ParseInt(u, 10, 64)
	return id, err == nil && until > ms(now)
}

// blockedVisitor returns ErrBlocked when new chats from the visitor (their
// address or visitor id) are refused for the property.
func (b *Bridge) blockedVisitor(ctx context.Context, p presence.PropertyID, v Visitor) error {
	var keys []string
	if k := blockKey(v.IP); k != "" {
		keys = append(keys, b.keys.BlockIP(p, k))
	}
	if ValidVisitorID(v.ID) {
		keys = append(keys, b.keys.BlockVisitor(p, v.ID))
	}
	if len(keys) == 0 {
		return nil
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("check block", err)
	}
	for _, c := range cmds {
		if _, ok := inForce(c.Val(), b.now()); ok {
			return ErrBlocked
		}
	}
	return nil
}

// chatForTool finds the chat a /block or /unblock means: the one the
// platform named, else the agent's current chat even when it is closed
// (blocking closes it), else the one chat the agent may act on.
func (b *Bridge) chatForTool(ctx context.Context, agent presence.Agent, act Action) (chatView, string, error) {
	if act.Chat == "" {
		if cur, err := b.rdb.Get(ctx, b.keys.Current(agent.ID)).Result(); err == nil && cur != "" {
			if cv, err := b.loadChat(ctx, ChatID(cur)); err == nil && slices.Contains(agent.Properties, cv.Property) {
				return cv, "", nil
			}
		}
	}
	return b.resolveChat(ctx, agent, act.Chat, false)
}

// blockCommand answers "/block [DURATION]": the chat's visitor (their chat
// and the address it was started from) may start no chat, leave no offline
// message and send no message to the property until the block ends. The
// chat is closed.
func (b *Bridge) blockCommand(ctx context.Context, agent presence.Agent, act Action, arg string) (Reply, error) {
	d, err := parseBlockFor(arg)
	if err != nil {
		return Reply{Text: "Use /block, /block 7d, /block 12h (from one minute to ten years; 30 days without a duration).", Private: true}, nil
	}
	cv, why, err := b.chatForTool(ctx, agent, act)
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	if cv.Owner != "" && cv.Owner != agent.ID {
		return Reply{Text: fmt.Sprintf("%s is handling that chat; only they can block its visitor.", b.agentName(cv.Owner)), Private: true}, nil
	}
	// The chat keeps its address as blockKey made it (field ip) and the
	// widget's visitor id (field vid).
	who, err := b.rdb.HMGet(ctx, b.keys.Chat(cv.Property, cv.ID), "ip", "vid").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Reply{}, unavailable("block", err)
	}
	ip, _ := who[0].(string)
	vid, _ := who[1].(string)
	blk := Block{ID: randomString(9), Property: cv.Property, Chat: cv.ID, IP: ip, Visitor: vid, Until: b.now().Add(d).Truncate(time.Second), By: agent.ID}
	if err := b.putBlock(ctx, blk); err != nil {
		return Reply{}, err
	}
	b.log.Info("visitor blocked", "property", cv.Property, "chat_id", cv.ID, "block_id", blk.ID, "agent_id", agent.ID, "until", blk.Until)
	if cv.State != Closed {
		if _, err := b.closeChat(ctx, &cv, "agent:"+string(agent.ID), b.agentName(agent.ID)+" closed the chat."); err != nil {
			return Reply{}, err
		}
	}
	return Reply{Text: fmt.Sprintf("Blocked the visitor of the chat with %s until %s: no new chats or messages from them. /unblock in this chat lifts it.",
		cv.Visitor.Label(), blk.Until.UTC().Format("2006-01-02 15:04 MST"))}, nil
}

// putBlock stores a block: its record, its place in the property's list and
// its index keys, all ending when the block does. A newer block of the same
// chat or address takes over the index key.
func (b *Bridge) putBlock(ctx context.Context, blk Block) error {
	rec, err := json.Marshal(blk)
	if err != nil {
		return fmt.Errorf("bridge: encode block: %w", err)
	}
	ttl := blk.Until.Sub(b.now())
	val := blockedValue(blk.ID, blk.Until)
	pipe := b.rdb.TxPipeline()
	pipe.Set(ctx, b.keys.Block(blk.Property, blk.ID), rec, ttl)
	pipe.ZAdd(ctx, b.keys.Blocks(blk.Property), redis.Z{Score: float64(ms(blk.Until)), Member: blk.ID})
	pipe.Set(ctx, b.keys.BlockChat(blk.Property, blk.Chat), val, ttl)
	if blk.IP != "" {
		pipe.Set(ctx, b.keys.BlockIP(blk.Property, blk.IP), val, ttl)
	}
	if blk.Visitor != "" {
		pipe.Set(ctx, b.keys.BlockVisitor(blk.Property, blk.Visitor), val, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable("store block", err)
	}
	return nil
}

// unblockCommand answers "/unblock": lifts the block made from the chat.
func (b *Bridge) unblockCommand(ctx context.Context, agent presence.Agent, act Action) (Reply, error) {
	cv, why, err := b.chatForTool(ctx, agent, act)
	if err != nil || why != "" {
		return Reply{Text: why, Private: true}, err
	}
	v, err := b.rdb.Get(ctx, b.keys.BlockChat(cv.Property, cv.ID)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Reply{}, unavailable("unblock", err)
	}
	id, ok := inForce(v, b.now())
	if ok {
		if ok, err = b.Unblock(ctx, cv.Property, id); err != nil {
			return Reply{}, err
		}
	}
	if !ok {
		return Reply{Text: fmt.Sprintf("The visitor of the chat with %s is not blocked.", cv.Visitor.Label()), Private: true}, nil
	}
	b.log.Info("visitor unblocked", "property", cv.Property, "chat_id", cv.ID, "block_id", id, "agent_id", agent.ID)
	return Reply{Text: fmt.Sprintf("Unblocked the visitor of the chat with %s.", cv.Visitor.Label())}, nil
}

// unblockScript removes a block and those of its index keys that still
// point at it (a newer block may have taken one over).
var unblockScript = redis.NewScript(`
-- KEYS[1] block record   KEYS[2] the property's block list
-- KEYS[3..] index keys: chat, address, visitor id (those the block has)
-- ARGV[1] block id
-- Returns 1 if the block existed.
local had = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    redis.call('DEL', KEYS[i])
  end
end
return had
`)

// Unblock lifts a block; false if there is no such block in force.
func (b *Bridge) Unblock(ctx context.Context, p presence.PropertyID, id string) (bool, error) {
	if _, ok := b.routing(p); !ok {
		return false, ErrUnknownProperty
	}
	if !ChatID(id).IsValid() {
		return false, nil
	}
	rec, err := b.rdb.Get(ctx, b.keys.Block(p, id)).Result()
	if errors.Is(err, redis.Nil) {
		b.rdb.ZRem(ctx, b.keys.Blocks(p), id)
		return false, nil
	}
	if err != nil {
		return false, unavailable("unblock", err)
	}
	var blk Block
	if err := json.Unmarshal([]byte(rec), &blk); err != nil {
		return false, fmt.Errorf("bridge: block %s: %w", id, err)
	}
	keys := []string{b.keys.Block(p, id), b.keys.Blocks(p), b.keys.BlockChat(p, blk.Chat)}
	if blk.IP != "" {
		keys = append(keys, b.keys.BlockIP(p, blk.IP))
	}
	if blk.Visitor != "" {
		keys = append(keys, b.keys.BlockVisitor(p, blk.Visitor))
	}
	n, err := unblockScript.Run(ctx, b.rdb, keys, id).Int()
	if err != nil {
		return false, unavailable("unblock", err)
	}
	return n == 1 && blk.Until.After(b.now()), nil
}

// Blocks lists the property's blocks in force, soonest to end first. Ended
// ones are dropped from the list as it is read.
func (b *Bridge) Blocks(ctx context.Context, p presence.PropertyID) ([]Block, error) {
	if _, ok := b.routing(p); !ok {
		return nil, ErrUnknownProperty
	}
	now := ms(b.now())
	list := b.keys.Blocks(p)
	if err := b.rdb.ZRemRangeByScore(ctx, list, "-inf", strconv.FormatInt(now, 10)).Err(); err != nil {
		return nil, unavailable("list blocks", err)
	}
	ids, err := b.rdb.ZRange(ctx, list, 0, 999).Result()
	if err != nil {
		return nil, unavailable("list blocks", err)
	}
	out := []Block{}
	if len(ids) == 0 {
		return out, nil
	}
	recKeys := make([]string, len(ids))
	for i, id := range ids {
		recKeys[i] = b.keys.Block(p, id)
	}
	// One slot ({p}), but MGET across keys is refused by some proxies:
	// a pipeline of GETs works everywhere.
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(recKeys))
	for i, k := range recKeys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("list blocks", err)
	}
	for i, c := range cmds {
		rec, err := c.Result()
		if err != nil {
			continue // expired meanwhile, or lifted
		}
		var blk Block
		if err := json.Unmarshal([]byte(rec), &blk); err != nil {
			b.log.Warn("bad stored block", "property", p, "block_id", ids[i], "err", err)
			continue
		}
		if blk.Until.After(b.now()) {
			blk.Property = p
			out = append(out, blk)
		}
	}
	return out, nil
}
