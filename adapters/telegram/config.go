package telegram

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
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

// Validate returns every problem of the configuration, each naming its field.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Token) == "" {
		errs = append(errs, errors.New("telegram.token: required"))
	}
	if c.APIURL != "" {
		if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("telegram.api_url: %q is not an http(s) URL", c.APIURL))
		}
	}
	switch c.Mode {
	case "", ModePolling:
	case ModeWebhook:
		if c.WebhookURL == "" {
			errs = append(errs, errors.New("telegram.webhook_url: required in webhook mode"))
		} else if u, err := url.Parse(c.WebhookURL); err != nil || u.Scheme != "https" && u.Scheme != "http" {
			errs = append(errs, fmt.Errorf("telegram.webhook_url: %q is not an http(s) URL", c.WebhookURL))
		}
		if !validSecret(c.WebhookSecret) {
			errs = append(errs, errors.New("telegram.webhook_secret: required in webhook mode, 1-256 characters of A-Z a-z 0-9 _ -"))
		}
	default:
		errs = append(errs, fmt.Errorf("telegram.mode: %q is neither polling nor webhook", c.Mode))
	}
	for p, g := range c.Groups {
		if g >= 0 {
			errs = append(errs, fmt.Errorf("properties[%s].telegram_group: %d is not a group id (they are negative)", p, g))
		}
	}
	return errors.Join(errs...)
}

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
