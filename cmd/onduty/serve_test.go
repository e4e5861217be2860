package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/config"
	"github.com/onduty/onduty/internal/redistest"
)

// syncBuffer is a log sink tests can read while the service writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const demoAdminToken = "demo-admin-token"

// startDemo runs `onduty serve` without a configuration file, on a test Redis
// and a port of its own; the demo agent types into the returned writer.
func startDemo(t *testing.T) (base string, agent io.Writer, logs *syncBuffer) {
	t.Helper()
	r := redistest.New(t)
	env := map[string]string{"ONDUTY_REDIS_URL": r.URL, "ONDUTY_REDIS_PREFIX": r.Prefix, "ONDUTY_ADMIN_TOKEN": demoAdminToken}
	c, err := config.Load("", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	stdin, typed := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := build(ctx, c, stdin, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		typed.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
		svc.close()
	})
	return "http://" + ln.Addr().String(), typed, logs
}

func postJSON(t *testing.T, url, token string, body any, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

type sseEvent struct{ name, data string }

// readEvents streams SSE events from url into a channel until the test ends.
func readEvents(t *testing.T, url string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	ch := make(chan sseEvent, 64)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			case line == "":
				if ev.name != "" || ev.data != "" {
					select {
					case ch <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			}
		}
	}()
	return ch
}

func waitEvent(t *testing.T, ch <-chan sseEvent, name, contains string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.name == name && strings.Contains(ev.data, contains) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q event containing %q", name, contains)
		}
	}
}

func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDemoConversation is a newcomer's first run: no configuration, a visitor
// on the widget API and the demo agent answering from the terminal.
func TestDemoConversation(t *testing.T) {
	base, agent, logs := startDemo(t)

	resp, err := http.Get(base + "/v1/properties/demo/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Status, Mode string }
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Status != "online" || st.Mode != "live" {
		t.Fatalf("demo status %+v, want online/live", st)
	}

	var started struct {
		ChatID       string `json:"chat_id"`
		VisitorToken string `json:"visitor_token"`
	}
	if code := postJSON(t, base+"/v1/properties/demo/chats", "", map[string]string{"name": "Vera", "message": "Is anyone there?"}, &started); code != 201 {
		t.Fatalf("start chat: %d", code)
	}
	events := readEvents(t, base+"/v1/chats/"+started.ChatID+"/events?token="+started.VisitorToken)
	waitLog(t, logs, "Is anyone there?") // the offer reached the demo agent's terminal

	io.WriteString(agent, "/accept\n")
	waitEvent(t, events, "agent_joined", "Demo Agent")
	io.WriteString(agent, "Hi Vera, how can I help?\n")
	waitEvent(t, events, "message", "Hi Vera, how can I help?")
	io.WriteString(agent, "// internal: never shown\n")

	var sent struct{ ID string }
	if code := postJSON(t, base+"/v1/chats/"+started.ChatID+"/messages", started.VisitorToken, map[string]string{"text": "My order is late"}, &sent); code != 202 || sent.ID == "" {
		t.Fatalf("visitor message: %d %+v", code, sent)
	}
	waitLog(t, logs, "My order is late")

	// The visitor sends a photo of the parcel: stored, shown to the agent,
	// and in the transcript with a link the visitor can fetch.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "parcel.jpg")
	fw.Write([]byte("\xff\xd8\xff\xe0 not really a jpeg"))
	mw.WriteField("text", "this came damaged")
	mw.Close()
	req, _ := http.NewRequest("POST", base+"/v1/chats/"+started.ChatID+"/files", &form)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+started.VisitorToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var upload struct {
		ID         string
		Attachment struct{ Key, Name, MIME string }
	}
	json.NewDecoder(resp.Body).Decode(&upload)
	resp.Body.Close()
	if resp.StatusCode != 202 || upload.Attachment.Name != "parcel.jpg" || upload.Attachment.MIME != "image/jpeg" {
		t.Fatalf("upload: %d %+v", resp.StatusCode, upload)
	}
	waitLog(t, logs, "parcel.jpg (image/jpeg")
	resp, err = http.Get(base + "/v1/chats/" + started.ChatID + "/files/" + upload.Attachment.Key + "?token=" + started.VisitorToken)
	if err != nil {
		t.Fatal(err)
	}
	photo, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(string(photo), "not really a jpeg") {
		t.Fatalf("the photo back: %d %q", resp.StatusCode, photo)
	}

	req, _ = http.NewRequest("GET", base+"/v1/chats/"+started.ChatID+"/messages", nil)
	req.Header.Set("Authorization", "Bearer "+started.VisitorToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"Is anyone there?", "Hi Vera, how can I help?", "My order is late", "this came damaged", `"name":"parcel.jpg"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("transcript lacks %q: %s", want, body)
		}
	}
	if strings.Contains(string(body), "internal") {
		t.Errorf("transcript shows an internal note: %s", body)
	}

	// The demo agent may answer from the admin API too.
	var answered struct{ Reply string }
	if code := postJSON(t, base+"/v1/admin/agents/demo/actions", demoAdminToken, map[string]string{"chat_id": started.ChatID, "text": "Answered from the admin API"}, &answered); code != 200 {
		t.Fatalf("admin action: %d", code)
	}
	waitEvent(t, events, "message", "Answered from the admin API")
	if code := postJSON(t, base+"/v1/admin/agents/demo/actions", "wrong", map[string]string{"text": "x"}, nil); code != 403 && code != 401 {
		t.Fatalf("admin action with a wrong token: %d", code)
	}

	io.WriteString(agent, "/close\n")
	waitEvent(t, events, "chat_closed", "")
}
