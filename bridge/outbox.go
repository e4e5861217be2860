package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/backoff"
	"github.com/onduty/onduty/internal/lease"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

type outItem struct {
	adapter string
	d       Delivery
}

// batch collects what a state change causes (deliveries, visitor events,
// timer changes, extra writes) so that it reaches Redis in one round trip.
type batch struct {
	items  []outItem
	events []VisitorEvent
	timers map[string]time.Time // member → due; zero means cancel
	ops    []func(context.Context, redis.Pipeliner)
	// wakeAt is the earliest due time of a timer an op sets (see wake).
	wakeAt time.Time
}

// wake notes that an op of the batch sets a timer due at: the timer loops
// are woken for it as for one set with timer.
func (o *batch) wake(at time.Time) {
	if o.wakeAt.IsZero() || at.Before(o.wakeAt) {
		o.wakeAt = at
	}
}

func (o *batch) deliver(adapter string, d Delivery) { o.items = append(o.items, outItem{adapter, d}) }
func (o *batch) event(e VisitorEvent)               { o.events = append(o.events, e) }
func (o *batch) op(f func(context.Context, redis.Pipeliner)) {
	o.ops = append(o.ops, f)
}
func (o *batch) timer(member string, at time.Time) {
	if o.timers == nil {
		o.timers = make(map[string]time.Time)
	}
	o.timers[member] = at
}
func (o *batch) cancelTimer(member string) { o.timer(member, time.Time{}) }

func (o *batch) empty() bool {
	return len(o.items) == 0 && len(o.events) == 0 && len(o.timers) == 0 && len(o.ops) == 0
}

// flush writes a batch in one pipeline and wakes the local outbox workers.
func (b *Bridge) flush(ctx context.Context, o *batch) error {
	if o.empty() {
		return nil
	}
	pipe := b.rdb.Pipeline()
	marked := queueDoneMark(ctx, pipe)
	for _, f := range o.ops {
		f(ctx, pipe)
	}
	type kick struct {
		adapter string
		shard   int
	}
	var kicks []kick
	for _, it := range o.items {
		it.d.ID = randomString(9)
		body, err := json.Marshal(it.d)
		if err != nil {
			return fmt.Errorf("bridge: encode delivery: %w", err)
		}
		by := string(it.d.Chat.ID)
		if by == "" {
			by = "agent:" + string(it.d.Agent)
		}
		shard := Shard(by, b.cfg.Shards)
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.keys.Outbox(it.adapter, shard), Values: []string{"d", string(body)}})
		kicks = append(kicks, kick{it.adapter, shard})
	}
	// A timer due after the next safety poll of every timer loop needs no
	// wake-up: each loop looks again within PollEvery, before it is due.
	// So the idle timer a chat's every message pushes back wakes nobody.
	soon := b.now().Add(b.cfg.PollEvery)
	newTimer := !o.wakeAt.IsZero() && o.wakeAt.Before(soon)
	for _, at := range o.timers {
		newTimer = newTimer || !at.IsZero() && at.Before(soon)
	}
	if len(kicks) > 0 || newTimer {
		// The shard may be worked by another instance, and every instance's
		// timer loop sleeps until the earliest timer it knows of: wake them
		// in the same round trip rather than leave the work to a safety poll.
		var msg strings.Builder
		for _, k := range kicks {
			if msg.Len() > 0 {
				msg.WriteByte(' ')
			}
			fmt.Fprintf(&msg, "%s|%d", k.adapter, k.shard)
		}
		if newTimer {
			if msg.Len() > 0 {
				msg.WriteByte(' ')
			}
			msg.WriteString(kickTimers)
		}
		pipe.Publish(ctx, b.keys.KickChannel(), msg.String())
	}
	for _, e := range o.events {
		body, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("bridge: encode visitor event: %w", err)
		}
		pipe.Publish(ctx, b.keys.VisitorChannel(), body)
	}
	for m, at := range o.timers {
		if at.IsZero() {
			pipe.ZRem(ctx, b.keys.Timers(), m)
		} else {
			pipe.ZAdd(ctx, b.keys.Timers(), redis.Z{Score: float64(ms(at)), Member: m})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("bridge: write batch: %w", err)
	}
	marked()
	for _, k := range kicks {
		b.kick(k.adapter, k.shard)
	}
	if newTimer {
		b.kickTimerLoop()
	}
	return nil
}

