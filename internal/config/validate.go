package config

import (
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/onduty/onduty/adapters/slack"
	"github.com/onduty/onduty/adapters/telegram"
	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// Validate returns every problem of a configuration whose defaults are applied.
func (c *Config) Validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{File: c.File, Key: key, Why: fmt.Sprintf(format, args...)})
	}
	if c.RedisURL != "" {
		if _, err := url.Parse(c.RedisURL.Reveal()); err != nil || !strings.HasPrefix(c.RedisURL.Reveal(), "redis") {
			add("redis_url", "want redis://, rediss:// or unix:// URL")
		}
	}
	if strings.ContainsAny(c.RedisPrefix, "{} \t\n") {
		add("redis_prefix", "%q: no braces or spaces (braces would break the hash tags)", c.RedisPrefix)
	}
	positive(add, "closed_chat_retention", c.ClosedChatRetention)
	positive(add, "file_retention", c.FileRetention)
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		add("trusted_proxies", "%v", err)
	}
	if c.ProxyHeader != "" && len(c.TrustedProxies) == 0 {
		add("proxy_header", "set, but trusted_proxies is empty: list the proxies' networks, or the header (which any client can write) would decide the client IP")
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			add("metrics_listen", "%q: want host:port, e.g. 127.0.0.1:9090", c.MetricsListen)
		} else if c.MetricsListen == c.Listen {
			add("metrics_listen", "%q is also listen: use another address, or leave it empty to serve /metrics on listen", c.MetricsListen)
		}
	}
	for _, l := range []struct {
		key string
		v   int
	}{
		{"rate_limits.uploads_per_chat", c.RateLimits.UploadsPerChat},
		{"rate_limits.uploads_per_ip_per_hour", c.RateLimits.UploadsPerIPPerHour},
		{"rate_limits.uploads_per_property_per_day", c.RateLimits.UploadsPerPropertyPerDay},
		{"limits.connections_per_ip", c.Limits.ConnectionsPerIP},
		{"limits.streams", c.Limits.Streams},
		{"limits.streams_per_ip", c.Limits.StreamsPerIP},
	} {
		if l.v < -1 {
			add(l.key, "%d: want a positive number, 0 for the default or -1 for no limit", l.v)
		}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		add("log_level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	between := func(key string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			add(key, "%s: want between %s and %s", d, lo, hi)
		}
	}
	between("outbox.lease", c.Outbox.Lease, 500*time.Millisecond, 5*time.Minute)
	between("outbox.safety_poll", c.Outbox.SafetyPoll, time.Second, 24*time.Hour)
	between("outbox.deliver_timeout", c.Outbox.DeliverTimeout, 500*time.Millisecond, 10*time.Minute)
	if id := c.Outbox.InstanceID; len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		add("outbox.instance_id", "%q: at most 64 characters, no spaces or control characters", id)
	}
	if c.RateLimits.ChatsPerIPPerMinute < 0 {
		add("rate_limits.chats_per_ip_per_minute", "must not be negative")
	}
	if c.RateLimits.MessagesPerIPPerMinute < 0 {
		add("rate_limits.messages_per_ip_per_minute", "must not be negative")
	}
	if len(c.Properties) == 0 {
		add("properties", "at least one property is required")
	}
	props := map[string]bool{}
	for i, p := range c.Properties {
		key := checkID(add, "properties", "property", i, p.ID, props)
		if !presence.Mode(p.OfflineMode).IsValidOffline() {
			add(key+".offline_mode", "%q: want form, messenger or hidden", p.OfflineMode)
		}
		for j, o := range p.AllowedOrigins {
			u, err := url.Parse(o)
			if o != "*" && (err != nil || u.Scheme == "" || u.Host == "" || u.Path != "") {
				add(fmt.Sprintf("%s.allowed_origins[%d]", key, j), "%q: want an origin like https://example.com", o)
			}
		}
		if p.Schedule != nil {
			_, errs := presence.ParseSchedule(p.Schedule.Timezone, p.Schedule.Hours)
			for _, err := range errs {
				add(key+".schedule", "%s", err)
			}
			var closures presence.Schedule
			for _, err := range closures.AddClosures(p.Schedule.Closed, p.Schedule.Special) {
				// "closed[1]: why" names the key below schedule.
				sub, why, _ := strings.Cut(err.Error(), ": ")
				add(key+".schedule."+sub, "%s", why)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(p.Canned)) {
			k := key + ".canned." + name
			if !cannedName(name) {
				add(k, "%q: a name is 1 to 32 lower-case letters, digits, - or _ (what agents type after /reply)", name)
			}
			if bridge.CheckText(p.Canned[name]) != nil {
				add(k, "the text must be 1 to %d characters", bridge.MaxTextRunes)
			}
		}
		checkWidget(add, key+".widget", p.Widget)
		a := p.Assignment
		if a.Strategy != "least_loaded" && a.Strategy != "broadcast" {
			add(key+".assignment.strategy", "%q: want least_loaded or broadcast", a.Strategy)
		}
		if a.MaxChats < 1 {
			add(key+".assignment.max_chats", "must be at least 1")
		}
		positive(add, key+".assignment.accept_timeout", a.AcceptTimeout)
		positive(add, key+".assignment.queue_timeout", a.QueueTimeout)
		positive(add, key+".close_after_idle", p.CloseAfterIdle)
		if a.InvisibleFallbackAfter != nil && *a.InvisibleFallbackAfter < 0 {
			add(key+".assignment.invisible_fallback_after", "must not be negative (0 turns it off)")
		}
		if p.SlackChannel != "" && c.Slack == nil {
			add(key+".slack_channel", "set, but Slack is not configured (slack: section or SLACK_BOT_TOKEN)")
		}
		positive(add, key+".email_after", p.EmailAfter)
		for _, f := range []struct{ key, v string }{{"name", p.Prechat.Name}, {"email", p.Prechat.Email}} {
			if !presence.FieldRule(f.v).IsValid() {
				add(key+".prechat."+f.key, "%q: want optional, required or hidden", f.v)
			}
		}
		if len(p.Prechat.Consent) > 1000 {
			add(key+".prechat.consent", "at most 1000 characters")
		}
		if p.TelegramGroup != 0 {
			if c.Telegram == nil {
				add(key+".telegram_group", "set, but Telegram is not configured (telegram: section or TELEGRAM_BOT_TOKEN)")
			}
			if why := telegram.CheckGroup(p.TelegramGroup); why != "" {
				add(key+".telegram_group", "%s", why)
			}
		}
	}
	for i, w := range c.Webhooks {
		key := fmt.Sprintf("webhooks[%d]", i)
		if u, err := url.Parse(w.URL.Reveal()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(key+".url", "want an http:// or https:// URL")
		}
		if w.Secret == "" {
			add(key+".secret", "required: it signs every post")
		}
		for j, e := range w.Events {
			if !bridge.HookEvent(e).IsValid() {
				add(fmt.Sprintf("%s.events[%d]", key, j), "%q: want chat.started, chat.message, chat.closed, chat.rated or offline_message", e)
			}
		}
		for j, p := range w.Properties {
			if !props[p] {
				add(fmt.Sprintf("%s.properties[%d]", key, j), "%q is not a property", p)
			}
		}
	}
	agents := map[string]bool{}
	tgIDs := map[int64]string{}
	slackIDs := map[string]string{}
	for i, a := range c.Agents {
		key := checkID(add, "agents", "agent", i, a.ID, agents)
		if len(a.Properties) == 0 {
			add(key+".properties", "at least one property is required")
		}
		for j, p := range a.Properties {
			if !props[p] {
				add(fmt.Sprintf("%s.properties[%d]", key, j), "unknown property %q", p)
			}
		}
		if !presence.Condition(a.Condition).IsValid() {
			add(key+".condition", "%q: want activity or always", a.Condition)
		}
		positive(add, key+".idle_away_after", a.IdleAwayAfter)
		positive(add, key+".idle_offline_after", a.IdleOfflineAfter)
		if a.IdleAwayAfter > 0 && a.IdleOfflineAfter > 0 && a.IdleOfflineAfter <= a.IdleAwayAfter {
			add(key+".idle_offline_after", "%s must be longer than idle_away_after (%s)", a.IdleOfflineAfter, a.IdleAwayAfter)
		}
		if a.Permissions != nil {
			for j, p := range *a.Permissions {
				if !presence.Permission(p).IsValid() {
					add(fmt.Sprintf("%s.permissions[%d]", key, j), "%q: want change_online_status, change_visibility or change_always_online", p)
				}
			}
		}
		if a.InitialStatus != "" && !presence.Status(a.InitialStatus).IsValid() {
			add(key+".initial_status", "%q: want online, away, invisible or offline", a.InitialStatus)
		}
		if a.TelegramUserID != 0 {
			if other, dup := tgIDs[a.TelegramUserID]; dup {
				add(key+".telegram_user_id", "%d is also agent %q's", a.TelegramUserID, other)
			}
			tgIDs[a.TelegramUserID] = a.ID
			if c.Telegram == nil {
				add(key+".telegram_user_id", "set, but Telegram is not configured (telegram: section or TELEGRAM_BOT_TOKEN)")
			}
		}
		if a.SlackUserID != "" {
			if other, dup := slackIDs[a.SlackUserID]; dup {
				add(key+".slack_user_id", "%s is also agent %q's", a.SlackUserID, other)
			}
			slackIDs[a.SlackUserID] = a.ID
			if c.Slack == nil {
				add(key+".slack_user_id", "set, but Slack is not configured (slack: section or SLACK_BOT_TOKEN)")
			}
		}
	}
	if c.PublicURL != "" {
		checkURL(add, "public_url", c.PublicURL)
	}
	if e := c.Email; e != nil {
		if u, err := url.Parse(e.SMTPURL.Reveal()); err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
			add("email.smtp_url", "want smtp://[user:pass@]host[:port] or smtps://… (or set ONDUTY_SMTP_URL)")
		}
		if e.From == "" {
			add("email.from", "required with email.smtp_url: the sender, like \"Acme Support <support@acme.example>\" (or set ONDUTY_EMAIL_FROM)")
		} else if a, err := mail.ParseAddress(e.From); err != nil || strings.ContainsAny(e.From, "\r\n") || a.Address == "" {
			add("email.from", "%q: want an address like \"Acme Support <support@acme.example>\"", e.From)
		}
		if c.PublicURL == "" {
			add("public_url", "required with email: continue links in emails point there")
		}
	}
	report := func(key, why string) { add(key, "%s", why) }
	if t := c.Telegram; t != nil {
		telegram.Config{Token: t.Token.Reveal(), APIURL: t.APIURL, Mode: t.Mode,
			WebhookURL: t.WebhookURL, WebhookSecret: t.WebhookSecret.Reveal()}.Check(report)
	}
	if s := c.Slack; s != nil {
		slack.Config{BotToken: s.BotToken.Reveal(), AppToken: s.AppToken.Reveal(), SigningSecret: s.SigningSecret.Reveal(),
			Mode: s.Mode, APIURL: s.APIURL}.Check(report)
		for i, p := range c.Properties {
			if p.SlackChannel == "" {
				add(fmt.Sprintf("properties[%d] (%s).slack_channel", i, p.ID), "required when Slack is enabled: where this property's chats go")
			}
		}
	}
	return ps
}

