package telegram

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/onduty/onduty/internal/wait"
)

const testToken = "123456:TEST-token"

// apiCall is one request the fake Bot API received.
type apiCall struct {
	Method   string
	Params   map[string]string
	Files    map[string][]byte
	Instance string // X-Instance header set by a test's HTTP client
	Failed   bool   // answered with a failure on demand
	ResultID int    // message_id of the message sent or edited
}

// failure makes the next n calls of a method fail with an API error.
type failure struct {
	method     string
	skip       int // calls let through first
	n          int
	code       int
	desc       string
	retryAfter int
}

// fakeAPI is a Bot API server: routes /bot<token>/<method> and
// /file/bot<token>/<path>, reads multipart and urlencoded forms like the real
// one, answers {"ok":true,"result":…} or {"ok":false,"error_code":…}, and
// records every call under a mutex.
type fakeAPI struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	calls    []apiCall
	updates  []map[string]any // queued, with "update_id"
	nextUpd  int64
	nextMsg  int
	nextTh   int
	deleted  map[int]bool // forum threads that no longer exist
	failures []failure
	files    map[string][]byte // file_path → bytes
	changed  chan struct{}     // closed and replaced when updates are queued
	maxHold  time.Duration     // cap on a long poll's wait
	// noTopics are groups without forum topics, by id: "group" (a basic
	// group) or "supergroup" (topics off). topicsOffLate: getChat still says
	// is_forum (topics switched off since), createForumTopic refuses.
	noTopics      map[int64]string
	topicsOffLate map[int64]bool
}

// groupWithoutTopics makes a group id one without forum topics.
func (f *fakeAPI) groupWithoutTopics(id int64, typ string, getChatSaysForum bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noTopics[id] = typ
	f.topicsOffLate[id] = getChatSaysForum
}

func newFakeAPI(t testing.TB) *fakeAPI {
	f := &fakeAPI{
		t: t, nextUpd: 100, nextMsg: 1000, nextTh: 50,
		deleted: map[int]bool{}, files: map[string][]byte{},
		noTopics: map[int64]string{}, topicsOffLate: map[int64]bool{},
		changed: make(chan struct{}), maxHold: 300 * time.Millisecond,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) URL() string { return f.srv.URL }

func (f *fakeAPI) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		f.t.Errorf("fake api: encode: %v", err)
	}
}

func (f *fakeAPI) fail(w http.ResponseWriter, code int, desc string, retryAfter int) {
	body := map[string]any{"ok": false, "error_code": code, "description": desc}
	if retryAfter > 0 {
		body["parameters"] = map[string]any{"retry_after": retryAfter}
	}
	f.writeJSON(w, code, body)
}

func (f *fakeAPI) ok(w http.ResponseWriter, result any) {
	f.writeJSON(w, http.StatusOK, map[string]any{"ok": true, "result": result})
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/file/bot"+testToken+"/"); ok {
		f.mu.Lock()
		data, found := f.files[rest]
		f.mu.Unlock()
		if !found {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	token, method, _ := strings.Cut(rest, "/")
	if !ok || token != testToken {
		f.fail(w, http.StatusUnauthorized, "Unauthorized", 0)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		f.fail(w, http.StatusMethodNotAllowed, "Method Not Allowed", 0)
		return
	}
	c := apiCall{Method: method, Params: map[string]string{}, Files: map[string][]byte{}, Instance: r.Header.Get("X-Instance")}
	if err := parseForm(r, &c); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || r.Context().Err() != nil {
			return // the client went away mid-request (a test ending)
		}
		f.t.Errorf("fake api: %s: %v", method, err)
		f.fail(w, http.StatusBadRequest, "Bad Request: "+err.Error(), 0)
		return
	}
	f.mu.Lock()
	var fl *failure
	for i := range f.failures {
		if f.failures[i].method != method {
			continue
		}
		if f.failures[i].skip > 0 {
			f.failures[i].skip--
			break
		}
		if f.failures[i].n > 0 {
			f.failures[i].n--
			fl = &failure{}
			*fl = f.failures[i]
			break
		}
	}
	c.Failed = fl != nil
	f.calls = append(f.calls, c)
	idx := len(f.calls) - 1
	f.mu.Unlock()
	if fl != nil {
		f.fail(w, fl.code, fl.desc, fl.retryAfter)
		return
	}
	f.answer(w, r, c, idx)
}

