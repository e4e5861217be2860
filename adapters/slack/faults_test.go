package slack

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// liveSlack is the real bridge with the real adapter (events mode) on a
// fake Slack.
type liveSlack struct {
	b     *bridge.Bridge
	a     *Adapter
	hs    *harness
	store *presence.Store
	dir   *presence.Directory
}

func newLiveSlack(t *testing.T, fake *fakeSlack, tweak ...func(*Config)) *liveSlack {
	t.Helper()
	return newLiveSlackDir(t, fake, testDirectory(t), tweak...)
}

// newLiveSlackDir is newLiveSlack with another directory.
func newLiveSlackDir(t *testing.T, fake *fakeSlack, dir *presence.Directory, tweak ...func(*Config)) *liveSlack {
	t.Helper()
	return newLiveSlackWith(t, fake, dir, nil, tweak...)
}

// newLiveSlackWith is newLiveSlackDir with setup run on the adapter before
// the bridge starts.
func newLiveSlackWith(t *testing.T, fake *fakeSlack, dir *presence.Directory, setup func(*Adapter), tweak ...func(*Config)) *liveSlack {
	t.Helper()
	return newLiveSlackBefore(t, fake, dir, setup, nil, tweak...)
}

// newLiveSlackBefore is newLiveSlackWith with before run on the bridge
// (adapter added) and its Redis before the bridge starts.
func newLiveSlackBefore(t *testing.T, fake *fakeSlack, dir *presence.Directory, setup func(*Adapter),
	before func(*bridge.Bridge, *redistest.Redis), tweak ...func(*Config)) *liveSlack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := redistest.New(t)
	log := testlog.Logger()
	store := presence.NewStore(r.Client, dir, presence.Keys{Prefix: r.Prefix}, time.Now)
	watcher := presence.NewWatcher(store, log)
	if err := watcher.Load(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{
		Prefix: r.Prefix, Properties: map[presence.PropertyID]bridge.Routing{"acme": {}, "beta": {}},
		RetryMin: 10 * time.Millisecond, RetryMax: 300 * time.Millisecond, PollEvery: 20 * time.Millisecond,
	}, r.Client, store, watcher, log)
	if err != nil {
		t.Fatal(err)
	}
	a := newAdapter(t, fake, r, ModeEvents, dir, tweak...)
	if setup != nil {
		setup(a)
	}
	b.AddAdapter(a)
	if before != nil {
		before(b, r)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = watcher.Run(ctx) })
	wg.Go(func() {
		if err := b.Run(ctx); err != nil {
			t.Errorf("bridge Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	wait.For(t, "adapter running", func() bool { return a.handler() != nil })
	return &liveSlack{b: b, a: a, hs: &harness{t: t, mode: ModeEvents, a: a, fake: fake, redis: r}, store: store, dir: dir}
}