// checkID checks the id of entry i of a list (required, well-formed, not
// seen before), records it in seen, and returns the entry's key for messages:
// "agents[2] (alice)".
func checkID(add func(string, string, ...any), list, what string, i int, id string, seen map[string]bool) string {
	key := fmt.Sprintf("%s[%d]", list, i)
	if id != "" {
		key = fmt.Sprintf("%s[%d] (%s)", list, i, id)
	}
	switch {
	case id == "":
		add(key+".id", "required")
	case !validID(id):
		add(key+".id", "%q: use letters, digits, '-' and '_' only", id)
	case seen[id]:
		add(key+".id", "duplicate %s id %q", what, id)
	}
	seen[id] = true
	return key
}

func positive(add func(string, string, ...any), key string, d time.Duration) {
	if d <= 0 {
		add(key, "must be a positive duration like 30s or 10m")
	}
}

func checkURL(add func(string, string, ...any), key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add(key, "%q: want an http(s) URL", raw)
	}
}

func validID(s string) bool { return len(s) <= 64 && validIDChars(s) }

func validIDChars(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// maxWidgetTitle bounds widget.title: it is one line in the panel's header.
const maxWidgetTitle = 60

func checkWidget(add func(key, format string, args ...any), key string, w Widget) {
	if w.Color != "" && !hexColor(w.Color) {
		add(key+".color", "%q: want a colour like #1f6feb or #16a", w.Color)
	}
	if w.Position != "" && w.Position != "right" && w.Position != "left" {
		add(key+".position", "%q: want right or left", w.Position)
	}
	if n := utf8.RuneCountInString(w.Title); n > maxWidgetTitle || strings.ContainsAny(w.Title, "\r\n") {
		add(key+".title", "want one line of at most %d characters", maxWidgetTitle)
	}
	if w.Language != "" && !slices.Contains(presence.WidgetLanguages, w.Language) {
		add(key+".language", "%q: want one of %s", w.Language, strings.Join(presence.WidgetLanguages, ", "))
	}
}

// hexColor reports whether s is "#rgb" or "#rrggbb".
func hexColor(s string) bool {
	if len(s) != 4 && len(s) != 7 || s[0] != '#' {
		return false
	}
	for _, c := range s[1:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// TrustedProxyPrefixes parses trusted_proxies: CIDRs ("10.0.0.0/8") or
// single addresses ("192.0.2.1", taken as /32 or /128).
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for i, s := range c.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("[%d] %q: want a network like 10.0.0.0/8 or an address", i, s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// cannedName reports whether s may name a canned reply.
func cannedName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
