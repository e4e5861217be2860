package tgfake

import (
	"bytes"
	"cmp"
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
	"time"
	"unicode/utf8"
)

// Reporter receives the fake's own failures; *testing.T satisfies it.
type Reporter interface {
	Errorf(format string, args ...any)
}

// Options configure a Server. Only Token is required.
type Options struct {
	// Token is the bot token the fake accepts; any other answers 401.
	Token string
	// BotName is getMe's username (default "onduty_bot").
	BotName string
	// Report receives what the fake cannot handle (an unparsable body).
	// Nil: ignored.
	Report Reporter
	// MaxHold caps how long getUpdates waits for an update, whatever the
	// request's timeout (default 300ms, so tests end quickly).
	MaxHold time.Duration
	// CountOnly keeps only the number of calls per method (Counts), not the
	// calls themselves: for long runs such as the load test.
	CountOnly bool
	// OnSend is called for every sendMessage that succeeds, before it is
	// answered, with the message id the answer carries.
	OnSend func(at time.Time, chat int64, msgID int, text string)
	// After continues the ids of a Telegram that handed out ids before the
	// fake started (a test resuming a deployment's recorded data).
	After IDs
}

// IDs are the last ids handed out: the next update, message and forum topic
// get one more. Zero fields: 100, 1000 and 50.
type IDs struct {
	Update  int64
	Message int
	Thread  int
}

// Call is one request the fake received.
type Call struct {
	Method   string
	Params   map[string]string // form, JSON or query parameters; a file's name as "<field>.filename"
	Files    map[string][]byte // uploaded files by field
	Instance string            // the /NAME/ path prefix or the X-Instance header
	At       time.Time         // when it arrived
	Failed   bool              // answered with an injected failure
	ResultID int               // message_id of the message sent or edited
}

// Forever is a failure count that never runs out (until StopFailing).
const Forever = -1

// failure makes calls of a method fail with an API error.
type failure struct {
	method     string
	skip       int // calls let through first
	n          int // calls failed; Forever
	code       int
	desc       string
	retryAfter int
}

type update struct {
	id  int64
	raw json.RawMessage
}

// Server is a fake Bot API on a loopback port.
type Server struct {
	o   Options
	srv *httptest.Server

	mu       sync.Mutex
	calls    []Call
	counts   map[string]int
	updates  []update // queued, in update_id order
	nextUpd  int64
	nextMsg  int
	nextTh   int
	deleted  map[int]bool // forum threads that no longer exist
	failures []failure
	files    map[string][]byte // file_path → bytes
	changed  chan struct{}     // closed and replaced when updates are queued
	closed   bool
	revoked  bool
	// noTopics are groups without forum topics, by id: "group" (a basic
	// group) or "supergroup" (topics off). topicsOffLate: getChat still says
	// is_forum (topics switched off since), createForumTopic refuses.
	noTopics      map[int64]string
	topicsOffLate map[int64]bool
}

// New starts a fake Bot API. The caller closes it (Close).
func New(o Options) *Server {
	if o.BotName == "" {
		o.BotName = "onduty_bot"
	}
	if o.MaxHold <= 0 {
		o.MaxHold = 300 * time.Millisecond
	}
	f := &Server{
		o: o, nextUpd: cmp.Or(o.After.Update, 100), nextMsg: cmp.Or(o.After.Message, 1000), nextTh: cmp.Or(o.After.Thread, 50),
		counts:  map[string]int{},
		deleted: map[int]bool{}, files: map[string][]byte{},
		noTopics: map[int64]string{}, topicsOffLate: map[int64]bool{},
		changed: make(chan struct{}),
	}
	f.srv = httptest.NewServer(f)
	return f
}

// URL is the base URL the client takes (bot.WithServerURL, the adapter's
// APIURL); append "/NAME" to mark an instance's calls.
func (f *Server) URL() string { return f.srv.URL }