// parseForm reads the parameters as the Bot API does: multipart/form-data,
// urlencoded, JSON, or the query string.
func parseForm(r *http.Request, c *apiCall) error {
	for k, v := range r.URL.Query() {
		c.Params[k] = v[0]
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "multipart/form-data":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		if len(body) == 0 { // the library sends no parts for methods without parameters
			return nil
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if err := r.ParseMultipartForm(32 << 20); err != nil {
			return fmt.Errorf("multipart: %w", err)
		}
		for k, v := range r.MultipartForm.Value {
			c.Params[k] = v[0]
		}
		for k, fhs := range r.MultipartForm.File {
			fh, err := fhs[0].Open()
			if err != nil {
				return err
			}
			data, err := io.ReadAll(fh)
			fh.Close()
			if err != nil {
				return err
			}
			c.Files[k] = data
			c.Params[k+".filename"] = fhs[0].Filename
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return err
		}
		for k, v := range r.PostForm {
			c.Params[k] = v[0]
		}
	case "application/json":
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			if s, ok := v.(string); ok {
				c.Params[k] = s
			} else {
				b, _ := json.Marshal(v)
				c.Params[k] = string(b)
			}
		}
	}
	return nil
}

func (f *fakeAPI) answer(w http.ResponseWriter, r *http.Request, c apiCall, idx int) {
	p := c.Params
	switch c.Method {
	case "getMe":
		f.ok(w, map[string]any{"id": 999, "is_bot": true, "first_name": "Onduty", "username": "onduty_bot"})
	case "getUpdates":
		f.getUpdates(w, r, p)
	case "setWebhook", "deleteWebhook", "setMyCommands", "answerCallbackQuery":
		if c.Method == "answerCallbackQuery" && p["callback_query_id"] == "" {
			f.fail(w, 400, "Bad Request: query_id is empty", 0)
			return
		}
		if c.Method == "setWebhook" && p["url"] == "" {
			f.fail(w, 400, "Bad Request: bad webhook: url is empty", 0)
			return
		}
		f.ok(w, true)
	case "sendMessage", "editMessageText":
		if msg := checkMessage(p["text"], p["parse_mode"]); msg != "" {
			f.fail(w, 400, "Bad Request: "+msg, 0)
			return
		}
		f.sendLike(w, p, idx)
	case "sendDocument":
		if len(c.Files["document"]) == 0 {
			f.fail(w, 400, "Bad Request: there is no document in the request", 0)
			return
		}
		if msg := checkHTML(p["caption"]); p["parse_mode"] == "HTML" && msg != "" {
			f.fail(w, 400, "Bad Request: "+msg, 0)
			return
		}
		f.sendLike(w, p, idx)
	case "getChat":
		id, err := strconv.ParseInt(p["chat_id"], 10, 64)
		if err != nil {
			f.fail(w, 400, "Bad Request: chat not found", 0)
			return
		}
		f.mu.Lock()
		typ, plain := f.noTopics[id]
		late := f.topicsOffLate[id]
		f.mu.Unlock()
		switch {
		case id > 0:
			f.ok(w, map[string]any{"id": id, "type": "private", "first_name": "U", "accent_color_id": 0, "max_reaction_count": 11})
		case plain:
			res := map[string]any{"id": id, "type": typ, "title": "Support", "accent_color_id": 0, "max_reaction_count": 11}
			if late {
				res["is_forum"] = true
			}
			f.ok(w, res)
		default:
			f.ok(w, map[string]any{"id": id, "type": "supergroup", "title": "Support", "is_forum": true, "accent_color_id": 0, "max_reaction_count": 11})
		}
	case "createForumTopic":
		id, _ := strconv.ParseInt(p["chat_id"], 10, 64)
		f.mu.Lock()
		typ, plain := f.noTopics[id]
		f.mu.Unlock()
		if plain && typ == "group" {
			f.fail(w, 400, "Bad Request: method is available for supergroup chats only", 0)
			return
		}
		if plain {
			f.fail(w, 400, "Bad Request: the chat is not a forum", 0)
			return
		}
		name := p["name"]
		if name == "" || utf8.RuneCountInString(name) > 128 {
			f.fail(w, 400, "Bad Request: TOPIC_NAME_INVALID", 0)
			return
		}
		f.mu.Lock()
		f.nextTh++
		th := f.nextTh
		f.mu.Unlock()
		f.ok(w, map[string]any{"message_thread_id": th, "name": name, "icon_color": 7322096})
	case "getFile":
		id := p["file_id"]
		f.ok(w, map[string]any{"file_id": id, "file_unique_id": "u" + id, "file_size": 3, "file_path": "documents/" + id + ".bin"})
	default:
		f.fail(w, http.StatusNotFound, "Not Found: method not found", 0)
	}
}

