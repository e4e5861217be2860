package slack

import (
	"context"
	"strings"
	"testing"

	"github.com/onduty/onduty/bridge"
)

func fileJSON(f *fakeSlack, name string, size int) map[string]any {
	return map[string]any{"id": "F" + name, "name": name, "mimetype": "text/plain", "size": size,
		"url_private_download": f.srv.URL + "/files/" + name}
}

// newFileHarness runs an events-mode adapter; its handler keeps files in
// memory, as the bridge keeps them in Redis.
func newFileHarness(t *testing.T) (*harness, *fakeHandler) {
	t.Helper()
	hs := newHarness(t, ModeEvents)
	return hs, hs.h
}

func TestAgentFiles(t *testing.T) {
	hs, store := newFileHarness(t)
	fake := hs.fake
	rootTS := hs.offer("chatF", "can you send the invoice?")

	// Text and two files in the thread: the text with the first file, then
	// the second file on its own.
	hs.message("EvF1", map[string]any{"subtype": "file_share", "user": "U111", "text": "here you go", "channel": "C1", "channel_type": "channel",
		"ts": "10.1", "thread_ts": rootTS, "files": []any{fileJSON(fake, "invoice.txt", 33), fileJSON(fake, "terms.txt", 27)}})
	got := store.WaitN(t, 2)
	if got[0].Kind != bridge.ActMessage || got[0].Chat != "chatF" || got[0].Text != "here you go" || got[0].Attachment == nil ||
		got[0].Attachment.Name != "invoice.txt" || got[0].DedupKey != "slack:EvF1" {
		t.Errorf("first action %+v", got[0])
	}
	if got[1].Text != "" || got[1].Attachment == nil || got[1].Attachment.Name != "terms.txt" || got[1].DedupKey != "slack:EvF1:file1" {
		t.Errorf("second action %+v", got[1])
	}
	if got[0].Attachment != nil {
		if _, data, err := store.File(context.Background(), "chatF", got[0].Attachment.Key); err != nil || string(data) != fileContent("invoice.txt") {
			t.Errorf("stored %q (%v)", data, err)
		}
	}
	for _, c := range fake.callsOf("file") {
		if c.Form.Get("auth") != "Bearer xoxb-test" {
			t.Errorf("file fetched with %q", c.Form.Get("auth"))
		}
	}

	// Too large: not fetched, the agent is told, the text still goes.
	hs.message("EvF2", map[string]any{"subtype": "file_share", "user": "U111", "text": "and the video", "channel": "C1", "channel_type": "channel",
		"ts": "10.2", "thread_ts": rootTS, "files": []any{fileJSON(fake, "video.mp4", 50<<20)}})
	got = store.WaitN(t, 3)
	if got[2].Text != "and the video" || got[2].Attachment != nil {
		t.Errorf("oversized file action %+v", got[2])
	}
	eph := fake.waitCall(t, "chat.postEphemeral", 1)
	if !strings.Contains(blocksOf(eph), "Couldn't pass on [video.mp4]") {
		t.Errorf("oversized note %v", eph.Form)
	}

	// A file in the DM outside any chat thread: which chat is unknown.
	hs.message("EvF3", map[string]any{"subtype": "file_share", "user": "U111", "text": "", "channel": "D111", "channel_type": "im",
		"ts": "10.3", "files": []any{fileJSON(fake, "x.txt", 15)}})
	got = store.WaitN(t, 4)
	if got[3].Kind != bridge.ActActivity {
		t.Errorf("file outside a thread: %+v", got[3])
	}
	eph = fake.waitCall(t, "chat.postEphemeral", 2)
	if !strings.Contains(blocksOf(eph), "post it in the chat's thread") {
		t.Errorf("DM file note %v", eph.Form)
	}
	if n := len(fake.callsOf("file")); n != 2 {
		t.Errorf("%d downloads, want 2", n)
	}
}

// TestFailedFileActionLetsRedeliveryThrough: when the bridge fails on the
// second file of a message (for a reason other than storage being down,
// which is waited out), that file's claim is dropped, so Slack's
// redelivery of the event passes it on, while the text and first file,
// handled already, are not passed on twice.
func TestFailedFileActionLetsRedeliveryThrough(t *testing.T) {
	hs, store := newFileHarness(t)
	fake := hs.fake
	rootTS := hs.offer("chatG", "both files, please")

	store.SetReply(func(a bridge.Action) (bridge.Reply, error) {
		if strings.HasSuffix(a.DedupKey, ":file1") {
			return bridge.Reply{}, bridge.ErrChatClosed
		}
		return bridge.Reply{}, nil
	})
	event := func() map[string]any {
		return map[string]any{"subtype": "file_share", "user": "U111", "text": "attached", "channel": "C1", "channel_type": "channel",
			"ts": "11.1", "thread_ts": rootTS, "files": []any{fileJSON(fake, "a.txt", 15), fileJSON(fake, "b.txt", 15)}}
	}
	hs.message("EvG1", event())
	store.WaitN(t, 2)
	// The failure is told to the agent.
	if eph := fake.waitCall(t, "chat.postEphemeral", 1); !strings.Contains(blocksOf(eph), "closed") {
		t.Errorf("failure note %v", eph.Form)
	}

	store.SetReply(nil)
	hs.message("EvG1", event()) // Slack's redelivery
	got := store.WaitN(t, 3)
	if got[2].DedupKey != "slack:EvG1:file1" || got[2].Attachment == nil || got[2].Attachment.Name != "b.txt" {
		t.Errorf("redelivered second file %+v", got[2])
	}
	hs.message("EvG2", map[string]any{"user": "U111", "text": "after", "channel": "C1", "channel_type": "channel", "ts": "11.2", "thread_ts": rootTS})
	if got = store.WaitN(t, 4); len(got) != 4 || got[3].Text != "after" {
		t.Errorf("the text or first file passed on twice: %+v", got)
	}
}
