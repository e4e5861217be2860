package widget

import (
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// TestBrowserAdminBoard drives the team board in headless Chromium: the
// admin signs in once, sees the team, and watches an agent go away live.
func TestBrowserAdminBoard(t *testing.T) {
	var adapters atomic.Pointer[[]bridge.AdapterState]
	adapters.Store(&[]bridge.AdapterState{{Name: "telegram", Up: true}})
	e := newEnvDir(t, boardDirectory(t), func(c *Config) {
		c.Adapters = func() []bridge.AdapterState { return *adapters.Load() }
	})
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	wait.For(t, "alice online", func() bool { return e.watcher.Effective(agentAlice) == presence.Online })
	base := e.serve()
	ctx := newBrowser(t)
	emulate(t, ctx, desktop)

	const alice = `document.querySelector('section[data-property=acme] tr[data-agent=alice]')`
	run(t, ctx, "open the board", chromedp.Navigate(base+"/admin"))
	waitJS(t, ctx, "asks for the token", `!document.getElementById('login').hidden`)

	t.Run("a wrong token is refused", func(t *testing.T) {
		run(t, ctx, "sign in wrongly",
			chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"),
			chromedp.Click(chromedp.CSS("#login-btn")))
		waitJS(t, ctx, "refusal shown", `document.getElementById('login-error').textContent.includes('not accepted') && !document.getElementById('login').hidden`)
		stored, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`sessionStorage.getItem('onduty-admin-token') === null`))
		if err != nil || !stored {
			t.Errorf("a refused token was kept (%v)", err)
		}
	})

	t.Run("the board shows the team", func(t *testing.T) {
		run(t, ctx, "sign in",
			chromedp.SendKeys(chromedp.CSS("#token"), adminToken),
			chromedp.Click(chromedp.CSS("#login-btn")))
		waitJS(t, ctx, "alice online on acme", alice+`?.dataset.effective === 'online'`)
		waitJS(t, ctx, "connected", `document.getElementById('conn').dataset.state === 'live'`)
		checks := map[string]string{
			"widget status":             `document.querySelector('section[data-property=acme]').dataset.widget === 'online'`,
			"reason":                    `document.querySelector('section[data-property=acme] .reason').textContent === 'Why: online: Alice'`,
			"surfaces":                  alice + `.querySelector('.surfaces').textContent === 'TelegramSlack'`,
			"condition":                 alice + `.textContent.includes('always on')`,
			"last activity":             alice + `.querySelector('.last-activity').textContent === 'just now'`,
			"bob offline":               `document.querySelector('section[data-property=acme] tr[data-agent=bob]').dataset.effective === 'offline'`,
			"every property":            `document.querySelectorAll('section[data-property]').length === 3`,
			"token kept":                `sessionStorage.getItem('onduty-admin-token') === '` + adminToken + `'`,
			"token not in the page URL": `!location.href.includes('` + adminToken + `')`,
		}
		for what, expr := range checks {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
			if err != nil || !ok {
				t.Errorf("%s: %s is not true (%v)", what, expr, err)
			}
		}
	})

	t.Run("a stopped platform is shown", func(t *testing.T) {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('adapters').hidden`)); err != nil || !ok {
			t.Errorf("a banner while every platform runs (%v)", err)
		}
		adapters.Store(&[]bridge.AdapterState{{Name: "telegram", Reason: "token rejected (401)"}})
		waitJS(t, ctx, "the banner", `(() => { const b = document.getElementById('adapters');
			return !b.hidden && b.textContent.includes('telegram stopped: token rejected (401)'); })()`)
		adapters.Store(&[]bridge.AdapterState{{Name: "telegram", Up: true}})
	})

	t.Run("a waiting chat appears", func(t *testing.T) {
		e.startChat(propAcme, "Is anyone there?")
		waitJS(t, ctx, "pending chat listed", `document.querySelectorAll('section[data-property=acme] ul[data-list=pending] li[data-chat]').length === 1`)
		waitJS(t, ctx, "with its wait and text", `(() => { const li = document.querySelector('section[data-property=acme] ul[data-list=pending] li[data-chat]');
			return li.textContent.includes('Vic') && li.textContent.includes('waiting') && li.textContent.includes('Is anyone there?'); })()`)
		run(t, ctx, "show acme", chromedp.Evaluate[chromedp.Void](`document.querySelector('section[data-property=acme]').scrollIntoView(); scrollBy(0, -76)`))
		screenshot(t, ctx, desktop, "admin-board")
	})

	t.Run("the agent goes away without a reload", func(t *testing.T) {
		run(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.__sameLoad = true`))
		e.setStatus(agentAlice, presence.Away)
		waitJS(t, ctx, "alice away", alice+`.dataset.effective === 'away'`)
		waitJS(t, ctx, "acme widget away", `document.querySelector('section[data-property=acme]').dataset.widget === 'away'`)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__sameLoad === true`))
		if err != nil || !ok {
			t.Errorf("the page was reloaded (%v)", err)
		}
	})

	t.Run("a reload keeps the session", func(t *testing.T) {
		run(t, ctx, "reload", chromedp.Reload())
		waitJS(t, ctx, "board back without the form", alice+`?.dataset.effective === 'away' && document.getElementById('login').hidden`)
		run(t, ctx, "sign out", chromedp.Click(chromedp.CSS("#signout")))
		waitJS(t, ctx, "form again, token gone", `!document.getElementById('login').hidden && sessionStorage.getItem('onduty-admin-token') === null && !document.querySelector('section[data-property]')`)
	})
}
