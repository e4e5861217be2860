package telegram

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

var floodLine = regexp.MustCompile(`flood c(\d) m(\d\d\d)`)

// TestFairDeliveryUnderFloodTelegram: six visitors flood chats offered to
// one agent, whose private chat Telegram paces at about a message a second
// (bursts of three; the real limiter); a seventh visitor's chat offer still
// goes ahead of that backlog — at most one other message reaches the agent
// between the chat's start and its offer — and the flood arrives merged,
// each message once and in order. The real bridge and adapter on the fake
// Bot API.
func TestFairDeliveryUnderFloodTelegram(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir, err := presence.NewDirectory([]presence.Property{{ID: "acme", Name: "Acme"}},
		[]presence.Agent{{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(aliceTG), Condition: presence.Always}})
	if err != nil {
		t.Fatal(err)
	}
	e.dir = dir
	a := e.adapter(t, "A", nil, nil)
	a.lim = newLimiter(telegramLimits, time.Now)
	store := presence.NewStore(e.rdb.Client, dir, presence.Keys{Prefix: e.rdb.Prefix}, time.Now)
	if _, err := store.SetStatus(t.Context(), "alice", presence.Online); err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, e, a, dir)
	ctx := t.Context()
	const floods, perChat = 6, 30
	var chats []bridge.Chat
	for i := range floods {
		c, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: fmt.Sprintf("Flood %d", i)}, fmt.Sprintf("flood c%d start", i))
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, c)
	}
	wait.For(t, "the flooding chats' offers", func() bool { return len(sentTo(e.api, aliceTG)) >= floods })

	var wg sync.WaitGroup
	for i, c := range chats {
		wg.Go(func() {
			for m := range perChat {
				if _, err := b.PostVisitorMessage(ctx, c.ID, fmt.Sprintf("flood c%d m%03d", i, m), nil); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	time.Sleep(2 * time.Second)
	before := len(sentTo(e.api, aliceTG))
	started := time.Now()
	if _, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Newcomer"}, "newcomer first"); err != nil {
		t.Fatal(err)
	}
	var at int
	wait.For(t, "the newcomer's offer", func() bool {
		for i, c := range sentTo(e.api, aliceTG) {
			if strings.Contains(c.Params["text"], "newcomer first") {
				at = i
				return true
			}
		}
		return false
	})
	delay := time.Since(started)
	wg.Wait()
	if ahead := at - before; ahead > 1 {
		t.Errorf("%d messages of the backlog reached the agent before the new chat's offer, want at most 1", ahead)
	}
	t.Logf("new chat's offer at the agent within %s of the chat's start (polled), %d other messages ahead of it, with %d flood messages queued",
		delay.Round(10*time.Millisecond), at-before, floods*perChat)

	got := map[string][]string{}
	var sends int
	wait.Long(t, "every flood message at the agent", func() bool {
		got, sends = map[string][]string{}, 0
		n := 0
		for _, c := range sentTo(e.api, aliceTG) {
			ms := floodLine.FindAllStringSubmatch(c.Params["text"], -1)
			if len(ms) > 0 {
				sends++
			}
			for _, m := range ms {
				got[m[1]] = append(got[m[1]], m[0])
				n++
			}
		}
		return n >= floods*perChat
	})
	for i := range floods {
		var want []string
		for m := range perChat {
			want = append(want, fmt.Sprintf("flood c%d m%03d", i, m))
		}
		if strings.Join(got[fmt.Sprint(i)], ",") != strings.Join(want, ",") {
			t.Errorf("chat %d got %q,\nwant each once, in order", i, got[fmt.Sprint(i)])
		}
	}
	if sends >= floods*perChat {
		t.Errorf("%d sends for %d flood messages: nothing was merged", sends, floods*perChat)
	}
	t.Logf("%d flood messages arrived in %d messages", floods*perChat, sends)
}
