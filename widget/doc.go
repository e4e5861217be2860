// Package widget is onduty's HTTP surface on Fiber: the visitor API of SPEC §6
// (status, status stream, chats, messages, transcript, visitor events, close,
// offline messages), the admin API, health and metrics endpoints, and the
// embeddable widget.js with its demo page.
//
// Beyond SPEC §6, files travel both ways:
//
//	POST /v1/chats/{c}/files       Bearer VISITOR_TOKEN; multipart "file" (≤ 5 MiB) and optional
//	                               caption "text" → 202 {"id","attachment"}; the visitor's message
//	GET  /v1/chats/{c}/files/{key} the file of a message (token as Bearer or ?token=), served as a
//	                               download with a sandboxing CSP
//
// widget.js shows a message's file as a link (and a picture inline) and
// sends one with its paper-clip button.
//
// The status endpoint is the hot path: it answers from the presence watcher's
// prebuilt snapshot (body and ETag) and never touches Redis. Chat endpoints go
// through the bridge; Redis failures there become 503, never 2xx.
//
// Everything the server uses of the bridge is one interface, Bridge, handed
// to New (*bridge.Bridge implements it): the server never probes the core
// for what it can do.
//
// # Layout
//
// Server (server.go) only wires routes to its parts and runs the listener;
// every route goes through handle (handle.go: body limits, errors, panics,
// request counters). The parts:
//
//	Bridge       bridge.go                                     what the server uses of the core (one interface)
//	Config       config.go                                     settings and their defaults
//	visitorAPI   chats.go, status.go, email.go, visitorctx.go  the visitor API; cors.go its origin policies
//	adminAPI     admin.go, board.go, blocks.go                 the admin API and the team board
//	assets       assets.go                                     widget.js, the demo page, the admin page
//	streamer     sse.go, hub.go                                event streams: hijacked connections, events,
//	                                                           heartbeats, the held status streams, shutdown
//	connTracker  conns.go, listener.go                         connections and the caps on them and on streams
//	limiter      ratelimit.go                                  the client IP, rate limits, upload quotas
//	collector    collector.go, metrics.go                      /metrics and the request counters
//
// # Admin surface
//
// With Config.AdminToken set (bearer, compared in constant time; unset, every
// admin route answers 404 and /admin says the admin API is off):
//
//	GET  /admin                               the live team board (admin.html + /admin.js, embedded)
//	GET  /v1/admin/properties                 every property's report, from memory
//	GET  /v1/admin/properties/{p}/presence    the report straight from Redis (SPEC §6)
//	GET  /v1/admin/properties/{p}/chats       pending, active and offline chats (bridge Board)
//	GET  /v1/admin/properties/{p}/events      SSE: "presence" now and at every change,
//	GET  /v1/admin/events                       "chats" when the lists change, "chats_error"
//	PUT  /v1/admin/agents/{a}/status          status and/or condition (SPEC §6)
//	POST /v1/admin/agents/{a}/actions         an agent's command or message, as on a chat app
//
// The chat lists, counts and agent actions come from the bridge (Bridge's
// Board, ChatCounts and Handle). Open boards share one cached read
// of a property's chats per presence change and per refresh (3s). The board
// reads its stream with fetch(), so the token stays in a header, never in a
// URL. /metrics adds gauges computed at scrape time (agents by effective
// status, widget status, chats by state, presence staleness) from a
// collector on the server's own registry.
//
// # Overload
//
// The listener never ends on an accept error (out of file descriptors): it
// backs off and goes on. Connections per TCP peer (Limits.ConnectionsPerIP)
// and event streams per instance and per client IP are capped; over a cap
// the answer is 429 or 503 with Retry-After. Bodies are streamed: a
// Content-Length over the route's limit (16 KiB; uploads 5 MiB + 64 KiB;
// platform callbacks 1 MiB) is refused from the header, and a body is read
// up to its limit only. Uploads are counted against per-chat, per-IP-hour
// and per-property-day quotas before the file is read. The client IP is the
// TCP peer, or behind Config.TrustedProxies the rightmost forwarded entry
// that is not a trusted proxy; per-IP limits count an IPv6 /64 as one IP.
//
// Concurrency: a status stream has no goroutine of its own. Its connection
// is hijacked from fasthttp and kept after the handler returns
// (KeepHijackedConns), and the status hub (hub.go) holds it in its
// property's list: one goroutine per property writes each change of the
// widget status, encoded once, to every held connection with a few writer
// goroutines and a write deadline (a connection that does not take it is
// closed; the client reconnects with Last-Event-ID, its last status's
// ETag), and one ticker writes every stream's heartbeat. Visitor and admin
// streams each run in exactly one goroutine. Streams are told to stop (held
// ones are closed) before the HTTP server shuts down, and Run waits for
// them. Rate limits are counted in Redis (fixed one-minute
// windows per client IP) so they hold across instances.
//
// Redis keys (under Config.Prefix; the only ones this package writes):
//
//	ratelimit:<kind>:{<ip>}:<minute>  string  requests counted (INCR), EX 2m; kind is chats or messages;
//	                                          <ip> is an IPv4 address or an IPv6 /64 ("2001:db8:1:2::")
//	quota:uploads_per_chat:{<chat>}            string  files of a chat (INCR), EX 31 days
//	quota:uploads_per_ip:{<ip>}:<hour>         string  files from an IP in an hour, EX 2h
//	quota:uploads_per_property:{<p>}:<day>     string  files to a property in a UTC day, EX 48h
package widget
