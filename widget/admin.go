package widget

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// adminAPI is the admin surface: the team board (its page, its event
// stream and chat lists: board.go), presence, agent actions, blocks
// (blocks.go) and erasure. Without an admin token it does not exist: its
// routes answer 404.
type adminAPI struct {
	on   bool
	hash [sha256.Size]byte // of Config.AdminToken

	dir     *presence.Directory
	watcher *presence.Watcher
	store   *presence.Store
	chats   Bridge
	board   *boardCache
	// adapters reports the chat platforms' health (Config.Adapters); nil
	// when there are none to report.
	adapters func() []bridge.AdapterState
	streams  *streamer
	page     asset // admin.html
	script   asset // admin.js
	log      *slog.Logger
}

func newAdminAPI(token string, adapters func() []bridge.AdapterState, store *presence.Store, watcher *presence.Watcher,
	chats Bridge, streams *streamer, as *assets, log *slog.Logger) *adminAPI {
	a := &adminAPI{
		dir: store.Directory(), watcher: watcher, store: store, chats: chats,
		board:    &boardCache{src: chats, m: make(map[presence.PropertyID]*boardEntry)},
		adapters: adapters, streams: streams, page: as.adminHTML, script: as.adminJS, log: log,
	}
	if token != "" {
		a.on = true
		a.hash = sha256.Sum256([]byte(token))
	}
	return a
}

// presenceResponse is the admin view of a property: the widget status with
// its reason and every agent's part in it.
type presenceResponse struct {
	presence.Report
	// Source is "redis" (fresh) or "snapshot" (Redis failed: the watcher's
	// last known state).
	Source string `json:"source"`
	Stale  bool   `json:"stale"`
	// Surfaces lists each agent's chat apps ("telegram", "slack") as configured.
	Surfaces map[presence.AgentID][]string `json:"surfaces"`
}

// setStatusRequest is the body of PUT /v1/admin/agents/{a}/status.
type setStatusRequest struct {
	Status    *string `json:"status"`
	Condition *string `json:"condition"`
}

// agentResponse is an agent's stored and effective state.
type agentResponse struct {
	Agent        presence.AgentID   `json:"agent"`
	Name         string             `json:"name"`
	Status       presence.Status    `json:"status"`
	Condition    presence.Condition `json:"condition"`
	LastActivity *time.Time         `json:"last_activity"`
	Effective    presence.Status    `json:"effective"`
}

// authorize checks the bearer admin token in constant time. Without a
// configured token the admin API does not exist (404), it is never open.
func (a *adminAPI) authorize(c *fiber.Ctx) error {
	if !a.on {
		return errNotFound
	}
	tok := bearer(c)
	if tok == "" {
		return errMissingToken
	}
	h := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(h[:], a.hash[:]) != 1 {
		return errBadToken
	}
	return nil
}

// authorizedProperty is the admin's authorization, then the route's
// property ({p}): the start of every per-property admin route.
func (a *adminAPI) authorizedProperty(c *fiber.Ctx) (presence.PropertyID, error) {
	if err := a.authorize(c); err != nil {
		return "", err
	}
	return property(c, a.dir)
}

// adminPresence answers GET /v1/admin/properties/{p}/presence.
func (a *adminAPI) adminPresence(c *fiber.Ctx) error {
	p, err := a.authorizedProperty(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 3*time.Second)
	defer cancel()
	c.Set(fiber.HeaderCacheControl, "no-store")
	r, err := a.store.Report(ctx, p)
	if err == nil {
		return c.JSON(presenceResponse{Report: r, Source: "redis", Surfaces: a.agentSurfaces(r)})
	}
	a.log.Warn("admin presence: redis failed, answering from snapshot", "property", p, "err", err)
	snap, ok := a.watcher.Snapshot(p)
	if !ok || snap == nil {
		return errUnavailable
	}
	c.Set(HeaderStale, "true")
	return c.JSON(presenceResponse{Report: snap.Report, Source: "snapshot", Stale: true, Surfaces: a.agentSurfaces(snap.Report)})
}

// adminSetStatus answers PUT /v1/admin/agents/{a}/status with body
// {"status"} and/or {"condition"}. The admin is not bound by the agent's
// permissions.
func (a *adminAPI) adminSetStatus(c *fiber.Ctx) error {
	if err := a.authorize(c); err != nil {
		return err
	}
	id := presence.AgentID(strings.Clone(c.Params("a")))
	agent, ok := a.dir.Agent(id)
	if !ok {
		return errUnknownAgent
	}
	var in setStatusRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Status == nil && in.Condition == nil {
		return newErr(http.StatusBadRequest, "missing_field", "status or condition is required")
	}
	var st presence.Status
	var cond presence.Condition
	if in.Status != nil {
		st = presence.Status(*in.Status)
		if !st.IsValid() {
			return newErr(http.StatusBadRequest, "invalid_status", "status must be online, away, invisible or offline")
		}
	}
	if in.Condition != nil {
		cond = presence.Condition(*in.Condition)
		if !cond.IsValid() {
			return newErr(http.StatusBadRequest, "invalid_condition", "condition must be activity or always")
		}
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	// Through the bridge, so the change has the consequences of the
	// agent's own command (the "Still on duty?" prompt moves).
	state, err := a.chats.SetPresence(ctx, id, st, cond)
	if err != nil {
		return a.storeErr(err)
	}
	out := agentResponse{
		Agent: id, Name: agent.Name,
		Status: state.Chosen(agent), Condition: state.ConditionOf(agent),
		Effective: presence.Effective(agent, state, a.store.Now()),
	}
	if !state.LastActivity.IsZero() {
		t := state.LastActivity
		out.LastActivity = &t
	}
	return c.JSON(out)
}

// storeErr maps an error of setting presence: anything but an unknown
// agent is Redis failing.
func (a *adminAPI) storeErr(err error) error {
	if errors.Is(err, presence.ErrUnknownAgent) {
		return errUnknownAgent
	}
	a.log.Warn("admin: presence store failed", "err", err)
	return errUnavailable
}

// eraseResponse is the answer of DELETE /v1/admin/visitors.
type eraseResponse struct {
	DeletedChats int `json:"deleted_chats"`
}

// adminErase answers DELETE /v1/admin/visitors?email=ADDR (or ?chat_id=ID):
// every chat of that visitor is deleted everywhere in Redis.
func (a *adminAPI) adminErase(c *fiber.Ctx) error {
	if err := a.authorize(c); err != nil {
		return err
	}
	email, id := strings.TrimSpace(c.Query("email")), bridge.ChatID(strings.Clone(c.Query("chat_id")))
	if (email == "") == (id == "") {
		return newErr(http.StatusBadRequest, "missing_field", "give exactly one of email or chat_id")
	}
	if email != "" {
		if err := checkEmail(email, true); err != nil {
			return err
		}
		email = strings.Clone(email)
	} else if !id.IsValid() {
		return newErr(http.StatusBadRequest, "invalid_field", "chat_id is not a chat id")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 60*time.Second)
	defer cancel()
	n, err := a.chats.EraseVisitor(ctx, email, id)
	if errors.Is(err, bridge.ErrBadErasure) {
		return newErr(http.StatusBadRequest, "invalid_field", "give a valid email address or chat id")
	}
	if err != nil {
		a.log.Error("erase visitor", "err", err, "deleted_chats", n)
		return errUnavailable
	}
	by := "email" // the address itself stays out of the log
	if id != "" {
		by = "chat_id"
	}
	a.log.Info("visitor erased", "deleted_chats", n, "by", by)
	return c.JSON(eraseResponse{DeletedChats: n})
}
