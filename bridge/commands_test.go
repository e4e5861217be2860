package bridge

import (
	"context"
	"errors"
	"fmt"
	"github.com/redis/go-redis/v9"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onduty/onduty/presence"
)

func TestStatusCommandsAndPermissions(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	ctx := context.Background()
	tests := []struct {
		agent  presence.AgentID
		cmd    string
		want   string
		status presence.Status // stored status after, "" = don't check
		cond   presence.Condition
	}{
		{"alice", "start", "Welcome", presence.Online, ""},
		{"alice", "away", "You're away", presence.Away, ""},
		{"alice", "invisible", "You're invisible", presence.Invisible, ""},
		{"alice", "offline", "You're offline", presence.Offline, ""},
		{"alice", "ONLINE", "You're online", presence.Online, ""},
		{"alice", "alwayson off", "Always-online is off", presence.Online, presence.Activity},
		{"alice", "alwayson on", "Always-online is on", presence.Online, presence.Always},
		{"alice", "alwayson maybe", "Use /alwayson on", "", ""},
		{"erin", "online", "You're online", presence.Online, ""},
		{"erin", "invisible", "not allowed", presence.Online, ""},
		{"erin", "alwayson off", "not allowed", presence.Online, ""},
		{"alice", "dance", "I don't know /dance", "", ""},
		{"alice", "help", "/transfer NAME", "", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.agent)+" "+tt.cmd, func(t *testing.T) {
			r := in.cmd(t, tt.agent, tt.cmd)
			if !strings.Contains(r.Text, tt.want) {
				t.Fatalf("reply %q, want %q", r.Text, tt.want)
			}
			st, err := in.store.Get(ctx, tt.agent)
			if err != nil {
				t.Fatal(err)
			}
			if tt.status != "" && st.Status != tt.status {
				t.Fatalf("status %q, want %q", st.Status, tt.status)
			}
			if tt.cond != "" && st.Condition != tt.cond {
				t.Fatalf("condition %q, want %q", st.Condition, tt.cond)
			}
		})
	}
	if r := in.cmd(t, "alice", "status"); !strings.Contains(r.Text, "You: online") || !strings.Contains(r.Text, "Acme widget: online") {
		t.Fatalf("/status: %q", r.Text)
	}
	if r := in.cmd(t, "alice", "team"); !strings.Contains(r.Text, "Alice (you): online") || !strings.Contains(r.Text, "Bob: offline") {
		t.Fatalf("/team: %q", r.Text)
	}
	if r := in.act(t, Action{Kind: ActCommand, Agent: "mallory", Command: "online"}); !strings.Contains(r.Text, "not set up") {
		t.Fatalf("unknown agent: %q", r.Text)
	}
}

