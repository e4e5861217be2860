package telegram

import (
	"strconv"

	"github.com/onduty/onduty/bridge"
)

// keys builds every Redis key of the adapter (see doc.go for the table).
type keys struct{ prefix string }

func (k keys) lease() string          { return k.prefix + "tg:lease" }
func (k keys) update(id int64) string { return k.prefix + "tg:upd:" + strconv.FormatInt(id, 10) }
func (k keys) refused(user int64) string {
	return k.prefix + "tg:refused:" + strconv.FormatInt(user, 10)
}
func (k keys) offer(c bridge.ChatID) string { return k.prefix + "tg:offer:" + string(c) }
func (k keys) topic(c bridge.ChatID) string { return k.prefix + "tg:topic:" + string(c) }

// chatMessages lists a chat's tg:msg keys, so that erasure finds them.
func (k keys) chatMessages(c bridge.ChatID) string { return k.prefix + "tg:msgs:" + string(c) }
func (k keys) delivery(id string) string           { return k.prefix + "tg:dlv:" + id }
func (k keys) groupKind(group int64) string {
	return k.prefix + "tg:group:" + strconv.FormatInt(group, 10)
}

// rate is a send-rate bucket: "bot", a chat id, or "group:<id>". The hash
// tag puts every bucket in one slot, as the pacing script reads several.
func (k keys) rate(bucket string) string { return k.prefix + "tg:rate:{tg}:" + bucket }

func (k keys) message(tgChat int64, msgID int) string {
	return k.prefix + "tg:msg:" + strconv.FormatInt(tgChat, 10) + ":" + strconv.Itoa(msgID)
}

func (k keys) thread(group int64, thread int) string {
	return k.prefix + "tg:thread:" + strconv.FormatInt(group, 10) + ":" + strconv.Itoa(thread)
}
