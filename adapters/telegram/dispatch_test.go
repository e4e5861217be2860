package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

// slowChat sits between the adapter and the fake Bot API and holds every
// sendMessage to one Telegram chat until released: a slow answer to one agent.
type slowChat struct {
	chat    int64
	held    chan struct{} // receives once per request held
	release chan struct{} // closed to let them through
	once    sync.Once
}

func newSlowChat(t *testing.T, api *tgfake.Server, chat int64) (*slowChat, string) {
	t.Helper()
	s := &slowChat{chat: chat, held: make(chan struct{}, 16), release: make(chan struct{})}
	target, err := url.Parse(api.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/sendMessage") && formValue(r.Header.Get("Content-Type"), body, "chat_id") == strconv.FormatInt(chat, 10) {
			s.held <- struct{}{}
			select {
			case <-s.release:
			case <-r.Context().Done():
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { s.unblock(); srv.Close() })
	return s, srv.URL
}

func (s *slowChat) unblock() { s.once.Do(func() { close(s.release) }) }

// formValue reads one field of a Bot API request (multipart, urlencoded or JSON).
func formValue(contentType string, body []byte, key string) string {
	mt, params, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "multipart/form-data":
		form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(1 << 20)
		if err != nil || len(form.Value[key]) == 0 {
			return ""
		}
		return form.Value[key][0]
	case "application/x-www-form-urlencoded":
		v, _ := url.ParseQuery(string(body))
		return v.Get(key)
	case "application/json":
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			return ""
		}
		return fmt.Sprint(m[key])
	}
	return ""
}

// differentWorkers fails the test unless the chats are on different workers.
func differentWorkers(t *testing.T, chats ...int64) {
	t.Helper()
	seen := map[int]int64{}
	for _, c := range chats {
		i := chatIndex(c, chatWorkers)
		if other, ok := seen[i]; ok {
			t.Fatalf("chats %d and %d share worker %d; pick others", c, other, i)
		}
		seen[i] = c
	}
}

// TestSlowAnswerHoldsNoOtherAgent (polling): Telegram holds the answer to
// alice; bob's command, sent after hers, is answered meanwhile. Alice's
// update is not confirmed to Telegram while it is being handled, and is
// once her answer went out.
func TestSlowAnswerHoldsNoOtherAgent(t *testing.T) {
	differentWorkers(t, aliceTG, bobTG)
	e := newEnv(t)
	slow, apiURL := newSlowChat(t, e.api, aliceTG)
	a := e.adapter(t, "A", nil, func(c *Config) { c.APIURL = apiURL })
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		return bridge.Reply{Text: "status for " + string(act.Agent)}, nil
	})
	run(t, a, h)

	aliceUpd := e.api.Push(tgfake.PrivateMessage(aliceTG, "/status"))
	<-slow.held // alice's answer is on its way, and stuck
	e.api.Push(tgfake.PrivateMessage(bobTG, "/status"))
	got := waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return c.Params["chat_id"] == strconv.FormatInt(bobTG, 10) })
	if got[0].Params["text"] != "status for bob" {
		t.Errorf("bob got %q", got[0].Params["text"])
	}
	if n := len(sentTo(e.api, aliceTG)); n != 0 {
		t.Fatalf("alice got %d answers while Telegram held them", n)
	}
	// Alice's update is not confirmed (nor bob's, newer than hers) while it
	// is being handled: were the process to die now, the next poller gets it.
	polls := len(e.api.Calls("getUpdates"))
	wait.For(t, "another getUpdates", func() bool { return len(e.api.Calls("getUpdates")) > polls+1 })
	for _, c := range e.api.Calls("getUpdates") {
		if off, _ := strconv.ParseInt(c.Params["offset"], 10, 64); off > aliceUpd {
			t.Fatalf("getUpdates confirmed offset %d while update %d was being handled", off, aliceUpd)
		}
	}
	if n := e.api.Pending(); n != 2 {
		t.Fatalf("%d updates unconfirmed at Telegram, want alice's and bob's", n)
	}

	slow.unblock()
	got = waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return c.Params["chat_id"] == strconv.FormatInt(aliceTG, 10) })
	if got[0].Params["text"] != "status for alice" {
		t.Errorf("alice got %q", got[0].Params["text"])
	}
	wait.For(t, "every update confirmed", func() bool { return updatesDrained(e.api) })
	if n := len(h.Actions()); n != 2 {
		t.Errorf("%d actions, want 2", n)
	}
}

