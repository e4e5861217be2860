package slack

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/onduty/onduty/internal/wait"
)

// fakeSlack is a Slack Web API and Socket Mode server for tests. It speaks
// the wire format slack-go expects and records every call under a mutex.
type fakeSlack struct {
	t   testing.TB
	srv *httptest.Server

	push chan []byte // envelopes for the socket mode connection

	mu       sync.Mutex
	calls    []apiCall
	acks     []socketAck
	seq      int
	fail     map[string][]failure
	presence map[string]string
	conns    int               // connections ever opened
	active   int               // connections open now
	uploads  map[string]upload // by file id, from files.getUploadURLExternal on
}

// upload is a file sent through Slack's external upload flow.
type upload struct {
	Name    string // filename given to files.getUploadURLExternal
	Length  string // its length field
	Content []byte // what was POSTed to the upload URL (nil until then)
}

type apiCall struct {
	Method string
	Form   url.Values
	At     time.Time // when the fake received it
	TS     string    // the ts a chat.postMessage was answered with
}

type socketAck struct {
	EnvelopeID string          `json:"envelope_id"`
	Payload    json.RawMessage `json:"payload"`
}

// failure is a canned error answer for the next call of a method.
type failure struct {
	Status     int    // HTTP status; 0 means 200 with ok:false
	RetryAfter string // Retry-After header
	Err        string // Slack error code for ok:false
}

const botUser = "UBOT"

func newFakeSlack(t testing.TB) *fakeSlack {
	f := &fakeSlack{t: t, push: make(chan []byte, 100), fail: map[string][]failure{}, presence: map[string]string{}, uploads: map[string]upload{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", f.serveAPI)
	mux.HandleFunc("/ws", f.serveSocket)
	mux.HandleFunc("/response/", f.serveResponseURL)
	mux.HandleFunc("/files/", f.serveFile)
	mux.HandleFunc("/upload/", f.serveUpload)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) apiURL() string { return f.srv.URL + "/api/" }

func (f *fakeSlack) failNext(method string, fl failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = append(f.fail[method], fl)
}

func (f *fakeSlack) setPresence(user, p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.presence[user] = p
}

func (f *fakeSlack) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	form := url.Values{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k, v := range m {
			form.Set(k, fmt.Sprint(v))
		}
	} else if err := r.ParseForm(); err != nil {
		f.t.Errorf("fake slack: %s: bad form: %v", method, err)
	}
	if len(form) == 0 {
		form = r.PostForm
	}

	f.mu.Lock()
	f.seq++
	ts := fmt.Sprintf("1700000000.%06d", f.seq)
	f.calls = append(f.calls, apiCall{Method: method, Form: form, At: time.Now(), TS: ts})
	var fl *failure
	if q := f.fail[method]; len(q) > 0 {
		fl, f.fail[method] = &q[0], q[1:]
	}
	pres := f.presence[form.Get("user")]
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if fl != nil {
		if fl.RetryAfter != "" {
			w.Header().Set("Retry-After", fl.RetryAfter)
		}
		if fl.Status != 0 {
			w.WriteHeader(fl.Status)
			return
		}
		writeJSON(w, map[string]any{"ok": false, "error": fl.Err})
		return
	}
	channel := form.Get("channel")
	if strings.HasPrefix(channel, "U") {
		channel = "D" + channel[1:] // a DM opened by posting to a user id
	}
	switch method {
	case "auth.test":
		writeJSON(w, map[string]any{"ok": true, "user_id": botUser, "bot_id": "BBOT", "team": "Acme", "user": "onduty"})
	case "chat.postMessage":
		writeJSON(w, map[string]any{"ok": true, "channel": channel, "ts": ts, "message": map[string]any{"text": form.Get("text"), "ts": ts}})
	case "chat.update":
		writeJSON(w, map[string]any{"ok": true, "channel": channel, "ts": form.Get("ts"), "text": form.Get("text")})
	case "chat.postEphemeral":
		writeJSON(w, map[string]any{"ok": true, "message_ts": ts})
	case "users.getPresence":
		if pres == "" {
			pres = "away"
		}
		writeJSON(w, map[string]any{"ok": true, "presence": pres})
	case "files.getUploadURLExternal":
		id := fmt.Sprintf("F%06d", f.seq)
		if form.Get("filename") == "" || form.Get("length") == "" || form.Get("length") == "0" {
			writeJSON(w, map[string]any{"ok": false, "error": "invalid_arguments"})
			return
		}
		f.mu.Lock()
		f.uploads[id] = upload{Name: form.Get("filename"), Length: form.Get("length")}
		f.mu.Unlock()
		writeJSON(w, map[string]any{"ok": true, "upload_url": f.srv.URL + "/upload/" + id, "file_id": id})
	case "files.completeUploadExternal":
		var files []struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		}
		_ = json.Unmarshal([]byte(form.Get("files")), &files)
		f.mu.Lock()
		ok := len(files) == 1 && f.uploads[files[0].ID].Content != nil
		f.mu.Unlock()
		if !ok {
			writeJSON(w, map[string]any{"ok": false, "error": "file_not_found"})
			return
		}
		writeJSON(w, map[string]any{"ok": true, "files": []map[string]any{{"id": files[0].ID, "title": files[0].Title}}})
	case "apps.connections.open":
		writeJSON(w, map[string]any{"ok": true, "url": "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/ws"})
	default:
		writeJSON(w, map[string]any{"ok": false, "error": "unknown_method"})
	}
}

