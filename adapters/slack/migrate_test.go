package slack

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// oldRoot is a root message as an earlier version of the adapter posted
// and recorded it.
const oldRoot = "1600000000.000001"

// writeOldKeys writes what an earlier version kept of chat: its root in
// the channel, its thread, a handled event, a delivery's record.
func writeOldKeys(t *testing.T, r *redistest.Redis, chat bridge.ChatID) {
	t.Helper()
	ctx, c, p := context.Background(), r.Client, r.Prefix
	if err := c.HSet(ctx, p+"slack:root:{"+string(chat)+"}:", "channel", "C1", "ts", oldRoot, "first", "old first words").Err(); err != nil {
		t.Fatal(err)
	}
	c.Expire(ctx, p+"slack:root:{"+string(chat)+"}:", 30*24*time.Hour)
	c.Set(ctx, p+"slack:thread:C1:"+oldRoot, string(chat), 30*24*time.Hour)
	c.Set(ctx, p+"slack:event:slack:EvOld", "1", time.Hour)
	c.Set(ctx, p+"slack:dlv:old-delivery:msg:0", "1", time.Hour)
}

func oldKeysLeft(t *testing.T, r *redistest.Redis) []string {
	t.Helper()
	keys, err := r.Client.Keys(context.Background(), r.Prefix+"slack:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var old []string
	for _, k := range keys {
		for _, kind := range []string{"root", "thread", "event", "dlv"} {
			if strings.HasPrefix(k, r.Prefix+"slack:"+kind+":") {
				old = append(old, k)
			}
		}
	}
	return old
}

// TestUpgradeFromOldKeys: a chat offered by an earlier version (its root
// and thread in the adapter's own keys) keeps working with the bridge's
// refs: at start the old keys move into the bridge and are deleted; the
// chat's queued offer redraws the old root rather than posting a new one,
// an agent's reply in its thread reaches the chat, the taken edit lands on
// the old root, and a repeat of an event handled before the upgrade is
// ignored.
func TestUpgradeFromOldKeys(t *testing.T) {
	fake := newFakeSlack(t)
	var chat bridge.Chat
	l := newLiveSlackBefore(t, fake, testDirectory(t), nil, func(b *bridge.Bridge, r *redistest.Redis) {
		var err error
		if chat, _, err = b.StartChat(context.Background(), "acme", bridge.Visitor{Name: "Vera"}, "old first words"); err != nil {
			t.Fatal(err)
		}
		writeOldKeys(t, r, chat.ID)
	})
	b, hs, ctx := l.b, l.hs, t.Context()
	wait.For(t, "the old keys moved", func() bool { return len(oldKeysLeft(t, hs.redis)) == 0 })
	wait.For(t, "the old root redrawn by the queued offer", func() bool {
		for _, c := range fake.callsOf("chat.update") {
			if c.Form.Get("ts") == oldRoot && strings.Contains(blocksOf(c), "old first words") && strings.Contains(blocksOf(c), "onduty_accept") {
				return true
			}
		}
		return false
	})
	if n := len(fake.callsOf("chat.postMessage")); n != 0 {
		t.Errorf("%d new posts; the chat's root was known", n)
	}

	// Slack repeats an event handled before the upgrade, then Alice answers
	// in the old thread (the same worker: in this order).
	hs.message("EvOld", map[string]any{"user": "U111", "text": "repeated", "channel": "C1", "channel_type": "channel", "ts": "1.1", "thread_ts": oldRoot})
	hs.message("EvNew", map[string]any{"user": "U111", "text": "answered after the upgrade", "channel": "C1", "channel_type": "channel", "ts": "1.2", "thread_ts": oldRoot})
	var texts []string
	wait.For(t, "the answer in the chat", func() bool {
		texts = bridgetest.AgentTexts(ctx, b, chat.ID)
		return len(texts) > 0
	})
	if strings.Join(texts, "|") != "answered after the upgrade" {
		t.Errorf("agent messages %q, want only the new answer", texts)
	}
	wait.For(t, "the old root shows the chat taken", func() bool {
		for _, c := range fake.callsOf("chat.update") {
			if c.Form.Get("ts") == oldRoot && strings.Contains(blocksOf(c), "Taken by *Alice*") && strings.Contains(blocksOf(c), "old first words") {
				return true
			}
		}
		return false
	})
	// Closing edits the old root and posts the line in its thread.
	hs.command("U111", "C1", "close")
	wait.For(t, "closed on the old root", func() bool {
		for _, c := range fake.callsOf("chat.update") {
			if c.Form.Get("ts") == oldRoot && strings.Contains(blocksOf(c), "Chat closed") {
				return inThreadCount(fake, oldRoot, "Chat closed") == 1
			}
		}
		return false
	})
}

// refsRecorder is a bridge.RefStore that records what it is given.
type refsRecorder struct {
	refs     map[string][]bridge.RemoteRef // "chat|target"
	handled  map[string]time.Duration
	progress map[string]int
}

func newRefsRecorder() *refsRecorder {
	return &refsRecorder{refs: map[string][]bridge.RemoteRef{}, handled: map[string]time.Duration{}, progress: map[string]int{}}
}

func (r *refsRecorder) PutProgress(_ context.Context, id string, done int) error {
	r.progress[id] = done
	return nil
}

func (r *refsRecorder) PutRefs(_ context.Context, chat bridge.ChatID, target presence.AgentID, refs ...bridge.RemoteRef) error {
	r.refs[string(chat)+"|"+string(target)] = append(r.refs[string(chat)+"|"+string(target)], refs...)
	return nil
}

func (r *refsRecorder) PutHandled(_ context.Context, key string, ttl time.Duration) error {
	r.handled[key] = ttl
	return nil
}

// TestMigrateRefs: each old root becomes its chat's RefThread for its
// target (the channel's, or an agent's DM), each handled event a handled
// mark with the time it had left, the pages a delivery had posted its
// progress; every old key is deleted, and running it again finds nothing
// to do.
func TestMigrateRefs(t *testing.T) {
	fake := newFakeSlack(t)
	r := redistest.New(t)
	a := newAdapter(t, fake, r, ModeEvents, testDirectory(t))
	writeOldKeys(t, r, "chatM")
	ctx := context.Background()
	r.Client.HSet(ctx, r.Prefix+"slack:root:{chatM}:alice", "channel", "D111", "ts", "1600000000.000002", "first", "hi")
	r.Client.Set(ctx, r.Prefix+"slack:thread:C1:1500000000.000001", "goneChat", time.Hour) // its root is gone

	for _, k := range []string{"d2:msg:1", "d2:msg:0", "d3", "d4+2:closed:0", "d5:newroot:root:1", "d6:msg:file"} {
		r.Client.Set(ctx, r.Prefix+"slack:dlv:"+k, "1", time.Hour)
	}
	rec := newRefsRecorder()
	if err := a.MigrateRefs(ctx, rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]bridge.RemoteRef{
		"chatM|":      {Role: bridge.RefThread, Conversation: "C1", Message: oldRoot, Thread: oldRoot, Extra: "old first words"},
		"chatM|alice": {Role: bridge.RefThread, Conversation: "D111", Message: "1600000000.000002", Thread: "1600000000.000002", Extra: "hi"},
	}
	if len(rec.refs) != len(want) {
		t.Errorf("refs %+v, want %+v", rec.refs, want)
	}
	for k, w := range want {
		if got := rec.refs[k]; len(got) != 1 || got[0] != w {
			t.Errorf("%s: %+v, want %+v", k, got, w)
		}
	}
	if ttl, ok := rec.handled["slack:EvOld"]; len(rec.handled) != 1 || !ok || ttl <= 50*time.Minute || ttl > time.Hour {
		t.Errorf("handled %v, want slack:EvOld with about an hour left", rec.handled)
	}
	if left := oldKeysLeft(t, r); len(left) != 0 {
		t.Errorf("old keys left: %v", left)
	}
	if want := map[string]int{"old-delivery": 1, "d2": 2, "d4+2": 1}; fmt.Sprint(rec.progress) != fmt.Sprint(want) {
		t.Errorf("progress %v, want %v (pages posted per queued delivery)", rec.progress, want)
	}
	again := newRefsRecorder()
	if err := a.MigrateRefs(ctx, again); err != nil || len(again.refs)+len(again.handled)+len(again.progress) != 0 {
		t.Errorf("second run: %v, %+v", err, again)
	}
}
