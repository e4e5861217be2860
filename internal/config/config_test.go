package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/presence"
)

func env(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "onduty.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `
listen: ":9090"
redis_url: "redis://127.0.0.1:6379/3"
admin_token: "s3cret"
properties:
  - id: acme
    name: Acme
    allowed_origins: ["https://acme.example"]
    greetings: {online: "We're here!", away: "A moment", offline: "Leave us a message"}
    offline_mode: messenger
    schedule: {timezone: Europe/Berlin, hours: {mon: ["09:00-17:30"], fri: ["22:00-02:00"]}}
    assignment: {strategy: broadcast, max_chats: 3, accept_timeout: 20s, invisible_fallback_after: 0s, queue_timeout: 2m}
    slack_channel: C0123456789
    telegram_group: -1001234567890
    widget: {color: "#0F766E", position: left, title: "Acme support", language: de}
agents:
  - id: alice
    name: Alice
    properties: [acme]
    telegram_user_id: 111
    slack_user_id: U111
    condition: always
    idle_away_after: 5m
    idle_offline_after: 15m
    permissions: [change_online_status]
  - id: bob
    properties: [acme]
rate_limits: {chats_per_ip_per_minute: 5}
telegram: {token: "123:abc", mode: webhook, webhook_url: "https://onduty.example/telegram/webhook", webhook_secret: "hook-secret_1"}
slack: {bot_token: "xoxb-1", app_token: "xapp-1", signing_secret: "sig", mode: socket}
`

func TestLoadGood(t *testing.T) {
	c, err := Load(write(t, good), env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p := c.Properties[0]
	if c.Listen != ":9090" || p.Assignment.Strategy != "broadcast" || p.Assignment.FallbackAfter() != 0 ||
		p.Assignment.AcceptTimeout != 20*time.Second || p.CloseAfterIdle != DefaultCloseAfterIdle {
		t.Errorf("property: %+v", p)
	}
	bob := c.Agents[1]
	if bob.Name != "bob" || bob.Condition != "activity" || bob.IdleAwayAfter != 10*time.Minute || bob.Permissions != nil {
		t.Errorf("bob's defaults: %+v", bob)
	}
	if c.RateLimits.ChatsPerIPPerMinute != 5 || c.RateLimits.MessagesPerIPPerMinute != DefaultMessagesPerIPPerMinute {
		t.Errorf("rate limits: %+v", c.RateLimits)
	}
	if o := c.Outbox; o.Lease != DefaultOutboxLease || o.SafetyPoll != DefaultOutboxSafetyPoll || o.DeliverTimeout != DefaultOutboxDeliverTimeout || o.InstanceID != "" {
		t.Errorf("outbox defaults: %+v", o)
	}
	if c.Telegram.APIURL != DefaultTelegramAPIURL || c.Slack.APIURL != DefaultSlackAPIURL {
		t.Errorf("api urls: %q %q", c.Telegram.APIURL, c.Slack.APIURL)
	}
	if c.FileRetention != DefaultFileRetention || c.ProxyHeader != "" || c.Limits != (Limits{}) {
		t.Errorf("file retention %v, proxy header %q, limits %+v", c.FileRetention, c.ProxyHeader, c.Limits)
	}
	d, err := c.Directory()
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := d.Agent("alice")
	if alice.Can("change_visibility") || !alice.Can("change_online_status") || alice.Account(SurfaceTelegram) != "111" {
		t.Errorf("alice: %+v", alice)
	}
	acme, _ := d.Property("acme")
	if acme.Schedule == nil || acme.Greetings["online"] != "We're here!" ||
		acme.Look != (presence.Look{Color: "#0F766E", Position: "left", Title: "Acme support", Language: "de"}) {
		t.Errorf("acme: %+v", acme)
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := Load(write(t, good+"trusted_proxies: ['10.1.2.3/8', '192.0.2.1', '2001:db8::/32']\nmetrics_token: m\nmetrics_listen: '127.0.0.1:9091'\nlimits: {streams_per_ip: -1}\n"), env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ps, err := c.TrustedProxyPrefixes()
	if err != nil || len(ps) != 3 || ps[0].String() != "10.0.0.0/8" || ps[1].String() != "192.0.2.1/32" || ps[2].String() != "2001:db8::/32" {
		t.Errorf("%v %v", ps, err)
	}
	if c.ProxyHeader != DefaultProxyHeader || c.MetricsToken.Reveal() != "m" || c.Limits.StreamsPerIP != -1 {
		t.Errorf("%q %q %+v", c.ProxyHeader, c.MetricsToken, c.Limits)
	}
}

func TestEnvOverrides(t *testing.T) {
	c, err := Load(write(t, good), env(map[string]string{
		"ONDUTY_LISTEN": ":7000", "ONDUTY_REDIS_URL": "redis://other:6379/0", "ONDUTY_ADMIN_TOKEN": "envtok",
		"TELEGRAM_BOT_TOKEN": "999:zzz", "TELEGRAM_API_URL": "http://botapi.local:8081/",
		"SLACK_BOT_TOKEN": "xoxb-env", "SLACK_APP_TOKEN": "xapp-env", "SLACK_SIGNING_SECRET": "envsig",
		"SLACK_API_URL": "http://slack.local/api",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":7000" || c.RedisURL.Reveal() != "redis://other:6379/0" || c.AdminToken.Reveal() != "envtok" {
		t.Errorf("overrides: %q %q", c.Listen, c.RedisURL.Reveal())
	}
	if c.Telegram.Token.Reveal() != "999:zzz" || c.Telegram.APIURL != "http://botapi.local:8081" {
		t.Errorf("telegram: %+v", c.Telegram)
	}
	if c.Slack.BotToken.Reveal() != "xoxb-env" || c.Slack.SigningSecret.Reveal() != "envsig" || c.Slack.APIURL != "http://slack.local/api/" {
		t.Errorf("slack: %+v (a missing trailing slash must be added)", c.Slack)
	}
}

func TestEmailConfig(t *testing.T) {
	c, err := Load(write(t, `
public_url: "https://chat.acme.example"
email: {smtp_url: "smtp://user:pass@mail.acme.example:587", from: "Acme Support <support@acme.example>"}
properties:
  - id: acme
    email_after: 30s
    prechat: {name: required, email: hidden, consent: "I agree"}
  - id: other
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Email == nil || c.Email.SMTPURL.Reveal() != "smtp://user:pass@mail.acme.example:587" || c.Email.From != "Acme Support <support@acme.example>" {
		t.Fatalf("email %+v", c.Email)
	}
	if strings.Contains(fmt.Sprint(c.Email.SMTPURL), "pass") {
		t.Error("the SMTP URL holds a password: it must not print")
	}
	ps := c.PresenceProperties()
	if ps[0].Prechat != (presence.Prechat{Name: "required", Email: "hidden", Consent: "I agree"}) || !ps[0].Email {
		t.Errorf("acme %+v", ps[0])
	}
	if ps[1].Prechat != (presence.Prechat{Name: "optional", Email: "optional"}) || c.Properties[1].EmailAfter != 2*time.Minute || c.Properties[0].EmailAfter != 30*time.Second {
		t.Errorf("defaults %+v %v", ps[1], c.Properties[1].EmailAfter)
	}
	// The demo with an SMTP server from the environment links to localhost.
	c, err = Load("", env(map[string]string{"ONDUTY_SMTP_URL": "smtp://127.0.0.1:1025", "ONDUTY_EMAIL_FROM": "Demo <demo@localhost.example>", "ONDUTY_LISTEN": ":8181"}))
	if err != nil || c.Email == nil || c.PublicURL != "http://localhost:8181" {
		t.Fatalf("demo with email: %v %+v %q", err, c.Email, c.PublicURL)
	}
	// No smtp_url: no email, and the widget is told so.
	c, err = Load(write(t, "email: {from: 'a@b.example'}\nproperties: [{id: a}]\n"), env(nil))
	if err != nil || c.Email != nil || c.PresenceProperties()[0].Email {
		t.Errorf("without smtp_url: %v %+v", err, c.Email)
	}
}

