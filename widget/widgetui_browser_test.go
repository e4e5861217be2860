package widget

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// The browser tests take screenshots of what visitors and admins see; with
// -screenshots they are written to docs/screenshots/ for the README.
var writeShots = flag.Bool("screenshots", false, "write the browser tests' screenshots to docs/screenshots/")

// viewport is a browser window size the widget is tested in.
type viewport struct {
	name          string
	width, height int64
	scale         float64
}

var (
	desktop = viewport{"desktop", 1280, 800, 1}
	phone   = viewport{"phone", 390, 844, 2}
)

// emulate sizes the page like the viewport (a phone gets touch and a
// mobile user agent's layout).
func emulate(t *testing.T, ctx context.Context, v viewport) {
	t.Helper()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(v.scale)}
	if v == phone {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	run(t, ctx, "emulate "+v.name, chromedp.EmulateViewport(v.width, v.height, opts...))
}

// screenshot captures the page, checks it is a PNG of the viewport's size
// and, with -screenshots, writes it to docs/screenshots/NAME.png.
func screenshot(t *testing.T, ctx context.Context, v viewport, name string) {
	t.Helper()
	// Let transitions and fonts settle: a picture, not a measurement.
	time.Sleep(300 * time.Millisecond)
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s is no PNG: %v", name, err)
	}
	if w := img.Bounds().Dx(); w != int(float64(v.width)*v.scale) {
		t.Errorf("screenshot %s is %d px wide, want %v×%v", name, w, v.width, v.scale)
	}
	if !*writeShots {
		return
	}
	path := filepath.Join("..", "docs", "screenshots", name+".png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// evalJS evaluates a JavaScript expression in the page.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// sitePage serves pages on another origin that embed the widget the way a
// customer's site does; it returns the URL of a page for property p whose
// <html> tag has the attributes html.
func sitePage(t *testing.T, widgetBase string) func(p presence.PropertyID, html string) string {
	t.Helper()
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html %s><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title></head>
<body style="font:16px system-ui;margin:2rem"><h1>Shop</h1><p>%s</p>
<script src="%s/widget.js" data-property="%s" async></script></body></html>`,
			q.Get("html"), strings.Repeat("Lorem ipsum dolor sit amet. ", 20), widgetBase, html.EscapeString(q.Get("p")))
	}))
	t.Cleanup(pages.Close)
	return func(p presence.PropertyID, attrs string) string {
		return pages.URL + "/?" + url.Values{"p": {string(p)}, "html": {attrs}}.Encode()
	}
}

// startInWidget opens the panel and starts a chat with the first message.
func startInWidget(t *testing.T, ctx context.Context, e *env, text string) bridge.ChatID {
	t.Helper()
	known := map[bridge.ChatID]bool{}
	for _, id := range e.chats.ChatIDs() {
		known[id] = true
	}
	run(t, ctx, "start a chat",
		chromedp.Click(chromedp.CSS("#onduty-launcher")),
		chromedp.WaitVisible(chromedp.CSS("#onduty-input")),
		chromedp.SendKeys(chromedp.CSS("#onduty-name"), "Vic Visitor"),
		chromedp.SendKeys(chromedp.CSS("#onduty-input"), text),
		chromedp.Click(chromedp.CSS("#onduty-send")))
	var id bridge.ChatID
	wait.For(t, "chat started", func() bool {
		for _, c := range e.chats.ChatIDs() {
			if !known[c] {
				id = c
				return true
			}
		}
		return false
	})
	waitJS(t, ctx, "own message shown", hasMsg("visitor", text))
	defer func() {
		if t.Failed() {
			t.Log(e.srv.OpenStreams(), e.chats.Subscribers(id), evalJS[string](t, ctx, `JSON.stringify(performance.getEntriesByType('resource').map(e => [e.name, e.responseStatus, e.duration]))`))
		}
	}()
	wait.For(t, "event stream open", func() bool { return e.chats.Subscribers(id) == 1 })
	return id
}

func closePanel(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "close the panel", chromedp.Click(chromedp.CSS("#onduty-close")))
	waitJS(t, ctx, "panel closed", `document.getElementById('onduty-panel').hidden`)
}

// TestBrowserUnread: with the panel closed, agent messages raise the unread
// count on the launcher, in its accessible name and in the page title, and
// play a sound once the visitor has interacted (not when muted); opening
// the panel clears them, and a reload remembers what was read.
func TestBrowserUnread(t *testing.T) {
	for _, v := range []viewport{desktop, phone} {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t)
			e.runWatcher()
			e.setStatus(agentAlice, presence.Online)
			base := e.serve()
			ctx := newBrowser(t)
			emulate(t, ctx, v)
			run(t, ctx, "load the demo page", chromedp.Navigate(base+"/"))
			waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
			title := evalJS[string](t, ctx, `document.title`)

			id := startInWidget(t, ctx, e, "Do you ship to Norway?")
			e.chats.Join(id, agentAlice, "Alice Smith")
			waitJS(t, ctx, "agent joined", `document.getElementById('onduty-sub').textContent === 'Alice Smith'`)
			closePanel(t, ctx)
			if n := evalJS[int](t, ctx, `window.onduty.sounds()`); n != 0 {
				t.Errorf("%d sounds before any agent message", n)
			}

			e.chats.Reply(id, agentAlice, "Alice Smith", "Yes, we do!", false)
			waitJS(t, ctx, "one unread", `document.getElementById('onduty-unread').textContent === '1' && !document.getElementById('onduty-unread').hidden`)
			e.chats.Reply(id, agentAlice, "Alice Smith", "Delivery takes 3 days.", false)
			waitJS(t, ctx, "two unread", `document.getElementById('onduty-unread').textContent === '2'`)
			checks := map[string]string{
				"accessible name": `document.getElementById('onduty-launcher').getAttribute('aria-label') === 'Chat, online, 2 unread'`,
				"title prefix":    `document.title === '(2) ` + title + `'`,
				"api":             `window.onduty.unread() === 2`,
				"a sound each":    `window.onduty.sounds() === 2`,
			}
			for what, expr := range checks {
				if !evalJS[bool](t, ctx, expr) {
					t.Errorf("%s: %s is false", what, expr)
				}
			}
			if v == desktop {
				screenshot(t, ctx, v, "launcher-unread")
			}

			run(t, ctx, "open the panel", chromedp.Click(chromedp.CSS("#onduty-launcher")))
			waitJS(t, ctx, "unread cleared", `document.getElementById('onduty-unread').hidden && document.title === '`+title+`' && document.getElementById('onduty-launcher').getAttribute('aria-label') === 'Chat, online'`)
			waitJS(t, ctx, "focus in the message box", `document.activeElement.id === 'onduty-input'`)
			if v == desktop {
				screenshot(t, ctx, v, "chat-open")
			} else {
				screenshot(t, ctx, v, "phone")
			}

			run(t, ctx, "reload", chromedp.Reload())
			waitJS(t, ctx, "transcript back", `document.querySelectorAll('#onduty-messages .onduty-msg[data-id]').length === 3`)
			if evalJS[bool](t, ctx, `!document.getElementById('onduty-unread').hidden || document.title.startsWith('(')`) {
				t.Error("messages read before the reload count as unread again")
			}

			run(t, ctx, "mute", chromedp.Click(chromedp.CSS("#onduty-launcher")), chromedp.Click(chromedp.CSS("#onduty-mute")))
			waitJS(t, ctx, "muted", `document.getElementById('onduty-mute').getAttribute('aria-pressed') === 'true'`)
			closePanel(t, ctx)
			e.chats.Reply(id, agentAlice, "Alice Smith", "Anything else?", false)
			waitJS(t, ctx, "unread after the reload", `document.getElementById('onduty-unread').textContent === '1' && document.title === '(1) `+title+`'`)
			if n := evalJS[int](t, ctx, `window.onduty.sounds()`); n != 0 {
				t.Errorf("%d sounds while muted", n)
			}
		})
	}
}

// TestBrowserNoSoundBeforeInteraction: browsers refuse audio before the
// visitor has touched the page, so the widget does not try.
func TestBrowserNoSoundBeforeInteraction(t *testing.T) {
	e := newEnv(t)
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	base := e.serve()
	id, token := e.startChat(propDemo, "Hello")
	ctx := newBrowser(t)
	// The chat is handed over as the continue link does, without a click.
	run(t, ctx, "open the chat without touching the page", chromedp.Navigate(base+"/c/"+id+"#"+token))
	wait.For(t, "event stream open", func() bool { return e.chats.Subscribers(bridge.ChatID(id)) == 1 })
	waitJS(t, ctx, "the panel opened by the link", `!document.getElementById('onduty-panel').hidden`)
	run(t, ctx, "close the panel by script", chromedp.Evaluate[chromedp.Void](`document.getElementById('onduty-close').dispatchEvent(new MouseEvent('click'))`))
	e.chats.Reply(bridge.ChatID(id), agentAlice, "Alice", "Hi!", false)
	waitJS(t, ctx, "one unread", `window.onduty.unread() === 1`)
	if n := evalJS[int](t, ctx, `window.onduty.sounds()`); n != 0 {
		t.Errorf("%d sounds before the visitor interacted", n)
	}
}

// TestBrowserMessageDetails: times are HH:MM in the visitor's time zone, agents
// show their name and initials, icons are inline SVG (no emoji), new messages
// are announced (aria-live), and the newest message is in view after a reload.
func TestBrowserMessageDetails(t *testing.T) {
	for _, v := range []viewport{desktop, phone} {
		t.Run(v.name, func(t *testing.T) { testMessageDetails(t, v) })
	}
}

func testMessageDetails(t *testing.T, v viewport) {
	e := newEnv(t)
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	base := e.serve()
	ctx := newBrowser(t)
	emulate(t, ctx, v)
	const zone = "Asia/Kathmandu" // UTC+5:45: no zone rounds to it by accident
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone}); err != nil {
		t.Fatalf("visitor's time zone: %v", err)
	}
	run(t, ctx, "load", chromedp.Navigate(base+"/"))
	waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)

	id := startInWidget(t, ctx, e, "Where is my parcel?")
	e.chats.Join(id, agentAlice, "alice maría smith")
	m := e.chats.Reply(id, agentAlice, "alice maría smith", "Let me check.", false)
	waitJS(t, ctx, "reply shown", hasMsg("agent", "Let me check."))
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	last := `[...document.querySelectorAll('#onduty-messages .onduty-from-agent')].pop()`
	checks := map[string]string{
		"time":              last + `.querySelector('time').textContent === '` + m.At.In(loc).Format("15:04") + `'`,
		"initials":          last + `.querySelector('.onduty-av').textContent === 'AM'`,
		"name":              last + `.querySelector('.onduty-name').textContent === 'alice maría smith'`,
		"header initials":   `document.getElementById('onduty-head-av').textContent === 'AM'`,
		"own message time":  `/^\d\d:\d\d$/.test(document.querySelector('#onduty-messages .onduty-from-visitor time').textContent)`,
		"live region":       `document.getElementById('onduty-messages').getAttribute('aria-live') === 'polite' && document.getElementById('onduty-messages').getAttribute('role') === 'log'`,
		"svg icons":         `['onduty-launcher', 'onduty-close', 'onduty-send', 'onduty-attach', 'onduty-mute'].every(id => document.getElementById(id).querySelector('svg'))`,
		"no emoji":          `!/\p{Extended_Pictographic}/u.test(document.getElementById('onduty-root').textContent)`,
		"labelled controls": `[...document.querySelectorAll('#onduty-root button')].filter(b => b.offsetParent).every(b => (b.getAttribute('aria-label') || b.textContent).trim() !== '')`,
	}
	for what, expr := range checks {
		if !evalJS[bool](t, ctx, expr) {
			t.Errorf("%s: %s is false", what, expr)
		}
	}

	for i := range 30 {
		e.chats.Reply(id, agentAlice, "alice maría smith", fmt.Sprintf("Line %d of a long answer.", i+1), false)
	}
	waitJS(t, ctx, "all shown", hasMsg("agent", "Line 30 of a long answer."))
	run(t, ctx, "reload", chromedp.Reload())
	waitJS(t, ctx, "transcript back", hasMsg("agent", "Line 30 of a long answer."))
	run(t, ctx, "open", chromedp.Click(chromedp.CSS("#onduty-launcher")))
	waitJS(t, ctx, "newest message in view", `(() => {
		const log = document.getElementById('onduty-messages').getBoundingClientRect();
		const m = [...document.querySelectorAll('#onduty-messages .onduty-msg')].pop().getBoundingClientRect();
		return log.height > 100 && m.bottom <= log.bottom + 1 && m.top >= log.top; })()`)
}

// TestBrowserWaiting: while a chat is pending the visitor is told it is
// waiting for an agent; once one joins, the header shows them.
func TestBrowserWaiting(t *testing.T) {
	for _, v := range []viewport{desktop, phone} {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t)
			e.runWatcher()
			e.setStatus(agentAlice, presence.Online)
			base := e.serve()
			ctx := newBrowser(t)
			emulate(t, ctx, v)
			run(t, ctx, "load", chromedp.Navigate(base+"/"))
			waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
			id := startInWidget(t, ctx, e, "Hi, is anyone there?")
			waitJS(t, ctx, "waiting shown", `document.getElementById('onduty-waiting').offsetParent !== null && document.getElementById('onduty-waiting').textContent === 'Waiting for an agent to join…'`)
			if v == desktop {
				screenshot(t, ctx, v, "waiting")
			} else {
				waitJS(t, ctx, "full screen under 480 px", `(() => { const r = document.getElementById('onduty-panel').getBoundingClientRect();
					return r.left === 0 && r.top === 0 && r.width === innerWidth && r.height === innerHeight; })()`)
			}
			run(t, ctx, "reload while waiting", chromedp.Reload())
			run(t, ctx, "open", chromedp.Click(chromedp.CSS("#onduty-launcher")))
			waitJS(t, ctx, "still waiting after a reload", `document.getElementById('onduty-waiting').offsetParent !== null`)
			wait.For(t, "event stream open", func() bool { return e.chats.Subscribers(id) == 1 })
			e.chats.Join(id, agentAlice, "Alice")
			waitJS(t, ctx, "waiting gone", `document.getElementById('onduty-waiting').hidden && document.getElementById('onduty-sub').textContent === 'Alice' && document.getElementById('onduty-head-av').textContent === 'A'`)
		})
	}
}

// TestBrowserLanguageAndLook: labels follow the page's lang unless the
// property names a language; right-to-left pages get a mirrored widget; a
// property's colour comes with black or white text, whichever reads better;
// its position and title are used.
func TestBrowserLanguageAndLook(t *testing.T) {
	const (
		propFrench = presence.PropertyID("french")
		propLight  = presence.PropertyID("light")
		propDark   = presence.PropertyID("dark")
	)
	var props []presence.Property
	looks := map[presence.PropertyID]presence.Look{
		propDemo:   {},
		propFrench: {Language: "fr"},
		propLight:  {Color: "#fde047", Position: "left", Title: "Acme support"},
		propDark:   {Color: "#0f766e"},
	}
	for id, look := range looks {
		props = append(props, presence.Property{ID: id, Name: string(id), OfflineMode: presence.ModeForm, Look: look})
	}
	dir, err := presence.NewDirectory(props, []presence.Agent{{ID: agentAlice, Name: "Alice", Properties: []presence.PropertyID{propDemo, propFrench, propLight, propDark}, Condition: presence.Always}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvDir(t, dir)
	e.chats = newFakeChats(propDemo, propFrench, propLight, propDark)
	e.srv = New(e.cfg, e.watcher, e.store, e.chats, e.redis.Client, e.log)
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	page := sitePage(t, e.serve())
	ctx := newBrowser(t)
	emulate(t, ctx, desktop)

	tests := []struct {
		name  string
		prop  presence.PropertyID
		html  string
		label string // the launcher's accessible name
		ph    string // the message box's placeholder
	}{
		{"english by default", propDemo, ``, "Chat, online", "Write a message…"},
		{"german page", propDemo, `lang="de-AT"`, "Chat, online", "Nachricht schreiben…"},
		{"french page", propDemo, `lang="fr"`, "Chat, en ligne", "Écrivez un message…"},
		{"spanish page", propDemo, `lang="es"`, "Chat, en línea", "Escribe un mensaje…"},
		{"russian page", propDemo, `lang="ru"`, "Чат, в сети", "Напишите сообщение…"},
		{"unknown language", propDemo, `lang="nl"`, "Chat, online", "Write a message…"},
		{"the property's language wins", propFrench, `lang="de"`, "Chat, en ligne", "Écrivez un message…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, ctx, "load", chromedp.Navigate(page(tt.prop, tt.html)))
			defer func() {
				if t.Failed() {
					t.Log(e.srv.OpenStreams(), evalJS[string](t, ctx, `JSON.stringify([location.href, window.onduty && window.onduty.status(), performance.getEntriesByType('resource').map(e => [e.name, e.responseStatus, e.duration])])`))
				}
			}()
			waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
			got := evalJS[[]string](t, ctx, `[document.getElementById('onduty-launcher').getAttribute('aria-label'), document.getElementById('onduty-input').placeholder]`)
			if got[0] != tt.label || got[1] != tt.ph {
				t.Errorf("launcher %q, placeholder %q; want %q, %q", got[0], got[1], tt.label, tt.ph)
			}
		})
	}

	t.Run("german page, labels in the form", func(t *testing.T) {
		run(t, ctx, "load", chromedp.Navigate(page(propDemo, `lang="de"`)))
		run(t, ctx, "open", chromedp.Click(chromedp.CSS("#onduty-launcher")))
		waitJS(t, ctx, "german labels", `document.querySelector('label[for=onduty-name]').textContent === 'Ihr Name (optional)' &&
			document.getElementById('onduty-close').getAttribute('aria-label') === 'Chatfenster schließen' && document.getElementById('onduty-sub').textContent === 'Online'`)
		run(t, ctx, "send without text", chromedp.Click(chromedp.CSS("#onduty-send")))
		waitJS(t, ctx, "german error", `document.getElementById('onduty-error').textContent === 'Bitte schreiben Sie eine Nachricht.'`)
	})

	ctx = newBrowser(t) // a second browser: one has a time limit
	emulate(t, ctx, desktop)

	t.Run("right to left", func(t *testing.T) {
		run(t, ctx, "load", chromedp.Navigate(page(propDark, `lang="ar" dir="rtl"`)))
		waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
		id := startInWidget(t, ctx, e, "مرحبا")
		e.chats.Join(id, agentAlice, "Alice")
		e.chats.Reply(id, agentAlice, "Alice", "Hello! How can I help?", false)
		waitJS(t, ctx, "reply shown", hasMsg("agent", "Hello! How can I help?"))
		checks := map[string]string{
			"mirrored":                      `document.getElementById('onduty-root').getAttribute('dir') === 'rtl'`,
			"on the left":                   `document.getElementById('onduty-launcher').getBoundingClientRect().left < innerWidth / 2`,
			"visitor's message on the left": `(() => { const v = document.querySelector('.onduty-from-visitor .onduty-bubble').getBoundingClientRect(), a = document.querySelector('.onduty-from-agent .onduty-bubble').getBoundingClientRect(); return v.left < a.left; })()`,
			"close button on the left":      `document.getElementById('onduty-close').getBoundingClientRect().left < document.getElementById('onduty-title').getBoundingClientRect().left`,
		}
		for what, expr := range checks {
			if !evalJS[bool](t, ctx, expr) {
				t.Errorf("%s: %s is false", what, expr)
			}
		}
		screenshot(t, ctx, desktop, "rtl")
	})

	colours := []struct {
		prop    presence.PropertyID
		bg, ink string
		left    bool
		title   string
	}{
		{propLight, "rgb(253, 224, 71)", "rgb(0, 0, 0)", true, "Acme support"},
		{propDark, "rgb(15, 118, 110)", "rgb(255, 255, 255)", false, "Chat"},
		{propDemo, "rgb(31, 111, 235)", "rgb(255, 255, 255)", false, "Chat"},
	}
	for _, c := range colours {
		t.Run("colour of "+string(c.prop), func(t *testing.T) {
			// The pages share an origin: a chat of the last case is forgotten.
			run(t, ctx, "load afresh", chromedp.Evaluate[chromedp.Void](`localStorage.clear()`), chromedp.Navigate(page(c.prop, `lang="en"`)))
			waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
			startInWidget(t, ctx, e, "Hi")
			for _, sel := range []string{"#onduty-launcher", ".onduty-head", "#onduty-messages .onduty-from-visitor .onduty-bubble"} {
				got := evalJS[[]string](t, ctx, `(() => { const s = getComputedStyle(document.querySelector('`+sel+`')); return [s.backgroundColor, s.color]; })()`)
				if got[0] != c.bg || got[1] != c.ink {
					t.Errorf("%s: background %s, text %s; want %s, %s", sel, got[0], got[1], c.bg, c.ink)
				}
			}
			left := evalJS[bool](t, ctx, `document.getElementById('onduty-launcher').getBoundingClientRect().left < innerWidth / 2`)
			title := evalJS[string](t, ctx, `document.getElementById('onduty-title').textContent`)
			if left != c.left || title != c.title {
				t.Errorf("on the left %v, title %q; want %v, %q", left, title, c.left, c.title)
			}
			if c.prop == propLight {
				screenshot(t, ctx, desktop, "colour-left")
			}
		})
	}
}

// TestBrowserStatusPolling: when the server refuses the status stream (503
// with Retry-After once its cap on streams is reached), the widget polls GET
// status every 30 s, revalidating with If-None-Match, and opens the stream
// again later. It runs for about a minute: the intervals are the product's.
func TestBrowserStatusPolling(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.Streams = 1 })
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	base := e.serve()
	upstream, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	// The one stream the server allows is taken.
	holdCtx, release := context.WithCancel(context.Background())
	defer release()
	req, err := http.NewRequestWithContext(holdCtx, "GET", base+"/v1/properties/demo/status/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	held, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	wait.For(t, "the only stream taken", func() bool { return e.srv.OpenStreams() == 1 })

	// A proxy that only watches: what the widget asks and what it is told.
	var (
		mu                     sync.Mutex
		refused, revalidations int
	)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.FlushInterval = -1
	proxy.ModifyResponse = func(r *http.Response) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.Request.URL.Path, "/status/stream") && r.StatusCode == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "":
			refused++
		case strings.HasSuffix(r.Request.URL.Path, "/status") && r.Request.Header.Get("If-None-Match") != "" && r.StatusCode == http.StatusNotModified:
			revalidations++
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	counts := func() (int, int) { mu.Lock(); defer mu.Unlock(); return refused, revalidations }

	ctx := newBrowser(t)
	run(t, ctx, "load", chromedp.Navigate(front.URL+"/"))
	waitJS(t, ctx, "online from GET status", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
	wait.For(t, "stream refused, then a revalidating poll", func() bool { r, v := counts(); return r == 1 && v >= 1 })

	e.setStatus(agentAlice, presence.Away)
	run(t, ctx, "away from the next poll", chromedp.Poll[chromedp.Void](`!!document.querySelector('#onduty-launcher .onduty-dot[data-status=away]')`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second)))
	if r, _ := counts(); r != 1 {
		t.Fatalf("%d stream attempts before the poll, want 1 (the retry comes later)", r)
	}

	release() // the slot frees up
	wait.For(t, "the held stream gone", func() bool { return e.srv.OpenStreams() == 0 })
	wait.Within(t, 40*time.Second, "the widget's stream open", func() bool { return e.srv.OpenStreams() == 1 })
	if r, _ := counts(); r != 1 {
		t.Errorf("%d refusals, want 1", r)
	}
	e.setStatus(agentAlice, presence.Online)
	waitJS(t, ctx, "online again", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
}

// TestBrowserKeyboard: the widget works from the keyboard: the launcher
// opens with Enter, Tab walks the panel in reading order, Escape closes it
// and gives the focus back to the launcher.
func TestBrowserKeyboard(t *testing.T) {
	e := newEnv(t)
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	base := e.serve()
	ctx := newBrowser(t)
	run(t, ctx, "load", chromedp.Navigate(base+"/"))
	waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
	run(t, ctx, "open with Enter", chromedp.Focus(chromedp.CSS("#onduty-launcher")), chromedp.KeyEvent("\r"))
	waitJS(t, ctx, "open, focus in the message box", `!document.getElementById('onduty-panel').hidden && document.activeElement.id === 'onduty-input'`)

	run(t, ctx, "back to the launcher", chromedp.Focus(chromedp.CSS("#onduty-launcher")))
	want := []string{"onduty-mute", "onduty-close", "onduty-messages", "onduty-name", "onduty-email", "onduty-input", "onduty-send"}
	var got []string
	for range want {
		run(t, ctx, "tab", chromedp.KeyEvent("\t"))
		got = append(got, evalJS[string](t, ctx, `document.activeElement.id`))
	}
	if !slices.Equal(got, want) {
		t.Errorf("tab order %q, want %q", got, want)
	}
	run(t, ctx, "escape", chromedp.KeyEvent("\u001b"))
	waitJS(t, ctx, "closed, focus on the launcher", `document.getElementById('onduty-panel').hidden && document.activeElement.id === 'onduty-launcher' && document.getElementById('onduty-launcher').getAttribute('aria-expanded') === 'false'`)
}