func (f *fakeAPI) sendLike(w http.ResponseWriter, p map[string]string, idx int) {
	chat, err := strconv.ParseInt(p["chat_id"], 10, 64)
	if err != nil {
		f.fail(w, 400, "Bad Request: chat not found", 0)
		return
	}
	if kb := p["reply_markup"]; kb != "" {
		if msg := checkKeyboard(kb); msg != "" {
			f.fail(w, 400, "Bad Request: "+msg, 0)
			return
		}
	}
	th, _ := strconv.Atoi(p["message_thread_id"])
	f.mu.Lock()
	gone := f.deleted[th]
	groupType, plain := f.noTopics[chat]
	if plain && th != 0 {
		gone = true // no topics at all
	}
	f.nextMsg++
	id := f.nextMsg
	f.mu.Unlock()
	if gone {
		f.fail(w, 400, "Bad Request: message thread not found", 0)
		return
	}
	if mid, _ := strconv.Atoi(p["message_id"]); mid != 0 {
		id = mid // an edit answers with the edited message
	}
	f.mu.Lock()
	f.calls[idx].ResultID = id
	f.mu.Unlock()
	typ := "private"
	if chat < 0 {
		typ = "supergroup"
	}
	if plain {
		typ = groupType
	}
	msg := map[string]any{
		"message_id": id, "date": time.Now().Unix(),
		"chat": map[string]any{"id": chat, "type": typ},
		"text": p["text"],
	}
	if th != 0 {
		msg["message_thread_id"] = th
		msg["is_topic_message"] = true
	}
	f.ok(w, msg)
}

// checkKeyboard checks an inline keyboard like the Bot API: JSON, text on
// every button, callback_data of 1-64 bytes.
func checkKeyboard(s string) string {
	var kb struct {
		InlineKeyboard [][]map[string]any `json:"inline_keyboard"`
	}
	if err := json.Unmarshal([]byte(s), &kb); err != nil {
		return "can't parse reply keyboard markup JSON object"
	}
	for _, row := range kb.InlineKeyboard {
		for _, b := range row {
			if t, _ := b["text"].(string); t == "" {
				return "BUTTON_TEXT_INVALID"
			}
			if d, ok := b["callback_data"].(string); ok && (len(d) == 0 || len(d) > 64) {
				return "BUTTON_DATA_INVALID"
			}
		}
	}
	return ""
}

// checkMessage applies the Bot API's text rules: not empty, entities that
// parse, at most 4096 UTF-16 units after parsing.
func checkMessage(text, parseMode string) string {
	visible := text
	if parseMode == "HTML" {
		if msg := checkHTML(text); msg != "" {
			return msg
		}
		visible = stripTags(text)
	}
	if strings.TrimSpace(visible) == "" {
		return "message text is empty"
	}
	if textLen(visible) > maxMessageLen {
		return "message is too long"
	}
	return ""
}

// checkHTML accepts what Telegram's HTML parse mode accepts of what we send:
// <b> <i> <blockquote> tags, and & only as &lt; &gt; &amp; &quot; or a numeric entity.
func checkHTML(s string) string {
	var open []string
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return "can't parse entities: unclosed start tag"
			}
			tag := s[i+1 : i+j]
			switch {
			case tag == "b" || tag == "i" || tag == "blockquote":
				open = append(open, tag)
			case strings.HasPrefix(tag, "/"):
				if len(open) == 0 || open[len(open)-1] != tag[1:] {
					return "can't parse entities: unmatched end tag " + tag
				}
				open = open[:len(open)-1]
			default:
				return "can't parse entities: unsupported start tag \"" + tag + "\""
			}
			i += j
		case '>':
			return "can't parse entities: unexpected >"
		case '&':
			j := strings.IndexByte(s[i:], ';')
			if j < 0 {
				return "can't parse entities: bad character reference"
			}
			switch ent := s[i+1 : i+j]; {
			case ent == "lt" || ent == "gt" || ent == "amp" || ent == "quot":
			case strings.HasPrefix(ent, "#"):
			default:
				return "can't parse entities: unknown entity &" + ent + ";"
			}
			i += j
		}
	}
	if len(open) > 0 {
		return "can't parse entities: unclosed tag " + open[len(open)-1]
	}
	return ""
}

