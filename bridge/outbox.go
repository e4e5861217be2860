package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// outboxLease is how long a worker's claim on a shard lasts without renewal;
// a crashed instance's shards are taken over after at most this long. The
// lease is renewed once a third of it is spent, and always before a Deliver
// call, so two thirds (20s) remain: more than deliverTimeout, so no other
// instance can start on the shard while a delivery is in flight.
const outboxLease = 30 * time.Second

// deliverTimeout bounds one Adapter.Deliver call.
const deliverTimeout = 10 * time.Second

// leaseRetry is how often a worker without its shard's lease asks for it
// (it is also woken when this instance queues into the shard).
const leaseRetry = 2 * time.Second

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
		shard := shardOf(by, b.cfg.Shards)
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.keys.Outbox(it.adapter, shard), Values: []string{"d", string(body)}})
		kicks = append(kicks, kick{it.adapter, shard})
	}
	if len(kicks) > 0 {
		// The shard may be worked by another instance: wake it in the same
		// round trip rather than leave the delivery to its next poll.
		var msg strings.Builder
		for i, k := range kicks {
			if i > 0 {
				msg.WriteByte(' ')
			}
			fmt.Fprintf(&msg, "%s|%d", k.adapter, k.shard)
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
	for _, k := range kicks {
		b.kick(k.adapter, k.shard)
	}
	if len(o.timers) > 0 {
		select {
		case b.timerKick <- struct{}{}:
		default:
		}
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

// chatDeliveries queues a chat event for everyone following the chat: once
// for each adapter with a shared place (except the surface it came from),
// and per participant on the other adapters (except the agent who caused it).
func (b *Bridge) chatDeliveries(o *batch, cv *chatView, kind DeliveryKind, m *Message, text string, exceptAgent presence.AgentID, exceptSurface string) {
	ps := participants(cv)
	for _, a := range b.adapterList() {
		if a.Shared(cv.Property) {
			if a.Name() != exceptSurface {
				o.deliver(a.Name(), Delivery{Kind: kind, Chat: cv.Chat, Message: m, Text: text})
			}
			continue
		}
		for _, ag := range ps {
			if ag != exceptAgent && a.Reaches(ag) {
				o.deliver(a.Name(), Delivery{Kind: kind, Agent: ag, Chat: cv.Chat, Message: m, Text: text})
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

var renewLeaseScript = redis.NewScript(`
-- KEYS[1] lease   ARGV[1] instance   ARGV[2] ttl ms
-- Takes or renews the lease; returns 1 if this instance holds it.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
`)

var releaseLeaseScript = redis.NewScript(`
-- KEYS[1] lease   ARGV[1] instance
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// shardWorker delivers one adapter's shard in stream order. Only the
// instance holding the shard's lease works it, so a chat's deliveries are
// never made concurrently or out of order, whatever the number of instances.
type shardWorker struct {
	b         *Bridge
	a         Adapter
	key       string
	lease     string
	kick      chan struct{}
	held      bool
	renewedAt time.Time
}

// kick wakes this instance's worker of an outbox shard, if it sleeps.
func (b *Bridge) kick(adapter string, shard int) {
	if ch := b.kicks[adapter]; ch != nil && shard >= 0 && shard < len(ch) {
		select {
		case ch[shard] <- struct{}{}:
		default:
		}
	}
}

// kickFromChannel wakes the workers a KickChannel message names.
func (b *Bridge) kickFromChannel(payload string) {
	for _, f := range strings.Fields(payload) {
		adapter, n, ok := strings.Cut(f, "|")
		if shard, err := strconv.Atoi(n); ok && err == nil {
			b.kick(adapter, shard)
		}
	}
}

func (b *Bridge) outboxWorker(ctx context.Context, a Adapter, shard int) {
	w := &shardWorker{
		b: b, a: a,
		key: b.keys.Outbox(a.Name(), shard), lease: b.keys.OutboxLease(a.Name(), shard),
		kick: b.kicks[a.Name()][shard],
	}
	defer func() {
		if w.held {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			releaseLeaseScript.Run(rctx, b.rdb, []string{w.lease}, b.instance)
			cancel()
		}
	}()
	ticker := time.NewTicker(b.cfg.PollEvery)
	defer ticker.Stop()
	wait := func() {
		select {
		case <-ctx.Done():
		case <-ticker.C:
		case <-w.kick:
		}
	}
	for ctx.Err() == nil {
		if !w.renew(ctx, false) {
			// Another instance works this shard (or Redis is away); kicks
			// are for the holder, so only the retry timer matters here.
			select {
			case <-ctx.Done():
			case <-time.After(leaseRetry):
			}
			continue
		}
		xs, err := b.rdb.XRangeN(ctx, w.key, "-", "+", 32).Result()
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn("outbox read failed", "adapter", a.Name(), "err", err)
			}
			wait()
			continue
		}
		if len(xs) == 0 {
			wait()
			continue
		}
		for _, x := range xs {
			if !w.deliver(ctx, x) {
				break
			}
		}
	}
}

// renew takes or keeps the shard's lease; it talks to Redis only when the
// lease is a third spent, unless force.
func (w *shardWorker) renew(ctx context.Context, force bool) bool {
	if w.held && !force && time.Since(w.renewedAt) < outboxLease/3 {
		return true
	}
	ok, err := renewLeaseScript.Run(ctx, w.b.rdb, []string{w.lease}, w.b.instance, outboxLease.Milliseconds()).Int()
	if err != nil {
		w.held = false
		return false
	}
	w.held = ok == 1
	if w.held {
		w.renewedAt = time.Now()
	}
	return w.held
}

// deliver hands one entry to the adapter until it succeeds, fails for good
// or is given up on, then removes it. It returns false when the worker must
// stop (ctx done, or the lease was lost to another instance).
func (w *shardWorker) deliver(ctx context.Context, x redis.XMessage) bool {
	b, name := w.b, w.a.Name()
	body, _ := x.Values["d"].(string)
	var d Delivery
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		b.deadLetter(ctx, name, body, err)
		return w.remove(ctx, x.ID)
	}
	queued := streamTime(x.ID)
	backoff := b.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		if !w.renew(ctx, false) {
			return false
		}
		dctx, cancel := context.WithTimeout(ctx, deliverTimeout)
		err := w.a.Deliver(dctx, d)
		cancel()
		if err == nil {
			metrics.Deliveries.WithLabelValues(name, "ok").Inc()
			return w.remove(ctx, x.ID)
		}
		if ctx.Err() != nil {
			return false
		}
		var perm *PermanentError
		if errors.As(err, &perm) {
			metrics.Deliveries.WithLabelValues(name, "failed").Inc()
			b.log.Error("delivery failed for good", "adapter", name, "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "agent_id", d.Agent, "err", err)
			b.deadLetter(ctx, name, body, err)
			b.deliveryFailed(ctx, name, d, err)
			return w.remove(ctx, x.ID)
		}
		if !queued.IsZero() && time.Since(queued) > b.cfg.GiveUpAfter {
			metrics.Deliveries.WithLabelValues(name, "failed").Inc()
			b.log.Error("delivery given up", "adapter", name, "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "attempts", attempt, "err", err)
			b.deadLetter(ctx, name, body, err)
			return w.remove(ctx, x.ID)
		}
		metrics.Deliveries.WithLabelValues(name, "retried").Inc()
		pause := backoff
		backoff = min(backoff*2, b.cfg.RetryMax)
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > pause {
			pause = ra.After
		}
		if attempt == 1 || attempt%10 == 0 {
			b.log.Warn("delivery failed; will retry", "adapter", name, "delivery_id", d.ID, "kind", d.Kind, "chat_id", d.Chat.ID, "attempt", attempt, "retry_in", pause, "err", err)
		}
		if !w.sleep(ctx, pause) {
			return false
		}
	}
}

// sleep waits d, keeping the lease alive; false if ctx ended or the lease was lost.
func (w *shardWorker) sleep(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return w.renew(ctx, false)
		}
		t := time.NewTimer(min(left, outboxLease/4))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		if !w.renew(ctx, false) {
			return false
		}
	}
}

// remove deletes a handled entry, retrying while Redis is away: skipping it
// would deliver it again, after later items.
func (w *shardWorker) remove(ctx context.Context, id string) bool {
	pause := w.b.cfg.RetryMin
	for {
		err := w.b.rdb.XDel(ctx, w.key, id).Err()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		w.b.log.Warn("outbox remove failed; retrying", "key", w.key, "id", id, "err", err)
		if !w.sleep(ctx, pause) {
			return false
		}
		pause = min(pause*2, w.b.cfg.RetryMax)
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

// streamTime is when a stream entry was added (its id's millisecond part).
func streamTime(id string) time.Time {
	msPart, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(msPart, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
