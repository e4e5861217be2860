package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// chatView is a chat as loaded, with who was offered it.
type chatView struct {
	Chat
	offered []presence.AgentID
	token   string // hex SHA-256 of the visitor token
	// link is the visitor token itself, kept only for chats with an email
	// address: emails carry it in their continue link.
	link string
	// read and emailed are message ids: the last the visitor has seen, and
	// the last agent reply emailed; mailedAt is when the last email went.
	read, emailed string
	mailedAt      time.Time
}

func newChatID() ChatID {
	var buf [16]byte
	rand.Read(buf[:]) // never fails (crypto/rand since Go 1.24)
	return ChatID(base64.RawURLEncoding.EncodeToString(buf[:]))
}

func newToken() string {
	var buf [32]byte
	rand.Read(buf[:])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// propertyOf finds the property of a chat (cached: it never changes).
func (b *Bridge) propertyOf(ctx context.Context, id ChatID) (presence.PropertyID, error) {
	if !id.IsValid() {
		return "", ErrUnknownChat
	}
	if p, ok := b.propCache.Load(id); ok {
		return p.(presence.PropertyID), nil
	}
	p, err := b.rdb.Get(ctx, b.keys.ChatProperty(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrUnknownChat
	}
	if err != nil {
		return "", unavailable("find chat", err)
	}
	b.cacheProperty(id, presence.PropertyID(p))
	return presence.PropertyID(p), nil
}

// loadChat reads a chat, its monitors and who was offered it in one round trip.
func (b *Bridge) loadChat(ctx context.Context, id ChatID) (chatView, error) {
	p, err := b.propertyOf(ctx, id)
	if err != nil {
		return chatView{}, err
	}
	pipe := b.rdb.Pipeline()
	load := b.queueLoadChat(ctx, pipe, p, id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return chatView{}, unavailable("load chat", err)
	}
	return load()
}

// queueLoadChat queues loadChat's reads on pipe; the function it returns
// reads their answers once pipe ran.
func (b *Bridge) queueLoadChat(ctx context.Context, pipe redis.Pipeliner, p presence.PropertyID, id ChatID) func() (chatView, error) {
	h := pipe.HGetAll(ctx, b.keys.Chat(p, id))
	mon := pipe.SMembers(ctx, b.keys.Monitors(p, id))
	off := pipe.SMembers(ctx, b.keys.Offered(p, id))
	return func() (chatView, error) {
		f := h.Val()
		if len(f) == 0 {
			return chatView{}, ErrUnknownChat
		}
		cv := chatView{Chat: Chat{
			ID: id, Property: p, State: ChatState(f["state"]),
			Owner:         presence.AgentID(f["owner"]),
			Offline:       f["offline"] == "1",
			CreatedAt:     fromMS(f["created"]),
			LastMessageAt: fromMS(f["last"]),
			ClosedBy:      f["closed_by"],
			EmailError:    f["email_error"],
		}, token: f["token"], link: f["link"], read: f["read"], emailed: f["emailed"], mailedAt: fromMS(f["mailed_at"])}
		if r := f["rating"]; r != "" {
			var rt Rating
			if json.Unmarshal([]byte(r), &rt) == nil {
				cv.Rating = &rt
			}
		}
		if v := f["visitor"]; v != "" {
			if err := json.Unmarshal([]byte(v), &cv.Visitor); err != nil {
				return chatView{}, fmt.Errorf("bridge: chat %s: visitor: %w", id, err)
			}
		}
		if n, err := strconv.Atoi(f["returning"]); err == nil {
			cv.Visitor.Returning = n
		}
		cv.Visitor.ID = f["vid"] // not in the visitor JSON: never shown to agents
		for _, m := range mon.Val() {
			cv.Monitors = append(cv.Monitors, presence.AgentID(m))
		}
		for _, m := range off.Val() {
			cv.offered = append(cv.offered, presence.AgentID(m))
		}
		return cv, nil
	}
}

// addMessageScript appends a message to an open chat's transcript. A
// visitor's message (KEYS[3] given) is refused while the chat, the address
// it was started from or its visitor id is blocked (see block.go); the two
// latter keys are built from ARGV[3], ARGV[4] and the chat's fields, and
// carry the chat's hash tag, so they are in the chat's slot. One script for
// both senders: whichever comes first loads it for the other.
var addMessageScript = redis.NewScript(`
-- KEYS[1] chat hash   KEYS[2] transcript stream
-- KEYS[3] the chat's block mark (visitor messages only)
-- ARGV[1] message JSON   ARGV[2] now, unix ms
-- ARGV[3] address block key prefix, ARGV[4] visitor id block key prefix
-- (visitor messages only)
-- Returns the stream id, or 'missing' / 'closed' / 'blocked'.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'missing' end
if st == 'closed' then return 'closed' end
if #KEYS == 3 then
  local function inforce(v)
    if not v then return false end
    local u = tonumber(string.match(v, '|(%d+)$'))
    return u ~= nil and u > tonumber(ARGV[2])
  end
  if inforce(redis.call('GET', KEYS[3])) then return 'blocked' end
  local who = redis.call('HMGET', KEYS[1], 'ip', 'vid')
  if who[1] and who[1] ~= '' and inforce(redis.call('GET', ARGV[3] .. who[1])) then return 'blocked' end
  if who[2] and who[2] ~= '' and inforce(redis.call('GET', ARGV[4] .. who[2])) then return 'blocked' end
end
local id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
redis.call('HSET', KEYS[1], 'last', ARGV[2])
return id
`)

// appendMessage stores m in the chat's transcript and returns it with its id.
// A visitor's message is refused (ErrBlocked) while the visitor is blocked.
func (b *Bridge) appendMessage(ctx context.Context, p presence.PropertyID, m Message) (Message, error) {
	m, _, err := b.appendAndLoad(ctx, p, m, false)
	return m, err
}

// appendAndLoad is appendMessage, and with load the chat as it is right
// after (loadChat), in the same round trip.
func (b *Bridge) appendAndLoad(ctx context.Context, p presence.PropertyID, m Message, load bool) (Message, chatView, error) {
	m.ID = ""
	body, err := json.Marshal(m)
	if err != nil {
		return Message{}, chatView{}, fmt.Errorf("bridge: encode message: %w", err)
	}
	keys := []string{b.keys.Chat(p, m.Chat), b.keys.Messages(p, m.Chat)}
	args := []any{body, ms(m.At)}
	if m.From == FromVisitor {
		keys = append(keys, b.keys.BlockChat(p, m.Chat))
		args = append(args, b.keys.BlockIP(p, ""), b.keys.BlockVisitor(p, ""))
	}
	var res *redis.Cmd
	var loaded func() (chatView, error)
	// EVALSHA first; the whole script only when Redis does not have it
	// yet (NOSCRIPT: nothing ran).
	for _, whole := range []bool{false, true} {
		pipe := b.rdb.Pipeline()
		if whole {
			res = addMessageScript.Eval(ctx, pipe, keys, args...)
		} else {
			res = addMessageScript.EvalSha(ctx, pipe, keys, args...)
		}
		if load {
			loaded = b.queueLoadChat(ctx, pipe, p, m.Chat)
		}
		_, err = pipe.Exec(ctx)
		if whole || !redis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
			break
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return Message{}, chatView{}, unavailable("store message", err)
	}
	out, err := res.Text()
	if err != nil {
		return Message{}, chatView{}, unavailable("store message", err)
	}
	switch out {
	case "missing":
		return Message{}, chatView{}, ErrUnknownChat
	case "closed":
		return Message{}, chatView{}, ErrChatClosed
	case "blocked":
		metrics.BlockedRequests.WithLabelValues(string(p), "message").Inc()
		return Message{}, chatView{}, ErrBlocked
	}
	m.ID = out
	if !load {
		return m, chatView{}, nil
	}
	cv, err := loaded()
	return m, cv, err
}

func (b *Bridge) readMessages(ctx context.Context, p presence.PropertyID, id ChatID, after string, limit int) ([]Message, error) {
	start := "-"
	if after != "" {
		if _, ok := ParseStreamID(after, true); !ok {
			return nil, fmt.Errorf("bridge: bad message id %q: %w", after, ErrInvalidText)
		}
		start = "(" + after
	}
	xs, err := b.rdb.XRangeN(ctx, b.keys.Messages(p, id), start, "+", int64(limit)).Result()
	if err != nil {
		return nil, unavailable("read transcript", err)
	}
	out := make([]Message, 0, len(xs))
	for _, x := range xs {
		s, _ := x.Values["m"].(string)
		var m Message
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			b.log.Warn("bad stored message", "chat_id", id, "id", x.ID, "err", err)
			continue
		}
		m.ID = x.ID
		out = append(out, m)
	}
	return out, nil
}

// createChat stores a new chat with its first message.
func (b *Bridge) createChat(ctx context.Context, p presence.PropertyID, v Visitor, text string, offline bool) (chatView, Message, string, error) {
	if _, ok := b.routing(p); !ok {
		return chatView{}, Message{}, "", ErrUnknownProperty
	}
	if err := CheckText(text); err != nil {
		return chatView{}, Message{}, "", err
	}
	if id := v.Identity; id != nil {
		if v.Name == "" {
			v.Name = id.Name
		}
		if v.Email == "" {
			v.Email = id.Email
		}
	}
	if !ValidVisitorID(v.ID) {
		v.ID = ""
	}
	if err := b.blockedVisitor(ctx, p, v); err != nil {
		if errors.Is(err, ErrBlocked) {
			kind := "chat"
			if offline {
				kind = "offline_message"
			}
			metrics.BlockedRequests.WithLabelValues(string(p), kind).Inc()
		}
		return chatView{}, Message{}, "", err
	}
	now := b.now()
	id, token := newChatID(), newToken()
	cv := chatView{Chat: Chat{
		ID: id, Property: p, State: Pending, Visitor: v, Offline: offline,
		CreatedAt: now, LastMessageAt: now,
	}, token: hashToken(token)}
	vis, err := json.Marshal(v)
	if err != nil {
		return chatView{}, Message{}, "", fmt.Errorf("bridge: encode visitor: %w", err)
	}
	msg := Message{Chat: id, From: FromVisitor, Text: text, At: now}
	body, _ := json.Marshal(msg)
	off := "0"
	if offline {
		off = "1"
	}
	pipe := b.rdb.Pipeline()
	pipe.Set(ctx, b.keys.ChatProperty(id), string(p), 0)
	fields := []any{"state", string(Pending), "offline", off,
		"created", ms(now), "last", ms(now), "visitor", vis, "token", cv.token, "ip", blockKey(v.IP), "vid", v.ID}
	if v.Email != "" && b.emailOn() {
		cv.link = token
		fields = append(fields, "link", token)
	}
	pipe.HSet(ctx, b.keys.Chat(p, id), fields...)
	xadd := pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.keys.Messages(p, id), Values: []string{"m", string(body)}})
	visits := b.countVisit(ctx, pipe, p, v)
	if offline {
		pipe.ZAdd(ctx, b.keys.Offline(p), redis.Z{Score: float64(ms(now)), Member: string(id)})
	}
	// A live chat joins the pending set in route, once its first offers are recorded.
	if _, err := pipe.Exec(ctx); err != nil {
		return chatView{}, Message{}, "", unavailable("start chat", err)
	}
	b.cacheProperty(id, p)
	msg.ID = xadd.Val()
	cv.Visitor.Returning = visits()
	return cv, msg, token, nil
}

