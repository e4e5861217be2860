package slack

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/onduty/onduty/bridge"
)

// The handlers are mounted on the Fiber server through the net/http adaptor:
// the raw body and signature headers must survive it.
func TestHandlersThroughFiber(t *testing.T) {
	hs := newHarness(t, ModeEvents)
	app := fiber.New(fiber.Config{BodyLimit: 1 << 20})
	for path, h := range hs.a.HTTPHandlers() {
		app.Post(path, adaptor.HTTPHandler(h))
	}
	do := func(path, ctype string, body []byte, hdr http.Header) (int, string) {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		req.Header = hdr.Clone()
		req.Header.Set("Content-Type", ctype)
		res, err := app.Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	ch := []byte(`{"type":"url_verification","challenge":"fiber-ok"}`)
	if code, body := do("/slack/events", "application/json", ch, sign(testSecret, time.Now(), ch)); code != 200 || !strings.Contains(body, "fiber-ok") {
		t.Errorf("challenge through fiber: %d %s", code, body)
	}
	if code, _ := do("/slack/events", "application/json", ch, sign("wrong", time.Now(), ch)); code != 401 {
		t.Errorf("forged through fiber: %d", code)
	}
	hs.h.SetReply(func(a bridge.Action) (bridge.Reply, error) { return bridge.Reply{Text: "You are away."}, nil })
	form := []byte("user_id=U111&channel_id=D111&command=%2Fonduty&text=away")
	code, body := do("/slack/commands", "application/x-www-form-urlencoded", form, sign(testSecret, time.Now(), form))
	if code != 200 || !strings.Contains(body, "You are away.") {
		t.Errorf("command through fiber: %d %s", code, body)
	}
	if got := hs.h.WaitN(t, 1)[0]; got.Command != "away" || got.Agent != "alice" {
		t.Errorf("action %+v", got)
	}
}