// participants are the agents who follow a chat: the owner (or, while
// nobody owns it, whoever it was offered to) and its monitors.
func participants(cv *chatView) []presence.AgentID {
	var out []presence.AgentID
	seen := map[presence.AgentID]bool{}
	add := func(a presence.AgentID) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if cv.Owner != "" {
		add(cv.Owner)
	} else {
		for _, a := range cv.offered {
			add(a)
		}
	}
	for _, a := range cv.Monitors {
		add(a)
	}
	return out
}

// audience is who gets one item about a chat. The rule, written only in
// deliverTo: an adapter with a shared place for the chat's property gets it
// once there (if Shared, and unless it came from there); every other
// adapter gets it once for each of Agents it reaches.
type audience struct {
	Shared bool               // the shared places get it
	Agents []presence.AgentID // the agents who get it on the other adapters
	Except presence.AgentID   // one of Agents who gets nothing (who caused it)
	From   string             // the shared place it came from, which has it already
}

// followers is everyone following the chat (see participants) but except,
// who caused the event, and the shared place from, where it happened.
func followers(cv *chatView, except presence.AgentID, from string) audience {
	return audience{Shared: true, Agents: participants(cv), Except: except, From: from}
}

// deliverTo queues d, about the chat cv, for its audience.
func (b *Bridge) deliverTo(o *batch, cv *chatView, d Delivery, to audience) {
	d.Chat = cv.Chat
	for _, a := range b.adapterList() {
		if a.Shared(cv.Property) {
			if to.Shared && a.Name() != to.From {
				o.deliver(a.Name(), d)
			}
			continue
		}
		for _, id := range to.Agents {
			if id != to.Except && a.Reaches(id) {
				one := d
				one.Agent = id
				o.deliver(a.Name(), one)
			}
		}
	}
}

// agentDeliveries queues an item for one agent on every adapter reaching them.
func (b *Bridge) agentDeliveries(o *batch, agent presence.AgentID, d Delivery) {
	d.Agent = agent
	for _, a := range b.adapterList() {
		if a.Reaches(agent) {
			o.deliver(a.Name(), d)
		}
	}
}

// kickTimers in a KickChannel message wakes every instance's timer loop.
const kickTimers = "timers"

// A shard lease names the instance working an outbox shard. It is taken
// when the shard has work and given back when the shard is empty, so an idle
// instance holds none and renews none; while held it is renewed every third
// of Config.LeaseTTL, in the background, also during a Deliver call
// (package lease holds the scripts).

// kick wakes this instance's worker of an outbox shard, if it sleeps.
func (b *Bridge) kick(adapter string, shard int) {
	if ch := b.kicks[adapter]; ch != nil && shard >= 0 && shard < len(ch) {
		select {
		case ch[shard] <- struct{}{}:
		default:
		}
	}
}

// kickAll wakes every outbox worker and the timer loop of this instance: at
// start, and whenever the kick channel was (re)subscribed, since kicks
// published while it was not are lost.
func (b *Bridge) kickAll() {
	for _, a := range b.adapterList() {
		for s := range b.cfg.Shards {
			b.kick(a.Name(), s)
		}
	}
	b.kickTimerLoop()
}

func (b *Bridge) kickTimerLoop() {
	select {
	case b.timerKick <- struct{}{}:
	default:
	}
}

// kickFromChannel wakes the workers a KickChannel message names.
func (b *Bridge) kickFromChannel(payload string) {
	for _, f := range strings.Fields(payload) {
		if f == kickTimers {
			b.kickTimerLoop()
			continue
		}
		adapter, n, ok := strings.Cut(f, "|")
		if shard, err := strconv.Atoi(n); ok && err == nil {
			b.kick(adapter, shard)
		}
	}
}

