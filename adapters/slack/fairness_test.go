package slack

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
)

var floodLine = regexp.MustCompile(`flood c\d m\d\d\d`)

// TestFairDeliveryUnderFlood: six visitors flood their chats, all in one
// Slack channel paced as in production (one post a second, bursts of three),
// so the channel's backlog grows far beyond what Slack takes. A seventh
// visitor's first message (the new chat's root post) still goes ahead of
// that backlog: at most one other post reaches the channel between the
// chat's start and its root, i.e. no more than one pacing interval. The
// flooding chats' messages arrive merged, each exactly once and in order —
// through the real bridge and the real adapter on a fake Slack.
func TestFairDeliveryUnderFlood(t *testing.T) {
	t.Parallel()
	fake := newFakeSlack(t)
	l := newLiveSlackWith(t, fake, testDirectory(t), func(a *Adapter) { a.pace = newPacer(time.Second, 3) })
	b, ctx := l.b, t.Context()
	posts := func() []apiCall {
		var out []apiCall
		for _, c := range fake.callsOf("chat.postMessage") {
			if c.Form.Get("channel") == "C1" {
				out = append(out, c)
			}
		}
		return out
	}
	const floods, perChat = 6, 30
	var chats []bridge.Chat
	for i := range floods {
		c, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: fmt.Sprintf("Flood %d", i)}, fmt.Sprintf("flood c%d start", i))
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, c)
	}
	wait.For(t, "the flooding chats' root posts", func() bool { return len(posts()) >= floods })

	// Each visitor writes ten messages a second, 60 in all against
	// Slack's one: the backlog grows for three seconds.
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
	before := len(posts())
	started := time.Now()
	if _, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Newcomer"}, "newcomer first"); err != nil {
		t.Fatal(err)
	}
	var rootAt int
	var delay time.Duration
	wait.For(t, "the newcomer's root post", func() bool {
		for i, c := range posts() {
			if strings.Contains(c.Form.Get("text")+c.Form.Get("blocks"), "newcomer first") {
				rootAt, delay = i, c.At.Sub(started)
				return true
			}
		}
		return false
	})
	wg.Wait()
	if ahead := rootAt - before; ahead > 1 {
		t.Errorf("%d posts of the backlog went to the channel before the new chat's first message, want at most 1", ahead)
	}
	t.Logf("new chat's first message posted %s after the chat started, %d other posts ahead of it, with %d flood messages queued behind the channel's pace",
		delay.Round(time.Millisecond), rootAt-before, floods*perChat)

	// The backlog drains merged: every flood message once, in order per chat.
	var got map[int][]string
	var n int

	wait.Long(t, "every flood message in the channel", func() bool {
		got, n = map[int][]string{}, 0
		for _, c := range posts() {
			if c.Form.Get("thread_ts") == "" {
				continue
			}
			// The blocks hold the whole text (the notification text is cut short).
			for _, m := range slices.Compact(floodLine.FindAllString(c.Form.Get("blocks"), -1)) {
				var ci int
				fmt.Sscanf(m, "flood c%d", &ci)
				got[ci] = append(got[ci], m)
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
		if strings.Join(got[i], ",") != strings.Join(want, ",") {
			t.Errorf("chat %d got %q,\nwant each once, in order", i, got[i])
		}
	}
	if p := len(posts()); p >= floods*perChat {
		t.Errorf("%d posts for %d flood messages: nothing was merged", p, floods*perChat)
	}
	t.Logf("%d flood messages arrived in %d posts", floods*perChat, len(posts())-floods-1)
}
