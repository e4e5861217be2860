package slack

import (
	"context"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// pollPresence reads users.getPresence for activity-condition agents, one
// call at a time spread over the period, and reports "active" as activity.
// Every instance runs it; a Redis mark per agent and period lets only one of
// them call, so the whole deployment stays within Tier 3 (50 calls a minute).
func (a *Adapter) pollPresence(ctx context.Context, h bridge.Handler) {
	var agents []presence.Agent
	for _, id := range a.dir.Agents() {
		ag, _ := a.dir.Agent(id)
		if ag.Account(Surface) != "" && ag.Condition != presence.Always {
			agents = append(agents, ag)
		}
	}
	if len(agents) == 0 {
		return
	}
	period := a.pollPeriod(len(agents))
	gap := period / time.Duration(len(agents))
	t := time.NewTicker(gap)
	defer t.Stop()
	for i := 0; ; i++ {
		a.pollOne(ctx, h, agents[i%len(agents)], period)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Adapter) pollOne(ctx context.Context, h bridge.Handler, ag presence.Agent, period time.Duration) {
	mine, err := a.rdb.SetNX(ctx, a.keys.poll(ag.ID), "1", period-period/10).Result()
	if err != nil || !mine {
		return
	}
	p, err := a.api.GetUserPresenceContext(ctx, ag.Account(Surface))
	if err != nil {
		a.log.Debug("slack: users.getPresence", "agent_id", ag.ID, "err", err)
		return
	}
	if p.Presence != "active" {
		return
	}
	if _, err := h.Handle(ctx, bridge.Action{Kind: bridge.ActActivity, Surface: a.Name(), Agent: ag.ID}); err != nil {
		a.log.Warn("slack: presence activity", "agent_id", ag.ID, "err", err)
	}
}

// pollPeriod is how often each of n agents is polled: PresenceEvery, or
// longer so that the calls stay pollGap (1.2 s: 50 a minute) apart.
func (a *Adapter) pollPeriod(n int) time.Duration {
	return max(a.cfg.PresenceEvery, time.Duration(n)*a.pollGap)
}