// StartChat stores a new pending chat with its first message and routes it.
func (b *Bridge) StartChat(ctx context.Context, p presence.PropertyID, v Visitor, text string) (Chat, string, error) {
	cv, msg, token, err := b.createChat(ctx, p, v, text, false)
	if err != nil {
		return Chat{}, "", err
	}
	metrics.ChatsStarted.WithLabelValues(string(p)).Inc()
	var out batch
	b.keepReturning(&out, &cv)
	b.notify(&out, &cv, HookChatStarted, &msg, nil)
	if err := b.route(ctx, &cv, &msg, &out); err != nil {
		b.log.Error("route new chat", "chat_id", cv.ID, "err", err)
	}
	if err := b.flush(ctx, &out); err != nil {
		// The chat is stored; timers and offers are retried by nothing else,
		// so tell the caller the service is not well.
		return Chat{}, "", unavailable("route chat", err)
	}
	return cv.Chat, token, nil
}

// LeaveOfflineMessage stores an offline message and delivers it to agents.
// It returns the chat and the visitor's bearer token, like StartChat.
func (b *Bridge) LeaveOfflineMessage(ctx context.Context, p presence.PropertyID, v Visitor, text string) (Chat, string, error) {
	cv, msg, token, err := b.createChat(ctx, p, v, text, true)
	if err != nil {
		return Chat{}, "", err
	}
	metrics.OfflineMessages.WithLabelValues(string(p), "form").Inc()
	var out batch
	b.keepReturning(&out, &cv)
	b.notify(&out, &cv, HookOfflineMessage, &msg, nil)
	b.offerOffline(&cv, &msg, &out)
	if err := b.flush(ctx, &out); err != nil {
		return Chat{}, "", unavailable("deliver offline message", err)
	}
	return cv.Chat, token, nil
}

