package loadtest

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fakeTelegram is a Bot API server on loopback that the real telegram
// adapter talks to. It answers the methods the adapter uses, tells the load
// test when each sendMessage carrying a marker arrives, and serves queued
// updates to getUpdates (long poll, woken at once when an update is queued).
type fakeTelegram struct {
	srv   *httptest.Server
	token string
	// onSend is called for every sendMessage, before it is answered.
	onSend func(at time.Time, tgChat int64, msgID int, text string)

	mu      sync.Mutex
	calls   map[string]int
	nextMsg int
	nextUpd int64
	updates []json.RawMessage // queued, in update_id order, starting at firstUpd
	first   int64
	wake    chan struct{} // closed and replaced when updates are queued
	closed  bool
}

func newFakeTelegram(token string, onSend func(time.Time, int64, int, string)) *fakeTelegram {
	f := &fakeTelegram{
		token: token, onSend: onSend, calls: map[string]int{},
		nextMsg: 1000, nextUpd: 1, first: 1, wake: make(chan struct{}),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

// URL is the base the adapter's APIURL takes.
func (f *fakeTelegram) URL() string { return f.srv.URL }

// Close stops the server; pending long polls return at once.
func (f *fakeTelegram) Close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.wake)
	}
	f.mu.Unlock()
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// Calls returns how often each method was called.
func (f *fakeTelegram) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.calls))
	for k, v := range f.calls {
		out[k] = v
	}
	return out
}

// tgUpdateMessage is the part of a Bot API message the adapter reads.
type tgUpdateMessage struct {
	MessageID int              `json:"message_id"`
	Date      int64            `json:"date"`
	Chat      tgChat           `json:"chat"`
	From      *tgUser          `json:"from,omitempty"`
	Text      string           `json:"text,omitempty"`
	ReplyTo   *tgUpdateMessage `json:"reply_to_message,omitempty"`
}

type tgChat struct {
	ID   int64  `json:"id"`
	Type string `json:"type"`
}

type tgUser struct {
	ID        int64  `json:"id"`
	IsBot     bool   `json:"is_bot"`
	FirstName string `json:"first_name"`
}

// QueueReply queues an update: the agent with Telegram id user writes text
// in their private chat with the bot, as a reply to the bot's message msgID.
func (f *fakeTelegram) QueueReply(user int64, msgID int, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.nextMsg++
	now := time.Now().Unix()
	chat := tgChat{ID: user, Type: "private"}
	m := tgUpdateMessage{
		MessageID: f.nextMsg, Date: now, Chat: chat,
		From: &tgUser{ID: user, FirstName: "Agent"}, Text: text,
		ReplyTo: &tgUpdateMessage{MessageID: msgID, Date: now, Chat: chat},
	}
	body, _ := json.Marshal(map[string]any{"update_id": f.nextUpd, "message": m})
	f.nextUpd++
	f.updates = append(f.updates, body)
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeTelegram) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot"+f.token+"/")
	if !ok {
		writeTG(w, http.StatusUnauthorized, map[string]any{"ok": false, "error_code": 401, "description": "Unauthorized"})
		return
	}
	method := rest
	at := time.Now()
	params, err := tgParams(r)
	if err != nil {
		writeTG(w, http.StatusBadRequest, map[string]any{"ok": false, "error_code": 400, "description": "Bad Request: " + err.Error()})
		return
	}
	f.mu.Lock()
	f.calls[method]++
	f.mu.Unlock()
	switch method {
	case "getMe":
		tgOK(w, map[string]any{"id": 999, "is_bot": true, "first_name": "Onduty", "username": "onduty_load_bot"})
	case "getUpdates":
		f.getUpdates(w, r, params)
	case "sendMessage":
		chat, err := strconv.ParseInt(params["chat_id"], 10, 64)
		if err != nil {
			writeTG(w, http.StatusBadRequest, map[string]any{"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})
			return
		}
		f.mu.Lock()
		f.nextMsg++
		id := f.nextMsg
		f.mu.Unlock()
		if f.onSend != nil {
			f.onSend(at, chat, id, params["text"])
		}
		tgOK(w, tgUpdateMessage{MessageID: id, Date: at.Unix(), Chat: tgChat{ID: chat, Type: "private"}, Text: params["text"]})
	case "editMessageText":
		id, _ := strconv.Atoi(params["message_id"])
		chat, _ := strconv.ParseInt(params["chat_id"], 10, 64)
		tgOK(w, tgUpdateMessage{MessageID: id, Date: at.Unix(), Chat: tgChat{ID: chat, Type: "private"}, Text: params["text"]})
	default: // setMyCommands, deleteWebhook, answerCallbackQuery…
		tgOK(w, true)
	}
}

// getUpdates answers the updates from offset on, or waits for one up to
// the asked timeout (at most 5s).
func (f *fakeTelegram) getUpdates(w http.ResponseWriter, r *http.Request, p map[string]string) {
	offset, _ := strconv.ParseInt(p["offset"], 10, 64)
	timeout, _ := strconv.Atoi(p["timeout"])
	deadline := time.NewTimer(min(time.Duration(timeout)*time.Second, 5*time.Second))
	defer deadline.Stop()
	for {
		f.mu.Lock()
		if offset > f.first { // confirmed: forget them
			drop := min(int(offset-f.first), len(f.updates))
			f.updates = f.updates[drop:]
			f.first += int64(drop)
		}
		out := f.updates[:min(len(f.updates), 100)]
		wake := f.wake
		closed := f.closed
		f.mu.Unlock()
		if len(out) > 0 || closed {
			var buf bytes.Buffer
			buf.WriteString(`{"ok":true,"result":[`)
			for i, u := range out {
				if i > 0 {
					buf.WriteByte(',')
				}
				buf.Write(u)
			}
			buf.WriteString(`]}`)
			w.Header().Set("Content-Type", "application/json")
			w.Write(buf.Bytes())
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			tgOK(w, []any{})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// tgParams reads a Bot API request's parameters: multipart (the library),
// urlencoded (the adapter's own getUpdates) or the query string.
func tgParams(r *http.Request) (map[string]string, error) {
	p := map[string]string{}
	for k, v := range r.URL.Query() {
		p[k] = v[0]
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "multipart/form-data":
		if r.ContentLength == 0 {
			return p, nil
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			return p, nil // a method without parameters: an empty form
		}
		for k, v := range r.MultipartForm.Value {
			p[k] = v[0]
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		for k, v := range r.PostForm {
			p[k] = v[0]
		}
	}
	return p, nil
}

func tgOK(w http.ResponseWriter, result any) {
	writeTG(w, http.StatusOK, map[string]any{"ok": true, "result": result})
}

func writeTG(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