// shardWorker delivers one adapter's outbox shard. Only the instance holding
// the shard's lease works it, so a chat's deliveries are never made
// concurrently or out of order, whatever the number of instances.
//
// Within the shard each chat (or, for notices, agent) has its own queue, and
// the worker takes the chats in turn: a chat held back by the platform's
// pacing waits without holding up the others. Consecutive visitor messages
// waiting in one chat's queue are merged into one delivery, so a flooding
// chat costs one platform message per turn.
type shardWorker struct {
	b     *Bridge
	a     Adapter
	shard int
	key   string
	lease string
	kick  chan struct{}

	// While the lease is held:
	lastID string                // last stream id read
	queues map[string]*chatQueue // by chat key
	order  []string              // chat keys, oldest first
	// recent is when each chat's last delivery was attempted: a chat that
	// delivered within backlogMemory is not fresh.
	recent map[string]time.Time
	// refs caches the refs hashes of the shard's chats on this adapter:
	// only this worker writes them while it holds the lease.
	refs map[ChatID]*chatRefs
	// progress is what failed attempts made, by delivery id (the shard's
	// progress hash, read when the lease is taken).
	progress map[string][]RemoteRef
}

// chatQueue is one chat's deliveries in a shard, in stream order.
type chatQueue struct {
	key   string
	items []*outEntry
	// notBefore: the chat waits (pacing, or a retry's backoff) until then.
	notBefore time.Time
	// lastPause is the pause after the last failed attempt; zero once one
	// succeeded.
	lastPause time.Duration
}

// outEntry is one stream entry, or several merged visitor messages.
type outEntry struct {
	ids    []string
	bodies []string
	d      Delivery
	queued time.Time
	// tried: attempted at least once, so its merge is settled (a retry
	// must repeat the same item, whose progress the adapter may have kept).
	tried    bool
	attempts int
	// parts are the entries merged into this one, to be tried one by one
	// if the platform refuses the merged item for good.
	parts []*outEntry
}

// byKey is the queue a delivery belongs to: its chat, else its agent.
func byKey(d Delivery) string {
	if d.Chat.ID != "" {
		return string(d.Chat.ID)
	}
	return "agent:" + string(d.Agent)
}

func (b *Bridge) outboxWorker(ctx context.Context, a Adapter, shard int) {
	w := &shardWorker{
		b: b, a: a, shard: shard,
		key: b.keys.Outbox(a.Name(), shard), lease: b.keys.OutboxLease(a.Name(), shard),
		kick: b.kicks[a.Name()][shard],
	}
	// Look once the kick channel is followed, so no kick is missed between.
	select {
	case <-ctx.Done():
		return
	case <-b.feedReady:
	}
	// Safety polls are spread over the interval, so that the shards of an
	// idle instance do not all ask at once.
	safety := time.NewTimer(jitter(b.cfg.PollEvery))
	defer safety.Stop()
	watching := false // the shard has work, but another instance held its lease
	failing := false  // the last lease request failed (logged once)
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			var retry *time.Timer
			var retryC <-chan time.Time
			kick := w.kick
			if watching {
				// Kicks are for the holder, which delivers what they
				// announce; this worker asks for the lease on its timer.
				retry = time.NewTimer(b.leaseRetry())
				retryC, kick = retry.C, nil
			}
			select {
			case <-ctx.Done():
			case <-kick:
			case <-retryC:
			case <-safety.C:
				safety.Reset(jitter(b.cfg.PollEvery))
			}
			if retry != nil {
				retry.Stop()
			}
			if ctx.Err() != nil {
				return
			}
		}
		if !watching {
			// One cheap command when nothing is queued, the usual case
			// for a safety poll, and for a kick another instance took.
			n, err := b.rdb.XLen(ctx, w.key).Result()
			if err == nil && n == 0 {
				continue
			}
		}
		held, err := w.acquire(ctx)
		if err != nil {
			if ctx.Err() == nil && !failing {
				b.log.Warn("outbox lease request failed; asking again every LeaseTTL/3", "adapter", a.Name(), "shard", shard, "err", err)
			}
			watching, failing = true, true
			continue
		}
		watching, failing = !held, false
		if held && !w.work(ctx) {
			// Stopped with work left (the lease lost or unconfirmed):
			// no kick may come for it, so ask again on the timer.
			watching = true
		}
	}
}

// leaseRetry is how often a worker asks for a lease another instance holds
// while its shard has work.
func (b *Bridge) leaseRetry() time.Duration { return max(b.cfg.LeaseTTL/3, 50*time.Millisecond) }

// jitter spreads d over [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)))
}