// Close stops the server: pending long polls return at once and open
// connections are cut, as when Telegram becomes unreachable.
func (f *Server) Close() {
	f.mu.Lock()
	was := f.closed
	if !was {
		f.closed = true
		close(f.changed)
	}
	f.mu.Unlock()
	if was {
		return
	}
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func (f *Server) errorf(format string, args ...any) {
	if f.o.Report != nil {
		f.o.Report.Errorf("tgfake: "+format, args...)
	}
}

func (f *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		f.errorf("encode: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

func (f *Server) fail(w http.ResponseWriter, code int, desc string, retryAfter int) {
	body := map[string]any{"ok": false, "error_code": code, "description": desc}
	if retryAfter > 0 {
		body["parameters"] = map[string]any{"retry_after": retryAfter}
	}
	f.writeJSON(w, code, body)
}

func (f *Server) ok(w http.ResponseWriter, result any) {
	f.writeJSON(w, http.StatusOK, map[string]any{"ok": true, "result": result})
}

// ServeHTTP answers one Bot API request; a test may put it behind a proxy
// of its own (slow sends, outages).
func (f *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	inst := ""
	if first, rest, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/"); ok && first != "file" && !strings.HasPrefix(first, "bot") {
		inst, path = first, "/"+rest
	}
	if h := r.Header.Get("X-Instance"); h != "" {
		inst = h
	}
	f.mu.Lock()
	revoked := f.revoked
	f.mu.Unlock()
	if rest, ok := strings.CutPrefix(path, "/file/bot"+f.o.Token+"/"); ok && !revoked {
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
	rest, ok := strings.CutPrefix(path, "/bot")
	token, method, _ := strings.Cut(rest, "/")
	if !ok || token != f.o.Token || revoked {
		f.fail(w, http.StatusUnauthorized, "Unauthorized", 0)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		f.fail(w, http.StatusMethodNotAllowed, "Method Not Allowed", 0)
		return
	}
	c := Call{Method: method, Params: map[string]string{}, Files: map[string][]byte{}, Instance: inst, At: time.Now()}
	if err := parseParams(r, &c); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || r.Context().Err() != nil {
			return // the client went away mid-request (a test ending, a process killed)
		}
		f.errorf("%s: %v", method, err)
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
		if f.failures[i].n != 0 {
			if f.failures[i].n > 0 {
				f.failures[i].n--
			}
			fl = &failure{}
			*fl = f.failures[i]
			break
		}
	}
	c.Failed = fl != nil
	f.counts[method]++
	idx := -1
	if !f.o.CountOnly {
		f.calls = append(f.calls, c)
		idx = len(f.calls) - 1
	}
	f.mu.Unlock()
	if fl != nil {
		f.fail(w, fl.code, fl.desc, fl.retryAfter)
		return
	}
	f.answer(w, r, c, idx)
}

// parseParams reads the parameters as the Bot API does: multipart/form-data,
// urlencoded, JSON, or the query string.
func parseParams(r *http.Request, c *Call) error {
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
		r.Body = io.NopCloser(bytes.NewReader(body))
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

func (f *Server) answer(w http.ResponseWriter, r *http.Request, c Call, idx int) {
	p := c.Params
	switch c.Method {
	case "getMe":
		id, _ := strconv.ParseInt(strings.SplitN(f.o.Token, ":", 2)[0], 10, 64)
		f.ok(w, map[string]any{"id": id, "is_bot": true, "first_name": "Onduty", "username": f.o.BotName})
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
		if msg := CheckMessage(p["text"], p["parse_mode"]); msg != "" {
			f.fail(w, 400, "Bad Request: "+msg, 0)
			return
		}
		f.sendLike(w, c, idx)
	case "sendDocument":
		if len(c.Files["document"]) == 0 {
			f.fail(w, 400, "Bad Request: there is no document in the request", 0)
			return
		}
		if msg := CheckHTML(p["caption"]); p["parse_mode"] == "HTML" && msg != "" {
			f.fail(w, 400, "Bad Request: "+msg, 0)
			return
		}
		f.sendLike(w, c, idx)
	case "getChat":
		f.getChat(w, p)
	case "createForumTopic":
		f.createForumTopic(w, p)
	case "getFile":
		id := p["file_id"]
		f.ok(w, map[string]any{"file_id": id, "file_unique_id": "u" + id, "file_size": 3, "file_path": "documents/" + id + ".bin"})
	default:
		f.fail(w, http.StatusNotFound, "Not Found: method not found", 0)
	}
}

func (f *Server) getChat(w http.ResponseWriter, p map[string]string) {
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
}

func (f *Server) createForumTopic(w http.ResponseWriter, p map[string]string) {
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
}

// sendLike answers sendMessage, editMessageText and sendDocument with the
// message sent or edited.
func (f *Server) sendLike(w http.ResponseWriter, c Call, idx int) {
	p := c.Params
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
	if idx >= 0 {
		f.mu.Lock()
		f.calls[idx].ResultID = id
		f.mu.Unlock()
	}
	if c.Method == "sendMessage" && f.o.OnSend != nil {
		f.o.OnSend(c.At, chat, id, p["text"])
	}
	typ := "private"
	if chat < 0 {
		typ = "supergroup"
	}
	if plain {
		typ = groupType
	}
	msg := map[string]any{
		"message_id": id, "date": c.At.Unix(),
		"chat": map[string]any{"id": chat, "type": typ},
		"text": p["text"],
	}
	if th != 0 {
		msg["message_thread_id"] = th
		msg["is_topic_message"] = true
	}
	f.ok(w, msg)
}

// getUpdates forgets updates below offset (Telegram's confirmation), then
// returns up to limit (default and at most 100) of what is queued, waiting
// up to the request's timeout (capped by MaxHold) for one to come.
func (f *Server) getUpdates(w http.ResponseWriter, r *http.Request, p map[string]string) {
	offset, _ := strconv.ParseInt(p["offset"], 10, 64)
	timeout, _ := strconv.Atoi(p["timeout"])
	limit, _ := strconv.Atoi(p["limit"])
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	deadline := time.NewTimer(min(time.Duration(timeout)*time.Second, f.o.MaxHold))
	defer deadline.Stop()
	for {
		f.mu.Lock()
		if offset > 0 {
			drop := 0
			for drop < len(f.updates) && f.updates[drop].id < offset {
				drop++
			}
			f.updates = f.updates[drop:]
		}
		var buf bytes.Buffer
		n := min(len(f.updates), limit)
		if n > 0 {
			buf.WriteString(`{"ok":true,"result":[`)
			for i, u := range f.updates[:n] {
				if i > 0 {
					buf.WriteByte(',')
				}
				buf.Write(u.raw)
			}
			buf.WriteString("]}\n")
		}
		changed, closed := f.changed, f.closed
		f.mu.Unlock()
		if n > 0 {
			w.Header().Set("Content-Type", "application/json")
			w.Write(buf.Bytes())
			return
		}
		if closed {
			f.ok(w, []any{})
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

// Push queues an update (a map in the Bot API's JSON shape, such as
// PrivateMessage builds), sets its "update_id" and returns it. A pending
// getUpdates answers at once.
func (f *Server) Push(u map[string]any) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextUpd++
	u["update_id"] = f.nextUpd
	raw, err := json.Marshal(u)
	if err != nil {
		f.errorf("push: %v", err)
		return f.nextUpd
	}
	if f.closed {
		return f.nextUpd
	}
	f.updates = append(f.updates, update{id: f.nextUpd, raw: raw})
	close(f.changed)
	f.changed = make(chan struct{})
	return f.nextUpd
}

// Pending is the number of queued updates not yet confirmed by an offset.
func (f *Server) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.updates)
}

// FailNext makes the next n calls of method fail with code, desc and, if
// retryAfter > 0, parameters.retry_after.
func (f *Server) FailNext(method string, n, code int, desc string, retryAfter int) {
	f.FailAfter(method, 0, n, code, desc, retryAfter)
}

// FailAfter lets skip calls of method through, then fails the next n
// (Forever: every one until StopFailing).
func (f *Server) FailAfter(method string, skip, n, code int, desc string, retryAfter int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, failure{method: method, skip: skip, n: n, code: code, desc: desc, retryAfter: retryAfter})
}

// StopFailing drops every failure set for method.
func (f *Server) StopFailing(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.failures[:0]
	for _, fl := range f.failures {
		if fl.method != method {
			kept = append(kept, fl)
		}
	}
	f.failures = kept
}

// Revoke makes every request answer 401 Unauthorized, as after the token
// was revoked with BotFather.
func (f *Server) Revoke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = true
}

// DeleteThread makes a forum topic gone: sends into it fail.
func (f *Server) DeleteThread(th int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted[th] = true
}

// GroupWithoutTopics makes a group id one without forum topics: typ is
// "group" (a basic group) or "supergroup" (topics off); getChatSaysForum
// keeps getChat answering is_forum (topics switched off since).
func (f *Server) GroupWithoutTopics(id int64, typ string, getChatSaysForum bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noTopics[id] = typ
	f.topicsOffLate[id] = getChatSaysForum
}

// AddFile serves data at /file/bot<token>/path.
func (f *Server) AddFile(path string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = data
}

// Calls lists the calls of one method (all methods if method is "").
func (f *Server) Calls(method string) []Call {
	return f.CallsWhere(func(c Call) bool { return method == "" || c.Method == method })
}

// CallsWhere lists the calls keep accepts, in arrival order. keep runs
// under the fake's lock: it must not call the Server.
func (f *Server) CallsWhere(keep func(Call) bool) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// Counts returns how often each method was called.
func (f *Server) Counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out
}