// getUpdates forgets updates below offset (Telegram's confirmation), then
// returns what is queued, waiting up to the request's timeout (capped).
func (f *fakeAPI) getUpdates(w http.ResponseWriter, r *http.Request, p map[string]string) {
	offset, _ := strconv.ParseInt(p["offset"], 10, 64)
	timeout, _ := strconv.Atoi(p["timeout"])
	hold := min(time.Duration(timeout)*time.Second, f.maxHold)
	deadline := time.NewTimer(hold)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		if offset > 0 {
			kept := f.updates[:0]
			for _, u := range f.updates {
				if u["update_id"].(int64) >= offset {
					kept = append(kept, u)
				}
			}
			f.updates = kept
		}
		out := append([]map[string]any(nil), f.updates...)
		changed := f.changed
		f.mu.Unlock()
		if len(out) > 0 {
			f.ok(w, out)
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			f.ok(w, []any{})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// push queues an update and returns its update_id.
func (f *fakeAPI) push(u map[string]any) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextUpd++
	u["update_id"] = f.nextUpd
	f.updates = append(f.updates, u)
	close(f.changed)
	f.changed = make(chan struct{})
	return f.nextUpd
}

func (f *fakeAPI) failNext(method string, n, code int, desc string, retryAfter int) {
	f.failAfter(method, 0, n, code, desc, retryAfter)
}

// failAfter lets skip calls of method through, then fails the next n.
func (f *fakeAPI) failAfter(method string, skip, n, code int, desc string, retryAfter int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, failure{method: method, skip: skip, n: n, code: code, desc: desc, retryAfter: retryAfter})
}

func (f *fakeAPI) deleteThread(th int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted[th] = true
}

func (f *fakeAPI) addFile(path string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = data
}

// callsOf lists the calls of one method (all methods if method is "").
func (f *fakeAPI) callsOf(method string) []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []apiCall
	for _, c := range f.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// waitCalls waits until at least n calls of method match keep (nil: all).
func (f *fakeAPI) waitCalls(t testing.TB, method string, n int, keep func(apiCall) bool) []apiCall {
	t.Helper()
	var got []apiCall
	wait.For(t, fmt.Sprintf("%d %s call(s)", n, method), func() bool {
		got = got[:0]
		for _, c := range f.callsOf(method) {
			if keep == nil || keep(c) {
				got = append(got, c)
			}
		}
		return len(got) >= n
	})
	return got
}

// Update builders, in the Bot API's JSON shape.

func user(id int64, name string) map[string]any {
	return map[string]any{"id": id, "is_bot": false, "first_name": name}
}

func privateMessage(from int64, text string) map[string]any {
	return map[string]any{"message": map[string]any{
		"message_id": 1, "date": time.Now().Unix(), "from": user(from, "U"),
		"chat": map[string]any{"id": from, "type": "private"}, "text": text,
	}}
}

func replyMessage(from int64, text string, replyTo int) map[string]any {
	u := privateMessage(from, text)
	u["message"].(map[string]any)["reply_to_message"] = map[string]any{
		"message_id": replyTo, "date": time.Now().Unix(),
		"chat": map[string]any{"id": from, "type": "private"}, "text": "earlier",
	}
	return u
}

func topicMessage(from, group int64, thread int, text string) map[string]any {
	return map[string]any{"message": map[string]any{
		"message_id": 1, "date": time.Now().Unix(), "from": user(from, "U"),
		"chat":              map[string]any{"id": group, "type": "supergroup", "is_forum": true},
		"message_thread_id": thread, "is_topic_message": true, "text": text,
	}}
}

func callback(from int64, data string, msgChat int64, msgID int) map[string]any {
	cq := map[string]any{"id": "cq" + strconv.FormatInt(time.Now().UnixNano(), 36), "from": user(from, "U"), "chat_instance": "ci", "data": data}
	if msgID != 0 {
		cq["message"] = map[string]any{"message_id": msgID, "date": time.Now().Unix(), "chat": map[string]any{"id": msgChat, "type": "private"}, "text": "offer"}
	}
	return map[string]any{"callback_query": cq}
}
