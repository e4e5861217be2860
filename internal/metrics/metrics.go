// Package metrics holds onduty's Prometheus metrics, registered on one
// registry that /metrics serves. Packages record into these; only the widget
// server exposes them.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry is what /metrics serves.
var Registry = prometheus.NewRegistry()

var (
	// HTTPRequests counts HTTP requests by route and status code.
	HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	// ChatsStarted counts chats started by visitors, per property.
	ChatsStarted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_chats_started_total", Help: "Chats started by visitors.",
	}, []string{"property"})
	// OfflineMessages counts offline messages (form, and queue timeouts), per property and source.
	OfflineMessages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_offline_messages_total", Help: "Offline messages by source (form, queue_timeout).",
	}, []string{"property", "source"})
	// MessagesRelayed counts messages relayed, by direction (to_agents, to_visitor).
	MessagesRelayed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_messages_relayed_total", Help: "Messages relayed, by direction.",
	}, []string{"direction"})
	// OpenStreams is the number of open SSE streams, by kind (status, visitor).
	OpenStreams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "onduty_open_streams", Help: "Open server-sent event streams, by kind.",
	}, []string{"kind"})
	// Deliveries counts outbox deliveries per platform and result: ok,
	// retried, failed, uncertain (a retried call that may have reached the
	// platform), merged (visitor messages shown as part of another delivery).
	Deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_deliveries_total", Help: "Outbox deliveries by platform and result (ok, retried, failed, uncertain, merged).",
	}, []string{"platform", "result"})
	// FirstResponse is the time from a chat's start to its first agent reply.
	FirstResponse = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "onduty_first_response_seconds", Help: "Time from chat start to the first agent reply.",
		Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1800, 3600},
	}, []string{"property"})
	// AdapterUp is 1 while a platform adapter runs and 0 once it stopped on
	// an error (a revoked token, say); the rest of onduty keeps serving.
	AdapterUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "onduty_adapter_up", Help: "1 while the platform adapter runs, 0 after it stopped on an error.",
	}, []string{"adapter"})
	// AcceptErrors counts failed accepts of the HTTP listener (out of file
	// descriptors, say); the server backs off and goes on.
	AcceptErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onduty_accept_errors_total", Help: "Failed accepts of the HTTP listener (e.g. out of file descriptors); the server backs off and retries.",
	})
	// ConnectionsRefused counts connections answered 429 because their IP
	// already held limits.connections_per_ip.
	ConnectionsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onduty_connections_refused_total", Help: "Connections refused because their IP held limits.connections_per_ip.",
	})
	// Refused counts requests refused by a cap or quota, by which one
	// (streams, streams_per_ip, uploads_per_chat, uploads_per_ip, uploads_per_property).
	Refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_refused_total", Help: "Requests refused by a cap or quota, by limit.",
	}, []string{"limit"})
	// Emails counts emails to visitors by result: sent, retried (connection
	// errors and 4xx, tried again later), failed (5xx or given up; recorded on the chat).
	Emails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_emails_total", Help: "Emails to visitors by result (sent, retried, failed).",
	}, []string{"result"})
	// Webhooks counts webhook posts per webhook (its name, "webhook-" and a
	// hash of its URL) and result: ok (2xx) or error (anything else; the
	// outbox tries again with backoff, and a post it gives up on counts as
	// onduty_deliveries_total{platform="webhook-…",result="failed"}).
	Webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_webhook_deliveries_total", Help: "Webhook posts by webhook and result (ok, error).",
	}, []string{"webhook", "result"})
	// ChatRatings are visitors' ratings (1-5) of closed chats, per property;
	// a replaced rating counts once, with its first score.
	ChatRatings = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "onduty_chat_ratings", Help: "Visitors' ratings (1-5) of closed chats.",
		Buckets: []float64{1, 2, 3, 4, 5},
	}, []string{"property"})
	// StreamsDropped counts held status streams closed because a write
	// failed or did not finish within its deadline (a client that stopped
	// reading, or is gone); the widget reconnects.
	StreamsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onduty_streams_dropped_total", Help: "Status streams closed because a write failed or timed out (slow or gone client).",
	})
	// StatusFanOut is how long one change of a property's widget status
	// took to be written to all of its held status streams.
	StatusFanOut = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "onduty_status_fanout_seconds", Help: "Time to write one widget status change to every held status stream of the property.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
	})
	// MissedChats counts chats nobody accepted within queue_timeout.
	MissedChats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_missed_chats_total", Help: "Chats nobody accepted within queue_timeout.",
	}, []string{"property"})
	// BlockedRequests counts what blocked visitors were refused (403
	// blocked), per property and kind: chat, offline_message, message.
	BlockedRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onduty_blocked_requests_total", Help: "New chats, offline messages and messages of blocked visitors refused, per property and kind.",
	}, []string{"property", "kind"})
)

// Gauges computed at scrape time by the widget server's collector (from the
// presence watcher's memory and, for chats, one cached Redis pipeline).
// Their descriptions live here so every metric name is in one file.
var (
	// AgentsDesc: agents by effective status (online, away, invisible, offline), per property.
	AgentsDesc = prometheus.NewDesc("onduty_agents",
		"Agents by effective status, per property.", []string{"property", "status"}, nil)
	// WidgetStatusDesc: 1 for the property's current widget status (online, away, offline), 0 for the others.
	WidgetStatusDesc = prometheus.NewDesc("onduty_widget_status",
		"Widget status of a property: 1 for the current status, 0 for the others.", []string{"property", "status"}, nil)
	// ChatsDesc: open chats by state (pending, active, offline = unanswered offline messages), per property.
	ChatsDesc = prometheus.NewDesc("onduty_chats",
		"Open chats by state (pending, active, offline), per property.", []string{"property", "state"}, nil)
	// PresenceStaleDesc: 1 while the presence watcher has lost Redis and serves the last known state.
	PresenceStaleDesc = prometheus.NewDesc("onduty_presence_stale",
		"1 while the presence watcher has lost Redis and serves the last known state.", nil, nil)
)

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		HTTPRequests, ChatsStarted, OfflineMessages, MessagesRelayed, OpenStreams, Deliveries, FirstResponse, MissedChats, AdapterUp,
		AcceptErrors, ConnectionsRefused, Refused, StreamsDropped, StatusFanOut,
		Emails, ChatRatings, BlockedRequests, Webhooks,
	)
	// Every result from the start, so that a dashboard sees zeros, not gaps.
	for _, r := range []string{"sent", "retried", "failed"} {
		Emails.WithLabelValues(r)
	}
}