func TestChatsAcceptAndPlainText(t *testing.T) {
	e := newEnv(t, Routing{Strategy: Broadcast, AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice", "bob")
	if r := in.say(t, "alice", "", "hello?"); !strings.Contains(r.Text, "no open chat") {
		t.Fatalf("plain text with no chat: %q", r.Text)
	}
	if r := in.cmd(t, "alice", "accept"); !strings.Contains(r.Text, "No chat is waiting") {
		t.Fatalf("/accept with nothing waiting: %q", r.Text)
	}
	c1, _ := in.startChat(t, "Ann", "first")
	if r := in.cmd(t, "alice", "accept"); !strings.Contains(r.Text, "now chatting with Ann") {
		t.Fatalf("/accept the only waiting chat: %q", r.Text)
	}
	in.say(t, "alice", "", "hi Ann") // her only chat
	c2, _ := in.startChat(t, "Ben", "second")
	in.act(t, Action{Kind: ActAccept, Agent: "alice", Chat: c2.ID})
	in.say(t, "alice", "", "hi Ben") // accepting made Ben's chat current
	r := in.cmd(t, "alice", "chats")
	if len(r.Choices) != 2 || !strings.Contains(r.Text, "Ben ← current") {
		t.Fatalf("/chats: %q %+v", r.Text, r.Choices)
	}
	for _, ch := range r.Choices {
		if ch.Action != ActSwitch {
			t.Fatalf("choice %+v", ch)
		}
	}
	in.act(t, Action{Kind: ActSwitch, Agent: "alice", Chat: c1.ID})
	in.say(t, "alice", "", "back to Ann")
	if tr := in.transcript(t, c1.ID); tr[len(tr)-1] != "agent:back to Ann" {
		t.Fatalf("Ann's transcript %v", tr)
	}
	if tr := in.transcript(t, c2.ID); tr[len(tr)-1] != "agent:hi Ben" {
		t.Fatalf("Ben's transcript %v", tr)
	}
	// Waiting chats are listed with Accept choices for everyone.
	c3, _ := in.startChat(t, "Cy", "third")
	r = in.cmd(t, "bob", "chats")
	if len(r.Choices) != 1 || r.Choices[0].Action != ActAccept || r.Choices[0].Chat != c3.ID {
		t.Fatalf("bob's /chats: %q %+v", r.Text, r.Choices)
	}
	// With no chat of his own, plain text answers the one waiting chat and claims it.
	in.say(t, "bob", "", "Hi Cy, Bob here")
	if tr := in.transcript(t, c3.ID); tr[len(tr)-1] != "agent:Hi Cy, Bob here" {
		t.Fatalf("Cy's transcript %v", tr)
	}
	if r := in.cmd(t, "bob", "chats"); !strings.Contains(r.Text, "Cy") || len(r.Choices) != 1 || r.Choices[0].Action != ActSwitch {
		t.Fatalf("bob's /chats after claiming: %q %+v", r.Text, r.Choices)
	}
	// No current chat and several chats: ambiguous.
	if err := e.r.Client.Del(context.Background(), in.b.keys.Current("alice")).Err(); err != nil {
		t.Fatal(err)
	}
	if r := in.say(t, "alice", "", "which?"); !strings.Contains(r.Text, "several chats") {
		t.Fatalf("ambiguous plain text: %q", r.Text)
	}
}

func TestDedupIgnoresPlatformRetries(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	other := e.start(nil)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	var wg sync.WaitGroup
	for i := range 6 {
		x := []*instance{in, other}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A repeat while the first is being handled is told to come
			// back later (ErrInProgress), as the platform's retry does.
			if _, err := x.b.Handle(context.Background(), Action{Kind: ActMessage, Agent: "alice", Chat: c.ID, Text: "once", DedupKey: "telegram:42"}); err != nil && !errors.Is(err, ErrInProgress) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Once handled, a repeat is ignored without an error.
	for _, x := range []*instance{in, other} {
		if r, err := x.b.Handle(context.Background(), Action{Kind: ActMessage, Agent: "alice", Chat: c.ID, Text: "once", DedupKey: "telegram:42"}); err != nil || r.Text != "" {
			t.Fatalf("repeat after handling: %+v, %v", r, err)
		}
	}
	if n := countPrefix(in.transcript(t, c.ID), "agent:once"); n != 1 {
		t.Fatalf("message posted %d times", n)
	}
}

// TestDedupClaimOfDeadInstance: a claim left by an instance that died
// mid-event makes repeats wait (ErrInProgress) until it expires; then the
// event is handled. A failed handling drops the claim at once.
func TestDedupClaimOfDeadInstance(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	in := e.start(nil)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	ctx := context.Background()
	key := in.b.keys.Dedup("telegram:77")
	if err := e.r.Client.Set(ctx, key, dedupBusy, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	act := Action{Kind: ActMessage, Agent: "alice", Chat: c.ID, Text: "late", DedupKey: "telegram:77"}
	if _, err := in.b.Handle(ctx, act); !errors.Is(err, ErrInProgress) {
		t.Fatalf("while claimed elsewhere: %v, want ErrInProgress", err)
	}
	if err := e.r.Client.Del(ctx, key).Err(); err != nil { // the claim expired
		t.Fatal(err)
	}
	if _, err := in.b.Handle(ctx, act); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(in.transcript(t, c.ID), "agent:late"); n != 1 {
		t.Fatalf("message posted %d times", n)
	}
	if v, _ := e.r.Client.Get(ctx, key).Result(); v != dedupDone {
		t.Fatalf("mark after handling: %q, want %q", v, dedupDone)
	}
	// An action that writes no batch (activity) is marked done too.
	if _, err := in.b.Handle(ctx, Action{Kind: ActActivity, Agent: "alice", DedupKey: "telegram:79"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.r.Client.Get(ctx, in.b.keys.Dedup("telegram:79")).Result(); v != dedupDone {
		t.Fatalf("mark after an activity: %q, want %q", v, dedupDone)
	}
}

// failAppend makes the pipelines that append to a transcript fail while on.
type failAppend struct{ on atomic.Bool }

func (f *failAppend) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *failAppend) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (f *failAppend) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if f.on.Load() && strings.Contains(fmt.Sprint(c.Args()), ":msgs:") {
				return errors.New("test: Redis failed the append")
			}
		}
		return next(ctx, cmds)
	}
}

// TestDedupClaimDroppedOnFailure: an action that fails after its event was
// claimed drops the claim, so the platform's retry is handled, once.
func TestDedupClaimDroppedOnFailure(t *testing.T) {
	e := newEnv(t, Routing{AcceptTimeout: time.Hour, QueueTimeout: time.Hour})
	rdb := e.r.NewClient(t)
	fail := &failAppend{}
	rdb.AddHook(fail)
	in := e.startWith(nil, rdb)
	e.status(presence.Online, "alice")
	c := in.acceptedChat(t, "alice")
	ctx := context.Background()
	act := Action{Kind: ActMessage, Agent: "alice", Chat: c.ID, Text: "retried", DedupKey: "telegram:78"}
	fail.on.Store(true)
	if _, err := in.b.Handle(ctx, act); err == nil {
		t.Fatal("Handle succeeded although the append failed")
	}
	if n, _ := e.r.Client.Exists(ctx, in.b.keys.Dedup("telegram:78")).Result(); n != 0 {
		t.Fatal("the failed action left its claim: the platform's retry would be ignored")
	}
	fail.on.Store(false)
	if _, err := in.b.Handle(ctx, act); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(in.transcript(t, c.ID), "agent:retried"); n != 1 {
		t.Fatalf("message posted %d times", n)
	}
}

func TestStillOnDutyPrompt(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	dave, _ := e.dir.Agent("dave")
	in.cmd(t, "dave", "online")
	st, _ := in.store.Get(context.Background(), "dave")
	at := presence.PromptAt(dave, st)
	if at.IsZero() {
		t.Fatal("no prompt time for an activity agent")
	}
	// Activity just before the prompt moves it later.
	e.advance(in, at.Sub(e.clock.Now())-time.Minute)
	in.act(t, Action{Kind: ActActivity, Agent: "dave"})
	e.advance(in, 2*time.Minute)
	e.drain(in)
	if n := len(in.ad.find(kindFor(KindPrompt, "dave", ""))); n != 0 {
		t.Fatalf("prompted %d times despite activity", n)
	}
	st, _ = in.store.Get(context.Background(), "dave")
	e.advance(in, presence.PromptAt(dave, st).Sub(e.clock.Now()))
	waitDelivered(t, in.ad, "prompt", 1, kindFor(KindPrompt, "dave", ""))
	if r := in.act(t, Action{Kind: ActStillHere, Agent: "dave"}); r.Text != "Thanks — you're still on duty." {
		t.Fatalf("still here reply %q", r.Text)
	}
	if got := in.watcher.Effective("dave"); got != presence.Online {
		t.Fatalf("dave %s after the button, want online", got)
	}
	// Always-online agents are never prompted.
	in.cmd(t, "alice", "online")
	e.advance(in, 2*time.Hour)
	e.drain(in)
	if n := len(in.ad.find(kindFor(KindPrompt, "alice", ""))); n != 0 {
		t.Fatalf("always-online agent prompted %d times", n)
	}
}

// A prompt set while an agent was activity-based, then left behind when an
// admin made them always online (outside the bridge), asks nothing when it
// fires, whatever the agent did meanwhile.
func TestLeftoverPromptOfAlwaysOnlineAgentAsksNothing(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	ctx := context.Background()
	in.cmd(t, "dave", "online")
	n, err := e.r.Client.ZCard(ctx, in.b.keys.Timers()).Result()
	if err != nil || n != 1 {
		t.Fatalf("%d timers after /online, want dave's prompt: %v", n, err)
	}
	st, err := in.store.SetCondition(ctx, "dave", presence.Always) // the admin API
	if err != nil {
		t.Fatal(err)
	}
	in.watcher.Apply("dave", st)
	in.act(t, Action{Kind: ActActivity, Agent: "dave"})
	e.advance(in, 2*time.Hour)
	e.drain(in)
	if n := len(in.ad.find(kindFor(KindPrompt, "dave", ""))); n != 0 {
		t.Fatalf("always-online dave prompted %d times", n)
	}
	if n, _ := e.r.Client.ZCard(ctx, in.b.keys.Timers()).Result(); n != 0 {
		t.Fatalf("%d timers left after the prompt fired", n)
	}
}

// TestSetPresence: an admin's change goes through the bridge, unbound by the
// agent's permissions, and moves the "Still on duty?" prompt as the agent's
// own command would.
func TestSetPresence(t *testing.T) {
	e := newEnv(t, Routing{})
	in := e.start(nil)
	ctx := context.Background()
	dave, _ := e.dir.Agent("dave")
	timers := func() int64 {
		n, err := e.r.Client.ZCard(ctx, in.b.keys.Timers()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Made always online by the admin: no prompt is left to fire.
	in.cmd(t, "dave", "online")
	if n := timers(); n != 1 {
		t.Fatalf("%d timers after /online, want dave's prompt", n)
	}
	if _, err := in.b.SetPresence(ctx, "dave", "", presence.Always); err != nil {
		t.Fatal(err)
	}
	if n := timers(); n != 0 {
		t.Fatalf("%d timers after the admin made dave always online, want none", n)
	}

	// Back to activity by the admin: dave is asked before going offline.
	st, err := in.b.SetPresence(ctx, "dave", presence.Online, presence.Activity)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != presence.Online || st.Condition != presence.Activity {
		t.Fatalf("stored %+v", st)
	}
	at := presence.PromptAt(dave, st)
	if at.IsZero() || timers() != 1 {
		t.Fatalf("prompt at %v with %d timers, want one", at, timers())
	}
	e.advance(in, at.Sub(e.clock.Now()))
	waitDelivered(t, in.ad, "prompt", 1, kindFor(KindPrompt, "dave", ""))

	// The admin is not bound by permissions; unknown agents and bad values are refused.
	erin, _ := e.dir.Agent("erin")
	if erin.Can(presence.PermissionFor(presence.Invisible)) {
		t.Fatal("erin may go invisible herself; the case needs an agent who may not")
	}
	if r := in.cmd(t, "erin", "invisible"); !strings.Contains(r.Text, "not allowed") {
		t.Fatalf("erin's own /invisible: %q", r.Text)
	}
	if st, err := in.b.SetPresence(ctx, "erin", presence.Invisible, ""); err != nil || st.Status != presence.Invisible {
		t.Errorf("admin setting erin invisible: %+v %v", st, err)
	}
	if _, err := in.b.SetPresence(ctx, "zed", presence.Online, ""); !errors.Is(err, presence.ErrUnknownAgent) {
		t.Errorf("unknown agent: %v", err)
	}
	if _, err := in.b.SetPresence(ctx, "dave", "busy", ""); err == nil {
		t.Error("invalid status accepted")
	}
}
