package telegram

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/onduty/onduty/bridge"
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

// Deliver shows one outbox item on Telegram (see bridge.Adapter) and
// returns what it made: the messages (offers as RefOffer) and a forum topic
// it created (RefThread), also when it failed partway.
func (a *Adapter) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	made, err := a.deliver(withBacklog(ctx, d.Backlog), d)
	if rej, ok := rejectedSDK(err); ok {
		// Kept in the outbox (retried); the adapter stops until the token is fixed.
		a.rejected.Set(rej)
	}
	return made, err
}

func (a *Adapter) deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	switch d.Kind {
	case bridge.KindTaken:
		return nil, a.editOffers(ctx, d, "taken by "+d.TakenBy)
	case bridge.KindWithdrawn:
		why := d.Text
		if why == "" {
			why = "no longer open"
		}
		return nil, a.editOffers(ctx, d, why)
	}
	var made []bridge.RemoteRef
	dest, err := a.destination(ctx, d, &made)
	if err != nil {
		return made, err
	}
	var steps []step
	role := bridge.RefMessage
	switch d.Kind {
	case bridge.KindOffer:
		steps = htmlSteps(offerText(d).pieces(), offerKeyboard(d.Chat.ID, d.Monitor))
		role = bridge.RefOffer
	case bridge.KindMessage:
		steps, err = a.messageSteps(ctx, d, dest)
		if err != nil {
			return made, err
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
	default:
		return made, &bridge.PermanentError{Err: fmt.Errorf("telegram: unknown delivery kind %q", d.Kind)}
	}
	if len(steps) == 1 && steps[0].doc == nil && strings.TrimSpace(stripTags(steps[0].html)) == "" {
		return made, nil // nothing to say (Telegram refuses empty messages)
	}
	return a.sendSteps(ctx, d, dest, steps, role, made)
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

// destination is the agent's private chat, or for deliveries without an
// agent the chat's topic in the property's forum group, or the group itself
// when it has no topics (groupPlace). A topic it creates is added to made.
func (a *Adapter) destination(ctx context.Context, d bridge.Delivery, made *[]bridge.RemoteRef) (place, error) {
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
	return a.groupPlace(ctx, group, d, made)
}

// topic is the chat's forum topic in group: the one an earlier delivery
// made (d.Thread), else a new one, added to made.
func (a *Adapter) topic(ctx context.Context, group int64, d bridge.Delivery, made *[]bridge.RemoteRef) (int, error) {
	if t := d.Thread; t != nil && t.Conversation == strconv.FormatInt(group, 10) {
		if id, err := strconv.Atoi(t.Thread); err == nil && id != 0 {
			return id, nil
		}
	}
	return a.createTopic(ctx, group, d.Chat, made)
}

func (a *Adapter) createTopic(ctx context.Context, group int64, c bridge.Chat, made *[]bridge.RemoteRef) (int, error) {
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
	*made = append(*made, bridge.RemoteRef{Role: bridge.RefThread, Conversation: strconv.FormatInt(group, 10),
		Thread: strconv.Itoa(t.MessageThreadID)})
	a.log.Info("forum topic created", "chat", c.ID, "group", group, "thread", t.MessageThreadID)
	return t.MessageThreadID, nil
}

// sendSteps sends the steps an earlier attempt did not (d.Done: one
// message per step), in order, adding each message to made as role. A
// topic Telegram no longer has is recreated and the step sent again.
func (a *Adapter) sendSteps(ctx context.Context, d bridge.Delivery, dest place, steps []step, role bridge.RefRole, made []bridge.RemoteRef) ([]bridge.RemoteRef, error) {
	done := 0
	for _, r := range d.Done {
		if r.Role != bridge.RefThread {
			done++
		}
	}
	for i := done; i < len(steps); i++ {
		if err := a.pace(ctx, dest.chat, maxDeliverWait); err != nil {
			return made, err
		}
		msg, err := a.sendStep(ctx, dest, steps[i])
		if err != nil && dest.shared && dest.thread != 0 && isTopicGone(err) {
			// Telegram answered: the step was not posted.
			a.log.Warn("forum topic gone; recreating it", "chat", d.Chat.ID, "thread", dest.thread, "err", err)
			thread, cerr := a.createTopic(ctx, dest.chat, d.Chat, &made)
			if isNotForum(cerr) {
				return made, a.topicsSwitchedOff(ctx, dest.chat, cerr)
			}
			if cerr != nil {
				return made, cerr
			}
			dest.thread = thread
			msg, err = a.sendStep(ctx, dest, steps[i])
		}
		if err != nil {
			return made, classify("send", err)
		}
		made = append(made, bridge.RemoteRef{Role: role, Conversation: strconv.FormatInt(dest.chat, 10), Message: strconv.Itoa(msg.ID)})
	}
	return made, nil
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

// editOffers turns the offers shown to d.Agent ("" = the shared place)
// and not yet edited (d.Offers) into a line saying why they are closed,
// without buttons. A retry edits them all again: an edit that changes
// nothing is no error.
func (a *Adapter) editOffers(ctx context.Context, d bridge.Delivery, why string) error {
	text := closedOfferText(d, why)
	for _, o := range d.Offers {
		chat, cerr := strconv.ParseInt(o.Conversation, 10, 64)
		msg, merr := strconv.Atoi(o.Message)
		if cerr != nil || merr != nil {
			continue
		}
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
	return nil
}
