package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
)

// fakeSlackAuth is a Slack Web API that knows two methods, in Slack's wire
// format: auth.test accepts botToken, apps.connections.open accepts appToken.
func fakeSlackAuth(t *testing.T, botToken, appToken string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if auth == "" {
			r.ParseForm()
			auth = r.Form.Get("token")
		}
		var ok bool
		switch r.URL.Path {
		case "/api/auth.test":
			ok = auth == botToken
		case "/api/apps.connections.open":
			ok = auth == appToken
		}
		if !ok {
			fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
			return
		}
		if r.URL.Path == "/api/auth.test" {
			fmt.Fprint(w, `{"ok":true,"user_id":"UBOT","bot_id":"BBOT","team":"Acme","user":"onduty"}`)
			return
		}
		fmt.Fprint(w, `{"ok":true,"url":"ws://127.0.0.1:1/unused"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/api/"
}

// TestServeRefusesRejectedCredentials: a token the platform refuses stops
// `onduty serve` at start with an error naming the key to fix (and not
// the token); a platform that cannot be reached does not.
func TestServeRefusesRejectedCredentials(t *testing.T) {
	r := redistest.New(t)
	api := newFakeBot(t)
	slackAPI := fakeSlackAuth(t, "xoxb-good", "xapp-good")
	base := fmt.Sprintf("listen: 127.0.0.1:0\nredis_url: %q\nredis_prefix: %q\n", r.URL, r.Prefix)
	tests := []struct {
		name    string
		config  string
		want    []string // in the error; nil means serve starts
		secret  string   // must not be printed
		refused bool
	}{
		{"telegram token", `
properties: [{id: acme}]
agents: [{id: alice, properties: [acme], telegram_user_id: 1}]
telegram: {token: "4242:wrong-token", api_url: "` + api.URL() + `/x"}
`, []string{"telegram.token", "TELEGRAM_BOT_TOKEN", "token rejected (401)"}, "4242:wrong-token", true},
		{"slack bot token", `
properties: [{id: acme, slack_channel: C1}]
agents: [{id: alice, properties: [acme], slack_user_id: U1}]
slack: {bot_token: "xoxb-wrong", app_token: "xapp-good", api_url: "` + slackAPI + `"}
`, []string{"slack.bot_token", "SLACK_BOT_TOKEN", "token rejected (invalid_auth)"}, "xoxb-wrong", true},
		{"slack app token", `
properties: [{id: acme, slack_channel: C1}]
agents: [{id: alice, properties: [acme], slack_user_id: U1}]
slack: {bot_token: "xoxb-good", app_token: "xapp-wrong", api_url: "` + slackAPI + `"}
`, []string{"slack.app_token", "SLACK_APP_TOKEN", "token rejected (invalid_auth)"}, "xapp-wrong", true},
		{"telegram unreachable", `
properties: [{id: acme}]
agents: [{id: alice, properties: [acme], telegram_user_id: 1}]
telegram: {token: "4242:replace-me", api_url: "http://127.0.0.1:1"}
`, nil, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, base+tc.config)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout bytes.Buffer
			stderr := &syncBuffer{}
			done := make(chan int, 1)
			go func() { done <- run(ctx, []string{"serve", "--config", file}, &stdout, stderr) }()
			if !tc.refused {
				wait.Within(t, 30*time.Second, "serve to start despite the unreachable platform", func() bool {
					return strings.Contains(stderr.String(), "widget server listening")
				})
				if !strings.Contains(stderr.String(), "cannot check credentials now") {
					t.Errorf("no warning about the unreachable platform:\n%s", stderr)
				}
				if !strings.Contains(stderr.String(), "telegram.token: looks like a placeholder") {
					t.Errorf("no warning about the placeholder token:\n%s", stderr)
				}
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("exit %d after a clean stop:\n%s", code, stderr)
				}
				return
			}
			var code int
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("serve still running with a refused token:\n%s", stderr)
			}
			out := stderr.String()
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(out, w) {
					t.Errorf("error lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, tc.secret) {
				t.Errorf("the output shows the token:\n%s", out)
			}
		})
	}
}

// TestProcessTokenRevoked: a token revoked while onduty runs stops the
// Telegram adapter; the process keeps serving, /readyz answers 503 naming
// it and onduty_adapter_up says 0.
func TestProcessTokenRevoked(t *testing.T) {
	r := redistest.New(t)
	api := newFakeBot(t)
	p := startProcess(t, "rev", procConfig(t, r, time.Minute, 5*time.Minute), api)
	api.Revoke()
	var body string
	wait.Within(t, 30*time.Second, "/readyz to say 503", func() bool {
		resp, b := get(t, p.base+"/readyz")
		body = b
		return resp.StatusCode == 503
	})
	var got struct {
		NotReady []string `json:"not_ready"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.NotReady) != 1 || got.NotReady[0] != "telegram: token rejected (401)" {
		t.Errorf("readyz body %s (%v)", body, err)
	}
	if _, m := get(t, p.base+"/metrics"); !strings.Contains(m, `onduty_adapter_up{adapter="telegram"} 0`) {
		t.Errorf("metrics lack onduty_adapter_up{adapter=\"telegram\"} 0")
	}
	if resp, _ := get(t, p.base+"/v1/properties/acme/status"); resp.StatusCode != 200 {
		t.Errorf("the widget API stopped too: %d", resp.StatusCode)
	}
	select {
	case <-p.done:
		t.Fatalf("the process exited: %v", p.err)
	default:
	}
}

// TestDemoPortTaken: with its port taken, the demo fails with a clear
// error and prints neither the address to open nor an admin token.
func TestDemoPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("ONDUTY_CONFIG", "")
	t.Setenv("ONDUTY_ADMIN_TOKEN", "")
	t.Setenv("ONDUTY_LISTEN", ln.Addr().String())
	code, stdout, stderr := runCLI(t, "serve")
	out := stdout + stderr
	if code != 1 || !strings.Contains(out, "cannot listen on") || !strings.Contains(out, "ONDUTY_LISTEN") || !strings.Contains(out, "address already in use") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	for _, never := range []string{"open http", "admin_token", "admin board"} {
		if strings.Contains(out, never) {
			t.Errorf("output says %q with the port taken:\n%s", never, out)
		}
	}
}

// TestDemoAnnouncesWhenListening: the demo says where to go, and prints
// its admin token, only once the address answers: the moment the line is
// in the log, the page and the admin API (with that token) work.
func TestDemoAnnouncesWhenListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("ONDUTY_CONFIG", "")
	t.Setenv("ONDUTY_ADMIN_TOKEN", "")
	t.Setenv("ONDUTY_LISTEN", addr)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, io.Discard, logs) }()
	defer func() { cancel(); <-done }()
	wait.Within(t, 30*time.Second, "the demo's announcement", func() bool { return strings.Contains(logs.String(), "demo: open http://localhost") })
	out := logs.String()
	i := strings.Index(out, "admin_token=")
	if i < 0 {
		t.Fatalf("no admin token printed:\n%s", out)
	}
	token, _, _ := strings.Cut(out[i+len("admin_token="):], "\n")
	resp, err := http.Get("http://" + addr + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET / right after the announcement: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/admin/properties/demo/presence", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin API with the printed token: %v %v", resp, err)
	}
	resp.Body.Close()
}
