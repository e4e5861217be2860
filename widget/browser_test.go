package widget

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

const chromiumPath = "/usr/bin/chromium"

// browserWait bounds one wait for the page. It is generous: under CI's load
// (two cores, packages tested in parallel under -race) Chromium is slow, and
// this is a bound on a hang, not a measure of speed.
const browserWait = 25 * time.Second

// newBrowser starts headless Chromium for the test, or skips it when the
// binary is absent.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no chromium at %s: %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*browserWait)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions, failing the test with what was being done.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS polls a JavaScript expression in the page until it is true.
// A poll that starts while a reload replaces the page can lose its
// JavaScript context; it is asked again in the new one.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	poll := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(browserWait))
	err := chromedp.Do(ctx, poll)
	if err != nil && strings.Contains(err.Error(), "Cannot find context with specified id") {
		err = chromedp.Do(ctx, poll)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestBrowserWidget(t *testing.T) {
	e := newEnv(t)
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	ln := listen(t)
	addr := ln.Addr().String()
	base := "http://" + addr
	stop := serveOn(t, e.srv, ln)
	t.Cleanup(func() { stop() })
	ctx := newBrowser(t)

	run(t, ctx, "load the demo page", chromedp.Navigate(base+"/"))
	waitJS(t, ctx, "launcher shows online",
		`!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]') && !document.getElementById('onduty-root').hidden`)

	t.Run("status dot follows the agent", func(t *testing.T) {
		e.setStatus(agentAlice, presence.Away)
		waitJS(t, ctx, "dot turns away", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=away]')`)
		greeting, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#onduty-greeting"), chromedp.NodeReady))
		if err != nil {
			t.Fatal(err)
		}
		if greeting != presence.DefaultGreetings[presence.Away] {
			t.Errorf("greeting %q", greeting)
		}
		e.setStatus(agentAlice, presence.Online)
		waitJS(t, ctx, "dot back online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
	})

	var chatID bridge.ChatID
	t.Run("chat with an agent", func(t *testing.T) {
		run(t, ctx, "open the panel and write",
			chromedp.Click(chromedp.CSS("#onduty-launcher")),
			chromedp.WaitVisible(chromedp.CSS("#onduty-input")),
			chromedp.SendKeys(chromedp.CSS("#onduty-name"), "Vic"),
			chromedp.SendKeys(chromedp.CSS("#onduty-input"), "Hello from the browser"),
			chromedp.Click(chromedp.CSS("#onduty-send")),
		)
		wait.For(t, "chat started", func() bool { return len(e.chats.ChatIDs()) == 1 })
		chatID = e.chats.ChatIDs()[0]
		c, _ := e.chats.Chat(chatID)
		if c.Visitor.Name != "Vic" || !strings.HasPrefix(c.Visitor.PageURL, base) {
			t.Errorf("visitor %+v", c.Visitor)
		}
		// The browser's visitor id (for blocks), kept in localStorage.
		stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem('onduty:vid') || ''`))
		if err != nil {
			t.Fatal(err)
		}
		if !bridge.ValidVisitorID(c.Visitor.ID) || c.Visitor.ID != stored {
			t.Errorf("visitor id %q, stored %q", c.Visitor.ID, stored)
		}
		waitJS(t, ctx, "own message shown", hasMsg("visitor", "Hello from the browser"))
		wait.For(t, "event stream open", func() bool { return e.chats.Subscribers(chatID) == 1 })

		e.chats.Join(chatID, agentAlice, "Alice")
		e.chats.Reply(chatID, agentAlice, "Alice", "Hi Vic, Alice here.", false)
		waitJS(t, ctx, "agent joined", `document.getElementById('onduty-messages').textContent.includes('Alice joined the chat.')`)
		waitJS(t, ctx, "agent reply shown", hasMsg("agent", "Hi Vic, Alice here."))

		run(t, ctx, "answer",
			chromedp.SendKeys(chromedp.CSS("#onduty-input"), "Where is my order?"),
			chromedp.Click(chromedp.CSS("#onduty-send")))
		wait.For(t, "visitor message relayed", func() bool {
			for _, c := range e.chats.Calls() {
				if strings.Contains(c, `"Where is my order?"`) {
					return true
				}
			}
			return false
		})
	})

	t.Run("reload resumes the chat", func(t *testing.T) {
		run(t, ctx, "reload", chromedp.Reload())
		waitJS(t, ctx, "transcript restored", `document.querySelectorAll('#onduty-messages .onduty-msg[data-id]').length === 3`)
		wait.For(t, "stream reopened", func() bool { return e.chats.Subscribers(chatID) == 1 })
		e.chats.Reply(chatID, agentAlice, "Alice", "It ships today.", false)
		waitJS(t, ctx, "live reply after reload", hasMsg("agent", "It ships today."))
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#onduty-messages .onduty-msg[data-id]').length`))
		if err != nil || n != 4 {
			t.Errorf("%d messages shown, want 4 (no duplicates)", n)
		}
	})

	t.Run("reconnects after the server was away", func(t *testing.T) {
		stop()
		wait.For(t, "streams gone", func() bool { return e.chats.Subscribers(chatID) == 0 })
		// An agent answers while the visitor's connection is down.
		e.chats.Reply(chatID, agentAlice, "Alice", "Sent while you were away.", false)
		srv2 := New(e.cfg, e.watcher, e.store, e.chats, e.redis.Client, e.log)
		ln2, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		stop = serveOn(t, srv2, ln2)
		waitJS(t, ctx, "missed reply shown", hasMsg("agent", "Sent while you were away."))
		wait.For(t, "stream reopened", func() bool { return e.chats.Subscribers(chatID) == 1 })
		e.chats.Reply(chatID, agentAlice, "Alice", "And live again.", false)
		waitJS(t, ctx, "live after reconnect", hasMsg("agent", "And live again."))
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#onduty-messages .onduty-msg[data-id]').length`))
		if err != nil || n != 6 {
			t.Errorf("%d messages shown, want 6 (no duplicates): %v", n, err)
		}
	})

	t.Run("files both ways", func(t *testing.T) {
		// The agent sends a picture: shown in the chat, loaded with the
		// visitor's token.
		pic := tinyPNG(t)
		e.chats.ReplyFile(chatID, "Alice", "Here is the label", bridge.Attachment{Key: "k1", Name: "label.png", MIME: "image/png", Size: int64(len(pic))}, pic)
		waitJS(t, ctx, "agent's picture shown and loaded",
			`[...document.querySelectorAll('#onduty-messages .onduty-from-agent a.onduty-file')].some(a => a.textContent.includes('label.png') && a.querySelector('img') && a.querySelector('img').complete && a.querySelector('img').naturalWidth === 2)`)

		// The visitor sends a file with the caption typed so far.
		dir := t.TempDir()
		path := filepath.Join(dir, "receipt.txt")
		if err := os.WriteFile(path, []byte("order 42, paid"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, "open the panel if closed", chromedp.Evaluate[chromedp.Void](`document.getElementById('onduty-panel').hidden && document.getElementById('onduty-launcher').click()`))
		waitJS(t, ctx, "the attach button shown", `document.getElementById('onduty-attach').offsetParent !== null`)
		run(t, ctx, "type a caption", chromedp.SendKeys(chromedp.CSS("#onduty-input"), "my receipt"))
		run(t, ctx, "choose the file", chromedp.SetUploadFiles(chromedp.CSS("#onduty-file"), []string{path}, chromedp.NodeReady))
		waitJS(t, ctx, "own file shown", `[...document.querySelectorAll('#onduty-messages .onduty-from-visitor a.onduty-file')].some(a => a.textContent.includes('receipt.txt') && [...a.parentNode.childNodes].some(n => n.nodeType === 3 && n.textContent === 'my receipt'))`)
		var key string
		wait.For(t, "file relayed", func() bool {
			for _, m := range e.chats.Messages(chatID) {
				if m.Attachment != nil && m.Attachment.Name == "receipt.txt" && m.Text == "my receipt" {
					key = m.Attachment.Key
					return true
				}
			}
			return false
		})
		if _, data, err := e.chats.File(context.Background(), chatID, key); err != nil || string(data) != "order 42, paid" {
			t.Errorf("stored file %q, %v", data, err)
		}
	})

	t.Run("offline form when offline", func(t *testing.T) {
		e.chats.CloseByAgent(chatID, agentAlice)
		waitJS(t, ctx, "chat ended", `document.getElementById('onduty-messages').textContent.includes('The chat has ended.')`)
		e.setStatus(agentAlice, presence.Offline)
		waitJS(t, ctx, "dot offline", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=offline]')`)
		run(t, ctx, "open the panel if closed", chromedp.Evaluate[chromedp.Void](`document.getElementById('onduty-panel').hidden && document.getElementById('onduty-launcher').click()`))
		run(t, ctx, "fill the offline form",
			chromedp.WaitVisible(chromedp.CSS("#onduty-offline-form")),
			chromedp.SendKeys(chromedp.CSS("#onduty-off-name"), "Vic"),
			chromedp.SendKeys(chromedp.CSS("#onduty-off-email"), "vic@example.com"),
			chromedp.SendKeys(chromedp.CSS("#onduty-off-text"), "Please call me back."),
			chromedp.Click(chromedp.CSS("#onduty-off-send")),
			chromedp.WaitVisible(chromedp.CSS("#onduty-off-done")),
		)
		got := e.chats.Offline()
		if len(got) != 1 || got[0].Visitor.Email != "vic@example.com" || got[0].Visitor.Name != "Vic" || got[0].Text != "Please call me back." || got[0].Property != propDemo {
			t.Errorf("offline messages %+v", got)
		}
	})

	t.Run("escape closes the panel", func(t *testing.T) {
		run(t, ctx, "press escape",
			chromedp.Focus(chromedp.CSS("#onduty-close")),
			chromedp.KeyEvent("\u001b"))
		waitJS(t, ctx, "panel closed", `document.getElementById('onduty-panel').hidden && document.activeElement.id === 'onduty-launcher'`)
	})
}

// hiddenWhenOfflineEnv is a server whose demo property hides the widget
// while offline, with Alice (always online, now offline) its only agent.
func hiddenWhenOfflineEnv(t *testing.T) *env {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: propDemo, Name: "Demo", OfflineMode: presence.ModeHidden}},
		[]presence.Agent{{ID: agentAlice, Name: "Alice", Properties: []presence.PropertyID{propDemo}, Condition: presence.Always}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvDir(t, dir)
	e.runWatcher()
	return e
}