func (w *shardWorker) acquire(ctx context.Context) (bool, error) {
	return lease.Acquire(ctx, w.b.rdb, w.lease, w.b.instance, w.b.cfg.LeaseTTL)
}

// work drains the shard while this instance holds its lease, keeps it a
// LeaseTTL longer for what may come next if it delivered anything, then
// gives the lease back. A keeper renews the lease meanwhile; when it
// cannot, the work stops (with the lease's own expiry still ahead), so two
// instances never work the shard at once. It reports whether the shard
// was left empty.
func (w *shardWorker) work(ctx context.Context) bool {
	b := w.b
	wctx, stop := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		w.keepLease(wctx, stop)
	}()
	w.lastID, w.queues, w.order = "-", map[string]*chatQueue{}, nil
	if w.recent == nil {
		w.recent = map[string]time.Time{}
	}
	w.refs, w.progress = map[ChatID]*chatRefs{}, nil
	emptied := w.drain(wctx)
	stop()
	<-kept
	w.queues, w.order, w.refs, w.progress = nil, nil, nil, nil
	// Given back at once when drained or stopping, so that another instance
	// (or this one restarted) need not wait for it to expire. Only the
	// holder's own lease is deleted.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := lease.Release(rctx, b.rdb, w.lease, b.instance); err != nil {
		b.log.Warn("outbox lease release failed", "adapter", w.a.Name(), "shard", w.shard, "err", err)
	}
	return emptied
}

// keepLease renews the lease every third of its TTL until ctx ends. If the
// lease is lost, or Redis cannot confirm it for two thirds of the TTL, it
// calls stop.
func (w *shardWorker) keepLease(ctx context.Context, stop func()) {
	b := w.b
	ttl := b.cfg.LeaseTTL
	confirmed := time.Now()
	t := time.NewTicker(max(ttl/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, ttl/3)
		held, err := w.acquire(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && held:
			confirmed = time.Now()
		case err == nil:
			b.log.Warn("outbox lease lost to another instance", "adapter", w.a.Name(), "shard", w.shard)
			stop()
			return
		case time.Since(confirmed) > ttl*2/3:
			b.log.Warn("outbox lease not confirmed; stopping work on the shard", "adapter", w.a.Name(), "shard", w.shard, "err", err)
			stop()
			return
		}
	}
}

// drain delivers until the shard is empty (true) or ctx ends (the lease
// lost, or shutdown).
func (w *shardWorker) drain(ctx context.Context) bool {
	b := w.b
	read, worked := true, false
	for ctx.Err() == nil {
		if read {
			if err := w.read(ctx); err != nil {
				if ctx.Err() != nil {
					return false
				}
				b.log.Warn("outbox read failed", "adapter", w.a.Name(), "err", err)
				if !backoff.Sleep(ctx, b.cfg.RetryMin) {
					return false
				}
				continue
			}
			if len(w.order) == 0 {
				if !worked {
					return true
				}
				// Keep the lease a while for what comes next: under steady
				// traffic a shard is not taken and given back per message.
				worked = false
				t := time.NewTimer(w.b.cfg.LeaseTTL)
				select {
				case <-ctx.Done():
				case <-w.kick:
				case <-t.C:
					t.Stop()
					return true
				}
				t.Stop()
				continue
			}
		}
		// One pass over the chats, each ready one gets one delivery.
		next := time.Time{}
		for _, k := range slices.Clone(w.order) {
			q := w.queues[k]
			if now := time.Now(); q.notBefore.After(now) {
				if next.IsZero() || q.notBefore.Before(next) {
					next = q.notBefore
				}
				continue
			}
			worked = true
			if !w.deliverHead(ctx, q) {
				return false
			}
			if ctx.Err() != nil {
				return false
			}
			if len(q.items) == 0 {
				delete(w.queues, k)
				w.order = slices.DeleteFunc(w.order, func(s string) bool { return s == k })
			} else if !q.notBefore.After(time.Now()) {
				next = time.Now()
			}
		}
		read = len(w.order) == 0
		select {
		case <-w.kick:
			read = true
		default:
		}
		if read || next.IsZero() {
			read = true
			continue
		}
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-w.kick:
				read = true
			case <-t.C:
			}
			t.Stop()
		}
	}
	return false
}

