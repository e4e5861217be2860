// Package config reads onduty's YAML configuration, applies environment
// overrides and defaults, and validates it, reporting every problem with the
// file and key it concerns.
package config

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Secret is a token or password. It never prints: use Reveal.
type Secret string

// Reveal returns the secret's text.
func (s Secret) Reveal() string { return string(s) }

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// LogValue redacts the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Config is the whole file (SPEC §5).
type Config struct {
	// Listen is the HTTP address. Default ":8080".
	Listen string `yaml:"listen"`
	// RedisURL; empty means an embedded single-instance Redis.
	RedisURL Secret `yaml:"redis_url"`
	// RedisPrefix starts every key and channel, so deployments can share a
	// Redis. Default "onduty:".
	RedisPrefix string `yaml:"redis_prefix"`
	// AdminToken enables the admin API; empty disables it.
	AdminToken Secret `yaml:"admin_token"`
	// TrustedProxies are the networks (CIDR, or single addresses) of the
	// reverse proxies in front of onduty. A request from one of them has
	// its client IP taken from ProxyHeader: the rightmost entry that is not
	// a trusted proxy. Empty: the TCP peer's address is the client IP.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ProxyHeader names the header the trusted proxies append the client
	// IP to. Default "X-Forwarded-For"; read only from trusted proxies.
	ProxyHeader string `yaml:"proxy_header"`
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken Secret `yaml:"metrics_token"`
	// MetricsListen, when set, serves /metrics on this address instead of
	// listen (e.g. "127.0.0.1:9090").
	MetricsListen string `yaml:"metrics_listen"`
	// FileRetention is how long a visitor's file is kept. Default 168h (7 days).
	FileRetention time.Duration `yaml:"file_retention"`
	// Limits caps connections and event streams per instance.
	Limits Limits `yaml:"limits"`
	// ClosedChatRetention is how long a closed chat's transcript is kept in
	// Redis. Default 720h (30 days).
	ClosedChatRetention time.Duration `yaml:"closed_chat_retention"`
	// PublicURL is where this server is reached from outside: links to files
	// for agents' apps and continue links in emails. Required with email
	// (the demo takes http://localhost:PORT). Env ONDUTY_PUBLIC_URL.
	PublicURL string `yaml:"public_url"`
	// Email sends answers to visitors who left (SPEC §9); nil (no smtp_url)
	// means nothing is emailed.
	Email      *Email     `yaml:"email"`
	Webhooks   []Webhook  `yaml:"webhooks"`
	LogLevel   string     `yaml:"log_level"` // debug | info (default) | warn | error
	Properties []Property `yaml:"properties"`
	Agents     []Agent    `yaml:"agents"`
	RateLimits RateLimits `yaml:"rate_limits"`
	Telegram   *Telegram  `yaml:"telegram"`
	Slack      *Slack     `yaml:"slack"`
	Outbox     Outbox     `yaml:"outbox"`

	// File is where the configuration came from ("" for the demo).
	File string `yaml:"-"`
	// Demo is true when no file was given.
	Demo bool `yaml:"-"`
}

// Email is the SMTP server emails go through.
type Email struct {
	// SMTPURL: smtp://user:pass@host:587 (STARTTLS when offered),
	// smtps://user:pass@host:465 (TLS), smtp://host:1025 (plain, a local catcher).
	SMTPURL Secret `yaml:"smtp_url"`
	// From is the sender, "Acme Support <support@acme.example>". Required.
	From string `yaml:"from"`
}

// Prechat is a property's pre-chat form (SPEC §9).
type Prechat struct {
	Name    string `yaml:"name"`    // optional (default) | required | hidden
	Email   string `yaml:"email"`   // optional (default) | required | hidden
	Consent string `yaml:"consent"` // text shown with a checkbox; empty: none
}

// Greetings are the widget's texts per status.
type Greetings struct {
	Online  string `yaml:"online"`
	Away    string `yaml:"away"`
	Offline string `yaml:"offline"`
}

// Schedule is a property's weekly hours, closed days and special days.
type Schedule struct {
	Timezone string              `yaml:"timezone"`
	Hours    map[string][]string `yaml:"hours"`
	// Closed lists whole days ("2026-12-25") and inclusive ranges
	// ("2026-12-31..2027-01-01") in Timezone when the widget is offline.
	Closed []string `yaml:"closed"`
	// Special maps a date to the hours that replace its weekly hours.
	Special map[string][]string `yaml:"special"`
}

