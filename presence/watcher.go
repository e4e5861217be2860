package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/backoff"
)

// Snapshot is a property's widget status as last computed, ready to serve.
type Snapshot struct {
	Report Report
	// Body is the JSON of Report.WidgetStatus; ETag its quoted hash.
	Body []byte
	ETag string
	// Seq grows with every snapshot of any property; a stream uses it to tell
	// whether it has sent the latest.
	Seq uint64
}

// Watcher keeps every agent's state in memory, fed by the presence channel,
// re-synced from Redis on (re)subscribe and every Resync, and recomputes each
// property's widget status every Tick, so idle agents go away and schedules
// close without any event. Reads never touch Redis and never block on it.
type Watcher struct {
	store  *Store
	log    *slog.Logger
	Resync time.Duration // zero means 30s
	Tick   time.Duration // zero means 1s

	mu     sync.Mutex
	states map[AgentID]State
	// applies counts the states Apply stored; appliedAt is the count at each
	// agent's latest. Load keeps what was applied while it read Redis.
	applies   uint64
	appliedAt map[AgentID]uint64
	waitCh    map[PropertyID]chan struct{} // any change of the report
	statusCh  map[PropertyID]chan struct{} // changes of the widget status only

	snaps map[PropertyID]*atomic.Pointer[Snapshot] // fixed keys: read without a lock
	seq   atomic.Uint64
	stale atomic.Bool
}

// NewWatcher returns a watcher; until its first load every agent counts as
// never seen and the watcher says it is stale.
func NewWatcher(store *Store, log *slog.Logger) *Watcher {
	w := &Watcher{
		store:     store,
		log:       log.With("component", "presence_watcher"),
		states:    make(map[AgentID]State),
		appliedAt: make(map[AgentID]uint64),
		waitCh:    make(map[PropertyID]chan struct{}),
		statusCh:  make(map[PropertyID]chan struct{}),
		snaps:     make(map[PropertyID]*atomic.Pointer[Snapshot]),
	}
	for _, p := range store.dir.Properties() {
		w.snaps[p] = new(atomic.Pointer[Snapshot])
		w.waitCh[p] = make(chan struct{})
		w.statusCh[p] = make(chan struct{})
	}
	w.stale.Store(true)
	w.recompute()
	return w
}

// Snapshot returns the current snapshot of a property; false if unknown.
func (w *Watcher) Snapshot(p PropertyID) (*Snapshot, bool) {
	ptr, ok := w.snaps[p]
	if !ok {
		return nil, false
	}
	return ptr.Load(), true
}

// Stale reports whether the watcher has lost Redis and serves the last known state.
func (w *Watcher) Stale() bool { return w.stale.Load() }

// Changed returns a channel closed at the next change of the property's
// snapshot (widget status, or any agent's effective or stored state,
// including every activity): what the admin board follows.
func (w *Watcher) Changed(p PropertyID) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.waitCh[p]
	if !ok {
		return nil
	}
	return ch
}

// StatusChanged returns a channel closed at the next change of the
// property's widget status (status, mode or greeting): what open widgets
// follow. Agents' activity alone does not close it.
func (w *Watcher) StatusChanged(p PropertyID) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.statusCh[p]
	if !ok {
		return nil
	}
	return ch
}

// State is the last known state of an agent.
func (w *Watcher) State(id AgentID) State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.states[id]
}

// Effective is the last known effective status of an agent.
func (w *Watcher) Effective(id AgentID) Status {
	a, ok := w.store.dir.Agent(id)
	if !ok {
		return Offline
	}
	return Effective(a, w.State(id), w.store.now())
}

// Load replaces every state with what Redis holds, except a newer state
// applied while it read (the bridge applies its own changes at once). An
// older version than the one known is taken otherwise: Redis lost its data,
// and only Load brings the watcher back in line.
func (w *Watcher) Load(ctx context.Context) error {
	w.mu.Lock()
	since := w.applies
	w.mu.Unlock()
	states, err := w.store.GetMany(ctx, w.store.dir.Agents())
	if err != nil {
		return err
	}
	w.mu.Lock()
	for id, cur := range w.states {
		if w.appliedAt[id] > since && cur.Version > states[id].Version {
			states[id] = cur
		}
	}
	w.states = states
	w.mu.Unlock()
	w.recompute()
	return nil
}

