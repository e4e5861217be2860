package widget

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// laterEnv is a server whose demo property emails (or not) and has the given
// pre-chat form, with Alice (always online) its agent.
func laterEnv(t *testing.T, email bool, pre presence.Prechat) *env {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: propDemo, Name: "Demo", OfflineMode: presence.ModeForm, Email: email, Prechat: pre}},
		[]presence.Agent{{ID: agentAlice, Name: "Alice", Properties: []presence.PropertyID{propDemo}, Condition: presence.Always}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvDir(t, dir)
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	return e
}

// called reports whether the fake bridge was called with a line starting so.
func called(e *env, prefix string) bool {
	return slices.ContainsFunc(e.chats.Calls(), func(c string) bool { return strings.HasPrefix(c, prefix) })
}

// TestBrowserContinueLink: the link from an email opens the conversation in
// a browser that has never seen it, takes the token out of the address bar,
// and keeps the chat across a reload.
func TestBrowserContinueLink(t *testing.T) {
	e := laterEnv(t, true, presence.Prechat{})
	base := e.serve()
	id, token := e.startChat(propDemo, "My order never arrived.")
	e.chats.Join(bridge.ChatID(id), agentAlice, "Alice")
	e.chats.Reply(bridge.ChatID(id), agentAlice, "Alice", "Sorry! A new one is on its way.", false)

	ctx := newBrowser(t) // a fresh browser: no storage, no cookies
	run(t, ctx, "open the continue link", chromedp.Navigate(base+"/c/"+id+"#"+token))
	waitJS(t, ctx, "the conversation is shown, open", hasMsg("visitor", "My order never arrived.")+` && `+hasMsg("agent", "Sorry! A new one is on its way.")+` && !document.getElementById('onduty-panel').hidden`)
	checks := map[string]string{
		"token gone from the address": `location.hash === '' && !location.href.includes('` + token + `')`,
		"chat kept":                   `JSON.parse(localStorage.getItem('onduty:demo')).id === '` + id + `'`,
		"agent in the header":         `document.getElementById('onduty-sub').textContent === 'Alice'`,
	}
	for what, expr := range checks {
		if !evalJS[bool](t, ctx, expr) {
			t.Errorf("%s: %s is false", what, expr)
		}
	}
	wait.For(t, "event stream open", func() bool { return e.chats.Subscribers(bridge.ChatID(id)) == 1 })

	run(t, ctx, "reload without the fragment", chromedp.Reload())
	waitJS(t, ctx, "still the conversation", hasMsg("agent", "Sorry! A new one is on its way."))
	run(t, ctx, "answer", chromedp.Click(chromedp.CSS("#onduty-launcher")), chromedp.SendKeys(chromedp.CSS("#onduty-input"), "Thanks!\n"))
	wait.For(t, "answer relayed", func() bool { return called(e, "PostVisitorMessage "+id) })
}

// TestBrowserChatSurvivesNewTab: the chat lives in localStorage, so a new
// tab shows it and follows it; ending it in one tab ends it in the other.
func TestBrowserChatSurvivesNewTab(t *testing.T) {
	e := laterEnv(t, false, presence.Prechat{})
	base := e.serve()
	ctx := newBrowser(t)
	run(t, ctx, "load", chromedp.Navigate(base+"/"))
	waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
	id := startInWidget(t, ctx, e, "First tab here.")

	tab, cancel := chromedp.NewContext(ctx) // a new tab of the same browser
	defer cancel()
	run(t, tab, "open a new tab", chromedp.Navigate(base+"/"))
	waitJS(t, tab, "the chat is there", hasMsg("visitor", "First tab here."))
	wait.For(t, "both tabs follow it", func() bool { return e.chats.Subscribers(id) == 2 })
	e.chats.Reply(id, agentAlice, "Alice", "Hello to both tabs.", false)
	waitJS(t, tab, "reply in the new tab", hasMsg("agent", "Hello to both tabs."))
	waitJS(t, ctx, "reply in the first tab", hasMsg("agent", "Hello to both tabs."))

	run(t, tab, "end it in the new tab", chromedp.Click(chromedp.CSS("#onduty-launcher")), chromedp.Click(chromedp.CSS("#onduty-end")))
	wait.For(t, "closed", func() bool { c, _ := e.chats.Chat(id); return c.State == bridge.Closed })
	waitJS(t, ctx, "the first tab knows", `window.onduty.chat() === null && localStorage.getItem('onduty:demo') === null`)
}