// read queues the entries added since the last read (and, the first
// time under a lease, what failed attempts made).
func (w *shardWorker) read(ctx context.Context) error {
	b := w.b
	if w.progress == nil {
		m, err := b.rdb.HGetAll(ctx, b.keys.Progress(w.a.Name(), w.shard)).Result()
		if err != nil {
			return err
		}
		w.progress = make(map[string][]RemoteRef, len(m))
		for id, v := range m {
			var refs []RemoteRef
			if json.Unmarshal([]byte(v), &refs) == nil {
				w.progress[id] = refs
			}
		}
	}
	start := w.lastID
	if start != "-" {
		start = "(" + start
	}
	for {
		xs, err := b.rdb.XRangeN(ctx, w.key, start, "+", 256).Result()
		if err != nil {
			return err
		}
		for _, x := range xs {
			w.lastID = x.ID
			body, _ := x.Values["d"].(string)
			var d Delivery
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				b.deadLetter(ctx, w.a.Name(), body, err)
				w.remove(ctx, x.ID)
				continue
			}
			k := byKey(d)
			q := w.queues[k]
			if q == nil {
				q = &chatQueue{key: k}
				w.queues[k] = q
				w.order = append(w.order, k)
			}
			q.items = append(q.items, &outEntry{ids: []string{x.ID}, bodies: []string{body}, d: d, queued: streamTime(x.ID)})
		}
		if len(xs) < 256 {
			return nil
		}
		start = "(" + w.lastID
	}
}

// mergeable: a visitor's plain message, which may be shown together with
// the next one of the same chat.
func mergeable(e *outEntry) bool {
	d := e.d
	return !e.tried && d.Kind == KindMessage && d.Message != nil && d.Message.From == FromVisitor &&
		d.Message.Attachment == nil && !d.Message.Note
}

// maxMerged bounds the messages merged into one delivery.
const maxMerged = 50

// head merges the visitor messages waiting at the front of q into one
// item (text within MaxTextRunes), and returns it.
func (q *chatQueue) head() *outEntry {
	h := q.items[0]
	if !mergeable(h) {
		return h
	}
	runes := utf8.RuneCountInString(h.d.Message.Text)
	n := 1
	for n < len(q.items) && n < maxMerged && mergeable(q.items[n]) && q.items[n].d.Agent == h.d.Agent {
		r := utf8.RuneCountInString(q.items[n].d.Message.Text)
		if runes+1+r > MaxTextRunes {
			break
		}
		runes += 1 + r
		n++
	}
	if n == 1 {
		return h
	}
	m := *h.d.Message
	texts := make([]string, n)
	merged := &outEntry{d: h.d, queued: h.queued, parts: slices.Clone(q.items[:n])}
	for i, e := range q.items[:n] {
		texts[i] = e.d.Message.Text
		merged.ids = append(merged.ids, e.ids...)
		merged.bodies = append(merged.bodies, e.bodies...)
	}
	m.Text = strings.Join(texts, "\n")
	merged.d.Message = &m
	// A new id: the adapter's progress records of the first item alone
	// must not apply to the merged one.
	merged.d.ID = h.d.ID + "+" + strconv.Itoa(n)
	q.items = append([]*outEntry{merged}, q.items[n:]...)
	return merged
}

// backlogged: the chat has more queued behind this item, or had a delivery
// attempted lately (not counting waits for its pacing). Such items let fresh chats go first, so that one chat's
// backlog never delays another chat's first message by more than a pacing
// interval.
func (w *shardWorker) backlogged(q *chatQueue, e *outEntry, now time.Time) bool {
	last, ok := w.recent[q.key]
	return len(e.ids) > 1 || len(q.items) > 1 || ok && now.Sub(last) < backlogMemory
}

// backlogMemory is how long after a delivery attempt a chat is not fresh.
const backlogMemory = 10 * time.Second

// attempted notes a delivery attempt of the chat that was not held back by
// pacing (see backlogged).
func (w *shardWorker) attempted(key string, now time.Time) {
	if len(w.recent) > 10000 {
		for k, t := range w.recent {
			if now.Sub(t) >= backlogMemory {
				delete(w.recent, k)
			}
		}
	}
	w.recent[key] = now
}