func TestDemo(t *testing.T) {
	c, err := Load("", env(map[string]string{"ONDUTY_LISTEN": ":8181"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Demo || c.Listen != ":8181" || c.RedisURL != "" || c.Properties[0].ID != "demo" {
		t.Fatalf("demo: %+v", c)
	}
	d, _ := c.Directory()
	a, _ := d.Agent("demo")
	if a.InitialStatus != "online" || a.Condition != "always" {
		t.Errorf("demo agent: %+v", a)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	s := Secret("xoxb-very-secret")
	if strings.Contains(s.String(), "very") || strings.Contains(s.LogValue().String(), "very") {
		t.Fatal("secret printed")
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{"not yaml", "listen: [", nil, []string{"not valid YAML"}},
		{"unknown keys", "listen: x\nlisten_port: 1\nproperties: [{id: a, colour: red}]\n", nil,
			[]string{"listen_port: unknown key", "properties[0] (a).colour: unknown key"}},
		{"bad duration", "properties: [{id: a, assignment: {accept_timeout: soon}}]\n", nil,
			[]string{`properties[0] (a).assignment.accept_timeout: "soon" is not a duration (e.g. 10m, 1h30m)`}},
		{"no properties", "agents: []\n", nil, []string{"properties: at least one property"}},
		{"agent names unknown property", "properties: [{id: a}]\nagents: [{id: x, properties: [b]}]\n", nil,
			[]string{`agents[0] (x).properties[0]: unknown property "b"`}},
		{"duplicate ids", "properties: [{id: a}, {id: a}]\nagents: [{id: x, properties: [a]}, {id: x, properties: [a]}]\n", nil,
			[]string{`properties[1] (a).id: duplicate property id "a"`, `agents[1] (x).id: duplicate agent id "x"`}},
		{"bad ids", "properties: [{id: 'a b'}, {name: n}]\n", nil, []string{"properties[0] (a b).id", "properties[1].id: required"}},
		{"time zone and hours", "properties: [{id: a, schedule: {timezone: Mars/Base, hours: {mon: ['9-5'], funday: ['09:00-10:00']}}}]\n", nil,
			[]string{"schedule: timezone: unknown time zone", "schedule: hours.funday", "schedule: hours.mon[0]"}},
		{"closed and special days", "properties: [{id: a, schedule: {timezone: UTC, closed: ['2026-12-25', '2026-12-31..2026-12-30', 'xmas'], special: {'2026-12-24': ['9-12'], '24.12.': ['09:00-12:00']}}}]\n", nil,
			[]string{`properties[0] (a).schedule.closed[1]: "2026-12-31..2026-12-30": the range ends before it starts`,
				`properties[0] (a).schedule.closed[2]: "xmas": want a date YYYY-MM-DD`,
				`properties[0] (a).schedule.special.2026-12-24[0]: "9-12": want HH:MM-HH:MM`,
				`properties[0] (a).schedule.special.24.12.: "24.12.": want a date YYYY-MM-DD`}},
		{"canned replies", "properties: [{id: a, canned: {shipping: 'We ship.', Refund: 'x', 'two words': 'y', empty: ' '}}]\n", nil,
			[]string{`properties[0] (a).canned.Refund: "Refund": a name is 1 to 32 lower-case letters`,
				`properties[0] (a).canned.empty: the text must be 1 to 4000 characters`,
				`properties[0] (a).canned.two words: "two words": a name`}},
		{"bad enums", "log_level: loud\nproperties: [{id: a, offline_mode: email, assignment: {strategy: random, max_chats: -1}}]\nagents: [{id: x, properties: [a], condition: never, permissions: [fly], initial_status: busy}]\n", nil,
			[]string{"log_level", "offline_mode", "assignment.strategy", "assignment.max_chats", "condition", "permissions[0]", "initial_status"}},
		{"idle order", "properties: [{id: a}]\nagents: [{id: x, properties: [a], idle_away_after: 30m, idle_offline_after: 10m}]\n", nil,
			[]string{"idle_offline_after: 10m0s must be longer"}},
		{"negative durations", "closed_chat_retention: -1h\nproperties: [{id: a, close_after_idle: -1h, assignment: {invisible_fallback_after: -1s}}]\n", nil,
			[]string{"closed_chat_retention", "close_after_idle", "invisible_fallback_after"}},
		{"outbox out of range", "properties: [{id: a}]\noutbox: {lease: 100ms, safety_poll: 0.5s, deliver_timeout: 1h, instance_id: 'two words'}\n", nil,
			[]string{"outbox.lease: 100ms: want between", "outbox.safety_poll: 500ms", "outbox.deliver_timeout: 1h0m0s", "outbox.instance_id"}},
		{"outbox set", "properties: [{id: a}]\noutbox: {lease: 5s, safety_poll: 1m, deliver_timeout: 20s, instance_id: web-1}\n", nil, nil},
		{"telegram without token", "properties: [{id: a}]\ntelegram: {mode: polling}\n", nil, []string{"telegram.token: required"}},
		{"telegram token from env", "properties: [{id: a}]\ntelegram: {mode: polling}\n", map[string]string{"TELEGRAM_BOT_TOKEN": "1:a"}, nil},
		{"telegram webhook needs url and secret", "properties: [{id: a}]\ntelegram: {token: t, mode: webhook}\n", nil,
			[]string{"telegram.webhook_url: required", "telegram.webhook_secret: required"}},
		{"telegram bad mode and secret", "properties: [{id: a}]\ntelegram: {token: t, mode: push, webhook_secret: 'no spaces'}\n", nil,
			[]string{"telegram.mode"}},
		{"telegram group and secret shape", "properties: [{id: a, telegram_group: 42}]\ntelegram: {token: ' ', mode: webhook, webhook_url: 'https://h.example/tg', webhook_secret: 'no spaces'}\n", nil,
			[]string{"properties[0] (a).telegram_group: 42 is not a group id (they are negative)",
				"telegram.webhook_secret: 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)",
				"telegram.token: required when Telegram is enabled (or set TELEGRAM_BOT_TOKEN)"}},
		{"slack app token shape", "properties: [{id: a, slack_channel: C1}]\nslack: {bot_token: b, app_token: a, api_url: 'slack.example'}\n", nil,
			[]string{"slack.app_token: must start with xapp-", `slack.api_url: "slack.example/": want an http(s) URL`}},
		{"slack needs tokens and channels", "properties: [{id: a}]\nslack: {mode: socket}\n", nil,
			[]string{"slack.bot_token: required", "slack.app_token: required", "properties[0] (a).slack_channel: required"}},
		{"slack events needs signing secret", "properties: [{id: a, slack_channel: C1}]\nslack: {bot_token: b, mode: events}\n", nil,
			[]string{"slack.signing_secret: required"}},
		{"user ids without adapters", "properties: [{id: a, telegram_group: -1}]\nagents: [{id: x, properties: [a], telegram_user_id: 5, slack_user_id: U1}]\n", nil,
			[]string{"telegram_group: set, but Telegram", "telegram_user_id: set, but Telegram", "slack_user_id: set, but Slack"}},
		{"shared user ids", "properties: [{id: a}]\nagents: [{id: x, properties: [a], telegram_user_id: 5}, {id: y, properties: [a], telegram_user_id: 5}]\ntelegram: {token: t}\n", nil,
			[]string{`telegram_user_id: 5 is also agent "x"'s`}},
		{"widget look", "properties: [{id: a, widget: {color: blue, position: top, title: \"a\\nb\", language: it}}, {id: b, widget: {color: '#12345'}}, {id: c, widget: {color: '#abc', position: right, language: ru}}]\n", nil,
			[]string{`properties[0] (a).widget.color: "blue"`, "properties[0] (a).widget.position", "properties[0] (a).widget.title", `properties[0] (a).widget.language: "it": want one of en, de, fr, es, ru`, "properties[1] (b).widget.color"}},
		{"proxies, limits and metrics", "trusted_proxies: ['10.0.0.0/8', '192.0.2.1', 'proxy.example']\nmetrics_listen: '9090'\nfile_retention: -1h\nlimits: {streams: -2}\nrate_limits: {uploads_per_chat: -5}\nproperties: [{id: a}]\n", nil,
			[]string{`trusted_proxies: [2] "proxy.example"`, "metrics_listen", "file_retention", "limits.streams: -2", "rate_limits.uploads_per_chat: -5"}},
		{"proxy header without trusted proxies", "proxy_header: X-Forwarded-For\nproperties: [{id: a}]\n", nil,
			[]string{"proxy_header: set, but trusted_proxies is empty"}},
		{"metrics on the main address", "listen: ':8080'\nmetrics_listen: ':8080'\nproperties: [{id: a}]\n", nil,
			[]string{"metrics_listen"}},
		{"bad urls", "redis_url: 'http://x'\nproperties: [{id: a, allowed_origins: ['acme.example']}]\n", nil,
			[]string{"redis_url", "allowed_origins[0]"}},
		{"email needs from and public_url", "properties: [{id: a}]\nemail: {smtp_url: 'smtp://mail:25'}\n", nil,
			[]string{"email.from: required", "public_url: required with email"}},
		{"email bad url and from", "public_url: 'https://chat.example'\nproperties: [{id: a}]\nemail: {smtp_url: 'http://mail', from: 'not an address'}\n", nil,
			[]string{"email.smtp_url", "email.from"}},
		{"email from env", "public_url: 'https://chat.example'\nproperties: [{id: a}]\n", map[string]string{"ONDUTY_SMTP_URL": "smtps://u:p@mail:465", "ONDUTY_EMAIL_FROM": "Acme <s@acme.example>"}, nil},
		{"bad public_url", "public_url: chat.example\nproperties: [{id: a}]\n", nil, []string{"public_url"}},
		{"webhooks", "properties: [{id: a, identity_secret: s}]\nwebhooks: [{url: 'https://h.example/x', secret: s, events: [chat.started, offline_message], properties: [a]}, {url: 'ftp://h', events: [chat.deleted], properties: [b]}]\n", nil,
			[]string{"webhooks[1].url", "webhooks[1].secret: required", `webhooks[1].events[0]: "chat.deleted"`, `webhooks[1].properties[0]: "b" is not a property`}},
		{"public_url from env", "properties: [{id: a}]\nemail: {smtp_url: 'smtp://mail:1025', from: 'a@b.example'}\n", map[string]string{"ONDUTY_PUBLIC_URL": "http://localhost:8080"}, nil},
		{"bad prechat and email_after", "properties: [{id: a, email_after: -1m, prechat: {name: must, email: maybe}}]\n", nil,
			[]string{"properties[0] (a).email_after", "properties[0] (a).prechat.name", "properties[0] (a).prechat.email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := write(t, tt.yaml)
			_, err := Load(file, env(tt.env))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected problems:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no problems reported")
			}
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("error %T, want Problems", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("problems do not mention %q:\n%s", w, msg)
				}
			}
			for _, p := range ps {
				if p.File != file {
					t.Errorf("problem %q does not name the file", p)
				}
			}
		})
	}
}

// TestProblemWording: a value of the wrong kind is reported once, as
// FILE: KEY.PATH: reason in the words of the file, never a Go type or the
// decoder's "line 8: cannot unmarshal".
func TestProblemWording(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "bogus_key: 1\nproperties: [{id: a}]\n", "bogus_key: unknown key"},
		{"unknown nested key", "properties: [{id: a}]\ntelegram: {token: t, bogus: true}\n", "telegram.bogus: unknown key"},
		{"duration", "properties: [{id: a}]\nagents: [{id: z, properties: [a], idle_away_after: soon}]\n",
			`agents[0] (z).idle_away_after: "soon" is not a duration (e.g. 10m, 1h30m)`},
		{"duration without a unit", "properties: [{id: a}]\nagents: [{id: z, properties: [a], idle_away_after: 30}]\n",
			`agents[0] (z).idle_away_after: "30" is not a duration: add a unit (e.g. 30s, 30m)`},
		{"duration, list item without id", "properties: [{id: a, assignment: {queue_timeout: [1]}}, {name: b}]\n",
			"properties[0] (a).assignment.queue_timeout: want a duration (e.g. 10m, 1h30m), not a list"},
		{"whole number", "properties: [{id: a, assignment: {max_chats: five}}]\n",
			`properties[0] (a).assignment.max_chats: "five" is not a whole number`},
		{"bool", "properties: [{id: a, slack_channel: C1}]\nslack: {bot_token: b, app_token: xapp-1, use_presence: maybe}\n",
			`slack.use_presence: "maybe" is not true or false`},
		{"list wanted", "properties: [{id: a}]\nagents: [{id: z, properties: a}]\n",
			`agents[0] (z).properties: want a list ([a, b] or lines starting with -), not "a"`},
		{"text wanted", "listen: [1, 2]\nproperties: [{id: a}]\n", "listen: want text, not a list"},
		{"mapping wanted", "properties: [{id: a, assignment: fast}]\n", `properties[0] (a).assignment: want a mapping (key: value lines), not "fast"`},
		{"hours of a day", "properties: [{id: a, schedule: {timezone: UTC, hours: {mon: '9-5'}}}]\n",
			`properties[0] (a).schedule.hours.mon: want a list ([a, b] or lines starting with -), not "9-5"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := write(t, tt.yaml)
			_, err := Load(file, env(nil))
			if err == nil {
				t.Fatal("no problem reported")
			}
			msg := err.Error()
			if !strings.Contains(msg, file+": "+tt.want) {
				t.Errorf("problems lack %q:\n%s", file+": "+tt.want, msg)
			}
			for _, never := range []string{"cannot unmarshal", "time.Duration", "config.", "!!str", "not found in type"} {
				if strings.Contains(msg, never) {
					t.Errorf("problems say %q:\n%s", never, msg)
				}
			}
			if key, _, _ := strings.Cut(tt.want, ": "); strings.Count(msg, ": "+key+": ") != 1 {
				t.Errorf("%s is reported more than once:\n%s", key, msg)
			}
		})
	}
}

// TestWarnings: placeholder secrets and a property nobody serves are
// warned about; a configuration without them has no warnings.
func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"clean", "admin_token: s3cr3t-Tok\nproperties: [{id: a}]\nagents: [{id: x, properties: [a]}]\n", nil},
		{"placeholders", `admin_token: change-me
properties: [{id: a, slack_channel: C1}]
agents: [{id: x, properties: [a]}]
telegram: {token: "123456:replace-me"}
slack: {bot_token: xoxb-replace-me, app_token: xapp-REPLACE-ME}
`, []string{
			`admin_token: looks like a placeholder (contains "change-me")`,
			`telegram.token: looks like a placeholder (contains "replace-me")`,
			`slack.bot_token: looks like a placeholder`,
			`slack.app_token: looks like a placeholder`,
		}},
		{"unserved property", "properties: [{id: a}, {id: b}]\nagents: [{id: x, properties: [a]}]\n",
			[]string{"properties[1] (b): no agent serves this property"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := write(t, tt.yaml)
			c, err := Load(file, env(nil))
			if err != nil {
				t.Fatalf("warnings must not be problems: %v", err)
			}
			ws := c.Warnings()
			if len(ws) != len(tt.want) {
				t.Errorf("%d warnings, want %d:\n%v", len(ws), len(tt.want), ws)
			}
			msg := ws.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, file+": "+w) {
					t.Errorf("warnings lack %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := Load("../../onduty.example.yaml", env(nil)); err != nil {
		t.Fatalf("onduty.example.yaml:\n%v", err)
	}
}
