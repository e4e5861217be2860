// Package webhook posts chat events to the team's other systems (SPEC §10).
// Each configured webhook is an outbox target of its own (bridge.Subscriber):
// the bridge queues an event in the chat's outbox shard, the outbox hands it
// to Deliver one chat at a time and retries failures with capped backoff
// until GiveUpAfter, so a receiver that is down for a while gets every event
// afterwards, in order per chat, at least once. The body's "id" is the
// outbox item's id: stable across retries, for receivers to de-duplicate.
//
// Every post is signed: X-Onduty-Signature: sha256=HEX, the HMAC-SHA256 of
// the raw body under the webhook's secret.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// Config is one webhook.
type Config struct {
	// URL receives the POSTs (http or https).
	URL string
	// Secret signs every body (HMAC-SHA256).
	Secret string
	// Events are the events posted; empty means all of them.
	Events []bridge.HookEvent
	// Properties limits the webhook to these properties; empty means all.
	Properties []presence.PropertyID
	// Client sends the posts. Nil means a client with a 10s timeout.
	Client *http.Client
}

// Webhook is the outbox target of one webhook.
type Webhook struct {
	name   string
	url    string
	label  string // URL without credentials and query, for logs
	secret []byte
	events map[bridge.HookEvent]bool
	props  map[presence.PropertyID]bool
	client *http.Client
	log    *slog.Logger
}

var (
	_ bridge.Adapter    = (*Webhook)(nil)
	_ bridge.Subscriber = (*Webhook)(nil)
)

// Name is the outbox target's name for a webhook URL: "webhook-" and the
// first 8 hex digits of the URL's SHA-256, so that it survives reordering
// the config (queued events follow their URL).
func Name(u string) string {
	h := sha256.Sum256([]byte(u))
	return "webhook-" + hex.EncodeToString(h[:4])
}

// New checks the configuration and returns the webhook.
func New(cfg Config, log *slog.Logger) (*Webhook, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("webhook: url: want http(s)://host/path")
	}
	if cfg.Secret == "" {
		return nil, errors.New("webhook: secret is required")
	}
	w := &Webhook{
		name: Name(cfg.URL), url: cfg.URL, secret: []byte(cfg.Secret),
		label:  u.Scheme + "://" + u.Host + u.Path,
		events: map[bridge.HookEvent]bool{}, props: map[presence.PropertyID]bool{},
		client: cfg.Client,
	}
	for _, e := range cfg.Events {
		if !e.IsValid() {
			return nil, fmt.Errorf("webhook: unknown event %q", e)
		}
		w.events[e] = true
	}
	if len(w.events) == 0 {
		for _, e := range bridge.HookEvents {
			w.events[e] = true
		}
	}
	for _, p := range cfg.Properties {
		w.props[p] = true
	}
	if w.client == nil {
		w.client = &http.Client{Timeout: 10 * time.Second}
	}
	w.log = log.With("adapter", w.name, "url", w.label)
	for _, r := range []string{"ok", "error"} {
		metrics.Webhooks.WithLabelValues(w.name, r)
	}
	return w, nil
}

// Name is the outbox target's name (see Name).
func (w *Webhook) Name() string { return w.name }

// Reaches is false: a webhook reaches no agent.
func (w *Webhook) Reaches(presence.AgentID) bool { return false }

// Shared is false: there is no shared place.
func (w *Webhook) Shared(presence.PropertyID) bool { return false }

// Wants reports whether the webhook takes event e of property p.
func (w *Webhook) Wants(e bridge.HookEvent, p presence.PropertyID) bool {
	return w.events[e] && (len(w.props) == 0 || w.props[p])
}

// Run has nothing to receive; it waits for ctx.
func (w *Webhook) Run(ctx context.Context, _ bridge.Host) error {
	<-ctx.Done()
	return nil
}

// Payload is the JSON body of a post.
type Payload struct {
	ID       string              `json:"id"`
	Event    bridge.HookEvent    `json:"event"`
	At       string              `json:"at"`
	Property presence.PropertyID `json:"property"`
	Chat     bridge.ChatID       `json:"chat"`
	Message  *bridge.Message     `json:"message,omitempty"`
	Rating   *bridge.Rating      `json:"rating,omitempty"`
}

// Body is the JSON a delivery is posted as.
func Body(d bridge.Delivery) ([]byte, error) {
	if d.Kind != bridge.KindHook || d.Hook == nil {
		return nil, fmt.Errorf("webhook: delivery %s of kind %s is not an event", d.ID, d.Kind)
	}
	p := Payload{
		ID: d.ID, Event: d.Hook.Event, At: d.Hook.At.UTC().Format(time.RFC3339Nano),
		Property: d.Chat.Property, Chat: d.Chat.ID, Message: d.Message, Rating: d.Hook.Rating,
	}
	return json.Marshal(p)
}

// Sign is the X-Onduty-Signature value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Deliver posts one event. A 2xx answer is success; anything else (a
// connection error, a timeout, any other status) is returned for the outbox
// to retry, honouring Retry-After on 429 and 503.
func (w *Webhook) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	return nil, w.deliverOne(ctx, d)
}

func (w *Webhook) deliverOne(ctx context.Context, d bridge.Delivery) error {
	body, err := Body(d)
	if err != nil {
		return &bridge.PermanentError{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return &bridge.PermanentError{Err: fmt.Errorf("webhook: request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "onduty-webhook")
	req.Header.Set("X-Onduty-Event", string(d.Hook.Event))
	req.Header.Set("X-Onduty-Signature", Sign(w.secret, body))
	resp, err := w.client.Do(req)
	if err != nil {
		metrics.Webhooks.WithLabelValues(w.name, "error").Inc()
		return fmt.Errorf("webhook %s: post: %w", w.label, redactURL(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		metrics.Webhooks.WithLabelValues(w.name, "ok").Inc()
		w.log.Debug("webhook posted", "event", d.Hook.Event, "chat_id", d.Chat.ID, "id", d.ID)
		return nil
	}
	metrics.Webhooks.WithLabelValues(w.name, "error").Inc()
	err = fmt.Errorf("webhook %s: answered %s", w.label, resp.Status)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return &bridge.RetryAfterError{After: min(time.Duration(s)*time.Second, 10*time.Minute), Err: err}
		}
	}
	return err
}

// redactURL drops the URL (which may hold a token in its query) from a
// client error, keeping what went wrong.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
