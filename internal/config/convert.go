package config

import (
	"strconv"
	"time"

	"github.com/onduty/onduty/presence"
)

// PresenceProperties converts the properties for the presence package.
// The configuration must be valid.
func (c *Config) PresenceProperties() []presence.Property {
	out := make([]presence.Property, 0, len(c.Properties))
	for _, p := range c.Properties {
		pp := presence.Property{
			ID: presence.PropertyID(p.ID), Name: p.Name, OfflineMode: presence.Mode(p.OfflineMode),
			Greetings: map[presence.Status]string{
				presence.Online: p.Greetings.Online, presence.Away: p.Greetings.Away, presence.Offline: p.Greetings.Offline,
			},
			Look:  presence.Look{Color: p.Widget.Color, Position: p.Widget.Position, Title: p.Widget.Title, Language: p.Widget.Language},
			Email: c.Email != nil,
			Prechat: presence.Prechat{Name: presence.FieldRule(p.Prechat.Name), Email: presence.FieldRule(p.Prechat.Email),
				Consent: p.Prechat.Consent}.WithDefaults(),
		}
		if p.Schedule != nil {
			pp.Schedule, _ = p.Schedule.Parse()
		}
		out = append(out, pp)
	}
	return out
}

// The surfaces the agents' configured accounts belong to, in the order the
// admin board and `onduty status` list them. Each is its adapter's Name
// (telegram.Surface, slack.Surface; cmd/onduty's tests hold them equal).
const (
	SurfaceTelegram presence.Surface = "telegram"
	SurfaceSlack    presence.Surface = "slack"
)

// PresenceAgents converts the agents for the presence package.
func (c *Config) PresenceAgents() []presence.Agent {
	out := make([]presence.Agent, 0, len(c.Agents))
	for _, a := range c.Agents {
		pa := presence.Agent{
			ID: presence.AgentID(a.ID), Name: a.Name,
			Condition: presence.Condition(a.Condition), IdleAwayAfter: a.IdleAwayAfter, IdleOfflineAfter: a.IdleOfflineAfter,
			InitialStatus: presence.Status(a.InitialStatus), Accounts: map[presence.Surface]string{},
		}
		if a.TelegramUserID != 0 {
			pa.Accounts[SurfaceTelegram] = strconv.FormatInt(a.TelegramUserID, 10)
		}
		if a.SlackUserID != "" {
			pa.Accounts[SurfaceSlack] = a.SlackUserID
		}
		for _, p := range a.Properties {
			pa.Properties = append(pa.Properties, presence.PropertyID(p))
		}
		if a.Permissions != nil {
			pa.Permissions = []presence.Permission{}
			for _, p := range *a.Permissions {
				pa.Permissions = append(pa.Permissions, presence.Permission(p))
			}
		}
		out = append(out, pa)
	}
	return out
}

// Directory builds the presence directory of a valid configuration.
func (c *Config) Directory() (*presence.Directory, error) {
	return presence.NewDirectory(c.PresenceProperties(), c.PresenceAgents(), SurfaceTelegram, SurfaceSlack)
}

// Property returns the property with the given id.
func (c *Config) Property(id string) (Property, bool) {
	for _, p := range c.Properties {
		if p.ID == id {
			return p, true
		}
	}
	return Property{}, false
}

// FallbackAfter is the invisible fallback delay; zero means off.
func (a Assignment) FallbackAfter() time.Duration {
	if a.InvisibleFallbackAfter == nil {
		return DefaultInvisibleFallbackAfter
	}
	return *a.InvisibleFallbackAfter
}

// Parse builds the presence schedule and lists every problem, each with
// its key below "schedule" ("hours.mon[0]", "closed[1]") and the reason.
func (s *Schedule) Parse() (*presence.Schedule, []error) {
	ps, errs := presence.ParseSchedule(s.Timezone, s.Hours)
	return ps, append(errs, ps.AddClosures(s.Closed, s.Special)...)
}
