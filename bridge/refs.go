package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/backoff"
	"github.com/onduty/onduty/presence"
)

// What the adapters made on their platforms is kept here, once for every
// platform (an adapter keeps no chat state of its own):
//
//   - refs:{chat}:ADAPTER is a hash per chat and adapter, written only by
//     the outbox worker of the chat's shard (so a worker may cache it while
//     it holds the shard's lease). Its fields:
//     thread|TARGET            the chat's RefThread for TARGET (an agent id,
//     or "" for the shared place), JSON
//     offer|TARGET|CONV|MSG    an offer shown to TARGET not yet edited, JSON
//     key|SUFFIX               a ref:… key written for the chat (erasure)
//   - ref:SURFACE:CONV:m:MSG and ref:SURFACE:CONV:t:THREAD map a message,
//     or a thread, to its chat: what an agent replies to or writes in.
//   - outbox:{adapter:N}:progress maps a delivery id to what its attempts
//     made so far, only while the delivery failed partway.
//
// All of it expires refTTL after the last write (a chat is kept 30 days
// after it closed; an agent's reply to anything older reaches no chat).
const refTTL = 30 * 24 * time.Hour

// chatRefs is a chat's refs hash on one adapter, read once per lease.
type chatRefs struct {
	threads map[presence.AgentID]RemoteRef
	offers  map[presence.AgentID]map[string]RemoteRef // by field
}

func newChatRefs() *chatRefs {
	return &chatRefs{threads: map[presence.AgentID]RemoteRef{}, offers: map[presence.AgentID]map[string]RemoteRef{}}
}

func threadField(target presence.AgentID) string { return "thread|" + string(target) }

func offerField(target presence.AgentID, r RemoteRef) string {
	return "offer|" + string(target) + "|" + r.Conversation + "|" + r.Message
}

// parseChatRefs reads a refs hash; a field it cannot read is skipped (the
// object is then shown again, or not edited, rather than failing the chat).
func parseChatRefs(m map[string]string) *chatRefs {
	cr := newChatRefs()
	for f, v := range m {
		kind, rest, _ := strings.Cut(f, "|")
		if kind != "thread" && kind != "offer" {
			continue
		}
		var r RemoteRef
		if json.Unmarshal([]byte(v), &r) != nil {
			continue
		}
		switch kind {
		case "thread":
			cr.threads[presence.AgentID(rest)] = r
		case "offer":
			target, _, _ := strings.Cut(rest, "|")
			cr.addOffer(presence.AgentID(target), f, r)
		}
	}
	return cr
}

func (cr *chatRefs) addOffer(target presence.AgentID, field string, r RemoteRef) {
	if cr.offers[target] == nil {
		cr.offers[target] = map[string]RemoteRef{}
	}
	cr.offers[target][field] = r
}

// thread is the chat's thread for target, nil if none.
func (cr *chatRefs) thread(target presence.AgentID) *RemoteRef {
	if r, ok := cr.threads[target]; ok {
		return &r
	}
	return nil
}

// offersOf lists target's open offers.
func (cr *chatRefs) offersOf(target presence.AgentID) []RemoteRef {
	var out []RemoteRef
	for _, r := range cr.offers[target] {
		out = append(out, r)
	}
	return out
}

