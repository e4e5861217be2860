package telegram

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/tgfake"
)

func TestCommandsBecomeActions(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	h := bridgetest.NewHandler(func(act bridge.Action) (bridge.Reply, error) {
		r := bridge.Reply{Text: "did " + act.Command + " <" + act.Args + ">"}
		if act.Command == "chats" {
			r.Choices = []bridge.Choice{{Label: "Vera", Action: bridge.ActSwitch, Chat: "chatVera123"}}
		}
		return r, nil
	})
	run(t, a, h)

	tests := []struct {
		text, cmd, args string
	}{
		{"/start", "start", ""},
		{"/online", "online", ""},
		{"/away", "away", ""},
		{"/invisible", "invisible", ""},
		{"/offline", "offline", ""},
		{"/alwayson on", "alwayson", "on"},
		{"/alwayson   off ", "alwayson", "off"},
		{"/status", "status", ""},
		{"/team", "team", ""},
		{"/chats", "chats", ""},
		{"/accept", "accept", ""},
		{"/close", "close", ""},
		{"/transfer Bob Smith", "transfer", "Bob Smith"},
		{"/monitor", "monitor", ""},
		{"/help", "help", ""},
		{"/Help@onduty_bot", "help", ""},
		{"/unknowncmd x", "unknowncmd", "x"},
	}
	for i, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			e.api.Push(tgfake.PrivateMessage(aliceTG, tt.text))
			acts := h.WaitN(t, i+1)
			got := acts[i]
			want := bridge.Action{Kind: bridge.ActCommand, Surface: "telegram", Agent: "alice", Command: tt.cmd, Args: tt.args, DedupKey: got.DedupKey}
			if got != want {
				t.Fatalf("action = %+v, want %+v", got, want)
			}
			if !strings.HasPrefix(got.DedupKey, "telegram:") {
				t.Errorf("dedup key %q", got.DedupKey)
			}
			wantText := "did " + tt.cmd + " &lt;" + tt.args + "&gt;"
			sent := waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return c.Params["text"] == wantText })
			if sent[0].Params["chat_id"] != strconv.FormatInt(aliceTG, 10) || sent[0].Params["parse_mode"] != "HTML" {
				t.Errorf("reply params %v", sent[0].Params)
			}
			if tt.cmd == "chats" {
				var kb keyboard
				if err := json.Unmarshal([]byte(sent[0].Params["reply_markup"]), &kb); err != nil {
					t.Fatal(err)
				}
				if len(kb.InlineKeyboard) != 1 || kb.InlineKeyboard[0][0].CallbackData != "s:chatVera123" {
					t.Errorf("choices keyboard %+v", kb)
				}
			}
		})
	}

	// A command for another bot in a group is not ours; nothing happens.
	n := len(h.Actions())
	e.api.Push(tgfake.TopicMessage(carolTG, betaGroup, 1, "/status@other_bot"))
	e.api.Push(tgfake.PrivateMessage(aliceTG, "/help"))
	acts := h.WaitN(t, n+1)
	if acts[n].Command != "help" || len(acts) != n+1 {
		t.Errorf("after /status@other_bot got %+v", acts[n:])
	}
	if cmds := e.api.Calls("setMyCommands"); len(cmds) == 0 || !strings.Contains(cmds[0].Params["commands"], `"transfer"`) {
		t.Errorf("setMyCommands not called with the command list: %+v", cmds)
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		text, bot, cmd, args string
		ok                   bool
	}{
		{"/online", "onduty_bot", "online", "", true},
		{"/transfer  Bob ", "", "transfer", "Bob", true},
		{"/transfer@Onduty_Bot Bob", "onduty_bot", "transfer", "Bob", true},
		{"/transfer@someone Bob", "onduty_bot", "", "", true},
		{"/transfer@someone Bob", "", "transfer", "Bob", true},
		{"/close\nthanks", "", "close", "thanks", true},
		{"//internal note", "", "", "", false},
		{"/", "", "", "", false},
		{"hello /online", "", "", "", false},
		{"/ünicode", "", "", "", false},
	}
	for _, tt := range tests {
		cmd, args, ok := parseCommand(tt.text, tt.bot)
		if cmd != tt.cmd || args != tt.args || ok != tt.ok {
			t.Errorf("parseCommand(%q, %q) = %q, %q, %v; want %q, %q, %v", tt.text, tt.bot, cmd, args, ok, tt.cmd, tt.args, tt.ok)
		}
	}
}

func TestStrangersGetOneRefusalAndNoHandlerCall(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	h := &fakeHandler{}
	run(t, a, h)

	e.api.Push(tgfake.PrivateMessage(stranger, "hi"))
	e.api.Push(tgfake.PrivateMessage(stranger, "/online"))
	e.api.Push(tgfake.PrivateMessage(stranger, "hello?"))
	e.api.Push(tgfake.Callback(stranger, "a:chat1", stranger, 5))
	// An agent's message after them proves the stranger's updates were all handled.
	e.api.Push(tgfake.PrivateMessage(aliceTG, "/status"))
	acts := h.WaitN(t, 1)
	waitCalls(t, e.api, "answerCallbackQuery", 1, nil)
	if len(acts) != 1 || acts[0].Agent != "alice" {
		t.Fatalf("handler saw %+v, want only alice's /status", acts)
	}
	refusals := waitCalls(t, e.api, "sendMessage", 1, func(c tgfake.Call) bool { return c.Params["chat_id"] == "777" })
	if len(refusals) != 1 || !strings.Contains(refusals[0].Params["text"], "support team") {
		t.Fatalf("refusals = %+v, want exactly one", refusals)
	}
	// A day later (the key gone) they are told once more.
	e.rdb.Client.Del(t.Context(), a.keys.refused(stranger))
	e.api.Push(tgfake.PrivateMessage(stranger, "again"))
	waitCalls(t, e.api, "sendMessage", 2, func(c tgfake.Call) bool { return c.Params["chat_id"] == "777" })
	if n := len(h.Actions()); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

func TestDuplicateUpdatesActOnce(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(t, "A", nil, nil)
	// The bridge ignores an action whose DedupKey it handled (dedupHost
	// does the same): the adapter names each update by its update_id.
	h := &dedupHost{Handler: bridgetest.NewHandler(func(bridge.Action) (bridge.Reply, error) { return bridge.Reply{Text: "ok"}, nil })}
	a.handler.Store(&handlerBox{h: h})
	u := decodeUpdate(t, tgfake.PrivateMessage(aliceTG, "/online"), 4242)
	for range 3 {
		if err := a.handleUpdate(t.Context(), h, u); err != nil {
			t.Fatal(err)
		}
	}
	if acts := h.Actions(); len(acts) != 1 || acts[0].DedupKey != "telegram:4242" {
		t.Fatalf("actions = %+v, want one with dedup key telegram:4242", acts)
	}
	if n := len(e.api.Calls("sendMessage")); n != 1 {
		t.Errorf("%d replies, want 1", n)
	}

	// A transient failure drops the claim, so the repeat is acted on.
	calls := 0
	h.SetReply(func(bridge.Action) (bridge.Reply, error) {
		calls++
		if calls == 1 {
			return bridge.Reply{}, bridge.ErrUnavailable
		}
		return bridge.Reply{}, nil
	})
	u2 := decodeUpdate(t, tgfake.PrivateMessage(aliceTG, "hello"), 4243)
	if err := a.handleUpdate(t.Context(), h, u2); err == nil {
		t.Fatal("want an error for an unavailable bridge")
	}
	if err := a.handleUpdate(t.Context(), h, u2); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("handler calls = %d, want 2 (fail, then retry)", calls)
	}
}
