package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// maxBody bounds what a Slack callback may send.
const maxBody = 1 << 20

// enqueueWait is how long an HTTP callback may wait for a free worker before
// answering 503 (Slack then retries).
const enqueueWait = 2 * time.Second

// HTTPHandlers returns the events-mode callbacks to mount on the HTTP server:
// /slack/events, /slack/commands and /slack/interactions. Each verifies
// Slack's signature on the raw body (5-minute window) and answers 401 when it
// is missing, wrong or stale.
func (a *Adapter) HTTPHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"/slack/events":       http.HandlerFunc(a.serveEvents),
		"/slack/commands":     http.HandlerFunc(a.serveCommands),
		"/slack/interactions": http.HandlerFunc(a.serveInteractions),
	}
}

// verified reads the body and checks its signature. On failure it has
// already answered.
func (a *Adapter) verified(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	if a.cfg.SigningSecret == "" {
		http.Error(w, "slack events mode is not configured", http.StatusNotFound)
		return nil, false
	}
	sv, err := slackapi.NewSecretsVerifier(r.Header, a.cfg.SigningSecret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		a.log.Warn("slack: refused unsigned request", "path", r.URL.Path, "err", err)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

// queue hands a callback's work to the workers, waiting at most enqueueWait
// for room. Before Run has a handler, or when no worker frees up in time, it
// answers 503 itself (Slack retries) and reports false.
func (a *Adapter) queue(w http.ResponseWriter, r *http.Request, enqueue func(ctx context.Context) error) bool {
	if a.handler() == nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), enqueueWait)
	defer cancel()
	if err := enqueue(ctx); err != nil {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// queueHandled is queue for events and button presses: it answers 200 once
// the work is handled (or after handleWait), so an instance that dies before
// handling it leaves Slack without an answer, and Slack sends it again.
func (a *Adapter) queueHandled(w http.ResponseWriter, r *http.Request, enqueue func(ctx context.Context) (*job, error)) {
	var j *job
	queued := a.queue(w, r, func(ctx context.Context) error {
		var err error
		j, err = enqueue(ctx)
		return err
	})
	if !queued {
		return
	}
	if !a.waitHandled(r.Context(), j) {
		if r.Context().Err() == nil {
			http.Error(w, "being handled elsewhere", http.StatusServiceUnavailable) // Slack tries again
		}
		return
	}
	w.WriteHeader(http.StatusOK)
}

// copyRequest gives the SDK's form parsers a request of their own over body.
func copyRequest(r *http.Request, body []byte) *http.Request {
	c := r.Clone(r.Context())
	c.Body = io.NopCloser(bytes.NewReader(body))
	c.ContentLength = int64(len(body))
	c.Form, c.PostForm = nil, nil
	return c
}

func (a *Adapter) serveEvents(w http.ResponseWriter, r *http.Request) {
	body, ok := a.verified(w, r)
	if !ok {
		return
	}
	ev, err := slackevents.ParseEvent(json.RawMessage(body), slackevents.OptionNoVerifyToken())
	if err != nil {
		// An event type the SDK does not know: nothing for us, and no retries.
		a.log.Debug("slack: unparsed event", "err", err)
		w.WriteHeader(http.StatusOK)
		return
	}
	if ev.Type == slackevents.URLVerification {
		uv, ok := ev.Data.(*slackevents.EventsAPIURLVerificationEvent)
		if !ok {
			http.Error(w, "bad url_verification", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jsonOf(map[string]string{"challenge": uv.Challenge}))
		return
	}
	a.queueHandled(w, r, func(ctx context.Context) (*job, error) { return a.onEventsAPI(ctx, ev) })
}

func (a *Adapter) serveCommands(w http.ResponseWriter, r *http.Request) {
	body, ok := a.verified(w, r)
	if !ok {
		return
	}
	cmd, err := slackapi.SlashCommandParse(copyRequest(r, body))
	if err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	var ans answer
	queued := a.queue(w, r, func(ctx context.Context) error {
		var err error
		ans, err = a.onCommand(ctx, cmd, commandKey(cmd, r.Header.Get("X-Slack-Signature"), ""))
		return err
	})
	if !queued {
		return
	}
	reply, ok := ans.wait(r.Context(), a.syncWait)
	if body := commandBody(reply); ok && body != nil {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jsonOf(body))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *Adapter) serveInteractions(w http.ResponseWriter, r *http.Request) {
	body, ok := a.verified(w, r)
	if !ok {
		return
	}
	cb, err := slackapi.InteractionCallbackParse(copyRequest(r, body))
	if err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	a.queueHandled(w, r, func(ctx context.Context) (*job, error) {
		return a.onInteraction(ctx, cb, interactionKey(cb))
	})
}