// deliverHead makes one attempt at the chat's first item. It returns false
// when the worker must stop.
func (w *shardWorker) deliverHead(ctx context.Context, q *chatQueue) bool {
	b, name := w.b, w.a.Name()
	e := q.head()
	e.tried = true
	e.attempts++
	now := time.Now()
	d := e.d
	d.Backlog = w.backlogged(q, e, now)
	var cr *chatRefs
	if d.Chat.ID != "" {
		var err error
		if cr, err = w.chatRefs(ctx, d.Chat.ID); err != nil {
			if ctx.Err() != nil {
				return false
			}
			b.log.Warn("chat refs read failed; will retry", "adapter", name, "chat_id", d.Chat.ID, "err", err)
			e.attempts--
			q.lastPause = b.retryBackoff().Next(q.lastPause)
			q.notBefore = now.Add(q.lastPause)
			return true
		}
		d.Thread, d.Offers = cr.thread(d.Agent), cr.offersOf(d.Agent)
	}
	d.Done = w.progress[d.ID]
	made, err := w.a.Deliver(withCallTimeout(ctx, b.cfg.DeliverTimeout), d)
	var ra *RetryAfterError
	paced := errors.As(err, &ra) && errors.Is(err, ErrPaced)
	if !paced {
		// A chat only held back by pacing stays fresh: its first message
		// must not lose its place for having waited.
		w.attempted(q.key, now)
	}
	if err == nil {
		metrics.Deliveries.WithLabelValues(name, "ok").Inc()
		if len(e.ids) > 1 {
			metrics.Deliveries.WithLabelValues(name, "merged").Add(float64(len(e.ids) - 1))
		}
		q.items = q.items[1:]
		q.lastPause = 0
		return w.finish(ctx, d, cr, made, e.ids)
	}
	if len(made) > 0 {
		// Made part of it: keep that, so replies to it reach the chat
		// and the next attempt continues after it.
		w.keepProgress(ctx, d, cr, made)
	}
	if ctx.Err() != nil {
		return false
	}
	if paced {
		// Held back before anything was sent: not a failure.
		q.notBefore = now.Add(max(ra.After, time.Millisecond))
		e.attempts--
		return true
	}
	var perm *PermanentError
	if errors.As(err, &perm) && len(e.parts) > 0 {
		// One of the merged messages may be what the platform refuses:
		// try them one by one, so the others are not lost with it.
		for _, p := range e.parts {
			p.tried = true
		}
		q.items = append(slices.Clone(e.parts), q.items[1:]...)
		return true
	}
	if errors.As(err, &perm) {
		metrics.Deliveries.WithLabelValues(name, "failed").Inc()
		b.log.Error("delivery failed for good", "adapter", name, "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "agent_id", d.Agent, "err", err)
		b.deliveryFailed(ctx, name, d, err)
		return w.giveUp(ctx, q, e, err)
	}
	if !e.queued.IsZero() && time.Since(e.queued) > b.cfg.GiveUpAfter {
		metrics.Deliveries.WithLabelValues(name, "failed").Inc()
		b.log.Error("delivery given up", "adapter", name, "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "attempts", e.attempts, "err", err)
		return w.giveUp(ctx, q, e, err)
	}
	metrics.Deliveries.WithLabelValues(name, "retried").Inc()
	pause := b.retryBackoff().Next(q.lastPause)
	q.lastPause = pause
	if errors.As(err, &ra) && ra.After > pause {
		pause = ra.After
	}
	var unsure *UncertainError
	if errors.As(err, &unsure) {
		// The platform may still act on the request it was sent: never
		// send it again while that request could still land.
		metrics.Deliveries.WithLabelValues(name, "uncertain").Inc()
		pause = max(pause, b.cfg.DeliverTimeout)
		b.log.Warn("delivery may have reached the platform without an answer; retrying after its window, which may show it twice",
			"adapter", name, "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "retry_in", pause, "err", err)
	} else if e.attempts == 1 || e.attempts%10 == 0 {
		b.log.Warn("delivery failed; will retry", "adapter", name, "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "attempt", e.attempts, "retry_in", pause, "err", err)
	}
	q.notBefore = time.Now().Add(pause)
	return true
}

func (w *shardWorker) giveUp(ctx context.Context, q *chatQueue, e *outEntry, cause error) bool {
	for _, body := range e.bodies {
		w.b.deadLetter(ctx, w.a.Name(), body, cause)
	}
	q.items = q.items[1:]
	q.lastPause = 0
	return w.finish(ctx, e.d, nil, nil, e.ids)
}

// chatRefs is the chat's refs hash on the worker's adapter, read once per
// lease.
func (w *shardWorker) chatRefs(ctx context.Context, id ChatID) (*chatRefs, error) {
	if cr := w.refs[id]; cr != nil {
		return cr, nil
	}
	cr, err := w.b.loadRefs(ctx, w.a.Name(), id)
	if err != nil {
		return nil, err
	}
	if len(w.refs) >= 10000 {
		clear(w.refs)
	}
	w.refs[id] = cr
	return cr, nil
}

// keepProgress records what a failed attempt made: in the refs (replies
// to it reach the chat) and in the shard's progress hash (the next
// attempt, here or on another instance, continues after it). A failure to
// write it is logged: the next attempt may then show it again.
func (w *shardWorker) keepProgress(ctx context.Context, d Delivery, cr *chatRefs, made []RemoteRef) {
	b := w.b
	done := append(slices.Clone(d.Done), made...)
	w.progress[d.ID] = done
	body, err := json.Marshal(done)
	if err != nil {
		return
	}
	pipe := b.rdb.Pipeline()
	if cr != nil {
		b.refWrites(ctx, pipe, cr, w.a.Name(), d, made, false)
	}
	pipe.HSet(ctx, b.keys.Progress(w.a.Name(), w.shard), d.ID, body)
	pipe.Expire(ctx, b.keys.Progress(w.a.Name(), w.shard), refTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		b.log.Warn("partial delivery not recorded; a retry may show part of it twice", "adapter", w.a.Name(), "delivery_id", d.ID, "err", err)
	}
}

// finish records what a delivery made and removes its entries, in one
// round trip, retrying while Redis is away: skipping the removal would
// deliver them again, after later items. A nil cr writes no refs (given up).
func (w *shardWorker) finish(ctx context.Context, d Delivery, cr *chatRefs, made []RemoteRef, ids []string) bool {
	b := w.b
	_, hadProgress := w.progress[d.ID]
	delete(w.progress, d.ID)
	var pause time.Duration
	for {
		pipe := b.rdb.Pipeline()
		if cr != nil {
			b.refWrites(ctx, pipe, cr, w.a.Name(), d, made, true)
		}
		if hadProgress {
			pipe.HDel(ctx, b.keys.Progress(w.a.Name(), w.shard), d.ID)
		}
		pipe.XDel(ctx, w.key, ids...)
		_, err := pipe.Exec(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		pause = b.retryBackoff().Next(pause)
		b.log.Warn("outbox remove failed; retrying", "key", w.key, "ids", ids, "err", err)
		if !backoff.Sleep(ctx, pause) {
			return false
		}
	}
}

// retryBackoff paces the outbox's retries: Config.RetryMin doubling to
// Config.RetryMax.
func (b *Bridge) retryBackoff() backoff.Policy {
	return backoff.Policy{Min: b.cfg.RetryMin, Max: b.cfg.RetryMax}
}

// remove deletes handled entries, retrying while Redis is away: skipping
// them would deliver them again, after later items.
func (w *shardWorker) remove(ctx context.Context, ids ...string) bool {
	var pause time.Duration
	for {
		err := w.b.rdb.XDel(ctx, w.key, ids...).Err()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		pause = w.b.retryBackoff().Next(pause)
		w.b.log.Warn("outbox remove failed; retrying", "key", w.key, "ids", ids, "err", err)
		if !backoff.Sleep(ctx, pause) {
			return false
		}
	}
}

func (b *Bridge) deadLetter(ctx context.Context, adapter, body string, cause error) {
	err := b.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: b.keys.DeadLetter(), MaxLen: 10000, Approx: true,
		Values: []string{"adapter", adapter, "d", body, "err", cause.Error()},
	}).Err()
	if err != nil {
		b.log.Error("dead-letter write failed", "adapter", adapter, "err", err)
	}
}

// streamTime is when a stream entry was added, zero for no stream id.
func streamTime(id string) time.Time {
	sid, ok := ParseStreamID(id, true)
	if !ok {
		return time.Time{}
	}
	return sid.Time()
}
