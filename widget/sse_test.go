package widget

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// sseEvent is one event read from a stream; comments have Name ":".
type sseEvent struct {
	Name, ID, Data string
}

// sseStream reads a real event stream over TCP.
type sseStream struct {
	t      testing.TB
	res    *http.Response
	events chan sseEvent
	done   chan struct{} // closed when the body ends
	cancel context.CancelFunc
}

func openSSE(t testing.TB, url string, headers ...string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &sseStream{t: t, res: res, events: make(chan sseEvent, 256), done: make(chan struct{}), cancel: cancel}
	if res.StatusCode != 200 {
		return s
	}
	go func() {
		defer close(s.done)
		br := bufio.NewReader(res.Body)
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.Name = ":"
			case strings.HasPrefix(line, "event: "):
				ev.Name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.Data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(s.Close)
	return s
}

func (s *sseStream) Close() {
	s.cancel()
	s.res.Body.Close()
}

// next returns the next event named name (skipping heartbeats and other
// names listed in skip), failing the test after the deadline.
func (s *sseStream) next(name string, skip ...string) sseEvent {
	s.t.Helper()
	// wanted reports whether ev is the event; one that may not come first fails the test.
	wanted := func(ev sseEvent) bool {
		s.t.Helper()
		if ev.Name != name && ev.Name != ":" && !contains(skip, ev.Name) {
			s.t.Fatalf("got event %+v, want %q", ev, name)
		}
		return ev.Name == name
	}
	timeout := time.After(testTimeout)
	for {
		select {
		case ev := <-s.events:
			if wanted(ev) {
				return ev
			}
		case <-s.done:
			// drain what was read before the end
			select {
			case ev := <-s.events:
				if wanted(ev) {
					return ev
				}
				continue
			default:
			}
			s.t.Fatalf("stream ended while waiting for %q", name)
		case <-timeout:
			s.t.Fatalf("timed out waiting for event %q", name)
		}
	}
}

// ended waits for the server to end the stream.
func (s *sseStream) ended() {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(testTimeout):
		s.t.Fatalf("stream did not end")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestStatusStream(t *testing.T) {
	// Every stream comes from 127.0.0.1: the per-IP caps would refuse most
	// of "many streams" (TestStreamCaps tests them).
	e := newEnv(t, func(c *Config) { c.Limits = Limits{ConnectionsPerIP: -1, StreamsPerIP: -1} })
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	base := e.serve()

	s := openSSE(t, base+"/v1/properties/demo/status/stream", "Origin", "https://anywhere.example")
	if s.res.StatusCode != 200 || s.res.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" || s.res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("stream response: %d %v", s.res.StatusCode, s.res.Header)
	}
	var st presence.WidgetStatus
	for st.Status != presence.Online { // the first event may predate the watcher's catching up
		ev := s.next("status")
		if err := json.Unmarshal([]byte(ev.Data), &st); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, "open stream counted", func() bool { return e.srv.OpenStreams() == 1 })

	e.setStatus(agentAlice, presence.Away)
	ev := s.next("status")
	if err := json.Unmarshal([]byte(ev.Data), &st); err != nil || st.Status != presence.Away || st.Property != propDemo {
		t.Fatalf("after change: %s", ev.Data)
	}

	t.Run("heartbeat", func(t *testing.T) {
		select {
		case ev := <-s.events:
			if ev.Name != ":" {
				t.Errorf("want a heartbeat comment, got %+v", ev)
			}
		case <-time.After(testTimeout):
			t.Fatal("no heartbeat")
		}
	})

	t.Run("a gone client is dropped", func(t *testing.T) {
		s.Close()
		wait.For(t, "stream closed", func() bool { return e.srv.OpenStreams() == 0 })
	})

	t.Run("many streams", func(t *testing.T) {
		// Each stream costs two descriptors here (client and server end).
		n := 1000
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && int(lim.Cur) < 2*n+200 {
			n = max(10, (int(lim.Cur)-200)/2)
		}
		t.Logf("%d streams", n)
		streams := make([]*sseStream, n)
		for i := range streams {
			streams[i] = openSSE(t, base+"/v1/properties/demo/status/stream")
		}
		for _, s := range streams {
			s.next("status")
		}
		wait.For(t, "all open", func() bool { return e.srv.OpenStreams() == int64(n) })
		e.setStatus(agentAlice, presence.Online)
		for i, s := range streams {
			if ev := s.next("status"); !strings.Contains(ev.Data, `"status":"online"`) {
				t.Fatalf("stream %d: %s", i, ev.Data)
			}
		}
	})

	t.Run("unknown property", func(t *testing.T) {
		s := openSSE(t, base+"/v1/properties/nope/status/stream")
		b, _ := io.ReadAll(s.res.Body)
		if s.res.StatusCode != 404 || !strings.Contains(string(b), "unknown_property") {
			t.Errorf("%d %s", s.res.StatusCode, b)
		}
	})
}

func TestVisitorStream(t *testing.T) {
	e := newEnv(t)
	e.runWatcher()
	base := e.serve()
	id, tok := e.startChat(propAcme, "hello")
	cid := bridge.ChatID(id)

	s := openSSE(t, base+"/v1/chats/"+id+"/events?token="+tok, "Origin", acmeOrigin)
	if s.res.StatusCode != 200 || s.res.Header.Get("Access-Control-Allow-Origin") != acmeOrigin {
		t.Fatalf("%d %v", s.res.StatusCode, s.res.Header)
	}
	if ev := s.next("status"); !strings.Contains(ev.Data, `"property":"acme"`) {
		t.Errorf("status event %s", ev.Data)
	}
	wait.For(t, "subscribed", func() bool { return e.chats.Subscribers(cid) == 1 })

	e.chats.Join(cid, agentAlice, "Alice")
	var got bridge.VisitorEvent
	ev := s.next("agent_joined", "status")
	if err := json.Unmarshal([]byte(ev.Data), &got); err != nil || got.Agent != "Alice" || got.Type != bridge.EventAgentJoined {
		t.Errorf("agent_joined %s", ev.Data)
	}

	e.chats.Reply(cid, agentAlice, "Alice", "// internal", true)
	m := e.chats.Reply(cid, agentAlice, "Alice", "Hi, how can I help?", false)
	ev = s.next("message", "status")
	if err := json.Unmarshal([]byte(ev.Data), &got); err != nil || ev.ID != m.ID || got.Message == nil || got.Message.Text != "Hi, how can I help?" || got.Message.Name != "Alice" || got.Message.Agent != "" {
		t.Errorf("message %+v", ev)
	}

	// The visitor's own message comes back too (other tabs).
	r := e.do("POST", "/v1/chats/"+id+"/messages", map[string]string{"text": "my order"}, "Authorization", "Bearer "+tok)
	var posted map[string]string
	r.json(t, &posted)
	if ev := s.next("message", "status"); ev.ID != posted["id"] {
		t.Errorf("own message id %q, want %q", ev.ID, posted["id"])
	}

	t.Run("status changes reach the chat", func(t *testing.T) {
		e.setStatus(agentBob, presence.Online)
		e.setStatus(agentAlice, presence.Away)
		for {
			ev := s.next("status")
			if strings.Contains(ev.Data, `"status":"online"`) {
				break
			}
		}
	})

	t.Run("reconnect replays after Last-Event-ID", func(t *testing.T) {
		missed1 := e.chats.Reply(cid, agentAlice, "Alice", "are you there?", false)
		missed2 := e.chats.Reply(cid, agentAlice, "Alice", "hello?", false)
		s2 := openSSE(t, base+"/v1/chats/"+id+"/events?token="+tok, "Last-Event-ID", m.ID)
		var ids []string
		for len(ids) < 3 {
			ids = append(ids, s2.next("message", "status", "agent_joined").ID)
		}
		want := []string{posted["id"], missed1.ID, missed2.ID}
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Errorf("replayed %v, want %v", ids, want)
		}
		// Live ones after the replay are not repeated.
		live := e.chats.Reply(cid, agentAlice, "Alice", "live", false)
		if ev := s2.next("message", "status", "agent_joined"); ev.ID != live.ID {
			t.Errorf("after replay got %s, want %s", ev.ID, live.ID)
		}
		s3 := openSSE(t, base+"/v1/chats/"+id+"/events?token="+tok+"&last_event_id="+missed2.ID)
		if ev := s3.next("message", "status", "agent_joined"); ev.ID != live.ID {
			t.Errorf("query last_event_id: got %s, want %s", ev.ID, live.ID)
		}
	})

	t.Run("agent closes", func(t *testing.T) {
		e.chats.CloseByAgent(cid, agentAlice)
		ev := s.next("chat_closed", "status", "message")
		if !strings.Contains(ev.Data, `"reason":"agent:alice"`) {
			t.Errorf("chat_closed %s", ev.Data)
		}
		s.ended()
		wait.For(t, "unsubscribed", func() bool { return e.chats.Subscribers(cid) == 0 })
	})

	t.Run("a closed chat says so and ends", func(t *testing.T) {
		s := openSSE(t, base+"/v1/chats/"+id+"/events", "Authorization", "Bearer "+tok)
		s.next("chat_closed")
		s.ended()
	})

	t.Run("auth errors are JSON, not streams", func(t *testing.T) {
		for _, tc := range []struct {
			url  string
			code int
		}{
			{base + "/v1/chats/" + id + "/events", 401},
			{base + "/v1/chats/" + id + "/events?token=wrong", 403},
			{base + "/v1/chats/nochat/events?token=" + tok, 404},
		} {
			s := openSSE(t, tc.url)
			b, _ := io.ReadAll(s.res.Body)
			if s.res.StatusCode != tc.code || !strings.Contains(string(b), `"error"`) {
				t.Errorf("%s: %d %s", tc.url, s.res.StatusCode, b)
			}
		}
	})
}