// AuthVisitor checks a token against a chat in constant time.
func (b *Bridge) AuthVisitor(ctx context.Context, id ChatID, token string) (Chat, error) {
	// One round trip: the chat hash loadChat reads holds the token's hash.
	cv, err := b.loadChat(ctx, id)
	if err != nil {
		return Chat{}, err
	}
	if subtle.ConstantTimeCompare([]byte(cv.token), []byte(hashToken(token))) != 1 {
		return Chat{}, ErrBadToken
	}
	return cv.Chat, nil
}

// PostVisitorMessage stores the message before returning, then relays it.
func (b *Bridge) PostVisitorMessage(ctx context.Context, id ChatID, text string, att *Attachment) (Message, error) {
	if att == nil || text != "" {
		if err := CheckText(text); err != nil {
			return Message{}, err
		}
	}
	p, err := b.propertyOf(ctx, id)
	if err != nil {
		return Message{}, err
	}
	// Stored, and the chat read as it is now (who follows it), in one
	// round trip.
	m, cv, err := b.appendAndLoad(ctx, p, Message{Chat: id, From: FromVisitor, Text: text, At: b.now(), Attachment: att}, true)
	if err != nil {
		return Message{}, err
	}
	// Stored but not yet queued for the agents: an error here makes the
	// widget retry, which may store the text twice but never loses it.
	var out batch
	out.event(VisitorEvent{Type: EventMessage, Chat: id, Message: &m})
	b.notify(&out, &cv, HookChatMessage, &m, nil)
	b.deliverTo(&out, &cv, Delivery{Kind: KindMessage, Message: &m}, followers(&cv, "", ""))
	if cv.State == Active {
		b.scheduleIdle(&out, &cv)
	}
	if err := b.flush(ctx, &out); err != nil {
		b.log.Error("relay visitor message", "chat_id", id, "err", err)
		return m, unavailable("relay message", err)
	}
	metrics.MessagesRelayed.WithLabelValues("to_agents").Inc()
	return m, nil
}