// serveResponseURL stands in for a slash command's response_url.
func (f *fakeSlack) serveResponseURL(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	fl := f.fail["response_url"]
	if len(fl) > 0 {
		f.fail["response_url"] = fl[1:]
	}
	f.calls = append(f.calls, apiCall{Method: "response_url", Form: url.Values{"path": {r.URL.Path}, "raw": {string(b)}}})
	f.mu.Unlock()
	if len(fl) > 0 {
		w.WriteHeader(fl[0].Status)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok"))
}

// serveFile stands in for files.slack.com: the file's content is its name
// repeated; only the bot token may read it.
func (f *fakeSlack) serveFile(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls = append(f.calls, apiCall{Method: "file", Form: url.Values{"path": {r.URL.Path}, "auth": {r.Header.Get("Authorization")}}})
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer xoxb-test" {
		http.Error(w, "no", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write([]byte(fileContent(strings.TrimPrefix(r.URL.Path, "/files/"))))
}

func fileContent(name string) string { return strings.Repeat(name, 3) }

func writeJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	_, _ = w.Write(b)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// serveSocket is one Socket Mode connection: hello, then envelopes from
// push, pings every 500 ms, and acks recorded as they come.
func (f *fakeSlack) serveSocket(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		f.t.Errorf("fake slack: upgrade: %v", err)
		return
	}
	defer conn.Close()
	f.mu.Lock()
	f.conns++
	f.active++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}()
	if err := conn.WriteJSON(map[string]any{"type": "hello", "num_connections": 1}); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var a socketAck
			if err := conn.ReadJSON(&a); err != nil {
				return
			}
			f.mu.Lock()
			f.acks = append(f.acks, a)
			f.mu.Unlock()
		}
	}()
	ping := time.NewTicker(500 * time.Millisecond)
	defer ping.Stop()
	for {
		select {
		case <-done:
			return
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
				return
			}
		case env := <-f.push:
			if err := conn.WriteMessage(websocket.TextMessage, env); err != nil {
				f.push <- env // for the next connection
				return
			}
		}
	}
}

// send pushes a Socket Mode envelope of the given type with payload.
func (f *fakeSlack) send(envelopeID, typ string, payload any) {
	b, err := json.Marshal(map[string]any{
		"envelope_id": envelopeID, "type": typ, "payload": payload,
		"accepts_response_payload": typ == "slash_commands",
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.push <- b
}

func (f *fakeSlack) callsOf(method string) []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []apiCall
	for _, c := range f.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSlack) ackFor(envelopeID string) (socketAck, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.acks {
		if a.EnvelopeID == envelopeID {
			return a, true
		}
	}
	return socketAck{}, false
}

// waitCall waits for the n-th (1-based) call of method and returns it.
func (f *fakeSlack) waitCall(t testing.TB, method string, n int) apiCall {
	t.Helper()
	var c apiCall
	wait.For(t, fmt.Sprintf("call %d of %s", n, method), func() bool {
		cs := f.callsOf(method)
		if len(cs) >= n {
			c = cs[n-1]
			return true
		}
		return false
	})
	return c
}

// serveUpload stands in for the upload URL of files.getUploadURLExternal: a
// multipart POST with the bot token, whose file part is the content.
func (f *fakeSlack) serveUpload(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/upload/")
	if r.Header.Get("Authorization") != "Bearer xoxb-test" {
		http.Error(w, "bad token", http.StatusForbidden)
		return
	}
	file, _, err := r.FormFile("file")
	if err != nil {
		http.Error(w, "no file", http.StatusBadRequest)
		return
	}
	data, _ := io.ReadAll(file)
	f.mu.Lock()
	up, ok := f.uploads[id]
	if ok {
		up.Content = data
		f.uploads[id] = up
	}
	f.mu.Unlock()
	if !ok {
		http.Error(w, "unknown upload", http.StatusNotFound)
		return
	}
	fmt.Fprintf(w, "OK - %d", len(data))
}

// uploaded lists the files uploaded so far.
func (f *fakeSlack) uploaded() []upload {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []upload
	for _, u := range f.uploads {
		if u.Content != nil {
			out = append(out, u)
		}
	}
	return out
}
