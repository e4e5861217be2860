package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/mail"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/redisconn"
	"github.com/onduty/onduty/presence"
)

// Erasure (SPEC §10): every key of a visitor's chats goes, in every
// property's slot. A chat still open is closed first, through the same
// path as any close (its agents are told, its offers withdrawn, its timers
// cancelled, its owner's load freed); then its hash, transcript, sets,
// files, chat → property mapping, timers, agents' current-chat pointers,
// returning-visitor counts, dead letters and the records of what adapters
// made for the chat (refs) are deleted (adapters keep no chat state of
// their own). Outbox items already queued (among them the closing notice
// to agents) still go out: they are deliveries in flight, and the records
// made for them hold only platform ids and the chat id, and expire after
// 30 days.

// ErrBadErasure: neither a valid email address nor a valid chat id was given.
var ErrBadErasure = errors.New("bridge: erase: give an email address or a chat id")

// EraseVisitor deletes every chat whose visitor email (or identity email)
// is email, in every property, or the one chat id, and returns how many
// chats it deleted. Finding chats by email scans each property's chat keys
// (SCAN, on every master of a cluster): erasure is rare.
func (b *Bridge) EraseVisitor(ctx context.Context, email string, id ChatID) (int, error) {
	var ids []ChatID
	switch {
	case id != "" && email == "":
		if !id.IsValid() {
			return 0, ErrBadErasure
		}
		ids = []ChatID{id}
	case email != "" && id == "":
		a, err := mail.ParseAddress(email)
		if err != nil || a.Address != email {
			return 0, ErrBadErasure
		}
		found, err := b.chatsByEmail(ctx, email)
		if err != nil {
			return 0, err
		}
		ids = found
	default:
		return 0, ErrBadErasure
	}
	n := 0
	for _, c := range ids {
		ok, err := b.eraseChat(ctx, c)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// scanKeys calls f with every key matching pattern, on every master of a
// cluster or on the one server.
func (b *Bridge) scanKeys(ctx context.Context, pattern string, f func(string)) error {
	if err := redisconn.Scan(ctx, b.rdb, pattern, func(k string) error { f(k); return nil }); err != nil {
		return unavailable("scan keys", err)
	}
	return nil
}

// chatsByEmail finds the chats of an email address in every property.
func (b *Bridge) chatsByEmail(ctx context.Context, email string) ([]ChatID, error) {
	want := strings.ToLower(email)
	var out []ChatID
	for p := range b.cfg.Properties {
		prefix := b.keys.Chat(p, "")
		var keys []string
		if err := b.scanKeys(ctx, redisconn.GlobEscape(prefix)+"*", func(k string) { keys = append(keys, k) }); err != nil {
			return nil, err
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		// One round trip per 500 chats: a property may hold many.
		for len(keys) > 0 {
			page := keys[:min(500, len(keys))]
			keys = keys[len(page):]
			pipe := b.rdb.Pipeline()
			cmds := make([]*redis.StringCmd, len(page))
			for i, k := range page {
				cmds[i] = pipe.HGet(ctx, k, "visitor")
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return nil, unavailable("read chats", err)
			}
			for i, k := range page {
				var v struct {
					Email    string `json:"email"`
					Identity *struct {
						Email string `json:"email"`
					} `json:"identity"`
				}
				if json.Unmarshal([]byte(cmds[i].Val()), &v) != nil {
					continue // no visitor (gone meanwhile), or unreadable
				}
				id := ChatID(strings.TrimPrefix(k, prefix))
				if id.IsValid() && (strings.ToLower(v.Email) == want || v.Identity != nil && strings.ToLower(v.Identity.Email) == want) {
					out = append(out, id)
				}
			}
		}
	}
	return out, nil
}

// eraseChat closes the chat if open and deletes every key of it; false if
// there was no such chat.
func (b *Bridge) eraseChat(ctx context.Context, id ChatID) (bool, error) {
	cv, err := b.loadChat(ctx, id)
	if errors.Is(err, ErrUnknownChat) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if cv.State != Closed {
		if _, err := b.closeChat(ctx, &cv, "erased", "The visitor's data was erased."); err != nil && !errors.Is(err, ErrUnknownChat) {
			return false, err
		}
	}
	p := cv.Property
	// A block of the visitor stays in force (it keeps the team safe; the
	// admin lifts it): only the chat's own mark goes.
	del := []string{b.keys.Chat(p, id), b.keys.Messages(p, id), b.keys.Offered(p, id), b.keys.Monitors(p, id), b.keys.ChatProperty(id),
		b.keys.BlockChat(p, id)}
	if err := b.scanKeys(ctx, redisconn.GlobEscape(b.keys.File(p, id, ""))+"*", func(k string) { del = append(del, k) }); err != nil {
		return false, err
	}
	for _, m := range visitorMarks(cv.Visitor) {
		del = append(del, b.keys.Seen(p, markHash(m)))
	}
	var timers []string
	it := b.rdb.ZScan(ctx, b.keys.Timers(), 0, "*|"+redisconn.GlobEscape(string(p))+"|"+redisconn.GlobEscape(string(id)), 1000).Iterator()
	for it.Next(ctx) {
		timers = append(timers, it.Val())
		it.Next(ctx) // the score
	}
	if err := it.Err(); err != nil {
		return false, unavailable("find timers", err)
	}
	agents := append(slices.Clone(cv.offered), cv.Monitors...)
	if cv.Owner != "" {
		agents = append(agents, cv.Owner)
	}
	pipe := b.rdb.Pipeline()
	for _, k := range del {
		pipe.Del(ctx, k) // one key per command: they are in different slots
	}
	if len(timers) > 0 {
		pipe.ZRem(ctx, b.keys.Timers(), toAny(timers)...)
	}
	pipe.ZRem(ctx, b.keys.Pending(p), string(id))
	pipe.ZRem(ctx, b.keys.Offline(p), string(id))
	pipe.HDel(ctx, b.keys.Owners(p), string(id))
	for _, a := range slices.Compact(sortedAgents(agents)) {
		pipe.SRem(ctx, b.keys.Monitoring(p), string(a)+"|"+string(id))
		delIfScript.Eval(ctx, pipe, []string{b.keys.Current(a)}, string(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, unavailable("erase chat", err)
	}
	if err := b.eraseDeadLetters(ctx, id); err != nil {
		return false, err
	}
	if err := b.eraseRefs(ctx, id); err != nil {
		return false, err
	}
	b.propCache.Delete(id)
	b.log.Info("chat erased", "chat_id", id, "property", p)
	return true, nil
}

// delIfScript deletes a key if it holds ARGV[1].
var delIfScript = redis.NewScript(`
-- KEYS[1] key   ARGV[1] value
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func sortedAgents(as []presence.AgentID) []presence.AgentID {
	slices.Sort(as)
	return as
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// eraseDeadLetters deletes the dead-letter entries of a chat: deliveries
// given up on keep the chat's snapshot (the visitor's name, the text).
func (b *Bridge) eraseDeadLetters(ctx context.Context, id ChatID) error {
	key, start := b.keys.DeadLetter(), "-"
	needle := `"id":"` + string(id) + `"`
	for {
		xs, err := b.rdb.XRangeN(ctx, key, start, "+", 500).Result()
		if err != nil {
			return unavailable("read dead letters", err)
		}
		var del []string
		for _, x := range xs {
			if d, _ := x.Values["d"].(string); strings.Contains(d, needle) {
				del = append(del, x.ID)
			}
		}
		if len(del) > 0 {
			if err := b.rdb.XDel(ctx, key, del...).Err(); err != nil {
				return unavailable("erase dead letters", err)
			}
		}
		if len(xs) < 500 {
			return nil
		}
		start = "(" + xs[len(xs)-1].ID
	}
}
