package bridge

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/presence"
)

// timerLease is how long a claimed timer stays hidden from other instances.
// An instance that dies while firing leaves it to fire again after this.
const timerLease = 30 * time.Second

// claimTimersScript hands out due timers: each is pushed a lease into the
// future, so exactly one instance sees it until it is done (or the lease ends).
var claimTimersScript = redis.NewScript(`
-- KEYS[1] timers zset (member "kind|property|target", score due unix ms)
-- ARGV[1] now, unix ms   ARGV[2] lease ms   ARGV[3] max count
-- Returns {lease-until, member...}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local untilms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], untilms, m) end
table.insert(due, 1, tostring(untilms))
return due
`)

// doneTimerScript removes a fired timer unless it was rescheduled meanwhile.
var doneTimerScript = redis.NewScript(`
-- KEYS[1] timers zset   ARGV[1] member   ARGV[2] the lease score it was claimed with
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`)

// timerLoop fires due timers. It sleeps until the earliest timer in Redis
// (or the safety poll, Config.PollEvery), and is woken when any instance
// sets a timer (the kick channel), so an idle instance asks Redis about
// timers about once a PollEvery.
func (b *Bridge) timerLoop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-b.feedReady:
	}
	for {
		if _, err := b.fireDue(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("timers", "err", err)
		}
		wait := b.cfg.PollEvery
		next, err := b.rdb.ZRangeWithScores(ctx, b.keys.Timers(), 0, 0).Result()
		if err == nil && len(next) == 1 {
			wait = min(wait, max(time.UnixMilli(int64(next[0].Score)).Sub(b.now()), 0))
		} else if err != nil && ctx.Err() == nil {
			wait = min(wait, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-b.timerKick:
			t.Stop()
		}
	}
}

// fireDue fires every timer due by the bridge's clock and returns how many
// it fired. Tests call it after advancing their clock.
func (b *Bridge) fireDue(ctx context.Context) (int, error) {
	fired := 0
	for {
		res, err := claimTimersScript.Run(ctx, b.rdb, []string{b.keys.Timers()},
			ms(b.now()), timerLease.Milliseconds(), 100).StringSlice()
		if err != nil {
			return fired, err
		}
		lease, members := res[0], res[1:]
		for _, m := range members {
			if err := b.fire(ctx, m); err != nil {
				// Left claimed: it fires again when the lease ends.
				b.log.Warn("timer failed; will retry", "timer", m, "err", err)
				continue
			}
			if err := doneTimerScript.Run(ctx, b.rdb, []string{b.keys.Timers()}, m, lease).Err(); err != nil {
				b.log.Warn("timer done", "timer", m, "err", err)
			}
			fired++
		}
		if len(members) < 100 {
			return fired, nil
		}
	}
}

// fire runs one timer. Every handler checks the current state first, so a
// timer that fires again after a crash, or after its chat moved on, does nothing.
func (b *Bridge) fire(ctx context.Context, member string) error {
	kind, rest, _ := strings.Cut(member, "|")
	prop, target, _ := strings.Cut(rest, "|")
	if kind == timerPrompt {
		return b.firePrompt(ctx, presence.AgentID(target))
	}
	if kind == timerEmail {
		return b.fireEmail(ctx, member, ChatID(target), presence.PropertyID(prop))
	}
	cv, err := b.loadChat(ctx, ChatID(target))
	if errors.Is(err, ErrUnknownChat) {
		return nil
	}
	if err != nil {
		return err
	}
	if cv.Property != presence.PropertyID(prop) {
		return nil
	}
	r, _ := b.routing(cv.Property)
	unowned := cv.State == Pending && cv.Owner == "" && !cv.Offline
	switch kind {
	case timerOffer:
		if !unowned {
			return nil
		}
		var o batch
		if err := b.offerNext(ctx, &cv, b.firstMessage(ctx, &cv), &o); err != nil {
			return err
		}
		return b.flush(ctx, &o)
	case timerFallback:
		if !unowned {
			return nil
		}
		var o batch
		if err := b.offerTo(ctx, &cv, b.agentsWith(&cv, presence.Invisible), true, b.firstMessage(ctx, &cv), &o); err != nil {
			return err
		}
		return b.flush(ctx, &o)
	case timerQueue:
		if !unowned {
			return nil
		}
		return b.convertToOffline(ctx, &cv)
	case timerIdle:
		if cv.State != Active {
			return nil
		}
		if due := cv.LastMessageAt.Add(r.CloseAfterIdle); due.After(b.now()) {
			var o batch
			o.timer(member, due)
			return b.flush(ctx, &o)
		}
		_, err := b.closeChat(ctx, &cv, "idle", "Closed after "+r.CloseAfterIdle.String()+" without messages.")
		return err
	}
	b.log.Warn("unknown timer", "timer", member)
	return nil
}

// schedulePrompt (re)sets an agent's "Still on duty?" prompt after activity,
// or, if they are not heading offline and cancel is set, cancels it.
func (b *Bridge) schedulePrompt(o *batch, a presence.Agent, st presence.State, cancel bool) {
	m := timerMember(timerPrompt, "", string(a.ID))
	if at := presence.PromptAt(a, st); !at.IsZero() {
		o.timer(m, at)
	} else if cancel {
		o.cancelTimer(m)
	}
}

func (b *Bridge) firePrompt(ctx context.Context, id presence.AgentID) error {
	a, ok := b.dir.Agent(id)
	if !ok {
		return nil
	}
	st, err := b.store.Get(ctx, id)
	if err != nil {
		return err
	}
	at := presence.PromptAt(a, st)
	now := b.now()
	if at.IsZero() || presence.Effective(a, st, now) == presence.Offline {
		return nil
	}
	var o batch
	if at.After(now) { // activity since it was set: not yet
		o.timer(timerMember(timerPrompt, "", string(id)), at)
		return b.flush(ctx, &o)
	}
	b.agentDeliveries(&o, id, Delivery{Kind: KindPrompt,
		Text: "Still on duty? Tap the button, or send anything, to stay " + string(st.Chosen(a)) + "."})
	return b.flush(ctx, &o)
}
