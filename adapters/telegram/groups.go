package telegram

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
)

// A property's telegram_group is a forum supergroup (a topic per visitor
// chat) or a group without topics: a plain group, or a supergroup whose
// topics are off. In the latter, offers, visitor messages and closings are
// posted in the group itself, each tagged with its chat as in a private
// chat; Accept buttons and "taken by" edits work as everywhere, and agents
// answer by replying to a visitor's message (or to the offer). The kind is
// asked of Telegram (getChat is_forum) the first time, and learnt again
// when createForumTopic says the group is no forum; it is kept in Redis for
// groupKindTTL, so a group whose topics are switched on or off later is
// followed within a day.

// Values of a group's kind key.
const (
	groupForum = "forum"
	groupPlain = "plain"
)

const (
	groupKindTTL = 24 * time.Hour
	// groupKindCache is how long an instance trusts its own memory before
	// reading the kind from Redis again.
	groupKindCache = time.Minute
)

type groupKind struct {
	plain bool
	at    time.Time
}

// groupKinds is an instance's memory of group kinds.
type groupKinds struct {
	mu sync.Mutex
	m  map[int64]groupKind
	// asking is held while Telegram is asked, so that deliveries of several
	// chats starting at once ask once.
	asking sync.Mutex
}

func (g *groupKinds) get(group int64) (bool, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.m[group]
	if !ok || time.Since(k.at) > groupKindCache {
		return false, false
	}
	return k.plain, true
}

func (g *groupKinds) set(group int64, plain bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[int64]groupKind)
	}
	g.m[group] = groupKind{plain: plain, at: time.Now()}
}

// plainGroup reports whether group has no forum topics.
func (a *Adapter) plainGroup(ctx context.Context, group int64) (bool, error) {
	if plain, ok := a.groups.get(group); ok {
		return plain, nil
	}
	a.groups.asking.Lock()
	defer a.groups.asking.Unlock()
	if plain, ok := a.groups.get(group); ok {
		return plain, nil
	}
	v, err := a.rdb.Get(ctx, a.keys.groupKind(group)).Result()
	switch {
	case err == nil && (v == groupPlain || v == groupForum):
		a.groups.set(group, v == groupPlain)
		return v == groupPlain, nil
	case err != nil && !errors.Is(err, redis.Nil):
		return false, errf("group kind lookup", err)
	}
	info, err := a.bot.GetChat(ctx, &bot.GetChatParams{ChatID: group})
	if err != nil {
		return false, classify("get chat", err)
	}
	plain := !info.IsForum
	a.markGroup(ctx, group, plain)
	return plain, nil
}

// markGroup remembers a group's kind here and in Redis.
func (a *Adapter) markGroup(ctx context.Context, group int64, plain bool) {
	a.groups.set(group, plain)
	v := groupForum
	if plain {
		v = groupPlain
		a.log.Info("telegram_group has no forum topics: chats are posted in the group, agents answer by replying", "group", group)
	}
	if err := a.rdb.Set(ctx, a.keys.groupKind(group), v, groupKindTTL).Err(); err != nil {
		a.log.Warn("group kind not remembered; it is asked again", "group", group, "err", err)
	}
}

// groupPlace is where a chat's deliveries go in a property's group: its
// forum topic (made the first time), or, in a group without topics, the
// group itself, not marked shared so that every message names its chat.
func (a *Adapter) groupPlace(ctx context.Context, group int64, d bridge.Delivery, made *[]bridge.RemoteRef) (place, error) {
	plain, err := a.plainGroup(ctx, group)
	if err != nil {
		return place{}, err
	}
	if !plain {
		thread, err := a.topic(ctx, group, d, made)
		if err == nil {
			return place{chat: group, thread: thread, shared: true}, nil
		}
		if !isNotForum(err) {
			return place{}, err
		}
		a.markGroup(ctx, group, true)
	}
	return place{chat: group}, nil
}

// topicsSwitchedOff handles a forum group whose topics were switched off
// while a chat had one: the group is remembered as plain, and the delivery
// fails for now (retryable), so that its retry is rendered for the group
// itself, tagged with its chat.
func (a *Adapter) topicsSwitchedOff(ctx context.Context, group int64, err error) error {
	a.markGroup(ctx, group, true)
	// Not wrapped: the refusal is permanent for the topic, not for the delivery.
	return fmt.Errorf("telegram: forum topics switched off in group %d, sending to the group itself: %s", group, err)
}

// isNotForum reports whether Telegram refused a topic because the group
// has none: a supergroup with topics off, or a basic group.
func isNotForum(err error) bool {
	if err == nil {
		return false
	}
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "not a forum") || strings.Contains(s, "supergroup chats only") ||
		strings.Contains(s, "chat_not_forum")
}
