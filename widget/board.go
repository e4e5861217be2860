package widget

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// Board timings.
const (
	// boardRefresh is how often an open board gets the chat lists again
	// (new chats do not change presence, so they are polled).
	boardRefresh = 3 * time.Second
	// boardFetchTimeout bounds one fetch of a property's chats.
	boardFetchTimeout = 5 * time.Second
)

// boardCache holds each property's chat list as JSON, shared by every open
// board: however many boards are open, a property's chats are read from
// Redis at most once per presence change and once per boardRefresh.
type boardCache struct {
	src Bridge
	mu  sync.Mutex
	m   map[presence.PropertyID]*boardEntry
}

type boardEntry struct {
	mu   sync.Mutex // held while fetching: concurrent boards wait and share
	seq  uint64     // the presence snapshot seq when the fetch began
	at   time.Time  // when the fetch began
	body []byte     // the last list sent
	key  []byte     // body without its clock-dependent fields
	err  error
}

func (c *boardCache) entry(p presence.PropertyID) *boardEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[p]
	if e == nil {
		e = &boardEntry{}
		c.m[p] = e
	}
	return e
}

// get returns p's chats as JSON, fetched no earlier than the presence
// snapshot seq and no more than boardRefresh ago.
func (c *boardCache) get(ctx context.Context, p presence.PropertyID, seq uint64, now time.Time) ([]byte, error) {
	e := c.entry(p)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.body != nil && e.seq >= seq && now.Sub(e.at) < boardRefresh {
		return e.body, nil
	}
	if e.err != nil && e.seq >= seq && now.Sub(e.at) < time.Second {
		return nil, e.err // don't hammer a failing Redis from every board
	}
	e.seq, e.at = seq, now
	fctx, cancel := context.WithTimeout(ctx, boardFetchTimeout)
	defer cancel()
	bc, err := c.src.Board(fctx, p)
	if err != nil {
		e.err = err
		return nil, err
	}
	body, err := json.Marshal(bc)
	if err != nil {
		e.err = err
		return nil, err
	}
	// Unchanged lists keep their old bytes, so boards are not sent the same
	// chats again just because the clock moved (At, waiting times).
	bc.At = time.Time{}
	for i := range bc.Pending {
		bc.Pending[i].WaitingSeconds = 0
	}
	for i := range bc.Offline {
		bc.Offline[i].WaitingSeconds = 0
	}
	key, _ := json.Marshal(bc)
	if !bytes.Equal(key, e.key) {
		e.body, e.key = body, key
	}
	e.err = nil
	return e.body, nil
}

// boardProperty is a property as the board shows it: the watcher's report
// (widget status, reason, every agent), where each agent can be reached,
// the schedule, and whether the watcher has lost Redis.
type boardProperty struct {
	Property presence.PropertyID `json:"property"`
	Name     string              `json:"name"`
	Schedule string              `json:"schedule,omitempty"`
	Report   presence.Report     `json:"report"`
	// Surfaces lists each agent's chat apps ("telegram", "slack") as configured.
	Surfaces map[presence.AgentID][]string `json:"surfaces"`
	Stale    bool                          `json:"stale"`
	// Now is the server's time, so the page words "3 min ago" without
	// trusting the browser's clock.
	Now time.Time `json:"now"`
}

func (a *adminAPI) agentSurfaces(r presence.Report) map[presence.AgentID][]string {
	out := make(map[presence.AgentID][]string, len(r.Agents))
	for _, ar := range r.Agents {
		if _, ok := a.dir.Agent(ar.ID); ok {
			out[ar.ID] = surfaceNames(a.dir.Surfaces(ar.ID))
		}
	}
	return out
}

func surfaceNames(ss []presence.Surface) []string {
	out := make([]string, len(ss))
	for i, x := range ss {
		out[i] = string(x)
	}
	return out
}

func (a *adminAPI) boardProperty(p presence.PropertyID, r presence.Report) boardProperty {
	bp := boardProperty{Property: p, Name: a.dir.PropertyName(p), Report: r, Surfaces: a.agentSurfaces(r), Stale: a.watcher.Stale(), Now: a.store.Now()}
	if prop, ok := a.dir.Property(p); ok && prop.Schedule != nil {
		bp.Schedule = prop.Schedule.String()
	}
	return bp
}