// Assignment is a property's routing.
type Assignment struct {
	// Strategy: least_loaded (default) or broadcast.
	Strategy string `yaml:"strategy"`
	// MaxChats per agent for auto-assignment. Default 5.
	MaxChats int `yaml:"max_chats"`
	// AcceptTimeout before the next agent is offered the chat. Default 30s.
	AcceptTimeout time.Duration `yaml:"accept_timeout"`
	// InvisibleFallbackAfter: pending this long, invisible agents are offered
	// the chat too. Default 30s; 0 turns it off.
	InvisibleFallbackAfter *time.Duration `yaml:"invisible_fallback_after"`
	// QueueTimeout: nobody accepted, the chat becomes an offline message. Default 5m.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
}

// Property is one website.
type Property struct {
	ID             string     `yaml:"id"`
	Name           string     `yaml:"name"`
	AllowedOrigins []string   `yaml:"allowed_origins"`
	Greetings      Greetings  `yaml:"greetings"`
	OfflineMode    string     `yaml:"offline_mode"` // form (default) | messenger | hidden
	Schedule       *Schedule  `yaml:"schedule"`
	Assignment     Assignment `yaml:"assignment"`
	// CloseAfterIdle closes a chat nobody wrote in for this long. Default 24h.
	CloseAfterIdle time.Duration `yaml:"close_after_idle"`
	SlackChannel   string        `yaml:"slack_channel"`
	TelegramGroup  int64         `yaml:"telegram_group"`
	// EmailAfter: an agent's reply the visitor has not read in this time is
	// emailed, at most one email per chat per EmailAfter. Default 2m.
	EmailAfter time.Duration `yaml:"email_after"`
	Prechat    Prechat       `yaml:"prechat"`
	// IdentitySecret verifies window.onduty.identify: the signature is the
	// hex HMAC-SHA256 of user_id under it. Empty: identities are shown as
	// unverified.
	IdentitySecret Secret `yaml:"identity_secret"`
	// Canned replies by name: "/reply NAME" sends the text as the agent.
	Canned map[string]string `yaml:"canned"`
	// Widget is the widget's look; empty fields keep its defaults.
	Widget Widget `yaml:"widget"`
}

// Widget is a property's widget appearance.
type Widget struct {
	// Color: "#rrggbb" or "#rgb"; default the widget's blue.
	Color string `yaml:"color"`
	// Position: right (default) or left.
	Position string `yaml:"position"`
	// Title of the open panel; default "Chat" in the visitor's language.
	Title string `yaml:"title"`
	// Language: en, de, fr, es or ru; default the page's lang (else en).
	Language string `yaml:"language"`
}

// Webhook posts chat events to another system (SPEC §10).
type Webhook struct {
	// URL receives the POSTs (http or https). Required.
	URL Secret `yaml:"url"`
	// Secret signs each body (X-Onduty-Signature: sha256=HMAC). Required.
	Secret Secret `yaml:"secret"`
	// Events to post; empty means all: chat.started, chat.message,
	// chat.closed, chat.rated, offline_message.
	Events []string `yaml:"events"`
	// Properties limits the webhook to these properties; empty means all.
	Properties []string `yaml:"properties"`
}

// Agent is one support agent.
type Agent struct {
	ID             string   `yaml:"id"`
	Name           string   `yaml:"name"`
	Properties     []string `yaml:"properties"`
	TelegramUserID int64    `yaml:"telegram_user_id"`
	SlackUserID    string   `yaml:"slack_user_id"`
	// Condition: activity (default) or always.
	Condition        string        `yaml:"condition"`
	IdleAwayAfter    time.Duration `yaml:"idle_away_after"`    // default 10m
	IdleOfflineAfter time.Duration `yaml:"idle_offline_after"` // default 30m
	// Permissions; absent means all three, [] means none.
	Permissions *[]string `yaml:"permissions"`
	// InitialStatus before the agent first chooses one; default offline.
	InitialStatus string `yaml:"initial_status"`
}

// RateLimits of the visitor API, counted across instances. For the upload
// quotas, -1 turns one off.
type RateLimits struct {
	ChatsPerIPPerMinute      int `yaml:"chats_per_ip_per_minute"`      // default 20
	MessagesPerIPPerMinute   int `yaml:"messages_per_ip_per_minute"`   // default 120
	UploadsPerChat           int `yaml:"uploads_per_chat"`             // default 20
	UploadsPerIPPerHour      int `yaml:"uploads_per_ip_per_hour"`      // default 30
	UploadsPerPropertyPerDay int `yaml:"uploads_per_property_per_day"` // default 500
}

