// Package presence decides whether a support agent is online, away,
// invisible or offline, and what a property's chat widget shows (SPEC §2–§3).
//
// The rules are pure functions of configuration, stored state and the time:
// Effective and Explain for one agent, Widget for a property. Store keeps the
// state in Redis and announces every change; Watcher keeps a copy in memory in
// every instance, so the widget status is served without a Redis round trip.
//
// # Keys
//
// Keys.Prefix (default "onduty:") starts every key. Keys are per agent, each
// with its own hash tag, and every script touches one key, so the same layout
// works on a Redis Cluster.
//
//	key                         type     content                                      expiry  written by            read by
//	{prefix}agent:{ID}          hash     status, condition, last_activity (unix ms),  none    Store (updateScript)  Store.GetMany, Watcher.Load
//	                                     version (grows by one per change)
//	{prefix}presence            channel  "ID\tversion\tstatus\tcondition\tlast"        -       updateScript          Watcher.Run (every instance)
//
// A missing status means the agent never chose one: it counts as the agent's
// InitialStatus (offline, or online for the demo agent). A missing condition
// means the configured default.
//
// # Transitions
//
// Chosen status (stored):
//
//	from          event                                   to
//	(none)        first contact (Touch), /start           online
//	any           /online /away /invisible /offline,      that status (needs change_online_status,
//	              admin PUT                               or change_visibility for invisible)
//	any           /alwayson on|off, admin PUT condition   condition always|activity (needs change_always_online)
//
// Effective status (derived, never stored) for chosen status S:
//
//	condition  silence since last activity               effective
//	any        -                                        offline if S = offline
//	always     any                                      S
//	activity   < idle_away_after                         S
//	activity   ≥ idle_away_after, < idle_offline_after   away if S = online, else S
//	activity   ≥ idle_offline_after, or never active     offline
//
// The bot asks "Still on duty?" at PromptAt, shortly before an activity agent
// would count as offline; any activity restores S.
//
// # Schedule
//
// A property's Schedule holds weekly hours, closed days and special days in
// its time zone (wall clock, so DST moves nothing). A closed day is closed
// from its midnight to the next, whatever the weekly hours and a special day
// say; a special day's hours replace its weekday's. Nothing is precomputed:
// Widget asks Schedule.Open at the time it is given, and the Watcher
// recomputes every property each Tick (1s), so the widget goes offline at a
// closed day's midnight, and back, within a second and without any request
// or activity. Report.Closed names the closed day, and Reason says
// "closed: holiday DATE (ZONE)".
//
// # Concurrency
//
// Store and Watcher are safe for concurrent use. Watcher.Snapshot is lock-free.
package presence