// TestBrowserAfterChat: once the agent closes the chat, the visitor may rate
// it and, when the server emails and the chat has an address, ask for the
// transcript; without email the widget never offers it.
func TestBrowserAfterChat(t *testing.T) {
	for _, tc := range []struct {
		v     viewport
		email bool
	}{{desktop, true}, {desktop, false}, {phone, true}} {
		email := tc.email
		t.Run(fmt.Sprintf("%s, email %v", tc.v.name, email), func(t *testing.T) {
			e := laterEnv(t, email, presence.Prechat{})
			base := e.serve()
			ctx := newBrowser(t)
			emulate(t, ctx, tc.v)
			run(t, ctx, "load", chromedp.Navigate(base+"/"))
			waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
			run(t, ctx, "give an email", chromedp.Click(chromedp.CSS("#onduty-launcher")), chromedp.WaitVisible(chromedp.CSS("#onduty-email")),
				chromedp.SendKeys(chromedp.CSS("#onduty-email"), "vic@example.com"), chromedp.Click(chromedp.CSS("#onduty-close")))
			id := startInWidget(t, ctx, e, "Can I change my address?")
			c, _ := e.chats.Chat(id)
			if c.Visitor.Email != "vic@example.com" {
				t.Fatalf("visitor %+v", c.Visitor)
			}
			e.chats.Join(id, agentAlice, "Alice")
			e.chats.Reply(id, agentAlice, "Alice", "Done, it's changed.", false)
			e.chats.CloseByAgent(id, agentAlice)
			waitJS(t, ctx, "rating offered", `!document.getElementById('onduty-after').hidden && document.getElementById('onduty-rate-q').textContent === 'How was this chat?'`)
			offered := evalJS[bool](t, ctx, `!document.getElementById('onduty-transcript').hidden`)
			if offered != email {
				t.Fatalf("transcript offered: %v, want %v", offered, email)
			}
			if email && tc.v == desktop {
				screenshot(t, ctx, desktop, "rating")
			}
			run(t, ctx, "rate 4 of 5",
				chromedp.Click(chromedp.CSS(`.onduty-star[data-score="4"]`)),
				chromedp.WaitVisible(chromedp.CSS("#onduty-rate-comment")),
				chromedp.SendKeys(chromedp.CSS("#onduty-rate-comment"), "Quick, thanks"),
				chromedp.Click(chromedp.CSS("#onduty-rate-send")))
			waitJS(t, ctx, "thanked", `!document.getElementById('onduty-rated').hidden && document.getElementById('onduty-rate').hidden`)
			if !called(e, "Rate "+string(id)+` 4 "Quick, thanks"`) {
				t.Errorf("rating not sent: %q", e.chats.Calls())
			}
			if !email {
				return
			}
			run(t, ctx, "ask for the transcript", chromedp.Click(chromedp.CSS("#onduty-transcript")))
			waitJS(t, ctx, "on its way", `document.getElementById('onduty-after-note').textContent === 'The transcript is on its way to your inbox.'`)
			if !called(e, "EmailTranscript "+string(id)) {
				t.Errorf("transcript not asked for: %q", e.chats.Calls())
			}
		})
	}
}

