package telegram

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
)

const (
	offerTTL    = 7 * 24 * time.Hour
	topicTTL    = 30 * 24 * time.Hour
	progressTTL = 7 * 24 * time.Hour
)

// step is one Telegram message of a delivery.
type step struct {
	html string
	kb   *keyboard
	// doc, when set, sends a document with html as its caption.
	doc *document
}

type document struct {
	name string
	data []byte
}

// Deliver shows one outbox item on Telegram (see bridge.Adapter).
func (a *Adapter) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	return nil, a.deliverOne(ctx, d)
}

func (a *Adapter) deliverOne(ctx context.Context, d bridge.Delivery) error {
	err := a.deliver(withBacklog(ctx, d.Backlog), d)
	if rej, ok := rejectedSDK(err); ok {
		// Kept in the outbox (retried); the adapter stops until the token is fixed.
		a.rejected.Set(rej)
	}
	return err
}

func (a *Adapter) deliver(ctx context.Context, d bridge.Delivery) error {
	switch d.Kind {
	case bridge.KindTaken:
		return a.editOffers(ctx, d, "taken by "+d.TakenBy)
	case bridge.KindWithdrawn:
		why := d.Text
		if why == "" {
			why = "no longer open"
		}
		return a.editOffers(ctx, d, why)
	}
	dest, err := a.destination(ctx, d)
	if err != nil {
		return err
	}
	var steps []step
	offer, route := false, d.Chat.ID != ""
	switch d.Kind {
	case bridge.KindOffer:
		steps = htmlSteps(offerText(d).pieces(), offerKeyboard(d.Chat.ID, d.Monitor))
		offer = true
	case bridge.KindMessage:
		steps, err = a.messageSteps(ctx, d, dest)
		if err != nil {
			return err
		}
	case bridge.KindClosed:
		steps = htmlSteps(closedText(d).pieces(), nil)
	case bridge.KindNotice:
		steps = htmlSteps(rendered{body: d.Text}.pieces(), nil)
	case bridge.KindPrompt:
		text := d.Text
		if text == "" {
			text = "Still on duty? Tap the button, or you will soon count as offline."
		}
		steps = htmlSteps(rendered{body: text}.pieces(), promptKeyboard())
		route = false
	default:
		return &bridge.PermanentError{Err: fmt.Errorf("telegram: unknown delivery kind %q", d.Kind)}
	}
	if len(steps) == 1 && steps[0].doc == nil && strings.TrimSpace(stripTags(steps[0].html)) == "" {
		return nil // nothing to say (Telegram refuses empty messages)
	}
	return a.sendSteps(ctx, d, dest, steps, func(p redis.Pipeliner, at place, msgID int) {
		if route {
			mk, ck := a.keys.message(at.chat, msgID), a.keys.chatMessages(d.Chat.ID)
			p.Set(ctx, mk, string(d.Chat.ID), routeTTL)
			p.SAdd(ctx, ck, mk)
			p.Expire(ctx, ck, routeTTL)
		}
		if offer {
			key := a.keys.offer(d.Chat.ID)
			p.HSet(ctx, key, strconv.FormatInt(at.chat, 10)+":"+strconv.Itoa(msgID), string(d.Agent))
			p.Expire(ctx, key, offerTTL)
		}
	})
}

// messageSteps renders a chat message; a file goes last, as a document
// captioned with the sender and the file name.
func (a *Adapter) messageSteps(ctx context.Context, d bridge.Delivery, dest place) ([]step, error) {
	r := messageText(d, dest.shared)
	if d.Message == nil || d.Message.Attachment == nil {
		return htmlSteps(r.pieces(), nil), nil
	}
	att := *d.Message.Attachment
	doc, err := a.visitorFile(ctx, d.Chat.ID, att)
	if err != nil {
		return nil, err
	}
	if doc == nil { // no way to read the file here: say that it exists
		r.body = strings.TrimSpace(r.body + "\n[file: " + att.Name + "]")
		return htmlSteps(r.pieces(), nil), nil
	}
	var steps []step
	if r.body != "" {
		steps = htmlSteps(r.pieces(), nil)
	}
	return append(steps, step{html: r.head + escapeHTML(truncateRunes(att.Name, 200)), doc: doc}), nil
}

// htmlSteps puts kb under the last piece.
func htmlSteps(pieces []string, kb *keyboard) []step {
	out := make([]step, len(pieces))
	for i, p := range pieces {
		out[i] = step{html: p}
	}
	if kb != nil && len(out) > 0 {
		out[len(out)-1].kb = kb
	}
	return out
}