// Transcript lists messages after the given id ("" for all), notes excluded.
func (b *Bridge) Transcript(ctx context.Context, id ChatID, after string, limit int) ([]Message, error) {
	p, err := b.propertyOf(ctx, id)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	// Notes are hidden from visitors, so read on until the page is full or
	// the transcript ends: a short page always means there is no more.
	out := []Message{}
	for len(out) < limit {
		want := limit - len(out)
		ms, err := b.readMessages(ctx, p, id, after, want)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if _, ok := m.ForVisitor(); ok {
				out = append(out, m)
			}
		}
		if len(ms) < want {
			break
		}
		after = ms[len(ms)-1].ID
	}
	return out, nil
}

// CloseByVisitor closes the chat and tells its agents.
func (b *Bridge) CloseByVisitor(ctx context.Context, id ChatID) error {
	cv, err := b.loadChat(ctx, id)
	if err != nil {
		return err
	}
	_, err = b.closeChat(ctx, &cv, "visitor", "The visitor closed the chat.")
	return err
}

// PutFile stores an attachment's bytes for a chat (size-capped, with a TTL)
// and returns the Attachment to put on a message or an Action.
func (b *Bridge) PutFile(ctx context.Context, id ChatID, name, mime string, data []byte) (Attachment, error) {
	p, err := b.propertyOf(ctx, id)
	if err != nil {
		return Attachment{}, err
	}
	if len(data) > b.cfg.MaxFileBytes {
		return Attachment{}, fmt.Errorf("bridge: file of %d bytes is over the %d byte limit", len(data), b.cfg.MaxFileBytes)
	}
	if !utf8.ValidString(name) || len(name) > 255 {
		name = "file"
	}
	a := Attachment{Key: randomString(12), Name: name, MIME: mime, Size: int64(len(data))}
	k := b.keys.File(p, id, a.Key)
	pipe := b.rdb.TxPipeline()
	pipe.HSet(ctx, k, "name", a.Name, "mime", a.MIME, "data", data)
	pipe.Expire(ctx, k, b.cfg.FileTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return Attachment{}, unavailable("store file", err)
	}
	return a, nil
}

// File returns an attachment's bytes if it belongs to the chat.
func (b *Bridge) File(ctx context.Context, id ChatID, key string) (Attachment, []byte, error) {
	p, err := b.propertyOf(ctx, id)
	if err != nil {
		return Attachment{}, nil, err
	}
	if !ChatID(key).IsValid() {
		return Attachment{}, nil, ErrUnknownChat
	}
	f, err := b.rdb.HGetAll(ctx, b.keys.File(p, id, key)).Result()
	if err != nil {
		return Attachment{}, nil, unavailable("read file", err)
	}
	if len(f) == 0 {
		return Attachment{}, nil, fmt.Errorf("bridge: no such file: %w", ErrUnknownChat)
	}
	data := []byte(f["data"])
	return Attachment{Key: key, Name: f["name"], MIME: f["mime"], Size: int64(len(data))}, data, nil
}
