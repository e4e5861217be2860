package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/config"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/presence"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "onduty.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfig(t *testing.T) {
	broken := writeFile(t, `
properties:
  - id: acme
    offline_mode: email
    schedule: {timezone: Nowhere/City, hours: {mon: ["9-5"]}}
agents:
  - id: alice
    properties: [shop]
    idle_away_after: soon
telegram: {mode: webhook}
`)
	code, out, _ := runCLI(t, "check-config", broken)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		broken + ": ",
		"soon",
		"offline_mode",
		"schedule: timezone: unknown time zone",
		"schedule: hours.mon[0]",
		`agents[0] (alice).properties[0]: unknown property "shop"`,
		"telegram.token: required",
		"telegram.webhook_url: required",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not mention %q:\n%s", want, out)
		}
	}
	good := writeFile(t, "properties: [{id: acme}]\nagents: [{id: alice, properties: [acme]}]\n")
	if code, out, _ := runCLI(t, "check-config", good); code != 0 || !strings.Contains(out, "OK (1 properties, 1 agents)") {
		t.Errorf("good config: exit %d, %q", code, out)
	}
	warned := writeFile(t, "admin_token: change-me\nproperties: [{id: acme}, {id: beta}]\nagents: [{id: alice, properties: [acme]}]\n")
	code, out, _ = runCLI(t, "check-config", warned)
	for _, want := range []string{
		"2 warning(s)",
		warned + `: admin_token: looks like a placeholder (contains "change-me")`,
		warned + ": properties[1] (beta): no agent serves this property",
		"OK (2 properties, 1 agents)",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("warnings only: exit %d (want 0), output lacks %q:\n%s", code, want, out)
		}
	}
	if code, _, errs := runCLI(t, "check-config"); code != 2 || !strings.Contains(errs, "usage") {
		t.Errorf("no file: exit %d", code)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, errs := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("exit %d: %s", code, errs)
	}
	if code, _, _ := runCLI(t); code != 2 {
		t.Errorf("no command: exit %d", code)
	}
}