func TestShutdownEndsStreams(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Heartbeat = time.Hour })
	e.runWatcher()
	id, tok := e.startChat(propDemo, "hello")

	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	status := openSSE(t, base+"/v1/properties/demo/status/stream")
	status.next("status")
	chat := openSSE(t, base+"/v1/chats/"+id+"/events?token="+tok)
	chat.next("status")
	wait.For(t, "two streams", func() bool { return e.srv.OpenStreams() == 2 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("shutdown blocked by open streams")
	}
	status.ended()
	chat.ended()
	if n := e.srv.OpenStreams(); n != 0 {
		t.Errorf("%d streams open after shutdown", n)
	}
	wait.For(t, "unsubscribed", func() bool { return e.chats.Subscribers(bridge.ChatID(id)) == 0 })
}

func TestRun(t *testing.T) {
	t.Run("stops when ctx is already done", func(t *testing.T) {
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- e.srv.Run(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("Run did not return")
		}
	})
	t.Run("listen error", func(t *testing.T) {
		ln := listen(t)
		defer ln.Close()
		e := newEnv(t, func(c *Config) { c.Listen = ln.Addr().String() })
		if err := e.srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "widget: listen") {
			t.Errorf("run on a busy address: %v", err)
		}
	})
}

// TestVisitorStreamReplaysLongGaps: a visitor who reconnects after missing
// more messages than one transcript read returns gets every one of them, in
// order, then the live ones.
func TestVisitorStreamReplaysLongGaps(t *testing.T) {
	e := newEnv(t)
	e.runWatcher()
	base := e.serve()
	id, tok := e.startChat(propAcme, "hello")
	cid := bridge.ChatID(id)
	seen := e.chats.Reply(cid, agentAlice, "Alice", "hi", false)
	var want []string
	for i := range transcriptLimit + 20 {
		want = append(want, e.chats.Reply(cid, agentAlice, "Alice", "missed "+strconv.Itoa(i), false).ID)
	}
	s := openSSE(t, base+"/v1/chats/"+id+"/events?token="+tok, "Last-Event-ID", seen.ID)
	for i, w := range want {
		if ev := s.next("message", "status", "agent_joined"); ev.ID != w {
			t.Fatalf("replayed message %d is %s, want %s", i, ev.ID, w)
		}
	}
	wait.For(t, "subscribed", func() bool { return e.chats.Subscribers(cid) == 1 })
	live := e.chats.Reply(cid, agentAlice, "Alice", "live", false)
	if ev := s.next("message", "status", "agent_joined"); ev.ID != live.ID {
		t.Errorf("after the replay got %s, want %s", ev.ID, live.ID)
	}
}