// Limits cap what one instance holds open; -1 turns one off.
type Limits struct {
	// ConnectionsPerIP: more from one TCP peer (an IPv6 /64 counts as one)
	// are answered 429 and closed (trusted proxies are not capped). Default 256.
	ConnectionsPerIP int `yaml:"connections_per_ip"`
	// Streams: event streams held by the instance; more are answered 503.
	// Default 10000.
	Streams int `yaml:"streams"`
	// StreamsPerIP: event streams of one client IP; more are answered 429.
	// Default 32.
	StreamsPerIP int `yaml:"streams_per_ip"`
}

// Telegram configures the Telegram adapter; nil means off.
type Telegram struct {
	Token         Secret `yaml:"token"`
	Mode          string `yaml:"mode"` // polling (default) | webhook
	WebhookURL    string `yaml:"webhook_url"`
	WebhookSecret Secret `yaml:"webhook_secret"`
	// APIURL is the Bot API server, the part before /bot<token>/. Default https://api.telegram.org.
	APIURL string `yaml:"api_url"`
}

// Slack configures the Slack adapter; nil means off.
type Slack struct {
	BotToken      Secret `yaml:"bot_token"`
	AppToken      Secret `yaml:"app_token"`
	SigningSecret Secret `yaml:"signing_secret"`
	Mode          string `yaml:"mode"` // socket (default) | events
	// APIURL is the Web API base, ending in /api/. Default https://slack.com/api/.
	APIURL string `yaml:"api_url"`
	// UsePresence counts Slack's own "active" presence as activity.
	UsePresence bool `yaml:"use_presence"`
}

// Outbox tunes the delivery of chat events to the agents' platforms.
type Outbox struct {
	// Lease is how long an instance's claim on an outbox shard lasts
	// without renewal; it is renewed every third of it while the shard has
	// work and given back when empty. After a kill -9, another instance
	// resumes the deliveries within about Lease plus a third. Default 3s.
	Lease time.Duration `yaml:"lease"`
	// SafetyPoll is how often an idle instance looks for deliveries and
	// timers whose wake-up (pub/sub) it missed. Default 5m.
	SafetyPoll time.Duration `yaml:"safety_poll"`
	// DeliverTimeout bounds one request to a platform, not the pacing wait
	// before it; a request that may have arrived without an answer is sent
	// again only after it. Default 10s.
	DeliverTimeout time.Duration `yaml:"deliver_timeout"`
	// InstanceID names this instance in outbox leases, so that, restarted
	// with the same name, it takes over at once the deliveries it held.
	// Two running instances must never share it. Default: a random name per
	// start (a restart then waits for the lease, at most Lease).
	InstanceID string `yaml:"instance_id"`
}

// Default outbox settings.
const (
	DefaultOutboxLease          = 3 * time.Second
	DefaultOutboxSafetyPoll     = 5 * time.Minute
	DefaultOutboxDeliverTimeout = 10 * time.Second
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	File string
	Key  string
	Why  string
}

func (p Problem) String() string {
	file := p.File
	if file == "" {
		file = "(environment)"
	}
	if p.Key == "" {
		return file + ": " + p.Why
	}
	return file + ": " + p.Key + ": " + p.Why
}

