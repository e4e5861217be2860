package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// Emails to visitors (SPEC §9). An agent's reply in a chat whose visitor gave
// an email address arms the chat's email timer (timerEmail) for email_after
// later, unless it is armed sooner already (ZADD LT). When it fires, the
// agents' messages after both the "emailed" and the "read" cursor of the
// chat hash go out in one email through the outbox (EmailTarget), and the
// "emailed" cursor moves. A message counts as read once it went out on an
// open event stream or in a transcript fetched with the token (MarkRead).
// Emails of one chat are at least email_after apart ("mailed_at").

// timerEmail sends a chat's unread replies by email.
const timerEmail = "email"

// emailOn reports whether an email sender is registered.
func (b *Bridge) emailOn() bool {
	for _, a := range b.adapterList() {
		if a.Name() == EmailTarget {
			return true
		}
	}
	return false
}

// PropertyOf names the property of a chat (ErrUnknownChat if none).
func (b *Bridge) PropertyOf(ctx context.Context, id ChatID) (presence.PropertyID, error) {
	return b.propertyOf(ctx, id)
}

// continueURL is the link that opens the chat in the widget on any device;
// the token is in the fragment, which browsers never send to the server.
func (b *Bridge) continueURL(cv *chatView) string {
	if b.cfg.PublicURL == "" || cv.link == "" {
		return ""
	}
	return strings.TrimRight(b.cfg.PublicURL, "/") + "/c/" + string(cv.ID) + "#" + cv.link
}

// scheduleEmail arms the chat's email timer after an agent's reply to the
// visitor, in the reply's own pipeline: no extra round trip.
func (b *Bridge) scheduleEmail(o *batch, cv *chatView, at time.Time) {
	if cv.Visitor.Email == "" || !b.emailOn() {
		return
	}
	r, _ := b.routing(cv.Property)
	key, member, due := b.keys.Timers(), timerMember(timerEmail, cv.Property, string(cv.ID)), ms(at.Add(r.EmailAfter))
	o.op(func(ctx context.Context, p redis.Pipeliner) {
		// LT: a timer armed sooner stays; one held by a firing instance
		// (pushed past any reply's due time) is pulled back, so the reply
		// is not lost when that instance finishes.
		p.ZAddLT(ctx, key, redis.Z{Score: float64(due), Member: member})
	})
	o.wake(at.Add(r.EmailAfter))
}

// releaseEmailTimerScript removes the email timer unless a reply moved it
// since the firing instance set it to the hold score.
var releaseEmailTimerScript = redis.NewScript(`
-- KEYS[1] timers zset   ARGV[1] member   ARGV[2] hold score
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`)

// fireEmail sends the unread, not yet emailed agent replies of a chat.
func (b *Bridge) fireEmail(ctx context.Context, member string, id ChatID, prop presence.PropertyID) error {
	r, _ := b.routing(prop)
	now := b.now()
	// Hold the timer past any reply that may come while this runs: such a
	// reply (ZADD LT) moves it, and the release below then leaves it armed.
	hold := ms(now.Add(r.EmailAfter + timerLease))
	if err := b.rdb.ZAdd(ctx, b.keys.Timers(), redis.Z{Score: float64(hold), Member: member}).Err(); err != nil {
		return err
	}
	release := func() error {
		return releaseEmailTimerScript.Run(ctx, b.rdb, []string{b.keys.Timers()}, member, hold).Err()
	}
	cv, err := b.loadChat(ctx, id)
	if errors.Is(err, ErrUnknownChat) {
		return release()
	}
	if err != nil {
		return err
	}
	if cv.Property != prop || cv.Visitor.Email == "" || !b.emailOn() {
		return release()
	}
	if next := cv.mailedAt.Add(r.EmailAfter); !cv.mailedAt.IsZero() && next.After(now) {
		// One email per email_after: the rest waits for the next window.
		var o batch
		o.timer(member, next)
		return b.flush(ctx, &o)
	}
	after := cv.emailed
	if cv.read != "" && (after == "" || storedStreamID(after).Less(storedStreamID(cv.read))) {
		after = cv.read
	}
	var replies []Message
	for {
		ms, err := b.readMessages(ctx, prop, id, after, 200)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if _, shown := m.ForVisitor(); shown && m.From == FromAgent {
				replies = append(replies, m)
			}
		}
		if len(ms) < 200 {
			break
		}
		after = ms[len(ms)-1].ID
	}
	if len(replies) == 0 {
		return release()
	}
	var o batch
	b.queueEmail(&o, &cv, EmailReplies, replies)
	key, last := b.keys.Chat(prop, id), replies[len(replies)-1].ID
	o.op(func(ctx context.Context, p redis.Pipeliner) {
		p.HSet(ctx, key, "emailed", last, "mailed_at", ms(now))
	})
	if err := b.flush(ctx, &o); err != nil {
		return err
	}
	return release()
}

// queueEmail puts an email to the chat's visitor in the outbox.
func (b *Bridge) queueEmail(o *batch, cv *chatView, kind EmailKind, msgs []Message) {
	name := b.propertyName(cv.Property)
	o.deliver(EmailTarget, Delivery{Kind: KindEmail, Chat: cv.Chat, Email: &Email{
		Kind: kind, To: cv.Visitor.Email, ToName: cv.Visitor.Name, Property: name,
		Messages: msgs, ContinueURL: b.continueURL(cv),
	}})
}

