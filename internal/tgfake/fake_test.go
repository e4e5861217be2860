package tgfake

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/onduty/onduty/internal/wait"
)

const token = "4242:tgfake-test"

func newFake(t *testing.T, o Options) *Server {
	t.Helper()
	o.Token = token
	o.Report = t
	f := New(o)
	t.Cleanup(f.Close)
	return f
}

// sdk is the real go-telegram/bot client pointed at the fake.
func sdk(t *testing.T, url string) *bot.Bot {
	t.Helper()
	b, err := bot.New(token, bot.WithServerURL(url), bot.WithSkipGetMe())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answer is a Bot API answer as it comes over the wire.
type answer struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

func post(t *testing.T, u, contentType, body string) (int, answer) {
	t.Helper()
	resp, err := http.Post(u, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("%s: answer is not JSON: %v", u, err)
	}
	return resp.StatusCode, a
}

func TestBodiesAreReadInEveryEncoding(t *testing.T) {
	f := newFake(t, Options{})
	for _, tt := range []struct {
		name, contentType, body, query string
	}{
		{"json", "application/json", `{"chat_id":111,"text":"hi <b>x</b>","parse_mode":"HTML"}`, ""},
		{"form", "application/x-www-form-urlencoded", url.Values{"chat_id": {"111"}, "text": {"hi <b>x</b>"}, "parse_mode": {"HTML"}}.Encode(), ""},
		{"query", "", "", "?chat_id=111&text=hi+%3Cb%3Ex%3C%2Fb%3E&parse_mode=HTML"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, a := post(t, f.URL()+"/bot"+token+"/sendMessage"+tt.query, tt.contentType, tt.body)
			if code != 200 || !a.OK {
				t.Fatalf("answer %d %+v", code, a)
			}
			var m models.Message
			if err := json.Unmarshal(a.Result, &m); err != nil || m.Chat.ID != 111 || m.ID == 0 {
				t.Fatalf("result %s: %v", a.Result, err)
			}
			calls := f.CallsWhere(func(c Call) bool { return c.ResultID == m.ID })
			if len(calls) != 1 || calls[0].Params["chat_id"] != "111" || calls[0].Params["text"] != "hi <b>x</b>" {
				t.Errorf("recorded %+v", calls)
			}
		})
	}
}

