package tgfake

import (
	"strconv"
	"sync/atomic"
	"time"
)

// Update builders, in the Bot API's JSON shape, for Push.

// User is a Telegram user (not a bot).
func User(id int64, name string) map[string]any {
	return map[string]any{"id": id, "is_bot": false, "first_name": name}
}

// PrivateMessage is an update: user from writes text to the bot in private.
func PrivateMessage(from int64, text string) map[string]any {
	return map[string]any{"message": map[string]any{
		"message_id": 1, "date": time.Now().Unix(), "from": User(from, "U"),
		"chat": map[string]any{"id": from, "type": "private"}, "text": text,
	}}
}

// ReplyMessage is PrivateMessage as a reply to the bot's message replyTo.
func ReplyMessage(from int64, text string, replyTo int) map[string]any {
	u := PrivateMessage(from, text)
	u["message"].(map[string]any)["reply_to_message"] = map[string]any{
		"message_id": replyTo, "date": time.Now().Unix(),
		"chat": map[string]any{"id": from, "type": "private"}, "text": "earlier",
	}
	return u
}

// TopicMessage is an update: user from writes text in forum topic thread of
// the supergroup group.
func TopicMessage(from, group int64, thread int, text string) map[string]any {
	return map[string]any{"message": map[string]any{
		"message_id": 1, "date": time.Now().Unix(), "from": User(from, "U"),
		"chat":              map[string]any{"id": group, "type": "supergroup", "is_forum": true},
		"message_thread_id": thread, "is_topic_message": true, "text": text,
	}}
}

var callbackSeq atomic.Int64

// Callback is an update: user from pressed a button carrying data, on the
// message msgID in chat msgChat (none if msgID is 0).
func Callback(from int64, data string, msgChat int64, msgID int) map[string]any {
	id := "cq" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(callbackSeq.Add(1), 36)
	cq := map[string]any{"id": id, "from": User(from, "U"), "chat_instance": "ci", "data": data}
	if msgID != 0 {
		cq["message"] = map[string]any{"message_id": msgID, "date": time.Now().Unix(), "chat": map[string]any{"id": msgChat, "type": "private"}, "text": "offer"}
	}
	return map[string]any{"callback_query": cq}
}