func (a *Adapter) remember(ctx context.Context, key, val string, ttl time.Duration) {
	if err := a.rdb.Set(ctx, key, val, ttl).Err(); err != nil {
		a.log.Warn("telegram message not remembered; replies to it will go to the current chat", "key", key, "err", err)
	}
}

// destination is the agent's private chat, or for deliveries without an
// agent the chat's topic in the property's forum group, or the group itself
// when it has no topics (groupPlace).
func (a *Adapter) destination(ctx context.Context, d bridge.Delivery) (place, error) {
	if d.Agent != "" {
		user, ok := a.userID(d.Agent)
		if !ok {
			return place{}, &bridge.PermanentError{Err: fmt.Errorf("telegram: agent %q has no telegram_user_id", d.Agent)}
		}
		return place{chat: user}, nil
	}
	group := a.cfg.Groups[d.Chat.Property]
	if group == 0 {
		return place{}, &bridge.PermanentError{Err: fmt.Errorf("telegram: property %q has no telegram_group", d.Chat.Property)}
	}
	if d.Chat.ID == "" {
		return place{chat: group, shared: true}, nil
	}
	return a.groupPlace(ctx, group, d.Chat)
}

// topic returns the chat's forum topic, creating it the first time.
func (a *Adapter) topic(ctx context.Context, group int64, c bridge.Chat) (int, error) {
	v, err := a.rdb.Get(ctx, a.keys.topic(c.ID)).Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return 0, errf("topic lookup", err)
	default:
		g, t, _ := strings.Cut(v, ":")
		gid, gerr := strconv.ParseInt(g, 10, 64)
		tid, terr := strconv.Atoi(t)
		if gerr == nil && terr == nil && gid == group && tid != 0 {
			return tid, nil
		}
	}
	return a.createTopic(ctx, group, c)
}

func (a *Adapter) createTopic(ctx context.Context, group int64, c bridge.Chat) (int, error) {
	if err := a.pace(ctx, group, maxDeliverWait); err != nil {
		return 0, err
	}
	var t *models.ForumTopic
	err := bridge.Call(ctx, func(ctx context.Context) (err error) {
		t, err = a.bot.CreateForumTopic(ctx, &bot.CreateForumTopicParams{ChatID: group, Name: topicTitle(c)})
		return err
	})
	if err != nil {
		return 0, classify("create forum topic", err)
	}
	val := strconv.FormatInt(group, 10) + ":" + strconv.Itoa(t.MessageThreadID)
	if err := a.rdb.Set(ctx, a.keys.topic(c.ID), val, topicTTL).Err(); err != nil {
		return 0, errf("remember topic", err)
	}
	tk := a.keys.thread(group, t.MessageThreadID)
	a.remember(ctx, tk, string(c.ID), topicTTL)
	// Listed with the chat's message refs, so that erasure finds it even
	// after the topic was replaced.
	if _, err := a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, a.keys.chatMessages(c.ID), tk)
		p.Expire(ctx, a.keys.chatMessages(c.ID), topicTTL)
		return nil
	}); err != nil {
		a.log.Warn("topic not listed for erasure", "chat", c.ID, "err", err)
	}
	a.log.Info("forum topic created", "chat", c.ID, "group", group, "thread", t.MessageThreadID)
	return t.MessageThreadID, nil
}

// sendSteps sends the steps not yet sent for d.ID, in order, recording
// progress after each so a retry continues instead of repeating. What sent
// queues about a sent message (its chat, an offer) goes to Redis with the
// progress, in one round trip. A topic Telegram no longer has is recreated
// and the step sent again.
func (a *Adapter) sendSteps(ctx context.Context, d bridge.Delivery, dest place, steps []step, sent func(p redis.Pipeliner, at place, msgID int)) error {
	done := 0
	if d.ID != "" {
		n, err := a.rdb.Get(ctx, a.keys.delivery(d.ID)).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return errf("delivery progress", err)
		}
		done = n
	}
	for i := done; i < len(steps); i++ {
		if err := a.pace(ctx, dest.chat, maxDeliverWait); err != nil {
			return err
		}
		msg, err := a.sendStep(ctx, dest, steps[i])
		if err != nil && dest.shared && dest.thread != 0 && isTopicGone(err) {
			// Telegram answered: the step was not posted.
			a.log.Warn("forum topic gone; recreating it", "chat", d.Chat.ID, "thread", dest.thread, "err", err)
			thread, cerr := a.createTopic(ctx, dest.chat, d.Chat)
			if isNotForum(cerr) {
				return a.topicsSwitchedOff(ctx, dest.chat, cerr)
			}
			if cerr != nil {
				return cerr
			}
			dest.thread = thread
			msg, err = a.sendStep(ctx, dest, steps[i])
		}
		if err != nil {
			return classify("send", err)
		}
		pipe := a.rdb.Pipeline() // not MULTI: the keys are in different hash slots
		sent(pipe, dest, msg.ID)
		if d.ID != "" {
			pipe.Set(ctx, a.keys.delivery(d.ID), i+1, progressTTL)
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				a.log.Warn("sent message not recorded: replies to it may go to the current chat, an offer may stay unedited, a retry may repeat it",
					"delivery_id", d.ID, "chat", d.Chat.ID, "err", err)
			}
		}
	}
	return nil
}