func TestTheSDKTalksToIt(t *testing.T) {
	f := newFake(t, Options{})
	b := sdk(t, f.URL())
	ctx := context.Background()
	me, err := b.GetMe(ctx)
	if err != nil || me.ID != 4242 || me.Username != "onduty_bot" {
		t.Fatalf("getMe: %+v %v", me, err)
	}
	m, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(111), Text: "<b>hello</b>", ParseMode: models.ParseModeHTML,
		ReplyMarkup: models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "Accept", CallbackData: "a:c1"}}}}})
	if err != nil || m.ID == 0 {
		t.Fatalf("sendMessage: %+v %v", m, err)
	}
	if c := f.Calls("sendMessage"); len(c) != 1 || c[0].Params["text"] != "<b>hello</b>" || !strings.Contains(c[0].Params["reply_markup"], "a:c1") {
		t.Errorf("recorded %+v", c)
	}
	e, err := b.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: int64(111), MessageID: m.ID, Text: "edited"})
	if err != nil || e.ID != m.ID {
		t.Errorf("editMessageText: %+v %v, want message %d", e, err, m.ID)
	}
	doc, err := b.SendDocument(ctx, &bot.SendDocumentParams{ChatID: int64(111),
		Document: &models.InputFileUpload{Filename: "a.txt", Data: strings.NewReader("abc")}})
	if err != nil || doc.ID == 0 {
		t.Fatalf("sendDocument: %v", err)
	}
	if c := f.Calls("sendDocument"); len(c) != 1 || string(c[0].Files["document"]) != "abc" || c[0].Params["document.filename"] != "a.txt" {
		t.Errorf("recorded %+v", c)
	}
	topic, err := b.CreateForumTopic(ctx, &bot.CreateForumTopicParams{ChatID: int64(-100), Name: "Kim"})
	if err != nil || topic.MessageThreadID == 0 {
		t.Fatalf("createForumTopic: %+v %v", topic, err)
	}
	f.AddFile("documents/f1.bin", []byte("xyz"))
	file, err := b.GetFile(ctx, &bot.GetFileParams{FileID: "f1"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(b.FileDownloadLink(file))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(data) != "xyz" {
		t.Errorf("file download: %q", data)
	}
}

func TestRefusesWhatTelegramRefuses(t *testing.T) {
	f := newFake(t, Options{})
	f.GroupWithoutTopics(-200, "group", false)
	f.DeleteThread(77)
	b := sdk(t, f.URL())
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"bad HTML", func() error {
			_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(1), Text: "<u>x</u>", ParseMode: models.ParseModeHTML})
			return err
		}, "unsupported start tag"},
		{"empty text", func() error {
			_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(1), Text: " "})
			return err
		}, "message text is empty"},
		{"too long", func() error {
			_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(1), Text: strings.Repeat("😀", 2049)})
			return err
		}, "message is too long"},
		{"long callback data", func() error {
			_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(1), Text: "x",
				ReplyMarkup: models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "A", CallbackData: strings.Repeat("d", 65)}}}}})
			return err
		}, "BUTTON_DATA_INVALID"},
		{"deleted topic", func() error {
			_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(-100), MessageThreadID: 77, Text: "x"})
			return err
		}, "message thread not found"},
		{"basic group topic", func() error {
			_, err := b.CreateForumTopic(ctx, &bot.CreateForumTopicParams{ChatID: int64(-200), Name: "Kim"})
			return err
		}, "supergroup chats only"},
		{"unknown method", func() error { _, err := b.GetWebhookInfo(ctx); return err }, "Not Found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestInjectedFailures(t *testing.T) {
	f := newFake(t, Options{})
	b := sdk(t, f.URL())
	ctx := context.Background()
	send := func() error {
		_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(1), Text: "x"})
		return err
	}
	f.FailAfter("sendMessage", 1, 1, 429, "Too Many Requests: retry after 7", 7)
	if err := send(); err != nil {
		t.Fatalf("the skipped call failed: %v", err)
	}
	var tooMany *bot.TooManyRequestsError
	if err := send(); !errors.As(err, &tooMany) || tooMany.RetryAfter != 7 {
		t.Fatalf("got %v, want a 429 with retry_after 7", err)
	}
	if err := send(); err != nil {
		t.Fatalf("after the failure: %v", err)
	}
	f.FailNext("sendMessage", Forever, 502, "Bad Gateway", 0)
	for range 3 {
		if err := send(); err == nil {
			t.Fatal("a Forever failure let a call through")
		}
	}
	f.StopFailing("sendMessage")
	if err := send(); err != nil {
		t.Fatalf("after StopFailing: %v", err)
	}
	if failed := f.CallsWhere(func(c Call) bool { return c.Failed }); len(failed) != 4 {
		t.Errorf("%d calls recorded as failed, want 4", len(failed))
	}
	f.Revoke()
	if _, err := b.GetMe(ctx); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("after Revoke: %v", err)
	}
}

