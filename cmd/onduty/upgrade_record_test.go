package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

// recordUpgrade turns TestRecordUpgradeFixture on.
const recordUpgrade = "ONDUTY_RECORD_UPGRADE"

// upgradeFixture is the file TestRecordUpgradeFixture writes: the Redis data
// a running deployment left (keys without their prefix) and what a test
// needs to continue its chats.
const upgradeFixture = "testdata/upgrade-v1.json"

// Accounts, places and secrets of the upgrade fixture's deployment.
const (
	upgGroup      = int64(-1001000000001) // acme's Telegram forum supergroup
	upgAlice      = int64(111)            // Telegram, acme (works in the forum topics)
	upgCarol      = int64(333)            // Telegram, beta (private chat with the bot)
	upgBob        = "U0BOB"               // Slack, acme (the channel)
	upgDave       = "U0DAVE"              // Slack, beta (its channel)
	upgChannel    = "C0ACME"              // acme's Slack channel
	upgChannelB   = "C0BETA"              // beta's Slack channel
	upgSlackToken = "xoxb-upgrade"
	upgSlackSig   = "upgrade-signing-secret"
)

// upgradeConfig is the deployment: property acme has a Telegram forum group
// and a Slack channel (its chats show in a topic and a channel thread);
// property beta has no group, so its offers go to carol's private chat
// with the bot (broadcast), and a Slack channel of its own (Slack requires
// one per property when on).

// Timers are an hour, so nothing fires while recording. Slack runs in
// events mode: the test posts signed events to the process.
const upgradeConfig = `redis_url: %q
redis_prefix: %q
log_level: debug
properties:
  - id: acme
    name: Acme
    telegram_group: %d
    slack_channel: %s
    assignment: {strategy: least_loaded, accept_timeout: 1h, queue_timeout: 1h, invisible_fallback_after: 0s}
  - id: beta
    name: Beta
    slack_channel: %s
    assignment: {strategy: broadcast, accept_timeout: 1h, queue_timeout: 1h, invisible_fallback_after: 0s}
agents:
  - {id: alice, name: Alice, properties: [acme], telegram_user_id: %d, condition: always, initial_status: online}
  - {id: bob, name: Bob, properties: [acme], slack_user_id: %s, condition: always, initial_status: online}
  - {id: carol, name: Carol, properties: [beta], telegram_user_id: %d, condition: always, initial_status: online}
  - {id: dave, name: Dave, properties: [beta], slack_user_id: %s, condition: always, initial_status: online}
telegram: {token: %q, mode: polling}
slack: {bot_token: %q, signing_secret: %q, mode: events, api_url: %q}
outbox: {instance_id: old}
`

// upgradeMeta is the fixture's "meta": how it was made and the ids a test
// needs to go on with its chats.
type upgradeMeta struct {
	Commit   string `json:"commit"` // last commit changing product code when recorded
	Recorded string `json:"recorded_at"`
	// RecordedMS is recorded_at in Unix milliseconds, the clock of the
	// absolute times in the data (timer scores, chats' times, stream ids).
	RecordedMS int64             `json:"recorded_at_ms"`
	Config     string            `json:"config"` // upgradeConfig's text (format verbs for the URLs and prefix)
	Telegram   upgradeTelegram   `json:"telegram"`
	Slack      upgradeSlack      `json:"slack"`
	Chats      map[string]upChat `json:"chats"` // by scenario name: A, B, C, D, E
	Notes      []string          `json:"notes"`
}

type upgradeTelegram struct {
	Token string           `json:"token"`
	Group int64            `json:"group"`
	Users map[string]int64 `json:"users"` // agent id → Telegram user id
	// LastUpdateID is the last update_id the fake handed out; the next
	// update must have a greater one (tg:upd keys hold the ones taken).
	LastUpdateID int64 `json:"last_update_id"`
	// LastThread is the last forum topic id the fake created.
	LastThread int `json:"last_thread"`
	// Partial is the id of the delivery (chat A's long visitor message, two
	// pieces) still in the Telegram outbox with one piece sent (tg:dlv:ID).
	Partial string `json:"partial_delivery"`
}

