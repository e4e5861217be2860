package console

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		want bridge.Action
	}{
		{"   ", false, bridge.Action{}},
		{"/online", true, bridge.Action{Kind: bridge.ActCommand, Command: "online"}},
		{"/Transfer  Bob ", true, bridge.Action{Kind: bridge.ActCommand, Command: "transfer", Args: "Bob"}},
		{"hello there", true, bridge.Action{Kind: bridge.ActMessage, Text: "hello there"}},
		{"#abc123 hi", true, bridge.Action{Kind: bridge.ActMessage, Chat: "abc123", Text: "hi"}},
		{"// a note", true, bridge.Action{Kind: bridge.ActMessage, Text: "// a note"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, ok := Parse(tt.line)
			tt.want.Surface = got.Surface
			if ok != tt.ok || (ok && (got != tt.want || got.Surface != "console")) {
				t.Errorf("Parse(%q) = %+v %v, want %+v %v", tt.line, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRunAndDeliver(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	a := New("demo", strings.NewReader("/online\nthanks for waiting\n#c2 // a note\n"), log)
	if !a.Reaches("demo") || a.Reaches("alice") || a.Shared("demo") {
		t.Fatal("reach")
	}
	rec := bridgetest.NewHandler(func(a bridge.Action) (bridge.Reply, error) {
		return bridge.Reply{Text: "ok " + a.Command}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx, rec) }()
	acts := rec.WaitN(t, 3)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(acts) != 3 || acts[0].Agent != "demo" || acts[0].Command != "online" || acts[1].Text != "thanks for waiting" {
		t.Errorf("actions: %+v", acts)
	}
	a.Deliver(context.Background(), bridge.Delivery{Kind: bridge.KindOffer, Agent: "demo",
		Chat: bridge.Chat{ID: "c1", Visitor: bridge.Visitor{Name: "Vera"}}, Message: &bridge.Message{Text: "Is anyone there?"}})
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, want := range []string{"ok online", "new chat", "chat_id=c1", "Vera", "Is anyone there?",
		`msg="you wrote" adapter=console text="thanks for waiting"`, `text="// a note" chat_id=c2`, "internal"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestDeliverOfflineMessage: an offline message is told apart from a new
// chat, so the demo agent knows the visitor may be gone.
func TestDeliverOfflineMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offline bool
		want    string
		notWant string
	}{
		{"live chat", false, "new chat", "offline message"},
		{"offline message", true, "offline message", "new chat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := New("demo", nil, slog.New(slog.NewTextHandler(&logs, nil)))
			_, err := a.Deliver(context.Background(), bridge.Delivery{Kind: bridge.KindOffer, Agent: "demo",
				Chat:    bridge.Chat{ID: "c1", Offline: tc.offline, Visitor: bridge.Visitor{Name: "Vera", Email: "vera@example.com"}},
				Message: &bridge.Message{Text: "Call me back"}})
			if err != nil {
				t.Fatal(err)
			}
			out := logs.String()
			if !strings.Contains(out, tc.want) || strings.Contains(out, tc.notWant) || !strings.Contains(out, "Call me back") {
				t.Errorf("log:\n%s\nwant %q, not %q", out, tc.want, tc.notWant)
			}
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestNilLogger: like the other adapters, a nil logger discards instead of
// panicking.
func TestNilLogger(t *testing.T) {
	a := New("demo", nil, nil)
	if _, err := a.Deliver(context.Background(), bridge.Delivery{Kind: bridge.KindNotice, Agent: "demo", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
}