// markReadScript moves a chat's read cursor forward (never back).
var markReadScript = redis.NewScript(`
-- KEYS[1] chat hash   ARGV[1] message id "ms-seq"
if not redis.call('HGET', KEYS[1], 'state') then return 0 end
local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local cur = redis.call('HGET', KEYS[1], 'read')
if cur then
  local cm, cs = parse(cur)
  local nm, ns = parse(ARGV[1])
  if cm and nm and (nm < cm or (nm == cm and ns <= cs)) then return 0 end
end
redis.call('HSET', KEYS[1], 'read', ARGV[1])
return 1
`)

// MarkRead records that the visitor has seen the chat up to msgID, so that
// no email repeats it. It does nothing when email is off.
func (b *Bridge) MarkRead(ctx context.Context, id ChatID, msgID string) error {
	if !b.emailOn() || msgID == "" {
		return nil
	}
	if _, ok := ParseStreamID(msgID, false); !ok {
		return fmt.Errorf("bridge: bad message id %q: %w", msgID, ErrInvalidText)
	}
	p, err := b.propertyOf(ctx, id)
	if err != nil {
		return err
	}
	if err := markReadScript.Run(ctx, b.rdb, []string{b.keys.Chat(p, id)}, msgID).Err(); err != nil {
		return unavailable("mark read", err)
	}
	return nil
}

// EmailTranscript queues the chat's transcript for the visitor's address.
func (b *Bridge) EmailTranscript(ctx context.Context, id ChatID) error {
	if !b.emailOn() {
		return ErrEmailOff
	}
	cv, err := b.loadChat(ctx, id)
	if err != nil {
		return err
	}
	if cv.Visitor.Email == "" {
		return ErrNoEmail
	}
	msgs, err := b.Transcript(ctx, id, "", 1000)
	if err != nil {
		return err
	}
	var o batch
	b.queueEmail(&o, &cv, EmailTranscript, msgs)
	if err := b.flush(ctx, &o); err != nil {
		return unavailable("queue transcript", err)
	}
	return nil
}

// Rate records the visitor's rating of a closed chat and tells its agents.
// A second rating replaces the first; the metric counts the first only.
func (b *Bridge) Rate(ctx context.Context, id ChatID, score int, comment string) (Rating, error) {
	comment = strings.TrimSpace(comment)
	if score < MinScore || score > MaxScore || !utf8.ValidString(comment) || utf8.RuneCountInString(comment) > MaxRatingCommentRunes {
		return Rating{}, ErrInvalidRating
	}
	cv, err := b.loadChat(ctx, id)
	if err != nil {
		return Rating{}, err
	}
	if cv.State != Closed {
		return Rating{}, ErrChatOpen
	}
	rt := Rating{Score: score, Comment: comment, At: b.now()}
	body, _ := json.Marshal(rt)
	var o batch
	var added *redis.IntCmd
	key := b.keys.Chat(cv.Property, id)
	o.op(func(ctx context.Context, p redis.Pipeliner) { added = p.HSet(ctx, key, "rating", string(body)) })
	cv.Rating = &rt
	text := fmt.Sprintf("The visitor rated this chat %d/5 %s.", score, strings.Repeat("★", score)+strings.Repeat("☆", MaxScore-score))
	if comment != "" {
		text += " Comment: " + comment
	}
	m := Message{Chat: id, From: FromSystem, Text: text, At: rt.At}
	b.deliverTo(&o, &cv, Delivery{Kind: KindMessage, Message: &m}, followers(&cv, "", ""))
	b.notify(&o, &cv, HookChatRated, nil, &rt)
	if err := b.flush(ctx, &o); err != nil {
		return Rating{}, unavailable("store rating", err)
	}
	if added != nil && added.Val() == 1 {
		metrics.ChatRatings.WithLabelValues(string(cv.Property)).Observe(float64(score))
	}
	return rt, nil
}

// deliveryFailed records on the chat why an email was refused for good, so
// that agents and the admin board see it.
func (b *Bridge) deliveryFailed(ctx context.Context, adapter string, d Delivery, cause error) {
	if adapter != EmailTarget || d.Chat.ID == "" || d.Chat.Property == "" {
		return
	}
	why := cause.Error()
	if len(why) > 500 {
		why = why[:500]
	}
	// Only if the chat still exists: HSET on an expired chat would revive a stub.
	key := b.keys.Chat(d.Chat.Property, d.Chat.ID)
	if err := recordEmailErrorScript.Run(ctx, b.rdb, []string{key}, why).Err(); err != nil {
		b.log.Warn("record email failure", "chat_id", d.Chat.ID, "err", err)
	}
}

var recordEmailErrorScript = redis.NewScript(`
-- KEYS[1] chat hash   ARGV[1] why
if not redis.call('HGET', KEYS[1], 'state') then return 0 end
return redis.call('HSET', KEYS[1], 'email_error', ARGV[1])
`)