type upgradeSlack struct {
	BotToken      string            `json:"bot_token"`
	SigningSecret string            `json:"signing_secret"`
	Channels      map[string]string `json:"channels"` // property → channel
	Users         map[string]string `json:"users"`    // agent id → Slack user id
	LastTS        string            `json:"last_ts"`  // the last ts the fake handed out
}

// upChat is one chat of the scenario and where it shows.
type upChat struct {
	Property     string `json:"property"`
	ChatID       string `json:"chat_id"`
	VisitorToken string `json:"visitor_token"`
	State        string `json:"state"` // "active (owner)" or "pending"
	Story        string `json:"story"`
	// Telegram messages: the offer(s) with Accept buttons, the visitor's
	// messages as the agent saw them, the topic.
	TGOffers   []tgMsg `json:"tg_offers,omitempty"`
	TGVisitor  []tgMsg `json:"tg_visitor_messages,omitempty"`
	TGThread   int     `json:"tg_thread,omitempty"`
	SlackRoots []slMsg `json:"slack_roots,omitempty"` // offer/root messages (thread parents)
}

type tgMsg struct {
	Chat      int64 `json:"chat"`
	MessageID int   `json:"message_id"`
	Thread    int   `json:"thread,omitempty"`
}

type slMsg struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// TestRecordUpgradeFixture drives a real `onduty serve` (Telegram through
// tgfake, Slack in events mode against a small fake Web API) into a state
// with chats open, stops it with SIGTERM and writes every Redis key it left
// to testdata/upgrade-v1.json, for the test that starts a newer binary on
// it. Run it on the commit whose data format the fixture should hold:
//
//	ONDUTY_RECORD_UPGRADE=1 ONDUTY_TEST_REDIS_URL=redis://127.0.0.1:6379/0 \
//	  go test -count=1 -run TestRecordUpgradeFixture ./cmd/onduty/
//
// It needs a real Redis (TTLs are recorded as they are on the server).
func TestRecordUpgradeFixture(t *testing.T) {
	if os.Getenv(recordUpgrade) != "1" {
		t.Skip(recordUpgrade + "=1 records " + upgradeFixture)
	}
	if os.Getenv("ONDUTY_TEST_REDIS_URL") == "" {
		t.Fatal("recording needs a real Redis: set ONDUTY_TEST_REDIS_URL")
	}
	r := redistest.New(t)
	api := newFakeBot(t)
	sl := newSlackWeb(t, upgSlackSig, "")
	file := writeFile(t, fmt.Sprintf(upgradeConfig, r.URL, r.Prefix, upgGroup, upgChannel, upgChannelB, upgAlice, upgBob, upgCarol, upgDave,
		procToken, upgSlackToken, upgSlackSig, sl.apiURL()))
	p := startProcess(t, "old", file, api)
	wait.Within(t, 15*time.Second, "the old binary to poll Telegram", func() bool { return api.polledBy("old") > 0 })

	meta := upgradeMeta{
		Commit: productCommit(t), Config: upgradeConfig,
		Telegram: upgradeTelegram{Token: procToken, Group: upgGroup, Users: map[string]int64{"alice": upgAlice, "carol": upgCarol}},
		Slack:    upgradeSlack{BotToken: upgSlackToken, SigningSecret: upgSlackSig, Channels: map[string]string{"acme": upgChannel, "beta": upgChannelB}, Users: map[string]string{"bob": upgBob, "dave": upgDave}},
		Chats:    map[string]upChat{},
	}
	start := func(property, name, text string) startedChat {
		t.Helper()
		var c startedChat
		if code := postJSON(t, p.base+"/v1/properties/"+property+"/chats", "", map[string]string{"name": name, "message": text}, &c); code != 201 {
			t.Fatalf("start chat: %d", code)
		}
		return c
	}
	visitorSays := func(c startedChat, text string) {
		t.Helper()
		if code := postJSON(t, p.base+"/v1/chats/"+c.ChatID+"/messages", c.VisitorToken, map[string]string{"text": text}, nil); code != 202 {
			t.Fatalf("visitor message: %d", code)
		}
	}
	inTranscript := func(c startedChat, text string) {
		t.Helper()
		wait.Within(t, 15*time.Second, fmt.Sprintf("%q in the transcript", text), func() bool {
			return strings.Contains(transcriptOf(t, p.base, c), text)
		})
	}
	// tgSent waits for the n-th successful sendMessage to chatID whose
	// text or keyboard contains want.
	tgSent := func(chatID int64, want string, n int) []tgfake.Call {
		t.Helper()
		var got []tgfake.Call
		wait.Within(t, 15*time.Second, fmt.Sprintf("Telegram message to %d with %q", chatID, want), func() bool {
			got = api.CallsWhere(func(c tgfake.Call) bool {
				return c.Method == "sendMessage" && !c.Failed && c.Params["chat_id"] == strconv.FormatInt(chatID, 10) &&
					(strings.Contains(c.Params["text"], want) || strings.Contains(c.Params["reply_markup"], want))
			})
			return len(got) >= n
		})
		return got
	}
	asTG := func(calls []tgfake.Call) []tgMsg {
		var out []tgMsg
		for _, c := range calls {
			chat, _ := strconv.ParseInt(c.Params["chat_id"], 10, 64)
			th, _ := strconv.Atoi(c.Params["message_thread_id"])
			out = append(out, tgMsg{Chat: chat, MessageID: c.ResultID, Thread: th})
		}
		return out
	}

	// Chat A (acme): offered in a new forum topic and in the Slack channel;
	// alice accepts with the topic's button; the visitor writes, alice
	// answers in the topic, bob writes in the channel thread.
	a := start("acme", "Ann", "A: my order is late")
	aOffer := tgSent(upgGroup, `"a:`+a.ChatID+`"`, 1)[0]
	aThread, _ := strconv.Atoi(aOffer.Params["message_thread_id"])
	aRoot := sl.waitPost(t, upgChannel, a.ChatID)
	api.Push(groupCallback(upgAlice, "a:"+a.ChatID, upgGroup, aThread, aOffer.ResultID))
	wait.Within(t, 15*time.Second, "alice to own chat A", func() bool {
		return strings.Contains(sl.updatesOf(aRoot.TS), "Alice")
	})
	visitorSays(a, "A: order 1234, placed Monday")
	aVisitor := tgSent(upgGroup, "order 1234", 1)
	sl.waitPost(t, upgChannel, "order 1234")
	api.Push(tgfake.TopicMessage(upgAlice, upgGroup, aThread, "A: alice here, checking order 1234"))
	inTranscript(a, "alice here, checking order 1234")
	sl.waitPost(t, upgChannel, "alice here, checking")
	sl.event(t, p.base, "Ev0A1", map[string]any{"type": "message", "user": upgBob, "channel": upgChannel, "channel_type": "channel",
		"text": "A: bob: the courier was delayed", "ts": "1700001000.000100", "thread_ts": aRoot.TS})
	meta.Chats["A"] = upChat{Property: "acme", ChatID: a.ChatID, VisitorToken: a.VisitorToken, State: "active (alice)",
		Story:    "offered in forum topic and Slack channel thread; alice accepted with the topic's Accept button; visitor wrote; alice answered in the topic; bob wrote in the channel thread; then a long visitor message (two Telegram pieces) whose second piece Telegram refused with 500 until the process was stopped",
		TGOffers: asTG([]tgfake.Call{aOffer}), TGVisitor: asTG(aVisitor), TGThread: aThread,
		SlackRoots: []slMsg{{Channel: aRoot.Channel, TS: aRoot.TS}}}

	// Chat C (beta): offered to carol (private) and in beta's channel; carol
	// accepts with her button; the visitor writes; carol answers by
	// replying to the visitor's message.
	c := start("beta", "Cy", "C: cannot log in")
	cOffer := tgSent(upgCarol, `"a:`+c.ChatID+`"`, 1)[0]
	cRoot := sl.waitPost(t, upgChannelB, c.ChatID)
	api.Push(tgfake.Callback(upgCarol, "a:"+c.ChatID, upgCarol, cOffer.ResultID))
	wait.Within(t, 15*time.Second, "C's channel offer marked taken", func() bool { return strings.Contains(sl.updatesOf(cRoot.TS), "Carol") })
	visitorSays(c, "C: it says password expired")
	cVisitor := tgSent(upgCarol, "password expired", 1)
	api.Push(tgfake.ReplyMessage(upgCarol, "C: carol: reset link sent", cVisitor[0].ResultID))
	inTranscript(c, "reset link sent")
	meta.Chats["C"] = upChat{Property: "beta", ChatID: c.ChatID, VisitorToken: c.VisitorToken, State: "active (carol)",
		Story:    "offered to carol (Telegram private) and in the beta Slack channel; carol accepted with her Accept button; visitor wrote; carol answered replying to the visitor's message",
		TGOffers: asTG([]tgfake.Call{cOffer}), TGVisitor: asTG(cVisitor), SlackRoots: []slMsg{{Channel: cRoot.Channel, TS: cRoot.TS}}}

	// Chat E (beta): dave accepts with the Accept button in beta's channel;
	// the visitor writes; dave answers in the channel thread.
	e := start("beta", "Eve", "E: invoice question")
	eOffer := tgSent(upgCarol, `"a:`+e.ChatID+`"`, 1)[0]
	eRoot := sl.waitPost(t, upgChannelB, e.ChatID)
	sl.button(t, p.base, upgDave, e.ChatID, eRoot.Channel, eRoot.TS)
	wait.Within(t, 15*time.Second, "carol's offer of E edited", func() bool {
		return len(api.CallsWhere(func(cl tgfake.Call) bool {
			return cl.Method == "editMessageText" && cl.Params["message_id"] == strconv.Itoa(eOffer.ResultID)
		})) > 0
	})
	visitorSays(e, "E: why two charges in May?")
	sl.waitPost(t, upgChannelB, "two charges")
	sl.event(t, p.base, "Ev0E1", map[string]any{"type": "message", "user": upgDave, "channel": upgChannelB, "channel_type": "channel",
		"text": "E: dave: one is a hold, it drops in 3 days", "ts": "1700002000.000100", "thread_ts": eRoot.TS})
	inTranscript(e, "one is a hold")
	meta.Chats["E"] = upChat{Property: "beta", ChatID: e.ChatID, VisitorToken: e.VisitorToken, State: "active (dave)",
		Story:    "offered to carol (Telegram private) and in the beta Slack channel; dave accepted with the channel's Accept button; visitor wrote; dave answered in the channel thread",
		TGOffers: asTG([]tgfake.Call{eOffer}), SlackRoots: []slMsg{{Channel: eRoot.Channel, TS: eRoot.TS}}}

	// Chats B (acme) and D (beta): offered, nobody accepted.
	b := start("acme", "Ben", "B: do you ship to Norway?")
	bOffer := tgSent(upgGroup, `"a:`+b.ChatID+`"`, 1)[0]
	bThread, _ := strconv.Atoi(bOffer.Params["message_thread_id"])
	bRoot := sl.waitPost(t, upgChannel, b.ChatID)
	meta.Chats["B"] = upChat{Property: "acme", ChatID: b.ChatID, VisitorToken: b.VisitorToken, State: "pending",
		Story:    "offered in its forum topic and the Slack channel; nobody accepted (an Accept after the upgrade must work)",
		TGOffers: asTG([]tgfake.Call{bOffer}), TGThread: bThread, SlackRoots: []slMsg{{Channel: bRoot.Channel, TS: bRoot.TS}}}
	d := start("beta", "Dia", "D: hello?")
	dOffer := tgSent(upgCarol, `"a:`+d.ChatID+`"`, 1)[0]
	dRoot := sl.waitPost(t, upgChannelB, d.ChatID)
	meta.Chats["D"] = upChat{Property: "beta", ChatID: d.ChatID, VisitorToken: d.VisitorToken, State: "pending",
		Story:    "offered to carol (Telegram private) and in the beta Slack channel; nobody accepted",
		TGOffers: asTG([]tgfake.Call{dOffer}), SlackRoots: []slMsg{{Channel: dRoot.Channel, TS: dRoot.TS}}}

	// A delivery half done: a visitor message of chat A too long for one
	// Telegram message; the first piece goes out, Telegram refuses the
	// second (500) until the process is stopped.
	long := "A: long " + strings.Repeat("😀", 2200) + " end"
	api.FailAfter("sendMessage", 1, tgfake.Forever, 500, "Internal Server Error", 0)
	visitorSays(a, long)
	wait.Within(t, 20*time.Second, "a refused second piece", func() bool {
		return len(api.CallsWhere(func(c tgfake.Call) bool { return c.Method == "sendMessage" && c.Failed })) > 0
	})
	partial := outboxDelivery(t, r, long[:20])
	wait.Within(t, 15*time.Second, "the first piece recorded", func() bool {
		v, _ := r.Client.Get(context.Background(), r.Prefix+"tg:dlv:"+partial).Result()
		return v == "1"
	})
	meta.Telegram.Partial = partial
	sl.waitPost(t, upgChannel, "A: long")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exited(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, p.logs.String())
	}
	if v, _ := r.Client.Get(context.Background(), r.Prefix+"tg:dlv:"+partial).Result(); v != "1" {
		t.Fatalf("after the stop, delivery %s has %q pieces sent, want 1", partial, v)
	}
	meta.Telegram.LastUpdateID = api.Push(tgfake.PrivateMessage(upgAlice, "never read")) - 1 // the fake has no getter
	meta.Telegram.LastThread = max(aThread, bThread)
	meta.Slack.LastTS = sl.lastTS()
	meta.Notes = []string{
		"redis holds every key under the old process's prefix, prefix stripped; load it with redistest.Load under a new prefix",
		"pttl_ms is each key's time to live when recorded; timer scores (the timers zset: offer, queue, idle), chats' times and stream ids are absolute Unix ms of the recording (recorded_at_ms): shift them, or they fire at once when loaded later",
		"the old process was stopped with SIGTERM while chat A's long message was half delivered on Telegram (tg:dlv:* = 1)",
		"the fake Slack numbered ts 1700000000.NNNNNN in order (chat.update keeps the ts)",
	}

	now := time.Now()
	meta.Recorded, meta.RecordedMS = now.UTC().Format(time.RFC3339Nano), now.UnixMilli()
	dump, err := redistest.Dump(context.Background(), r.Client, r.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(upgradeFile{meta, dump}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(upgradeFixture, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d bytes", upgradeFixture, len(out))
}

// upgradeFile is the fixture file: how it was made, and the Redis data.
type upgradeFile struct {
	Meta  upgradeMeta     `json:"meta"`
	Redis json.RawMessage `json:"redis"`
}

// readUpgradeFixture reads the fixture and its Redis data by key.
func readUpgradeFixture(t *testing.T) (upgradeFile, map[string]redistest.Entry) {
	t.Helper()
	var f upgradeFile
	raw, err := os.ReadFile(upgradeFixture)
	if err == nil {
		err = json.Unmarshal(raw, &f)
	}
	var keys map[string]redistest.Entry
	if err == nil {
		err = json.Unmarshal(f.Redis, &keys)
	}
	if err != nil {
		t.Fatalf("%s: %v", upgradeFixture, err)
	}
	return f, keys
}

// outboxDelivery waits for the Telegram outbox to hold a delivery whose
// entry contains text and returns its id.
func outboxDelivery(t *testing.T, r *redistest.Redis, text string) string {
	t.Helper()
	ctx := context.Background()
	var id string
	wait.Within(t, 15*time.Second, "the delivery in the outbox", func() bool {
		keys, err := r.Client.Keys(ctx, r.Prefix+"outbox:{telegram:*}").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			msgs, _ := r.Client.XRange(ctx, k, "-", "+").Result()
			for _, m := range msgs {
				body, _ := m.Values["d"].(string)
				var d struct{ ID string }
				if strings.Contains(body, text) && json.Unmarshal([]byte(body), &d) == nil && d.ID != "" {
					id = d.ID
					return true
				}
			}
		}
		return false
	})
	return id
}

// productCommit is the last commit that changed product code (anything but
// tests, test helpers and test data) in this checkout, with "+dirty" when
// product code has uncommitted changes.
func productCommit(t *testing.T) string {
	t.Helper()
	paths := []string{"--", ":(top)", ":(top,exclude,glob)**/*_test.go", ":(top,exclude,glob)**/testdata/**", ":(top,exclude,glob)internal/redistest/**"}
	out, err := exec.Command("git", append([]string{"log", "-1", "--format=%h"}, paths...)...).Output()
	if err != nil {
		t.Fatalf("git log: %v", err)
	}
	commit := strings.TrimSpace(string(out))
	if err := exec.Command("git", append([]string{"diff", "--quiet", "HEAD"}, paths...)...).Run(); err != nil {
		commit += "+dirty"
	}
	return commit
}

// groupCallback is a press of button data on message msgID in forum topic
// thread of group.
func groupCallback(from int64, data string, group int64, thread, msgID int) map[string]any {
	u := tgfake.Callback(from, data, group, msgID)
	m := u["callback_query"].(map[string]any)["message"].(map[string]any)
	m["chat"] = map[string]any{"id": group, "type": "supergroup", "is_forum": true, "title": "Support"}
	m["message_thread_id"], m["is_topic_message"] = thread, true
	return u
}

// TestUpgradeFixture checks the recorded fixture (no recording needed): it
// names its commit, holds every kind of adapter chat state the upgrade
// must carry over, each of its chats, and loads into Redis as it is.
func TestUpgradeFixture(t *testing.T) {
	f, keys := readUpgradeFixture(t)
	if f.Meta.Commit == "" || strings.HasSuffix(f.Meta.Commit, "+dirty") || f.Meta.RecordedMS == 0 {
		t.Errorf("meta names commit %q, recorded at %d", f.Meta.Commit, f.Meta.RecordedMS)
	}
	for _, family := range []string{"tg:msg:", "tg:msgs:", "tg:offer:", "tg:topic:", "tg:thread:", "tg:dlv:", "tg:upd:",
		"slack:root:", "slack:thread:", "slack:event:", "slack:dlv:"} {
		n := 0
		for k := range keys {
			if strings.HasPrefix(k, family) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no %s* key in the fixture", family)
		}
	}
	for name, c := range f.Meta.Chats {
		if _, ok := keys["{"+c.Property+"}:chat:"+c.ChatID]; !ok || c.VisitorToken == "" {
			t.Errorf("chat %s (%s) missing from the data or without a visitor token", name, c.ChatID)
		}
	}
	if p := f.Meta.Telegram.Partial; keys["tg:dlv:"+p].String == nil || *keys["tg:dlv:"+p].String != "1" {
		t.Errorf("the half-done delivery %q has no progress of 1 piece", p)
	}
	r := redistest.New(t)
	if err := redistest.Load(context.Background(), r.Client, r.Prefix, f.Redis); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Client.Keys(context.Background(), r.Prefix+"*").Result(); err != nil || len(n) != len(keys) {
		t.Errorf("loaded %d keys (%v), want %d", len(n), err, len(keys))
	}
}