func TestBrowserHiddenWhenOffline(t *testing.T) {
	e := hiddenWhenOfflineEnv(t)
	base := e.serve()
	ctx := newBrowser(t)

	run(t, ctx, "load the demo page", chromedp.Navigate(base+"/"))
	waitJS(t, ctx, "status known", `!!(window.onduty && window.onduty.status())`)
	waitJS(t, ctx, "launcher hidden while offline", `document.getElementById('onduty-root').hidden && document.getElementById('onduty-launcher').offsetParent === null`)
	e.setStatus(agentAlice, presence.Online)
	waitJS(t, ctx, "launcher shown when online", `!document.getElementById('onduty-root').hidden && document.getElementById('onduty-launcher').offsetParent !== null`)
	e.setStatus(agentAlice, presence.Offline)
	waitJS(t, ctx, "hidden again", `document.getElementById('onduty-root').hidden`)
}

// TestBrowserLateStatusAnswer: the widget asks GET /status and opens the
// status stream at once. When the GET's answer comes after the stream has
// already told a newer status, the older answer must not win.
func TestBrowserLateStatusAnswer(t *testing.T) {
	e := hiddenWhenOfflineEnv(t)
	upstream, err := url.Parse(e.serve())
	if err != nil {
		t.Fatal(err)
	}
	// A proxy that holds the answer of the first GET /status until released.
	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.FlushInterval = -1 // event streams pass at once
	proxy.ModifyResponse = func(r *http.Response) error {
		if strings.HasSuffix(r.Request.URL.Path, "/status") && first.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	ctx := newBrowser(t)

	run(t, ctx, "load the demo page", chromedp.Navigate(front.URL+"/"))
	select {
	case <-held:
	case <-time.After(testTimeout):
		t.Fatal("the widget never asked GET /status")
	}
	waitJS(t, ctx, "status known from the stream", `!!(window.onduty && window.onduty.status())`)
	waitJS(t, ctx, "launcher hidden while offline", `document.getElementById('onduty-root').hidden`)
	e.setStatus(agentAlice, presence.Online)
	waitJS(t, ctx, "launcher shown when online", `!document.getElementById('onduty-root').hidden`)
	letGo() // the GET's old answer ("offline") arrives now
	waitJS(t, ctx, "the late answer received", `performance.getEntriesByType('resource').some(e => e.name.endsWith('/v1/properties/demo/status') && e.responseEnd > 0)`)
	for range 10 {
		hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('onduty-root').hidden`))
		if err != nil {
			t.Fatalf("read the launcher: %v", err)
		}
		if hidden {
			t.Fatal("the late GET /status answer (offline) overwrote the stream's newer status (online)")
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// hasMsg is a JavaScript test: a message from whom ("visitor", "agent",
// "system") whose own text is text (not its name or time) is shown.
func hasMsg(from, text string) string {
	q, _ := json.Marshal(text)
	return `[...document.querySelectorAll('#onduty-messages .onduty-from-` + from + ` .onduty-bubble')].some(b => [...b.childNodes].some(n => n.nodeType === 3 && n.textContent === ` + string(q) + `))`
}

// tinyPNG is a 2×1 PNG.
func tinyPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 1))
	img.Set(0, 0, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