// TestUpdatesOfOneChatInOrder: many agents write at once, each many
// messages; every agent's messages reach the bridge in the order sent,
// although chats are handled concurrently.
func TestUpdatesOfOneChatInOrder(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	concurrent := atomic.Int32{}
	maxConcurrent := atomic.Int32{}
	h := bridgetest.NewHandler(func(bridge.Action) (bridge.Reply, error) {
		n := concurrent.Add(1)
		defer concurrent.Add(-1)
		for {
			m := maxConcurrent.Load()
			if n <= m || maxConcurrent.CompareAndSwap(m, n) {
				break
			}
		}
		// A little work, so that the workers overlap.
		time.Sleep(time.Millisecond)
		return bridge.Reply{}, nil
	})
	run(t, a, h)
	agents := []int64{aliceTG, bobTG, carolTG}
	const each = 15
	for i := range each {
		for _, ag := range agents {
			e.api.Push(tgfake.PrivateMessage(ag, fmt.Sprintf("m%02d", i)))
		}
	}
	acts := h.WaitN(t, each*len(agents))
	byAgent := map[string][]string{}
	for _, act := range acts {
		byAgent[string(act.Agent)] = append(byAgent[string(act.Agent)], act.Text)
	}
	for ag, texts := range byAgent {
		if len(texts) != each {
			t.Errorf("%s: %d messages, want %d", ag, len(texts), each)
		}
		for i, s := range texts {
			if want := fmt.Sprintf("m%02d", i); s != want {
				t.Errorf("%s's messages out of order: %q", ag, texts)
				break
			}
		}
	}
	wait.For(t, "every update confirmed", func() bool { return updatesDrained(e.api) })
	t.Logf("at most %d updates handled at once", maxConcurrent.Load())
}

// TestShutdownWaitsForWorkers: Run returns only after the update being
// handled has returned.
func TestShutdownWaitsForWorkers(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	entered := make(chan struct{})
	var finished atomic.Bool
	h := &ctxHandler{fn: func(ctx context.Context) {
		close(entered)
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // a handler slow to wind down
		finished.Store(true)
	}}
	stop := run(t, a, h)
	e.api.Push(tgfake.PrivateMessage(aliceTG, "hello"))
	<-entered
	stop()
	if !finished.Load() {
		t.Error("Run returned while an update was still being handled")
	}
}

type ctxHandler struct {
	bridgetest.Handler
	fn func(ctx context.Context)
}

func (h *ctxHandler) Handle(ctx context.Context, _ bridge.Action) (bridge.Reply, error) {
	h.fn(ctx)
	return bridge.Reply{}, ctx.Err()
}

