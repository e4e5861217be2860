package telegram

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redisconn"
	"github.com/onduty/onduty/presence"
)

var _ bridge.RefMigrator = (*Adapter)(nil)

// MigrateRefs moves the chat records that earlier versions of the adapter
// kept in keys of their own into the bridge (to), deleting each old key
// once written; keys another instance moved first are simply gone, so
// running it again is harmless:
//
//	tg:msg:<tg_chat>:<msg_id>   a message of a chat          → RefMessage
//	tg:offer:<chat>             offers not yet edited        → RefOffer for their agent
//	tg:topic:<chat>             the chat's forum topic       → RefThread of the shared place
//	tg:upd:<update_id> "done"   a handled update             → handled "telegram:<id>", same expiry
//
//	tg:dlv:<delivery_id> N      pieces a failed delivery sent → its progress (PutProgress)
//
// Dropped: tg:thread (the topic map; topics replaced since are gone on
// Telegram) and tg:msgs (an erasure list). A "busy" tg:upd claim is left
// to expire.
func (a *Adapter) MigrateRefs(ctx context.Context, to bridge.RefStore) error {
	move := func(pattern string, f func(key, rest string) error) error {
		return redisconn.Scan(ctx, a.rdb, redisconn.GlobEscape(a.cfg.Prefix+pattern)+"*", func(key string) error {
			err := f(key, strings.TrimPrefix(key, a.cfg.Prefix+pattern))
			if errors.Is(err, errLeave) {
				return nil
			}
			if err != nil {
				return err
			}
			return a.rdb.Del(ctx, key).Err()
		})
	}
	get := func(key string) (string, bool, error) {
		v, err := a.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return "", false, nil
		}
		return v, err == nil, err
	}
	put := func(chat string, target presence.AgentID, r bridge.RemoteRef) error {
		if !bridge.ChatID(chat).IsValid() {
			return nil // not a chat: nothing to keep
		}
		return to.PutRefs(ctx, bridge.ChatID(chat), target, r)
	}
	steps := []struct {
		pattern string
		f       func(key, rest string) error
	}{
		{"tg:msg:", func(key, rest string) error {
			conv, msg, _ := strings.Cut(rest, ":")
			chat, ok, err := get(key)
			if !ok {
				return err
			}
			return put(chat, "", bridge.RemoteRef{Role: bridge.RefMessage, Conversation: conv, Message: msg})
		}},
		{"tg:offer:", func(key, chat string) error {
			offers, err := a.rdb.HGetAll(ctx, key).Result()
			if err != nil {
				return err
			}
			for field, agent := range offers {
				conv, msg, _ := strings.Cut(field, ":")
				if err := put(chat, presence.AgentID(agent), bridge.RemoteRef{Role: bridge.RefOffer, Conversation: conv, Message: msg}); err != nil {
					return err
				}
			}
			return nil
		}},
		{"tg:topic:", func(key, chat string) error {
			v, ok, err := get(key)
			if !ok {
				return err
			}
			group, thread, _ := strings.Cut(v, ":")
			return put(chat, "", bridge.RemoteRef{Role: bridge.RefThread, Conversation: group, Thread: thread})
		}},
		{"tg:upd:", func(key, id string) error {
			v, ok, err := get(key)
			if !ok || v != "done" {
				if err == nil && v != "" {
					err = errLeave
				}
				return err
			}
			ttl, err := a.rdb.PTTL(ctx, key).Result()
			if err != nil || ttl <= 0 {
				return err
			}
			return to.PutHandled(ctx, "telegram:"+id, ttl)
		}},
		{"tg:thread:", func(string, string) error { return nil }},
		{"tg:msgs:", func(string, string) error { return nil }},
		{"tg:dlv:", func(key, id string) error {
			v, ok, err := get(key)
			if !ok {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil // not a count: nothing to keep
			}
			return to.PutProgress(ctx, id, n)
		}},
	}
	for _, s := range steps {
		if err := move(s.pattern, s.f); err != nil {
			return errf("move old "+s.pattern+"* keys", err)
		}
	}
	return nil
}

// errLeave: keep the key (an update claim still busy).
var errLeave = errors.New("leave")