func TestGetUpdatesOffsetsAndLongPoll(t *testing.T) {
	f := newFake(t, Options{MaxHold: 5 * time.Second})
	get := func(query string) []models.Update {
		t.Helper()
		code, a := post(t, f.URL()+"/A/bot"+token+"/getUpdates", "application/x-www-form-urlencoded", query)
		var ups []models.Update
		if code != 200 || !a.OK || json.Unmarshal(a.Result, &ups) != nil {
			t.Fatalf("getUpdates: %d %+v", code, a)
		}
		return ups
	}
	first := f.Push(PrivateMessage(111, "one"))
	f.Push(Callback(111, "a:c1", 111, 1001))
	ups := get("timeout=0")
	if len(ups) != 2 || ups[0].ID != first || ups[0].Message.Text != "one" || ups[1].CallbackQuery.Data != "a:c1" {
		t.Fatalf("updates %+v", ups)
	}
	if ups := get("timeout=0&offset=" + jsonInt(first+1)); len(ups) != 1 || f.Pending() != 1 {
		t.Fatalf("after confirming the first: %d updates, %d pending", len(ups), f.Pending())
	}
	if ups := get("timeout=0&limit=1&offset=" + jsonInt(first+2)); len(ups) != 0 || f.Pending() != 0 {
		t.Fatalf("after confirming both: %d updates, %d pending", len(ups), f.Pending())
	}
	// A long poll returns as soon as an update is queued, with it.
	got := make(chan []models.Update)
	go func() { got <- get("timeout=30&offset=" + jsonInt(first+2)) }()
	wait.For(t, "the long poll to arrive", func() bool { return f.Counts()["getUpdates"] == 4 })
	f.Push(ReplyMessage(222, "late", 1001))
	if ups := <-got; len(ups) != 1 || ups[0].Message.ReplyToMessage.ID != 1001 {
		t.Fatalf("long poll answered %+v", ups)
	}
	if c := f.Calls("getUpdates"); c[0].Instance != "A" {
		t.Errorf("instance %q, want A (the path prefix)", c[0].Instance)
	}
}

// A fake continuing a recorded deployment hands out ids after the given ones.
func TestIDsContinueAfter(t *testing.T) {
	f := newFake(t, Options{After: IDs{Update: 104, Message: 1010, Thread: 52}})
	if id := f.Push(PrivateMessage(111, "again")); id != 105 {
		t.Errorf("first update_id %d, want 105", id)
	}
	code, a := post(t, f.URL()+"/bot"+token+"/sendMessage", "application/x-www-form-urlencoded", "chat_id=111&text=hi")
	var m models.Message
	if code != 200 || json.Unmarshal(a.Result, &m) != nil || m.ID != 1011 {
		t.Errorf("sendMessage: %d, message_id %d, want 1011", code, m.ID)
	}
	code, a = post(t, f.URL()+"/bot"+token+"/createForumTopic", "application/x-www-form-urlencoded", "chat_id=-1001&name=t")
	var topic models.ForumTopic
	if code != 200 || json.Unmarshal(a.Result, &topic) != nil || topic.MessageThreadID != 53 {
		t.Errorf("createForumTopic: %d, thread %d, want 53", code, topic.MessageThreadID)
	}
}

func TestCloseEndsPendingLongPolls(t *testing.T) {
	f := newFake(t, Options{MaxHold: time.Hour})
	done := make(chan error)
	go func() {
		resp, err := http.Post(f.URL()+"/bot"+token+"/getUpdates?timeout=3600", "", nil)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	wait.For(t, "the long poll to arrive", func() bool { return f.Counts()["getUpdates"] == 1 })
	f.Close()
	select {
	case <-done:
	case <-time.After(wait.Default):
		t.Fatal("a long poll still waits after Close")
	}
	f.Close() // twice is fine (t.Cleanup closes again)
}

func TestCountOnlyKeepsNoCalls(t *testing.T) {
	var sent []int
	f := newFake(t, Options{CountOnly: true, OnSend: func(_ time.Time, chat int64, id int, text string) { sent = append(sent, id) }})
	b := sdk(t, f.URL())
	m, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: int64(5), Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Calls("")) != 0 || f.Counts()["sendMessage"] != 1 || len(sent) != 1 || sent[0] != m.ID {
		t.Errorf("calls %d, counts %v, OnSend saw %v (message %d)", len(f.Calls("")), f.Counts(), sent, m.ID)
	}
}

func TestInstanceHeader(t *testing.T) {
	f := newFake(t, Options{})
	req, _ := http.NewRequest("POST", f.URL()+"/bot"+token+"/getMe", nil)
	req.Header.Set("X-Instance", "B")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := f.Calls("getMe"); len(c) != 1 || c[0].Instance != "B" {
		t.Errorf("calls %+v, want one from B", c)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