// refWrites records what a delivery made (made) for its chat and target,
// in p, and updates cr to match. After a KindTaken or KindWithdrawn that
// succeeded (edited), the target's offers are forgotten.
func (b *Bridge) refWrites(ctx context.Context, p redis.Pipeliner, cr *chatRefs, adapter string, d Delivery, made []RemoteRef, edited bool) {
	if d.Chat.ID == "" {
		return
	}
	idx := b.keys.Refs(adapter, d.Chat.ID)
	wrote := false
	mapTo := func(kind, id string, r RemoteRef) {
		if id == "" || r.Conversation == "" {
			return
		}
		suffix := b.keys.refChatSuffix(adapter, r.Conversation, kind, id)
		p.Set(ctx, b.keys.prefix+suffix, string(d.Chat.ID), refTTL)
		p.HSet(ctx, idx, "key|"+suffix, "")
		wrote = true
	}
	for _, r := range made {
		body, err := json.Marshal(r)
		if err != nil {
			continue
		}
		switch r.Role {
		case RefThread:
			p.HSet(ctx, idx, threadField(d.Agent), body)
			cr.threads[d.Agent] = r
			mapTo("t", cmp.Or(r.Thread, r.Message), r)
			if r.Message != "" && r.Message != r.Thread {
				mapTo("m", r.Message, r)
			}
		case RefOffer:
			f := offerField(d.Agent, r)
			p.HSet(ctx, idx, f, body)
			cr.addOffer(d.Agent, f, r)
			mapTo("m", r.Message, r)
		default:
			mapTo("m", r.Message, r)
		}
		wrote = true
	}
	if edited && (d.Kind == KindTaken || d.Kind == KindWithdrawn) && len(cr.offers[d.Agent]) > 0 {
		var fields []string
		for f := range cr.offers[d.Agent] {
			fields = append(fields, f)
		}
		p.HDel(ctx, idx, fields...)
		delete(cr.offers, d.Agent)
	}
	if wrote {
		p.Expire(ctx, idx, refTTL)
	}
}

// loadRefs reads a chat's refs on one adapter.
func (b *Bridge) loadRefs(ctx context.Context, adapter string, id ChatID) (*chatRefs, error) {
	m, err := b.rdb.HGetAll(ctx, b.keys.Refs(adapter, id)).Result()
	if err != nil {
		return nil, err
	}
	return parseChatRefs(m), nil
}

// ChatOf names the chat an object on surface belongs to (see Host): the
// thread named by ref.Thread first, else the message ref.Message.
func (b *Bridge) ChatOf(ctx context.Context, surface string, ref RemoteRef) (ChatID, error) {
	pipe := b.rdb.Pipeline()
	thread, msg := b.chatOfCmds(ctx, pipe, surface, ref)
	if thread == nil && msg == nil {
		return "", nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return "", unavailable("find chat of "+surface+" object", err)
	}
	return chatOfResult(thread, msg), nil
}

// chatOfCmds queues the lookups of ChatOf on pipe (nil when not asked).
func (b *Bridge) chatOfCmds(ctx context.Context, pipe redis.Pipeliner, surface string, ref RemoteRef) (thread, msg *redis.StringCmd) {
	if ref.Conversation == "" {
		return nil, nil
	}
	if ref.Thread != "" {
		thread = pipe.Get(ctx, b.keys.RefChat(surface, ref.Conversation, "t", ref.Thread))
	}
	if ref.Message != "" {
		msg = pipe.Get(ctx, b.keys.RefChat(surface, ref.Conversation, "m", ref.Message))
	}
	return thread, msg
}

func chatOfResult(thread, msg *redis.StringCmd) ChatID {
	for _, c := range []*redis.StringCmd{thread, msg} {
		if c == nil {
			continue
		}
		if v, err := c.Result(); err == nil && ChatID(v).IsValid() {
			return ChatID(v)
		}
	}
	return ""
}

// eraseRefs deletes what the bridge keeps of a chat's objects on every
// adapter.
func (b *Bridge) eraseRefs(ctx context.Context, id ChatID) error {
	for _, a := range b.adapterList() {
		idx := b.keys.Refs(a.Name(), id)
		fields, err := b.rdb.HKeys(ctx, idx).Result()
		if err != nil {
			return unavailable("erase refs", err)
		}
		pipe := b.rdb.Pipeline()
		for _, f := range fields {
			if suffix, ok := strings.CutPrefix(f, "key|"); ok {
				pipe.Del(ctx, b.keys.prefix+suffix)
			}
		}
		pipe.Del(ctx, idx)
		if _, err := pipe.Exec(ctx); err != nil {
			return unavailable("erase refs", err)
		}
	}
	return nil
}

