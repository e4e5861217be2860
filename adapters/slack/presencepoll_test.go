package slack

import (
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
)

func TestPresencePolling(t *testing.T) {
	hs := newHarnessPrep(t, ModeEvents, func(a *Adapter) { a.pollGap = time.Millisecond }, func(c *Config) {
		c.UsePresence = true
		c.PresenceEvery = 30 * time.Millisecond
	})
	hs.fake.setPresence("U111", "active")
	hs.fake.setPresence("U222", "away")
	wait.For(t, "alice's Slack presence reported", func() bool {
		for _, a := range hs.h.Actions() {
			if a.Kind == bridge.ActActivity && a.Agent == "alice" {
				return true
			}
		}
		return false
	})
	wait.For(t, "bob polled", func() bool {
		for _, c := range hs.fake.callsOf("users.getPresence") {
			if c.Form.Get("user") == "U222" {
				return true
			}
		}
		return false
	})
	for _, c := range hs.fake.callsOf("users.getPresence") {
		if c.Form.Get("user") == "U444" {
			t.Error("dave is always-online: his presence must not be polled")
		}
	}
	for _, a := range hs.h.Actions() {
		if a.Agent == "bob" {
			t.Errorf("bob is away on Slack but was reported: %+v", a)
		}
	}
}

func TestPollPeriodWithinTier3(t *testing.T) {
	// 100 agents polled every minute would be 100 calls a minute: the period
	// stretches so the deployment makes at most 50.
	a := &Adapter{pollGap: 1200 * time.Millisecond, cfg: Config{PresenceEvery: time.Minute}}
	if p := a.pollPeriod(100); p < 2*time.Minute {
		t.Errorf("period %s for 100 agents, want at least 2m", p)
	}
	if p := a.pollPeriod(10); p != time.Minute {
		t.Errorf("period %s for 10 agents, want 1m", p)
	}
}
