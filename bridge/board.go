package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/presence"
)

// boardMax caps the chats of each list the board shows; the counts are whole.
const boardMax = 100

// boardSnippetRunes caps the last message shown for a chat.
const boardSnippetRunes = 200

// ChatCounts is how many chats of a property are in each open state.
type ChatCounts struct {
	// Pending live chats waiting for an agent.
	Pending int `json:"pending"`
	// Active chats with an owner.
	Active int `json:"active"`
	// Offline messages nobody has answered yet (form, or queue timeout).
	Offline int `json:"offline"`
}

// BoardChat is one open chat as the admin board shows it.
type BoardChat struct {
	ID      ChatID    `json:"id"`
	State   ChatState `json:"state"`
	Offline bool      `json:"offline,omitempty"`
	Visitor Visitor   `json:"visitor"`
	// Owner and OwnerName are set for active chats.
	Owner     presence.AgentID `json:"owner,omitempty"`
	OwnerName string           `json:"owner_name,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	// AcceptedAt is when the chat got its owner (active chats).
	AcceptedAt    *time.Time `json:"accepted_at,omitempty"`
	LastMessageAt time.Time  `json:"last_message_at"`
	// WaitingSeconds is how long an unowned chat has waited, at BoardChats.At.
	WaitingSeconds int64 `json:"waiting_seconds,omitempty"`
	// Last is the latest line of the transcript (notes included: the board
	// is for the team), its text cut to 200 characters.
	Last *BoardLine `json:"last,omitempty"`
	// EmailError is why the SMTP server refused the last email to the
	// visitor for good (a 5xx answer); empty when none was refused.
	EmailError string `json:"email_error,omitempty"`
}

// BoardLine is the latest message of a chat, shortened.
type BoardLine struct {
	From SenderKind `json:"from"`
	Name string     `json:"name,omitempty"`
	Text string     `json:"text"`
	Note bool       `json:"note,omitempty"`
	At   time.Time  `json:"at"`
}

// BoardChats is a property's open chats for the admin board: pending ones
// oldest first, active ones by start, unanswered offline messages newest
// first. Each list holds at most 100 chats; Counts are the full numbers.
type BoardChats struct {
	Property presence.PropertyID `json:"property"`
	At       time.Time           `json:"at"`
	Counts   ChatCounts          `json:"counts"`
	Pending  []BoardChat         `json:"pending"`
	Active   []BoardChat         `json:"active"`
	Offline  []BoardChat         `json:"offline"`
}

// Board lists a property's open chats for the admin board in two round
// trips: the property's pending set, owners hash and offline set, then each
// listed chat's fields and last message.
func (b *Bridge) Board(ctx context.Context, p presence.PropertyID) (BoardChats, error) {
	if _, ok := b.routing(p); !ok {
		return BoardChats{}, ErrUnknownProperty
	}
	now := b.now()
	out := BoardChats{Property: p, At: now, Pending: []BoardChat{}, Active: []BoardChat{}, Offline: []BoardChat{}}

	pipe := b.rdb.Pipeline()
	pend := pipe.ZRange(ctx, b.keys.Pending(p), 0, boardMax-1)
	npend := pipe.ZCard(ctx, b.keys.Pending(p))
	owners := pipe.HGetAll(ctx, b.keys.Owners(p))
	off := pipe.ZRevRange(ctx, b.keys.Offline(p), 0, boardMax-1)
	noff := pipe.ZCard(ctx, b.keys.Offline(p))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return BoardChats{}, unavailable("board", err)
	}
	out.Counts = ChatCounts{Pending: int(npend.Val()), Active: len(owners.Val()), Offline: int(noff.Val())}

	type ref struct {
		id   ChatID
		list *[]BoardChat
	}
	var refs []ref
	for _, id := range pend.Val() {
		refs = append(refs, ref{ChatID(id), &out.Pending})
	}
	active := make([]string, 0, len(owners.Val()))
	for id := range owners.Val() {
		active = append(active, id)
	}
	slices.Sort(active)
	if len(active) > boardMax {
		active = active[:boardMax] // sorted by start below; a board with 100 active chats is full anyway
	}
	for _, id := range active {
		refs = append(refs, ref{ChatID(id), &out.Active})
	}
	for _, id := range off.Val() {
		refs = append(refs, ref{ChatID(id), &out.Offline})
	}
	if len(refs) == 0 {
		return out, nil
	}

	pipe = b.rdb.Pipeline()
	fields := make([]*redis.SliceCmd, len(refs))
	lasts := make([]*redis.XMessageSliceCmd, len(refs))
	for i, r := range refs {
		fields[i] = pipe.HMGet(ctx, b.keys.Chat(p, r.id), "state", "owner", "offline", "created", "last", "accepted", "visitor", "email_error")
		lasts[i] = pipe.XRevRangeN(ctx, b.keys.Messages(p, r.id), "+", "-", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return BoardChats{}, unavailable("board chats", err)
	}
	for i, r := range refs {
		c, ok := b.boardChat(r.id, fields[i].Val(), lasts[i].Val(), now)
		if !ok {
			continue // closed or deleted between the two round trips
		}
		*r.list = append(*r.list, c)
	}
	slices.SortFunc(out.Active, func(x, y BoardChat) int { return x.CreatedAt.Compare(y.CreatedAt) })
	return out, nil
}

// boardChat builds a BoardChat from HMGET values (state, owner, offline,
// created, last, accepted, visitor, email_error) and the chat's last stream entry.
func (b *Bridge) boardChat(id ChatID, f []any, last []redis.XMessage, now time.Time) (BoardChat, bool) {
	str := func(i int) string {
		if i < len(f) {
			if s, ok := f[i].(string); ok {
				return s
			}
		}
		return ""
	}
	st := ChatState(str(0))
	if st == "" || st == Closed {
		return BoardChat{}, false
	}
	c := BoardChat{
		ID: id, State: st, Offline: str(2) == "1",
		Owner:         presence.AgentID(str(1)),
		CreatedAt:     fromMS(str(3)),
		LastMessageAt: fromMS(str(4)),
	}
	if c.Owner != "" {
		c.OwnerName = b.agentName(c.Owner)
	}
	if t := fromMS(str(5)); !t.IsZero() {
		c.AcceptedAt = &t
	}
	if v := str(6); v != "" {
		if err := jsonUnmarshal(v, &c.Visitor); err != nil {
			b.log.Warn("board: bad visitor", "chat_id", id, "err", err)
		}
	}
	c.EmailError = snippet(str(7))
	if c.Owner == "" && !c.CreatedAt.IsZero() {
		c.WaitingSeconds = int64(now.Sub(c.CreatedAt) / time.Second)
	}
	if len(last) == 1 {
		if s, _ := last[0].Values["m"].(string); s != "" {
			var m Message
			if err := jsonUnmarshal(s, &m); err == nil {
				c.Last = &BoardLine{From: m.From, Name: m.Name, Text: snippet(m.Text), Note: m.Note, At: m.At}
				if m.Text == "" && m.Attachment != nil {
					c.Last.Text = "[file: " + m.Attachment.Name + "]"
				}
			}
		}
	}
	return c, true
}

func snippet(s string) string {
	if utf8.RuneCountInString(s) <= boardSnippetRunes {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:boardSnippetRunes])) + "…"
}

// ChatCounts counts the open chats of every property in one pipeline
// (for metrics).
func (b *Bridge) ChatCounts(ctx context.Context) (map[presence.PropertyID]ChatCounts, error) {
	type cmds struct{ pend, act, off *redis.IntCmd }
	props := make([]presence.PropertyID, 0, len(b.cfg.Properties))
	for p := range b.cfg.Properties {
		props = append(props, p)
	}
	slices.Sort(props)
	pipe := b.rdb.Pipeline()
	cs := make([]cmds, len(props))
	for i, p := range props {
		cs[i] = cmds{pipe.ZCard(ctx, b.keys.Pending(p)), pipe.HLen(ctx, b.keys.Owners(p)), pipe.ZCard(ctx, b.keys.Offline(p))}
	}
	if len(props) == 0 {
		return map[presence.PropertyID]ChatCounts{}, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("count chats", err)
	}
	out := make(map[presence.PropertyID]ChatCounts, len(props))
	for i, p := range props {
		out[p] = ChatCounts{Pending: int(cs[i].pend.Val()), Active: int(cs[i].act.Val()), Offline: int(cs[i].off.Val())}
	}
	return out, nil
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
