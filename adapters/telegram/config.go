package telegram

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/onduty/onduty/presence"
)

// Modes of receiving updates.
const (
	ModePolling = "polling"
	ModeWebhook = "webhook"
)

// Defaults of Config.
const (
	DefaultAPIURL      = "https://api.telegram.org"
	DefaultPollTimeout = 30 * time.Second
	DefaultLeaseTTL    = 10 * time.Second
	DefaultPrefix      = "onduty:"
)

// Config configures the adapter.
type Config struct {
	// Token is the bot token from @BotFather. Required.
	Token string
	// APIURL is the Bot API server, the part before /bot<token>/. Zero means
	// https://api.telegram.org.
	APIURL string
	// Mode is polling (zero value) or webhook.
	Mode string
	// WebhookURL is where Telegram posts updates (webhook mode): the public
	// address of POST /telegram/webhook. Required in webhook mode.
	WebhookURL string
	// WebhookSecret is the X-Telegram-Bot-Api-Secret-Token Telegram must send
	// (1-256 of A-Z a-z 0-9 _ -). Required in webhook mode.
	WebhookSecret string
	// Groups names the group of a property: a forum supergroup (a topic per
	// chat) or a group without topics (chats posted in it, answered by
	// replying). A property without one uses the agents' private chats.
	Groups map[presence.PropertyID]int64
	// Prefix starts every Redis key. Zero means "onduty:".
	Prefix string
	// HTTPClient sends every request. Zero means a client whose timeout is
	// PollTimeout+30s; its Timeout, if set, must exceed PollTimeout.
	HTTPClient *http.Client
	// PollTimeout is the long-poll wait of getUpdates. Zero means 30s.
	PollTimeout time.Duration
	// LeaseTTL is how long the polling lease lasts without renewal; another
	// instance takes over about this long after the holder died. Zero means 10s.
	LeaseTTL time.Duration
}

func (c *Config) applyDefaults() {
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	c.APIURL = strings.TrimRight(c.APIURL, "/")
	if c.Mode == "" {
		c.Mode = ModePolling
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.HTTPClient == nil {
		// Long enough for a long poll; sends carry their caller's deadline.
		c.HTTPClient = &http.Client{Timeout: c.PollTimeout + 30*time.Second}
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
}

// Validate returns every problem of the configuration, each naming its
// field; Check finds them.
func (c Config) Validate() error {
	var errs []error
	c.Check(func(key, why string) { errs = append(errs, errors.New(key+": "+why)) })
	return errors.Join(errs...)
}

// Check reports each setting Telegram would refuse or the adapter cannot
// use: its key as onduty's configuration file writes it
// ("telegram.webhook_url"; a group as "properties[ID].telegram_group") and
// why. It is the one place of these rules: Validate (so New) and the
// configuration loader (check-config) both call it, the loader with no
// Groups and CheckGroup for each property, under its own keys.
func (c Config) Check(report func(key, why string)) {
	if strings.TrimSpace(c.Token) == "" {
		report("telegram.token", "required when Telegram is enabled (or set TELEGRAM_BOT_TOKEN)")
	}
	if c.APIURL != "" && !httpURL(c.APIURL) {
		report("telegram.api_url", fmt.Sprintf("%q: want an http(s) URL", c.APIURL))
	}
	switch c.Mode {
	case "", ModePolling:
	case ModeWebhook:
		switch {
		case c.WebhookURL == "":
			report("telegram.webhook_url", "required in webhook mode")
		case !httpURL(c.WebhookURL):
			report("telegram.webhook_url", fmt.Sprintf("%q: want an http(s) URL", c.WebhookURL))
		}
		switch {
		case c.WebhookSecret == "":
			report("telegram.webhook_secret", "required in webhook mode")
		case !validSecret(c.WebhookSecret):
			report("telegram.webhook_secret", "1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
		}
	default:
		report("telegram.mode", fmt.Sprintf("%q: want polling or webhook", c.Mode))
	}
	for _, p := range slices.Sorted(maps.Keys(c.Groups)) {
		if why := CheckGroup(c.Groups[p]); why != "" {
			report("properties["+string(p)+"].telegram_group", why)
		}
	}
}

// CheckGroup says why id cannot be a property's telegram_group, or "" when
// it can: Telegram's group and supergroup ids are negative.
func CheckGroup(id int64) string {
	if id >= 0 {
		return fmt.Sprintf("%d is not a group id (they are negative)", id)
	}
	return ""
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// validSecret is Telegram's rule for a webhook's secret_token.
func validSecret(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