// adminProperties answers GET /v1/admin/properties: every property with its
// current (in-memory) widget status.
func (a *adminAPI) adminProperties(c *fiber.Ctx) error {
	if err := a.authorize(c); err != nil {
		return err
	}
	out := struct {
		Properties []boardProperty `json:"properties"`
	}{Properties: []boardProperty{}}
	for _, p := range a.dir.Properties() {
		if snap, _ := a.watcher.Snapshot(p); snap != nil {
			out.Properties = append(out.Properties, a.boardProperty(p, snap.Report))
		}
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// adminChats answers GET /v1/admin/properties/{p}/chats: the property's
// pending, active and offline chats, fresh from Redis.
func (a *adminAPI) adminChats(c *fiber.Ctx) error {
	p, err := a.authorizedProperty(c)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	bc, err := a.chats.Board(ctx, p)
	if err != nil {
		return a.bridgeErr("admin chats", err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(bc)
}

// bridgeErr maps a bridge error; anything unknown is storage failing.
func (a *adminAPI) bridgeErr(op string, err error) error {
	if e := fromBridge(err); e != err {
		return e
	}
	a.log.Warn(op+": bridge failed", "err", err)
	return errUnavailable
}

// actionRequest is the body of POST /v1/admin/agents/{a}/actions: either a
// command ({"command":"accept","args":""}) or a message ({"chat_id","text"}).
type actionRequest struct {
	Command string `json:"command"`
	Args    string `json:"args"`
	ChatID  string `json:"chat_id"`
	Text    string `json:"text"`
}

// actionResponse is what the agent would have been told on a chat app.
type actionResponse struct {
	Reply   string         `json:"reply"`
	Choices []actionChoice `json:"choices,omitempty"`
}

type actionChoice struct {
	Label  string            `json:"label"`
	Action bridge.ActionKind `json:"action"`
	ChatID bridge.ChatID     `json:"chat_id"`
}

// maxCommandBytes caps a command's name ("transfer", "alwayson"…).
const maxCommandBytes = 32

// adminAction answers POST /v1/admin/agents/{a}/actions: the agent acts
// through the admin API as on a chat app (SPEC §5: the demo agent answers
// from the admin API). It counts as the agent's activity.
func (a *adminAPI) adminAction(c *fiber.Ctx) error {
	if err := a.authorize(c); err != nil {
		return err
	}
	id := presence.AgentID(strings.Clone(c.Params("a")))
	if _, ok := a.dir.Agent(id); !ok {
		return errUnknownAgent
	}
	var in actionRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	act := bridge.Action{Surface: "admin", Agent: id, Chat: bridge.ChatID(in.ChatID)}
	if in.ChatID != "" && !act.Chat.IsValid() {
		return errUnknownChat
	}
	cmd := strings.TrimPrefix(strings.TrimSpace(in.Command), "/")
	switch {
	case cmd != "" && in.Text != "":
		return newErr(http.StatusBadRequest, "invalid_action", "give a command or a text, not both")
	case cmd != "":
		if len(cmd) > maxCommandBytes || strings.ContainsAny(cmd, " \t\r\n") {
			return newErr(http.StatusBadRequest, "invalid_command", "command must be one word, like accept or online")
		}
		if utf8.RuneCountInString(in.Args) > bridge.MaxTextRunes {
			return errTooLong("args")
		}
		act.Kind, act.Command, act.Args = bridge.ActCommand, cmd, in.Args
	case in.Text != "":
		if err := checkText("text", in.Text); err != nil {
			return err
		}
		act.Kind, act.Text = bridge.ActMessage, in.Text
	default:
		return newErr(http.StatusBadRequest, "missing_field", "command or text is required")
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	r, err := a.chats.Handle(ctx, act)
	if err != nil {
		return a.bridgeErr("admin action", err)
	}
	out := actionResponse{Reply: r.Text}
	for _, ch := range r.Choices {
		out.Choices = append(out.Choices, actionChoice{Label: ch.Label, Action: ch.Action, ChatID: ch.Chat})
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// adminEvents answers GET /v1/admin/properties/{p}/events (one property)
// and GET /v1/admin/events (all of them): the board's live feed.
//
// The token is taken from the Authorization header only, never from the
// URL (where it would end up in logs and history): the board reads the
// stream with fetch(), which can send headers, not with EventSource.
func (a *adminAPI) adminEvents(c *fiber.Ctx) error {
	if err := a.authorize(c); err != nil {
		return err
	}
	props := a.dir.Properties()
	if c.Params("p") != "" {
		p, err := property(c, a.dir)
		if err != nil {
			return err
		}
		props = []presence.PropertyID{p}
	}
	return a.streams.run(c, "admin", corsResult{}, func(w *sseConn) {
		a.followBoard(w, props)
	})
}

// followBoard writes, for each property, a "presence" event now and at
// every presence change, and a "chats" event now and whenever the chat
// lists changed (checked at each presence change and every boardRefresh),
// with heartbeats in between, until the client goes or the server stops.
func (a *adminAPI) followBoard(w *sseConn, props []presence.PropertyID) {
	// One waiter per property turns its Changed channel into a shared wake-up.
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	for _, p := range props {
		ch := a.watcher.Changed(p) // taken before the first send: no change falls in between
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ch:
				case <-done:
					return
				}
				select {
				case wake <- struct{}{}:
				default:
				}
				ch = a.watcher.Changed(p)
			}
		}()
	}

	var sentAdapters []byte
	sentSeq := make(map[presence.PropertyID]uint64, len(props))
	sentChats := make(map[presence.PropertyID][]byte, len(props))
	chatsFailed := make(map[presence.PropertyID]bool, len(props))
	send := func() error {
		// The chat platforms: a stopped one (a revoked token) means its
		// agents get nothing, which the board must not hide.
		if ad := mustJSON(map[string]any{"adapters": a.adapterStates()}); a.adapters != nil && !bytes.Equal(ad, sentAdapters) {
			if err := w.event("adapters", "", ad); err != nil {
				return err
			}
			sentAdapters = ad
		}
		for _, p := range props {
			snap, _ := a.watcher.Snapshot(p)
			if snap == nil {
				continue
			}
			if seq, ok := sentSeq[p]; !ok || seq != snap.Seq {
				if err := w.event("presence", "", mustJSON(a.boardProperty(p, snap.Report))); err != nil {
					return err
				}
				sentSeq[p] = snap.Seq
			}
			body, err := a.board.get(a.streams.ctx, p, snap.Seq, time.Now())
			if err != nil {
				if !chatsFailed[p] {
					chatsFailed[p] = true
					a.log.Warn("admin board: chats unavailable", "property", p, "err", err)
					if err := w.event("chats_error", "", mustJSON(map[string]string{"property": string(p), "error": "unavailable"})); err != nil {
						return err
					}
				}
				continue
			}
			chatsFailed[p] = false
			if !bytes.Equal(body, sentChats[p]) {
				if err := w.event("chats", "", body); err != nil {
					return err
				}
				sentChats[p] = body
			}
		}
		return nil
	}

	hb := time.NewTicker(a.streams.heartbeat)
	defer hb.Stop()
	refresh := time.NewTicker(boardRefresh)
	defer refresh.Stop()
	for {
		if send() != nil {
			return
		}
		select {
		case <-wake:
		case <-refresh.C:
		case <-hb.C:
			if w.comment() != nil {
				return
			}
			continue
		case <-a.streams.stopped():
			return
		}
	}
}

// adapterStates is the chat platforms' health; nil when there are none to report.
func (a *adminAPI) adapterStates() []bridge.AdapterState {
	if a.adapters == nil {
		return nil
	}
	return a.adapters()
}

// adminPage answers GET /admin: the team board, or, with no admin token
// configured, a page saying the admin API is off (and nothing else).
func (a *adminAPI) adminPage(c *fiber.Ctx) error {
	c.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	c.Set("X-Frame-Options", "DENY")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set("X-Content-Type-Options", "nosniff")
	if !a.on {
		c.Set(fiber.HeaderCacheControl, "no-store")
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		c.Status(http.StatusNotFound)
		return c.Send(adminDisabledHTML)
	}
	return a.page.serve(c)
}

// adminScript answers GET /admin.js (404 while the admin API is off).
func (a *adminAPI) adminScript(c *fiber.Ctx) error {
	if !a.on {
		return errNotFound
	}
	c.Set("X-Content-Type-Options", "nosniff")
	return a.script.serve(c)
}

var adminDisabledHTML = []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>onduty admin — disabled</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5">
<h1>The admin API is disabled</h1>
<p id="admin-disabled">This server has no admin token, so the team board and the admin API are off.
Set <code>admin_token</code> in the configuration (or <code>ONDUTY_ADMIN_TOKEN</code>) and restart to use them.</p>
</body></html>
`)
