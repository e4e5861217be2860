package slack

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redisconn"
	"github.com/onduty/onduty/presence"
)

var _ bridge.RefMigrator = (*Adapter)(nil)

// MigrateRefs moves what earlier versions of the adapter kept of chats
// into the bridge's records, and deletes it: each chat's root message
// (slack:root, becoming the chat's bridge.RefThread for its target, so
// that replies in its thread reach the chat and taken/closed edit it),
// each handled event (slack:event, keeping its time to live) and the
// pages a queued delivery had posted (slack:dlv:ID:KIND:N, becoming its
// progress: the next attempt continues after them). The thread keys
// (slack:thread) follow from the roots; a whole-item record (slack:dlv:ID,
// an offer or edit done) needs nothing, as a repeat of it redraws the
// known root. Each old key is deleted only after it was written into the
// bridge, so running it again, or on several instances at once, is
// harmless.
func (a *Adapter) MigrateRefs(ctx context.Context, to bridge.RefStore) error {
	p := a.keys.p()
	scan := func(kind string, f func(key string) error) error {
		return redisconn.Scan(ctx, a.rdb, redisconn.GlobEscape(p+"slack:"+kind+":")+"*", f)
	}
	err := scan("root", func(key string) error {
		chat, target, ok := strings.Cut(strings.TrimPrefix(key, p+"slack:root:{"), "}:")
		m, err := a.rdb.HGetAll(ctx, key).Result()
		if err != nil {
			return err
		}
		if ok && m["ts"] != "" && m["channel"] != "" && bridge.ChatID(chat).IsValid() {
			ref := bridge.RemoteRef{Role: bridge.RefThread, Conversation: m["channel"], Message: m["ts"], Thread: m["ts"], Extra: m["first"]}
			if err := to.PutRefs(ctx, bridge.ChatID(chat), presence.AgentID(target), ref); err != nil {
				return err
			}
			if err := a.rdb.Del(ctx, p+"slack:thread:"+m["channel"]+":"+m["ts"]).Err(); err != nil {
				return err
			}
		}
		return a.rdb.Del(ctx, key).Err()
	})
	if err != nil {
		return fmt.Errorf("slack: move old roots: %w", err)
	}
	err = scan("event", func(key string) error {
		ttl, err := a.rdb.PTTL(ctx, key).Result()
		if err != nil {
			return err
		}
		if err := to.PutHandled(ctx, strings.TrimPrefix(key, p+"slack:event:"), ttl); err != nil {
			return err
		}
		return a.rdb.Del(ctx, key).Err()
	})
	if err != nil {
		return fmt.Errorf("slack: move old event marks: %w", err)
	}
	// Pages posted by each delivery: slack:dlv:ID:KIND:N, N from 0.
	pages := map[string]int{}
	err = scan("dlv", func(key string) error {
		parts := strings.Split(strings.TrimPrefix(key, p+"slack:dlv:"), ":")
		if n := len(parts); n >= 3 {
			page, err := strconv.Atoi(parts[n-1])
			switch parts[n-2] {
			case "msg", "notice", "closed", "post":
				if id := strings.Join(parts[:n-2], ":"); err == nil {
					pages[id] = max(pages[id], page+1)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("slack: read old delivery records: %w", err)
	}
	for id, n := range pages {
		if err := to.PutProgress(ctx, id, n); err != nil {
			return fmt.Errorf("slack: move old delivery records: %w", err)
		}
	}
	// Thread keys whose root is gone, and the delivery records now moved.
	for _, kind := range []string{"thread", "dlv"} {
		if err := scan(kind, func(key string) error { return a.rdb.Del(ctx, key).Err() }); err != nil {
			return fmt.Errorf("slack: delete old keys: %w", err)
		}
	}
	return nil
}
