// Package loadtest is `onduty loadtest`: a load generator that measures
// the figures docs/PERFORMANCE.md reports and prints a table (Report.WriteTable) and JSON
// (Report.WriteJSON).
//
// Against a running deployment (Config.Target) it needs only HTTP: the
// widget status load, and status propagation when given an admin token and
// an agent to toggle. By default it starts, on 127.0.0.1 only:
//
//   - two onduty instances (presence store and watcher, bridge, widget
//     server each, with their own Redis client) on one Redis: the real one
//     at redis://127.0.0.1:6379/15 if it answers, else an embedded one; all
//     keys under a unique prefix, deleted at the end;
//   - a bare Fiber server answering the status route with constant JSON;
//   - the fake Telegram Bot API of internal/tgfake, which the real telegram adapter
//     talks to: it notes when each sendMessage arrives and serves agent
//     replies to getUpdates;
//   - a probe adapter, an in-process bridge.Adapter that notes when the
//     bridge delivers, to time onduty without Telegram's pacing.
//
// Phases, in order: status (closed-loop load on keep-alive connections,
// raw sockets parsed with fasthttp, latencies in per-goroutine log-linear
// histograms; onduty and bare Fiber alternate at each connection count),
// propagation (status streams on both instances; the presence store changes
// the only agent of a property between online and offline), relay (chats
// accepted by invisible agents so no offer is sent; visitor messages posted
// at a fixed rate, each tagged with a marker that the fake Telegram or the
// probe reports back; agent replies handed to the bridge or queued on the
// fake Telegram, timed to the visitor's event stream) and capacity (a fresh
// deployment; visitor streams held open, their client ends in a child
// process started with HolderEnv, resident memory read from
// /proc/self/status after a collection).
//
// Redis round trips are counted with a go-redis hook on each instance's
// client and attributed by context: the load test marks the contexts of the
// bridges' and watchers' Run and of its own calls, so an unmarked context is
// a widget request handler.
//
// Every loop is bounded in count and time; Run stops everything it started
// before returning.
package loadtest