// Problems is every problem found; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// without returns the problems of more whose key is not already one of
// ps's: a value the file got wrong is reported once, not again as missing.
func (ps Problems) without(more Problems) Problems {
	var out Problems
next:
	for _, m := range more {
		for _, p := range ps {
			if p.Key != "" && m.Key == p.Key {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// Env is the environment lookup; tests pass their own.
type Env func(string) (string, bool)

// Load reads file (or, if file is empty, the demo configuration), applies
// environment overrides and defaults, and validates. The error, if any, is
// Problems listing everything wrong.
func Load(file string, env Env) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	var c *Config
	if file == "" {
		c = DemoConfig()
	} else {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, Problems{{File: file, Why: err.Error()}}
		}
		var probs Problems
		c, probs = Parse(file, data)
		if c == nil {
			return nil, probs
		}
		c.applyEnv(env)
		c.applyDefaults()
		probs = append(probs, probs.without(c.Validate())...)
		if len(probs) > 0 {
			return nil, probs
		}
		return c, nil
	}
	c.applyEnv(env)
	c.applyDefaults()
	if probs := c.Validate(); len(probs) > 0 {
		return nil, probs
	}
	return c, nil
}

// Parse decodes YAML, reporting unknown keys and values of the wrong kind
// with their key path. It returns a nil config only if the document cannot
// be read at all.
func Parse(file string, data []byte) (*Config, Problems) {
	c := &Config{File: file}
	var doc yaml.Node
	err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc)
	if errors.Is(err, io.EOF) { // an empty file is an empty configuration
		return c, nil
	}
	if err != nil {
		return nil, Problems{{File: file, Why: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	probs := checkNode(file, &doc, reflect.TypeFor[Config]())
	// What checkNode found, the decoder leaves at its zero value and
	// decodes the rest.
	err = doc.Decode(c)
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		return nil, append(probs, Problem{File: file, Why: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
	}
	if te != nil && len(probs) == 0 {
		// Only if checkNode missed it: better the decoder's words than nothing.
		for _, e := range te.Errors {
			probs = append(probs, Problem{File: file, Why: e})
		}
	}
	return c, probs
}

// DemoConfig is what `onduty serve` runs with no file: one property, one
// always-online agent who answers from the log or the admin API.
func DemoConfig() *Config {
	all := []string{"change_online_status", "change_visibility", "change_always_online"}
	return &Config{
		Demo: true,
		Properties: []Property{{
			ID: "demo", Name: "Demo",
			Greetings:   Greetings{Online: "Hi! The demo agent is here.", Away: "The demo agent may take a moment.", Offline: "Leave us a message."},
			OfflineMode: "form",
		}},
		Agents: []Agent{{
			ID: "demo", Name: "Demo Agent", Properties: []string{"demo"},
			Condition: "always", InitialStatus: "online", Permissions: &all,
		}},
	}
}

func (c *Config) applyEnv(env Env) {
	set := func(name string, dst *string) {
		if v, ok := env(name); ok && v != "" {
			*dst = v
		}
	}
	setSecret := func(name string, dst *Secret) {
		if v, ok := env(name); ok && v != "" {
			*dst = Secret(v)
		}
	}
	set("ONDUTY_LISTEN", &c.Listen)
	set("ONDUTY_PUBLIC_URL", &c.PublicURL)
	if v, ok := env("ONDUTY_SMTP_URL"); ok && v != "" && c.Email == nil {
		c.Email = &Email{}
	}
	if c.Email != nil {
		setSecret("ONDUTY_SMTP_URL", &c.Email.SMTPURL)
		set("ONDUTY_EMAIL_FROM", &c.Email.From)
	}
	setSecret("ONDUTY_REDIS_URL", &c.RedisURL)
	set("ONDUTY_REDIS_PREFIX", &c.RedisPrefix)
	setSecret("ONDUTY_ADMIN_TOKEN", &c.AdminToken)
	setSecret("ONDUTY_METRICS_TOKEN", &c.MetricsToken)
	if v, ok := env("TELEGRAM_BOT_TOKEN"); ok && v != "" && c.Telegram == nil {
		c.Telegram = &Telegram{}
	}
	if c.Telegram != nil {
		setSecret("TELEGRAM_BOT_TOKEN", &c.Telegram.Token)
		set("TELEGRAM_API_URL", &c.Telegram.APIURL)
	}
	if v, ok := env("SLACK_BOT_TOKEN"); ok && v != "" && c.Slack == nil {
		c.Slack = &Slack{}
	}
	if c.Slack != nil {
		setSecret("SLACK_BOT_TOKEN", &c.Slack.BotToken)
		setSecret("SLACK_APP_TOKEN", &c.Slack.AppToken)
		setSecret("SLACK_SIGNING_SECRET", &c.Slack.SigningSecret)
		set("SLACK_API_URL", &c.Slack.APIURL)
	}
}

// Defaults not stated elsewhere.
const (
	DefaultListen                 = ":8080"
	DefaultRedisPrefix            = "onduty:"
	DefaultMaxChats               = 5
	DefaultAcceptTimeout          = 30 * time.Second
	DefaultInvisibleFallbackAfter = 30 * time.Second
	DefaultQueueTimeout           = 5 * time.Minute
	DefaultCloseAfterIdle         = 24 * time.Hour
	DefaultEmailAfter             = 2 * time.Minute
	DefaultClosedChatRetention    = 30 * 24 * time.Hour
	DefaultFileRetention          = 7 * 24 * time.Hour
	DefaultProxyHeader            = "X-Forwarded-For"
	DefaultChatsPerIPPerMinute    = 20
	DefaultMessagesPerIPPerMinute = 120
	DefaultTelegramAPIURL         = "https://api.telegram.org"
	DefaultSlackAPIURL            = "https://slack.com/api/"
)

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.RedisPrefix == "" {
		c.RedisPrefix = DefaultRedisPrefix
	}
	if c.ClosedChatRetention == 0 {
		c.ClosedChatRetention = DefaultClosedChatRetention
	}
	if c.FileRetention == 0 {
		c.FileRetention = DefaultFileRetention
	}
	if c.ProxyHeader == "" && len(c.TrustedProxies) > 0 {
		c.ProxyHeader = DefaultProxyHeader
	}
	if c.Outbox.Lease == 0 {
		c.Outbox.Lease = DefaultOutboxLease
	}
	if c.Outbox.SafetyPoll == 0 {
		c.Outbox.SafetyPoll = DefaultOutboxSafetyPoll
	}
	if c.Outbox.DeliverTimeout == 0 {
		c.Outbox.DeliverTimeout = DefaultOutboxDeliverTimeout
	}
	if c.RateLimits.ChatsPerIPPerMinute == 0 {
		c.RateLimits.ChatsPerIPPerMinute = DefaultChatsPerIPPerMinute
	}
	if c.RateLimits.MessagesPerIPPerMinute == 0 {
		c.RateLimits.MessagesPerIPPerMinute = DefaultMessagesPerIPPerMinute
	}
	for i := range c.Properties {
		p := &c.Properties[i]
		if p.Name == "" {
			p.Name = p.ID
		}
		if p.OfflineMode == "" {
			p.OfflineMode = "form"
		}
		a := &p.Assignment
		if a.Strategy == "" {
			a.Strategy = "least_loaded"
		}
		if a.MaxChats == 0 {
			a.MaxChats = DefaultMaxChats
		}
		if a.AcceptTimeout == 0 {
			a.AcceptTimeout = DefaultAcceptTimeout
		}
		if a.InvisibleFallbackAfter == nil {
			d := DefaultInvisibleFallbackAfter
			a.InvisibleFallbackAfter = &d
		}
		if a.QueueTimeout == 0 {
			a.QueueTimeout = DefaultQueueTimeout
		}
		if p.CloseAfterIdle == 0 {
			p.CloseAfterIdle = DefaultCloseAfterIdle
		}
		if p.EmailAfter == 0 {
			p.EmailAfter = DefaultEmailAfter
		}
		if p.Prechat.Name == "" {
			p.Prechat.Name = "optional"
		}
		if p.Prechat.Email == "" {
			p.Prechat.Email = "optional"
		}
	}
	for i := range c.Agents {
		a := &c.Agents[i]
		if a.Name == "" {
			a.Name = a.ID
		}
		if a.Condition == "" {
			a.Condition = "activity"
		}
		if a.IdleAwayAfter == 0 {
			a.IdleAwayAfter = 10 * time.Minute
		}
		if a.IdleOfflineAfter == 0 {
			a.IdleOfflineAfter = 30 * time.Minute
		}
	}
	if c.Email != nil && c.Email.SMTPURL == "" {
		c.Email = nil // an email section without a server sends nothing
	}
	if c.Demo && c.Email != nil && c.Email.From == "" {
		c.Email.From = "onduty demo <demo@onduty.localhost>"
	}
	if c.Demo && c.Email != nil && c.PublicURL == "" {
		port := c.Listen[strings.LastIndexByte(c.Listen, ':')+1:]
		c.PublicURL = "http://localhost:" + port
	}
	if t := c.Telegram; t != nil {
		if t.Mode == "" {
			t.Mode = "polling"
		}
		if t.APIURL == "" {
			t.APIURL = DefaultTelegramAPIURL
		}
		t.APIURL = strings.TrimRight(t.APIURL, "/")
	}
	if s := c.Slack; s != nil {
		if s.Mode == "" {
			s.Mode = "socket"
		}
		if s.APIURL == "" {
			s.APIURL = DefaultSlackAPIURL
		}
		if !strings.HasSuffix(s.APIURL, "/") {
			s.APIURL += "/"
		}
	}
}