// Apply takes an announced state unless a newer one is known.
func (w *Watcher) Apply(id AgentID, st State) {
	a, ok := w.store.dir.Agent(id)
	if !ok {
		return
	}
	w.mu.Lock()
	if cur, ok := w.states[id]; ok && cur.Version >= st.Version {
		w.mu.Unlock()
		return
	}
	w.states[id] = st
	w.applies++
	w.appliedAt[id] = w.applies
	w.mu.Unlock()
	// Only the agent's properties can change (every agent message leads
	// here); the others follow their own changes and the tick.
	if len(a.Properties) > 0 {
		w.recompute(a.Properties...)
	}
}

// recompute rebuilds the snapshot of the given properties (none: every
// property) and wakes waiters where it changed.
func (w *Watcher) recompute(props ...PropertyID) {
	if len(props) == 0 {
		props = w.store.dir.Properties()
	}
	now := w.store.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range props {
		prop, ok := w.store.dir.Property(p)
		if !ok {
			continue
		}
		ids := w.store.dir.AgentsOf(p)
		views := make([]AgentView, len(ids))
		for i, id := range ids {
			a, _ := w.store.dir.Agent(id)
			views[i] = AgentView{Agent: a, State: w.states[id]}
		}
		r := Widget(prop, views, now)
		old := w.snaps[p].Load()
		if old != nil && sameReport(old.Report, r) {
			continue
		}
		body, err := json.Marshal(r.WidgetStatus)
		if err != nil {
			w.log.Error("encode widget status", "property", p, "err", err)
			continue
		}
		h := fnv.New64a()
		h.Write(body)
		w.snaps[p].Store(&Snapshot{Report: r, Body: body, ETag: fmt.Sprintf(`"%x"`, h.Sum64()), Seq: w.seq.Add(1)})
		close(w.waitCh[p])
		w.waitCh[p] = make(chan struct{})
		if old == nil || old.Report.WidgetStatus != r.WidgetStatus {
			close(w.statusCh[p])
			w.statusCh[p] = make(chan struct{})
		}
	}
}

// sameReport ignores the wording of reasons (idle times change every second).
func sameReport(a, b Report) bool {
	if a.WidgetStatus != b.WidgetStatus || a.InSchedule != b.InSchedule || a.Closed != b.Closed || len(a.Agents) != len(b.Agents) {
		return false
	}
	for i := range a.Agents {
		x, y := a.Agents[i], b.Agents[i]
		if x.ID != y.ID || x.Status != y.Status || x.Condition != y.Condition || x.Effective != y.Effective {
			return false
		}
		if (x.LastActivity == nil) != (y.LastActivity == nil) ||
			x.LastActivity != nil && !x.LastActivity.Equal(*y.LastActivity) {
			return false
		}
	}
	return true
}

// feedBackoff paces reading a lost presence channel again: 100ms doubling to 5s.
var feedBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}

// Run follows the presence channel until ctx is done. It never returns an
// error for Redis faults: it marks itself stale, keeps serving, and retries.
func (w *Watcher) Run(ctx context.Context) error {
	resync, tick := w.Resync, w.Tick
	if resync <= 0 {
		resync = 30 * time.Second
	}
	if tick <= 0 {
		tick = time.Second
	}
	ps := w.store.rdb.Subscribe(ctx, w.store.keys.Channel())
	defer ps.Close()

	msgs := make(chan any, 256)
	go func() {
		defer close(msgs)
		var wait time.Duration
		for {
			m, err := ps.Receive(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !w.stale.Swap(true) {
					w.log.Warn("presence feed lost; serving last known status", "err", err)
				}
				wait = feedBackoff.Next(wait)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				continue
			}
			wait = 0
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	lastLoad := time.Now()
	for {
		select {
		case <-ctx.Done():
			// A blocked Receive ignores ctx; closing the connection ends it.
			ps.Close()
			for range msgs {
			}
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Subscription:
				// (Re)subscribed: whatever was announced while away is in Redis.
				w.resync(ctx)
				lastLoad = time.Now()
			case *redis.Message:
				id, st, err := ParseAnnouncement(m.Payload)
				if err != nil {
					w.log.Warn("bad presence announcement", "err", err)
					continue
				}
				w.Apply(id, st)
			}
		case <-ticker.C:
			if time.Since(lastLoad) >= resync {
				w.resync(ctx)
				lastLoad = time.Now()
			} else {
				w.recompute()
			}
		}
	}
}

func (w *Watcher) resync(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.Load(lctx); err != nil {
		if !w.stale.Swap(true) {
			w.log.Warn("presence resync failed; serving last known status", "err", err)
		}
		return
	}
	if w.stale.Swap(false) {
		w.log.Info("presence feed in sync")
	}
}
