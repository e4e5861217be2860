package console_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/adapters/console"
	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// TestConformance runs the adapter conformance suite on the console: the
// agent types lines, deliveries are read back from the log.
func TestConformance(t *testing.T) {
	bridgetest.Run(t, func(t *testing.T, _ bridgetest.Env) bridgetest.Platform {
		r, w := io.Pipe()
		t.Cleanup(func() { w.Close() })
		return &consolePlatform{in: w, out: r}
	})
}

// consolePlatform is a terminal: lines typed into in, deliveries caught
// from the adapter's log.
type consolePlatform struct {
	in  *io.PipeWriter
	out *io.PipeReader

	mu    sync.Mutex
	shown []delivered
}

// delivered is one delivery as logged.
type delivered struct {
	kind, chat, text string
}

var _ bridgetest.Platform = (*consolePlatform)(nil)

func (p *consolePlatform) Surface() presence.Surface { return "console" }
func (p *consolePlatform) Account() string           { return "" }
func (p *consolePlatform) Caps() bridgetest.Caps     { return bridgetest.Caps{} }

func (p *consolePlatform) Adapter(t *testing.T, _ *presence.Directory) bridge.Adapter {
	return console.New(bridgetest.SuiteAgent, p.out, slog.New(catcher{p: p}))
}

func (p *consolePlatform) Ready(*testing.T) {}

func (p *consolePlatform) typeLine(t *testing.T, line string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := io.WriteString(p.in, line+"\n"); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the console did not read %q", line)
	}
}

func (p *consolePlatform) WaitOffer(t *testing.T, chat bridge.ChatID, first string) {
	t.Helper()
	wait.For(t, "the offer in the log", func() bool {
		for _, d := range p.deliveries() {
			if d.kind == string(bridge.KindOffer) && d.chat == string(chat) && strings.Contains(d.text, first) {
				return true
			}
		}
		return false
	})
}

func (p *consolePlatform) Accept(t *testing.T, _ bridge.ChatID) { p.typeLine(t, "/accept") }

func (p *consolePlatform) Reply(t *testing.T, chat bridge.ChatID, text string) {
	p.typeLine(t, "#"+string(chat)+" "+text)
}

func (p *consolePlatform) Command(t *testing.T, _ bridge.ChatID, command string) {
	p.typeLine(t, "/"+command)
}

func (p *consolePlatform) Seen(*testing.T) []string {
	var out []string
	for _, d := range p.deliveries() {
		out = append(out, d.text)
	}
	return out
}

func (p *consolePlatform) deliveries() []delivered {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]delivered(nil), p.shown...)
}

func (p *consolePlatform) WaitFile(t *testing.T, _ bridge.ChatID, _ string) []byte {
	t.Fatal("the console shows no files")
	return nil
}

func (p *consolePlatform) SendFile(t *testing.T, _ bridge.ChatID, _ string) []byte {
	t.Fatal("the console sends no files")
	return nil
}

func (p *consolePlatform) Outage(t *testing.T, _ string) { t.Fatal("the console cannot go down") }
func (p *consolePlatform) Recovered(t *testing.T)        { t.Fatal("the console cannot go down") }

func (p *consolePlatform) RateLimit(t *testing.T, _ int, _ time.Duration) func(*testing.T) {
	t.Fatal("the console has no rate limit")
	return nil
}

func (p *consolePlatform) ReplyTwice(t *testing.T, _ bridge.ChatID, _ string) {
	t.Fatal("the console reads each line once")
}

func (p *consolePlatform) Forge(t *testing.T, _ bridge.ChatID) {
	t.Fatal("nothing to forge on the console")
}

// catcher is a slog handler that keeps the deliveries the adapter logs
// (records with a "kind" attribute).
type catcher struct{ p *consolePlatform }

func (c catcher) Enabled(context.Context, slog.Level) bool { return true }

func (c catcher) Handle(_ context.Context, r slog.Record) error {
	var d delivered
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "kind":
			d.kind = a.Value.String()
		case "chat_id":
			d.chat = a.Value.String()
		case "text":
			d.text = a.Value.String()
		}
		return true
	})
	if d.kind != "" {
		c.p.mu.Lock()
		c.p.shown = append(c.p.shown, d)
		c.p.mu.Unlock()
	}
	return nil
}

func (c catcher) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c catcher) WithGroup(string) slog.Handler      { return c }