// TestWebhookSlowAnswerHoldsNoOtherAgent: in webhook mode too, a held
// answer to alice does not hold bob's update, which Telegram posts while
// alice's request is still open.
func TestWebhookSlowAnswerHoldsNoOtherAgent(t *testing.T) {
	differentWorkers(t, aliceTG, bobTG)
	e := newEnv(t)
	slow, apiURL := newSlowChat(t, e.api, aliceTG)
	a := e.adapter(t, "A", nil, func(c *Config) {
		c.APIURL = apiURL
		c.Mode = ModeWebhook
		c.WebhookURL = "https://onduty.example/telegram/webhook"
		c.WebhookSecret = "s3cret"
	})
	srv := httptest.NewServer(a.WebhookHandler())
	t.Cleanup(srv.Close)
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		return bridge.Reply{Text: "status for " + string(act.Agent)}, nil
	})
	run(t, a, h)
	waitCalls(t, e.api, "setWebhook", 1, nil)
	client := &http.Client{Timeout: 10 * time.Second} // a hang fails, not stalls, the test
	post := func(id int, from int64) int {
		u := tgfake.PrivateMessage(from, "/status")
		u["update_id"] = id
		body, _ := json.Marshal(u)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", "s3cret")
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	aliceDone := make(chan int, 1)
	go func() { aliceDone <- post(7001, aliceTG) }()
	<-slow.held
	if code := post(7002, bobTG); code != http.StatusOK {
		t.Errorf("bob's update: %d", code)
	}
	if got := sentTo(e.api, bobTG); len(got) != 1 || got[0].Params["text"] != "status for bob" {
		t.Errorf("bob got %v", got)
	}
	select {
	case code := <-aliceDone:
		t.Fatalf("alice's update answered %d while her answer was held", code)
	default:
	}
	slow.unblock()
	if code := <-aliceDone; code != http.StatusOK {
		t.Errorf("alice's update: %d", code)
	}
	if got := sentTo(e.api, aliceTG); len(got) != 1 || got[0].Params["text"] != "status for alice" {
		t.Errorf("alice got %v", got)
	}
}

// TestRetriedUpdateHoldsOnlyItsChat: alice's update fails for want of
// storage and is tried again and again; bob's updates are handled meanwhile,
// alice's next one waits behind hers, and once storage is back both of hers
// are handled, in order, and confirmed.
func TestRetriedUpdateHoldsOnlyItsChat(t *testing.T) {
	differentWorkers(t, aliceTG, bobTG)
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	a.retryWait = func(int) time.Duration { return 5 * time.Millisecond }
	var down atomic.Bool
	down.Store(true)
	failed := make(chan struct{}, 1)
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		if act.Agent == "alice" && down.Load() {
			select {
			case failed <- struct{}{}:
			default:
			}
			return bridge.Reply{}, fmt.Errorf("bridge: write: %w", bridge.ErrUnavailable)
		}
		return bridge.Reply{}, nil
	})
	run(t, a, h)
	e.api.Push(tgfake.PrivateMessage(aliceTG, "a1"))
	<-failed
	e.api.Push(tgfake.PrivateMessage(aliceTG, "a2"))
	e.api.Push(tgfake.PrivateMessage(bobTG, "b1"))
	e.api.Push(tgfake.PrivateMessage(bobTG, "b2"))
	handled := func(agent string) []string {
		var out []string
		for _, act := range h.Actions() {
			if string(act.Agent) == agent {
				out = append(out, act.Text)
			}
		}
		return out
	}
	wait.For(t, "bob's updates", func() bool { return len(handled("bob")) == 2 })
	for _, s := range handled("alice") {
		if s != "a1" {
			t.Fatalf("alice's second update was handled while her first was failing: %q", handled("alice"))
		}
	}
	polls := len(e.api.Calls("getUpdates"))
	wait.For(t, "another getUpdates", func() bool { return len(e.api.Calls("getUpdates")) > polls+1 })
	if n := e.api.Pending(); n != 4 {
		t.Fatalf("%d updates unconfirmed at Telegram while alice's first was failing, want 4", n)
	}
	down.Store(false)
	wait.For(t, "every update confirmed", func() bool { return updatesDrained(e.api) })
	got := handled("alice")
	if n := len(got); n < 3 || got[n-2] != "a1" || got[n-1] != "a2" {
		t.Errorf("alice's updates handled as %q, want a1 retried, then a2", got)
	}
	if b := handled("bob"); len(b) != 2 || b[0] != "b1" || b[1] != "b2" {
		t.Errorf("bob's updates handled as %q", b)
	}
}