// RefStore is what an adapter's RefMigrator writes into: the bridge's
// records, in the form Deliver's results take.
type RefStore interface {
	// PutRefs records refs made for chat and target on the adapter, as if
	// a delivery of kind KindMessage had returned them.
	PutRefs(ctx context.Context, chat ChatID, target presence.AgentID, refs ...RemoteRef) error
	// PutHandled marks a platform event (Action.DedupKey) as handled, for ttl.
	PutHandled(ctx context.Context, dedupKey string, ttl time.Duration) error
	// PutProgress records that the queued delivery deliveryID already
	// showed its first done pieces (messages or offers), made before the
	// bridge kept progress: its next attempt gets done placeholder refs in
	// Delivery.Done (no ids: nothing to reply to) and continues after them.
	// A delivery no longer queued is ignored.
	PutProgress(ctx context.Context, deliveryID string, done int) error
}

// RefMigrator is an optional Adapter capability: an adapter that kept its
// chat state in keys of its own (before this seam existed) moves it into
// the bridge's records at start, before anything is delivered, and deletes
// its old keys. It must be safe to run again (several instances starting).
type RefMigrator interface {
	MigrateRefs(ctx context.Context, to RefStore) error
}

// refStore is the bridge's RefStore for one adapter.
type refStore struct {
	b       *Bridge
	adapter string
}

func (s refStore) PutRefs(ctx context.Context, chat ChatID, target presence.AgentID, refs ...RemoteRef) error {
	if !chat.IsValid() {
		return ErrUnknownChat
	}
	pipe := s.b.rdb.Pipeline()
	cr := newChatRefs()
	s.b.refWrites(ctx, pipe, cr, s.adapter, Delivery{Kind: KindMessage, Agent: target, Chat: Chat{ID: chat}}, refs, false)
	_, err := pipe.Exec(ctx)
	return err
}

func (s refStore) PutHandled(ctx context.Context, dedupKey string, ttl time.Duration) error {
	if dedupKey == "" || ttl <= 0 {
		return nil
	}
	return s.b.rdb.Set(ctx, s.b.keys.Dedup(dedupKey), dedupDone, ttl).Err()
}

func (s refStore) PutProgress(ctx context.Context, deliveryID string, done int) error {
	if deliveryID == "" || done <= 0 {
		return nil
	}
	b := s.b
	for shard := range b.cfg.Shards {
		key := b.keys.Outbox(s.adapter, shard)
		xs, err := b.rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			return err
		}
		for _, x := range xs {
			body, _ := x.Values["d"].(string)
			var d struct {
				ID string `json:"id"`
			}
			if json.Unmarshal([]byte(body), &d) != nil || d.ID != deliveryID {
				continue
			}
			refs := make([]RemoteRef, done)
			for i := range refs {
				refs[i] = RemoteRef{Role: RefMessage}
			}
			v, err := json.Marshal(refs)
			if err != nil {
				return err
			}
			pk := b.keys.Progress(s.adapter, shard)
			pipe := b.rdb.Pipeline()
			pipe.HSetNX(ctx, pk, deliveryID, v)
			pipe.Expire(ctx, pk, refTTL)
			_, err = pipe.Exec(ctx)
			return err
		}
	}
	return nil
}

// migrateRefs runs every adapter's RefMigrator, trying again while Redis
// is away (until ctx ends).
func (b *Bridge) migrateRefs(ctx context.Context) {
	for _, a := range b.adapterList() {
		m, ok := a.(RefMigrator)
		if !ok {
			continue
		}
		var pause time.Duration
		for {
			err := m.MigrateRefs(ctx, refStore{b: b, adapter: a.Name()})
			if err == nil || ctx.Err() != nil {
				break
			}
			pause = b.retryBackoff().Next(pause)
			b.log.Warn("moving an adapter's old chat records failed; retrying", "adapter", a.Name(), "retry_in", pause, "err", err)
			if !backoff.Sleep(ctx, pause) {
				return
			}
		}
	}
}
