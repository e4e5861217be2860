package telegram

import (
	"strconv"
)

// keys builds every Redis key of the adapter (see doc.go for the table).
type keys struct{ prefix string }

func (k keys) lease() string { return k.prefix + "tg:lease" }
func (k keys) refused(user int64) string {
	return k.prefix + "tg:refused:" + strconv.FormatInt(user, 10)
}
func (k keys) groupKind(group int64) string {
	return k.prefix + "tg:group:" + strconv.FormatInt(group, 10)
}

// rate is a send-rate bucket: "bot", a chat id, or "group:<id>". The hash
// tag puts every bucket in one slot, as the pacing script reads several.
func (k keys) rate(bucket string) string { return k.prefix + "tg:rate:{tg}:" + bucket }
