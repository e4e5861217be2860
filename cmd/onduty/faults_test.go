package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/config"
)

// privateRedis runs a redis-server of the test's own, with an append-only file
// so that a restart keeps what was written, and returns its address and a
// function that kills it and one that starts it again on the same port.
func privateRedis(t *testing.T) (addr string, kill, start func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (.ci/run installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	var cmd *exec.Cmd
	start = func() {
		cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "always")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis-server on %s did not start", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	kill = func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	start()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			kill()
		}
	})
	return addr, kill, start
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestRedisRestart: Redis dies under traffic and comes back. Status keeps being
// served from memory (marked stale), visitor writes get 503 and never a false
// 2xx, and everything accepted before the fault is there and delivered after.
func TestRedisRestart(t *testing.T) {
	addr, kill, start := privateRedis(t)
	env := map[string]string{"ONDUTY_REDIS_URL": "redis://" + addr + "/0"}
	c, err := config.Load("", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	stdin, typed := io.Pipe()
	defer typed.Close()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := build(ctx, c, stdin, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- svc.run(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		svc.close()
	}()
	base := "http://" + ln.Addr().String()
	waitStatus := func(stale bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, body := get(t, base+"/v1/properties/demo/status")
			if resp.StatusCode == 200 && strings.Contains(body, `"online"`) && (resp.Header.Get("X-Onduty-Stale") == "true") == stale {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never became stale=%v: %d %s %v", stale, resp.StatusCode, body, resp.Header)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStatus(false)

	var chat struct {
		ChatID       string `json:"chat_id"`
		VisitorToken string `json:"visitor_token"`
	}
	if code := postJSON(t, base+"/v1/properties/demo/chats", "", map[string]string{"name": "Ann", "message": "before the fault"}, &chat); code != 201 {
		t.Fatalf("start chat: %d", code)
	}
	waitLog(t, logs, "before the fault")
	if code := postJSON(t, base+"/v1/chats/"+chat.ChatID+"/messages", chat.VisitorToken, map[string]string{"text": "accepted before"}, nil); code != 202 {
		t.Fatalf("message: %d", code)
	}

	kill()
	waitStatus(true) // the widget still says online, from memory, marked stale
	for i := 0; i < 5; i++ {
		code := postJSON(t, base+"/v1/chats/"+chat.ChatID+"/messages", chat.VisitorToken, map[string]string{"text": fmt.Sprintf("during %d", i)}, nil)
		if code != 503 {
			t.Fatalf("visitor write while Redis is down: %d, want 503", code)
		}
	}
	if code := postJSON(t, base+"/v1/properties/demo/chats", "", map[string]string{"message": "new chat during"}, nil); code != 503 {
		t.Fatalf("chat start while Redis is down: %d, want 503", code)
	}
	if resp, _ := get(t, base+"/readyz"); resp.StatusCode != 503 {
		t.Errorf("readyz while Redis is down: %d", resp.StatusCode)
	}

	start()
	waitStatus(false)
	if resp, _ := get(t, base+"/readyz"); resp.StatusCode != 200 {
		t.Errorf("readyz after: %d", resp.StatusCode)
	}
	waitLog(t, logs, "accepted before") // delivered to the agent
	if code := postJSON(t, base+"/v1/chats/"+chat.ChatID+"/messages", chat.VisitorToken, map[string]string{"text": "after the fault"}, nil); code != 202 {
		t.Fatalf("message after: %d", code)
	}
	waitLog(t, logs, "after the fault")
	req, _ := http.NewRequest("GET", base+"/v1/chats/"+chat.ChatID+"/messages", nil)
	req.Header.Set("Authorization", "Bearer "+chat.VisitorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"before the fault", "accepted before", "after the fault"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("transcript lacks %q: %s", want, body)
		}
	}
	if strings.Contains(string(body), "during") {
		t.Errorf("a refused message was stored: %s", body)
	}
}