// TestBrowserPrechat: the property's pre-chat form asks for what it
// requires, with a consent box that must be ticked, before a chat starts.
func TestBrowserPrechat(t *testing.T) {
	e := laterEnv(t, false, presence.Prechat{Name: presence.FieldRequired, Email: presence.FieldHidden, Consent: "I agree that my messages are stored for 30 days."})
	base := e.serve()
	ctx := newBrowser(t)
	run(t, ctx, "load", chromedp.Navigate(base+"/"))
	waitJS(t, ctx, "launcher online", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=online]')`)
	run(t, ctx, "open and write", chromedp.Click(chromedp.CSS("#onduty-launcher")), chromedp.SendKeys(chromedp.CSS("#onduty-input"), "Hello"))
	waitJS(t, ctx, "the form", `document.querySelector('label[for=onduty-name]').textContent === 'Your name (required)' && document.getElementById('onduty-email').offsetParent === null &&
		document.getElementById('onduty-consent-text').textContent === 'I agree that my messages are stored for 30 days.' && document.getElementById('onduty-consent').offsetParent !== null`)

	steps := []struct {
		what, js, wantErr string
	}{
		{"no name", ``, "Please enter your name."},
		{"no consent", `document.getElementById('onduty-name').value = 'Vic'`, "Please tick the box to continue."},
	}
	for _, s := range steps {
		if s.js != "" {
			run(t, ctx, s.what, chromedp.Evaluate[chromedp.Void](s.js))
		}
		run(t, ctx, "send: "+s.what, chromedp.Click(chromedp.CSS("#onduty-send")))
		waitJS(t, ctx, "refused: "+s.what, `document.getElementById('onduty-error').textContent === '`+s.wantErr+`'`)
		if ids := e.chats.ChatIDs(); len(ids) != 0 {
			t.Fatalf("%s: a chat started: %v", s.what, ids)
		}
	}
	run(t, ctx, "tick and send", chromedp.Click(chromedp.CSS("#onduty-consent")), chromedp.Click(chromedp.CSS("#onduty-send")))
	wait.For(t, "chat started", func() bool { return len(e.chats.ChatIDs()) == 1 })
	c, _ := e.chats.Chat(e.chats.ChatIDs()[0])
	if c.Visitor.Name != "Vic" || c.Visitor.Email != "" || !c.Visitor.Consent {
		t.Errorf("visitor %+v", c.Visitor)
	}
}

// TestBrowserOfflineForm: the offline form's answer is a chat the widget
// keeps, so the agent's answer shows when the visitor comes back; the thanks
// promise email only when the server sends it.
func TestBrowserOfflineForm(t *testing.T) {
	for _, tc := range []struct {
		v     viewport
		email bool
	}{{desktop, true}, {desktop, false}, {phone, false}} {
		email := tc.email
		t.Run(fmt.Sprintf("%s, email %v", tc.v.name, email), func(t *testing.T) {
			e := laterEnv(t, email, presence.Prechat{})
			e.setStatus(agentAlice, presence.Offline)
			base := e.serve()
			ctx := newBrowser(t)
			emulate(t, ctx, tc.v)
			run(t, ctx, "load", chromedp.Navigate(base+"/"))
			waitJS(t, ctx, "launcher offline", `!!document.querySelector('#onduty-launcher .onduty-dot[data-status=offline]') && !document.getElementById('onduty-root').hidden`)
			run(t, ctx, "fill the form",
				chromedp.Click(chromedp.CSS("#onduty-launcher")),
				chromedp.SendKeys(chromedp.CSS("#onduty-off-name"), "Vic"),
				chromedp.SendKeys(chromedp.CSS("#onduty-off-email"), "vic@example.com"),
				chromedp.SendKeys(chromedp.CSS("#onduty-off-text"), "Do you deliver on Sundays?"))
			if email && tc.v == desktop {
				screenshot(t, ctx, desktop, "offline-form")
			}
			run(t, ctx, "send", chromedp.Click(chromedp.CSS("#onduty-off-send")))
			waitJS(t, ctx, "thanked", `document.getElementById('onduty-off-done').offsetParent !== null`)
			done := evalJS[string](t, ctx, `document.getElementById('onduty-off-done').textContent`)
			if strings.Contains(done, "email") != email {
				t.Errorf("thanks %q with email %v", done, email)
			}
			ids := e.chats.ChatIDs()
			if len(ids) != 1 {
				t.Fatalf("chats %v", ids)
			}
			wait.For(t, "the widget follows the chat", func() bool { return e.chats.Subscribers(ids[0]) == 1 })

			run(t, ctx, "leave", chromedp.Navigate("about:blank"))
			wait.For(t, "the visitor has gone", func() bool { return e.chats.Subscribers(ids[0]) == 0 })
			e.chats.Reply(ids[0], agentAlice, "Alice", "Yes, from 10 to 4.", false)
			run(t, ctx, "come back", chromedp.Navigate(base+"/"))
			waitJS(t, ctx, "answer counted", `window.onduty.unread() === 1`)
			run(t, ctx, "open", chromedp.Click(chromedp.CSS("#onduty-launcher")))
			waitJS(t, ctx, "the answer and the question", hasMsg("visitor", "Do you deliver on Sundays?")+` && `+hasMsg("agent", "Yes, from 10 to 4."))
		})
	}
}