// sendStep is one platform call, under the delivery timeout (bridge.Call):
// the pacing wait before it is not counted.
func (a *Adapter) sendStep(ctx context.Context, dest place, s step) (msg *models.Message, err error) {
	err = bridge.Call(ctx, func(ctx context.Context) error {
		msg, err = a.sendStepNow(ctx, dest, s)
		return err
	})
	return msg, err
}

func (a *Adapter) sendStepNow(ctx context.Context, dest place, s step) (*models.Message, error) {
	if s.doc == nil {
		return a.sendHTML(ctx, dest, s.html, s.kb)
	}
	caption := s.html
	if textLen(stripTags(caption)) > maxCaptionLen {
		caption = ""
	}
	params := &bot.SendDocumentParams{
		ChatID:          dest.chat,
		MessageThreadID: dest.thread,
		Document:        &models.InputFileUpload{Filename: s.doc.name, Data: bytes.NewReader(s.doc.data)},
		Caption:         caption,
		ParseMode:       models.ParseModeHTML,
	}
	if s.kb != nil {
		params.ReplyMarkup = s.kb
	}
	return a.bot.SendDocument(ctx, params)
}

// editOffers turns the offers of d.Chat shown to d.Agent ("" = the shared
// topic) into a line saying why they are closed, without buttons.
func (a *Adapter) editOffers(ctx context.Context, d bridge.Delivery, why string) error {
	key := a.keys.offer(d.Chat.ID)
	offers, err := a.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return errf("offers lookup", err)
	}
	text := closedOfferText(d, why)
	for field, agent := range offers {
		if agent != string(d.Agent) {
			continue
		}
		c, m, _ := strings.Cut(field, ":")
		chat, cerr := strconv.ParseInt(c, 10, 64)
		msg, merr := strconv.Atoi(m)
		if cerr == nil && merr == nil {
			if err := a.pace(ctx, chat, maxDeliverWait); err != nil {
				return err
			}
			err := bridge.Call(ctx, func(ctx context.Context) error {
				_, err := a.bot.EditMessageText(ctx, &bot.EditMessageTextParams{
					ChatID: chat, MessageID: msg, Text: text, ParseMode: models.ParseModeHTML,
					ReplyMarkup: noKeyboard, LinkPreviewOptions: disabledPreview,
				})
				return err
			})
			if err != nil && !isEditMoot(err) {
				return classify("edit offer", err)
			}
		}
		if err := a.rdb.HDel(ctx, key, field).Err(); err != nil {
			a.log.Warn("edited offer not forgotten", "chat", d.Chat.ID, "err", err)
		}
	}
	return nil
}

var _ bridge.ChatEraser = (*Adapter)(nil)

// EraseChat deletes what the adapter keeps of a chat: its offers, the
// message → chat mappings of everything posted for it, and its forum topic
// with the topic's mapping.
func (a *Adapter) EraseChat(ctx context.Context, chat bridge.ChatID) error {
	offers, err := a.rdb.HKeys(ctx, a.keys.offer(chat)).Result()
	if err != nil {
		return errf("erase offers", err)
	}
	msgs, err := a.rdb.SMembers(ctx, a.keys.chatMessages(chat)).Result()
	if err != nil {
		return errf("erase message refs", err)
	}
	keys := append([]string{a.keys.offer(chat), a.keys.topic(chat), a.keys.chatMessages(chat)}, msgs...)
	for _, o := range offers {
		c, m, _ := strings.Cut(o, ":")
		cid, cerr := strconv.ParseInt(c, 10, 64)
		mid, merr := strconv.Atoi(m)
		if cerr == nil && merr == nil {
			keys = append(keys, a.keys.message(cid, mid))
		}
	}
	if v, err := a.rdb.Get(ctx, a.keys.topic(chat)).Result(); err == nil {
		g, t, _ := strings.Cut(v, ":")
		gid, gerr := strconv.ParseInt(g, 10, 64)
		tid, terr := strconv.Atoi(t)
		if gerr == nil && terr == nil {
			keys = append(keys, a.keys.thread(gid, tid))
		}
	}
	for _, k := range keys {
		if err := a.rdb.Del(ctx, k).Err(); err != nil {
			return errf("erase", err)
		}
	}
	return nil
}
