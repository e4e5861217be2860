package slack

import (
	"fmt"
	"net/url"
	"strings"
)

// Check reports each setting Slack would refuse or the adapter cannot use:
// its key as onduty's configuration file writes it ("slack.app_token") and
// why. It is the one place of these rules: New and the configuration
// loader (check-config) both call it. Channels are New's to check: only
// the directory knows the properties.
func (c Config) Check(report func(key, why string)) {
	if c.BotToken == "" {
		report("slack.bot_token", "required when Slack is enabled (or set SLACK_BOT_TOKEN)")
	}
	if c.APIURL != "" {
		if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			report("slack.api_url", fmt.Sprintf("%q: want an http(s) URL", c.APIURL))
		}
	}
	switch c.Mode {
	case "", ModeSocket:
		switch {
		case c.AppToken == "":
			report("slack.app_token", "required in socket mode (or set SLACK_APP_TOKEN)")
		case !strings.HasPrefix(c.AppToken, "xapp-"):
			report("slack.app_token", "must start with xapp-")
		}
	case ModeEvents:
		if c.SigningSecret == "" {
			report("slack.signing_secret", "required in events mode (or set SLACK_SIGNING_SECRET)")
		}
	default:
		report("slack.mode", fmt.Sprintf("%q: want socket or events", c.Mode))
	}
}
