package slack

import (
	"context"
	"fmt"
	"strings"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redisconn"
	"github.com/onduty/onduty/presence"
)

var _ bridge.RefMigrator = (*Adapter)(nil)

// MigrateRefs moves what earlier versions of the adapter kept of chats
// into the bridge's records, and deletes it: each chat's root message
// (slack:root, becoming the chat's bridge.RefThread for its target, so
// that replies in its thread reach the chat and taken/closed edit it) and
// each handled event (slack:event, keeping its time to live). The thread
// keys (slack:thread) follow from the roots. The records of what a
// delivery already showed (slack:dlv) cannot be mapped to the objects it
// made and are deleted: a delivery that had failed partway when the old
// version stopped starts over (an offer is redrawn, not posted again, as
// its root is known; a message's pieces may show twice). Each old key is
// deleted only after it was written into the bridge, so running it again,
// or on several instances at once, is harmless.
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
	// Thread keys whose root is gone, and delivery records.
	for _, kind := range []string{"thread", "dlv"} {
		if err := scan(kind, func(key string) error { return a.rdb.Del(ctx, key).Err() }); err != nil {
			return fmt.Errorf("slack: delete old keys: %w", err)
		}
	}
	return nil
}