func TestStatus(t *testing.T) {
	r := redistest.New(t)
	file := writeFile(t, `
redis_url: "`+r.URL+`"
redis_prefix: "`+r.Prefix+`"
properties: [{id: acme, greetings: {away: "Back soon"}, slack_channel: C0123456789}]
agents:
  - {id: alice, name: Alice, properties: [acme], condition: activity, telegram_user_id: 111, slack_user_id: U111}
  - {id: bob, name: Bob, properties: [acme], condition: always}
telegram: {token: "123:abc"}
slack: {bot_token: "xoxb-1", app_token: "xapp-1"}
`)
	c, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := c.Directory()
	store := presence.NewStore(r.Client, dir, presence.Keys{Prefix: r.Prefix}, nil)
	ctx := context.Background()
	if _, err := store.SetStatus(ctx, "bob", presence.Away); err != nil {
		t.Fatal(err)
	}
	// A visitor waiting, as the admin board lists it.
	b, err := bridge.New(bridge.Config{Prefix: r.Prefix, Properties: map[presence.PropertyID]bridge.Routing{"acme": {}}},
		r.Client, store, presence.NewWatcher(store, slog.New(slog.DiscardHandler)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.StartChat(ctx, "acme", bridge.Visitor{Name: "Vic"}, "hello"); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCLI(t, "status", "--config", file, "acme")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"acme: away (widget mode live) — nobody online; away: Bob", "alice", "chose offline", "bob", "always online",
		"SURFACES", "telegram,slack", "chats: 1 waiting, 0 active, 0 offline messages unanswered", ": Vic"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not mention %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "status", "--config", file, "--json", "acme")
	var rep struct {
		presence.Report
		Surfaces map[presence.AgentID][]string `json:"surfaces"`
		Chats    bridge.BoardChats             `json:"chats"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Status != presence.Away || rep.Greeting != "Back soon" || len(rep.Agents) != 2 {
		t.Errorf("json: exit %d %s", code, out)
	}
	if strings.Join(rep.Surfaces["alice"], ",") != "telegram,slack" || rep.Chats.Counts.Pending != 1 || len(rep.Chats.Pending) != 1 || rep.Chats.Pending[0].Visitor.Name != "Vic" {
		t.Errorf("json surfaces %v, chats %+v", rep.Surfaces, rep.Chats)
	}
	if code, _, errs := runCLI(t, "status", "--config", file, "nope"); code != 1 || !strings.Contains(errs, `unknown property "nope"`) {
		t.Errorf("unknown property: exit %d %s", code, errs)
	}
	// Flags after the property too.
	if code, out, errs := runCLI(t, "status", "acme", "--config", file, "--json"); code != 0 || !strings.Contains(out, `"status": "away"`) {
		t.Errorf("flags after the property: exit %d %s %s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "status", "acme", "beta", "--config", file); code != 2 || !strings.Contains(errs, "usage") {
		t.Errorf("two properties: exit %d %s", code, errs)
	}
}

// TestStatusNeedsASource: with neither a configuration nor --url, status
// says how to ask the running server instead of starting an embedded Redis
// of its own (which would report a fresh, empty state); so does a
// configuration whose server keeps its state in an embedded Redis.
func TestStatusNeedsASource(t *testing.T) {
	t.Setenv("ONDUTY_CONFIG", "")
	code, out, errs := runCLI(t, "status", "demo")
	if code != 1 || out != "" || !strings.Contains(errs, "--url") || !strings.Contains(errs, "--admin-token") || strings.Contains(errs, "embedded in-process Redis") {
		t.Errorf("no source: exit %d, stdout %q, stderr %s", code, out, errs)
	}
	embedded := writeFile(t, "properties: [{id: acme}]\nagents: [{id: alice, properties: [acme]}]\n")
	code, out, errs = runCLI(t, "status", "--config", embedded, "acme")
	if code != 1 || out != "" || !strings.Contains(errs, embedded+": redis_url: empty") || !strings.Contains(errs, "--url") {
		t.Errorf("embedded Redis: exit %d, stdout %q, stderr %s", code, out, errs)
	}
}

// TestStatusURL: --url asks a running server (here the demo) through its
// admin API, with the token from --admin-token or ONDUTY_ADMIN_TOKEN, flags
// before or after the property.
func TestStatusURL(t *testing.T) {
	base, _, _ := startDemo(t)
	t.Setenv("ONDUTY_ADMIN_TOKEN", "")
	tests := []struct {
		name string
		args []string
		env  string
		code int
		want string
	}{
		{"flags first", []string{"--url", base, "--admin-token", demoAdminToken, "demo"}, "", 0, "demo: online (widget mode live)"},
		{"flags after", []string{"demo", "--url", base + "/", "--admin-token", demoAdminToken}, "", 0, "chose online, always online"},
		{"token from the environment", []string{"demo", "--url", base, "--json"}, demoAdminToken, 0, `"effective": "online"`},
		{"no token", []string{"demo", "--url", base}, "", 1, "--admin-token TOKEN or ONDUTY_ADMIN_TOKEN"},
		{"wrong token", []string{"demo", "--url", base, "--admin-token", "nope"}, "", 1, "refused the admin token (403)"},
		{"unknown property", []string{"acme", "--url", base, "--admin-token", demoAdminToken}, "", 1, "404"},
		{"nobody there", []string{"demo", "--url", "http://127.0.0.1:1", "--admin-token", "x"}, "", 1, "cannot reach the server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ONDUTY_ADMIN_TOKEN", tc.env)
			code, out, errs := runCLI(t, append([]string{"status"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out, errs)
			}
			if strings.Contains(out+errs, demoAdminToken) {
				t.Errorf("the token is printed:\n%s%s", out, errs)
			}
		})
	}
}

func TestNewLoggerLevels(t *testing.T) {
	tests := []struct {
		level string
		want  slog.Level // the lowest level logged
	}{
		{"", slog.LevelInfo}, {"debug", slog.LevelDebug}, {"info", slog.LevelInfo},
		{"warn", slog.LevelWarn}, {"error", slog.LevelError}, {"loud", slog.LevelInfo},
	}
	for _, tt := range tests {
		l := newLogger(io.Discard, tt.level)
		if !l.Enabled(t.Context(), tt.want) || l.Enabled(t.Context(), tt.want-1) {
			t.Errorf("level %q: want records from %v up", tt.level, tt.want)
		}
	}
}

// TestStatusClosedHoliday: on a closed day (schedule.closed), onduty status
// says "closed: holiday" with the date, in text and JSON.
func TestStatusClosedHoliday(t *testing.T) {
	r := redistest.New(t)
	now := time.Now().UTC()
	// Yesterday to tomorrow, so the test holds across midnight.
	from, to := now.AddDate(0, 0, -1).Format("2006-01-02"), now.AddDate(0, 0, 1).Format("2006-01-02")
	file := writeFile(t, `
redis_url: "`+r.URL+`"
redis_prefix: "`+r.Prefix+`"
properties: [{id: acme, schedule: {timezone: UTC, closed: ["`+from+`..`+to+`"]}}]
agents:
  - {id: bob, name: Bob, properties: [acme], condition: always, initial_status: online}
`)
	code, out, errs := runCLI(t, "status", "--config", file, "acme")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "acme: offline (widget mode form) — closed: holiday "+now.Format("2006-01")) ||
		!strings.Contains(out, "in schedule: no (closed: holiday "+now.Format("2006-01")) {
		t.Errorf("output:\n%s", out)
	}
	code, out, _ = runCLI(t, "status", "--config", file, "--json", "acme")
	var rep presence.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Status != presence.Offline || rep.Closed == "" || !strings.HasPrefix(rep.Reason, "closed: holiday "+rep.Closed) {
		t.Errorf("json: exit %d %s", code, out)
	}
}
