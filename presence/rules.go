package presence

import (
	"fmt"
	"strings"
	"time"
)

// Effective is the status routing and the widget use (SPEC §2):
// offline stays offline; an always agent keeps the chosen status; an activity
// agent keeps it while active within IdleAwayAfter, counts as away after that
// and as offline after IdleOfflineAfter. An idle invisible agent stays
// invisible until it counts as offline: going "away" would make it visible.
func Effective(a Agent, s State, now time.Time) Status {
	st, _ := Explain(a, s, now)
	return st
}

// Explain is Effective with the reason in plain words.
func Explain(a Agent, s State, now time.Time) (Status, string) {
	chosen := s.Chosen(a)
	if chosen == Offline {
		return Offline, "chose offline"
	}
	if s.ConditionOf(a) == Always {
		return chosen, fmt.Sprintf("chose %s, always online", chosen)
	}
	if s.LastActivity.IsZero() {
		return Offline, fmt.Sprintf("chose %s, never active (activity-based)", chosen)
	}
	idle := now.Sub(s.LastActivity)
	switch {
	case idle >= a.idleOffline():
		return Offline, fmt.Sprintf("chose %s, silent %s (idle_offline_after %s)", chosen, roundIdle(idle), a.idleOffline())
	case idle >= a.idleAway() && chosen == Online:
		return Away, fmt.Sprintf("chose online, silent %s (idle_away_after %s)", roundIdle(idle), a.idleAway())
	}
	return chosen, fmt.Sprintf("chose %s, active %s ago", chosen, roundIdle(idle))
}

func roundIdle(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d.Round(time.Second)
}

// NextChange is the first instant after now at which Effective(a, s, ·) changes
// without any new activity, or the zero time if it never does.
func NextChange(a Agent, s State, now time.Time) time.Time {
	chosen := s.Chosen(a)
	if chosen == Offline || s.ConditionOf(a) == Always || s.LastActivity.IsZero() {
		return time.Time{}
	}
	if chosen == Online {
		if t := s.LastActivity.Add(a.idleAway()); t.After(now) {
			return t
		}
	}
	if t := s.LastActivity.Add(a.idleOffline()); t.After(now) {
		return t
	}
	return time.Time{}
}

// PromptLead is how long before an activity agent would count as offline the
// bot asks "Still on duty?". It is shortened to half the gap between the two
// idle thresholds when that gap is small.
const PromptLead = 2 * time.Minute

// PromptAt is when to ask an activity agent "Still on duty?", or zero if the
// agent is not heading offline (always online, already offline, never active).
func PromptAt(a Agent, s State) time.Time {
	if s.Chosen(a) == Offline || s.ConditionOf(a) == Always || s.LastActivity.IsZero() {
		return time.Time{}
	}
	lead := PromptLead
	if gap := a.idleOffline() - a.idleAway(); gap > 0 && gap < 2*lead {
		lead = gap / 2
	}
	if lead > a.idleOffline() {
		lead = a.idleOffline() / 2
	}
	return s.LastActivity.Add(a.idleOffline() - lead)
}

// Mode tells the widget what to show.
type Mode string

// Widget modes (SPEC §3).
const (
	ModeLive      Mode = "live"
	ModeForm      Mode = "form"
	ModeMessenger Mode = "messenger"
	ModeHidden    Mode = "hidden"
)

// IsValidOffline reports whether m may be a property's offline_mode.
func (m Mode) IsValidOffline() bool { return m == ModeForm || m == ModeMessenger || m == ModeHidden }

// Property is a website as configured.
type Property struct {
	ID   PropertyID
	Name string
	// Greetings per widget status; a missing one falls back to DefaultGreetings.
	Greetings map[Status]string
	// OfflineMode is what the widget does when offline. Zero means ModeForm.
	OfflineMode Mode
	// Schedule limits the hours the widget can be live; nil means always.
	Schedule *Schedule
	// Look is how the widget presents itself; the zero value is its defaults.
	Look Look
	// Email is true when the server sends email (SPEC §9): only then may the
	// widget promise an answer by email.
	Email bool
	// Prechat is the widget's pre-chat form. Zero fields mean optional.
	Prechat Prechat
}

// FieldRule says whether the pre-chat form asks for a field.
type FieldRule string

// Pre-chat field rules (SPEC §9).
const (
	FieldOptional FieldRule = "optional"
	FieldRequired FieldRule = "required"
	FieldHidden   FieldRule = "hidden"
)

// IsValid reports whether r is a known rule.
func (r FieldRule) IsValid() bool {
	return r == FieldOptional || r == FieldRequired || r == FieldHidden
}

// Prechat is a property's pre-chat form: which of name and email it asks
// for, and a consent text shown with a checkbox ("" for none).
type Prechat struct {
	Name    FieldRule `json:"name"`
	Email   FieldRule `json:"email"`
	Consent string    `json:"consent"`
}

// WithDefaults fills unset (or unknown) rules with FieldOptional.
func (p Prechat) WithDefaults() Prechat {
	if !p.Name.IsValid() {
		p.Name = FieldOptional
	}
	if !p.Email.IsValid() {
		p.Email = FieldOptional
	}
	return p
}

// Look is a property's widget appearance (config key widget). Empty fields
// leave the widget's own defaults: its blue, the right corner, "Chat" in the
// visitor's language, the page's lang.
type Look struct {
	// Color is "#rrggbb" or "#rgb": the launcher, the header and the
	// visitor's bubbles.
	Color string `json:"color,omitempty"`
	// Position is "right" or "left".
	Position string `json:"position,omitempty"`
	// Title is the panel's heading.
	Title string `json:"title,omitempty"`
	// Language is one of WidgetLanguages; it overrides the page's lang.
	Language string `json:"language,omitempty"`
}

// WidgetLanguages are the languages the widget ships labels for.
var WidgetLanguages = []string{"en", "de", "fr", "es", "ru"}

// DefaultGreetings are used where a property sets none.
var DefaultGreetings = map[Status]string{
	Online:  "We're online. How can we help?",
	Away:    "We may take a moment to reply.",
	Offline: "Leave us a message and we'll get back to you.",
}

func (p Property) greeting(s Status) string {
	if g, ok := p.Greetings[s]; ok && g != "" {
		return g
	}
	return DefaultGreetings[s]
}

func (p Property) offlineMode() Mode {
	if p.OfflineMode.IsValidOffline() {
		return p.OfflineMode
	}
	return ModeForm
}

// WidgetStatus is what the widget is told.
type WidgetStatus struct {
	Property PropertyID `json:"property"`
	Status   Status     `json:"status"`
	Mode     Mode       `json:"mode"`
	Greeting string     `json:"greeting"`
	// Email tells the widget whether answers can come by email.
	Email bool `json:"email"`
	// Prechat is the pre-chat form the widget shows.
	Prechat Prechat `json:"prechat"`
	// Widget is the property's Look, omitted when it sets none.
	Widget Look `json:"widget,omitzero"`
}

// AgentView is one agent with its stored state.
type AgentView struct {
	Agent Agent
	State State
}

// AgentReport explains one agent's part in a widget status.
type AgentReport struct {
	ID           AgentID    `json:"id"`
	Name         string     `json:"name"`
	Status       Status     `json:"status"`
	Condition    Condition  `json:"condition"`
	LastActivity *time.Time `json:"last_activity"`
	Effective    Status     `json:"effective"`
	// Counts is true if the agent makes the widget online or away.
	Counts bool   `json:"counts"`
	Reason string `json:"reason"`
}

// Report is a widget status with the reasons behind it.
type Report struct {
	WidgetStatus
	InSchedule bool `json:"in_schedule"`
	// Closed is the closed day (schedule.closed, YYYY-MM-DD) the property is
	// in now, if any.
	Closed string        `json:"closed,omitempty"`
	Reason string        `json:"reason"`
	Agents []AgentReport `json:"agents"`
}

// Widget computes a property's widget status (SPEC §3) from its agents.
func Widget(p Property, agents []AgentView, now time.Time) Report {
	r := Report{InSchedule: p.Schedule.Open(now)}
	var online, away []string
	for _, v := range agents {
		eff, why := Explain(v.Agent, v.State, now)
		ar := AgentReport{
			ID: v.Agent.ID, Name: v.Agent.Name,
			Status: v.State.Chosen(v.Agent), Condition: v.State.ConditionOf(v.Agent),
			Effective: eff, Counts: eff == Online || eff == Away, Reason: why,
		}
		if !v.State.LastActivity.IsZero() {
			t := v.State.LastActivity
			ar.LastActivity = &t
		}
		switch eff {
		case Online:
			online = append(online, v.Agent.Name)
		case Away:
			away = append(away, v.Agent.Name)
		}
		r.Agents = append(r.Agents, ar)
	}
	st := Offline
	switch {
	case !r.InSchedule:
		r.Reason = "outside the schedule"
		if d, ok := p.Schedule.ClosedOn(now); ok {
			r.Closed = d.String()
			r.Reason = fmt.Sprintf("closed: holiday %s (%s)", d, p.Schedule.Location)
		} else if d, ok := p.Schedule.SpecialOn(now); ok {
			r.Reason = fmt.Sprintf("outside the special hours of %s (%s)", d, p.Schedule.Location)
		} else if p.Schedule != nil {
			r.Reason = fmt.Sprintf("outside the schedule (%s)", p.Schedule.Location)
		}
	case len(online) > 0:
		st, r.Reason = Online, fmt.Sprintf("online: %s", strings.Join(online, ", "))
	case len(away) > 0:
		st, r.Reason = Away, fmt.Sprintf("nobody online; away: %s", strings.Join(away, ", "))
	case len(agents) == 0:
		r.Reason = "no agents"
	default:
		r.Reason = "nobody online or away"
	}
	r.WidgetStatus = WidgetStatus{Property: p.ID, Status: st, Mode: ModeLive, Greeting: p.greeting(st),
		Email: p.Email, Prechat: p.Prechat.WithDefaults(), Widget: p.Look}
	if st == Offline {
		r.Mode = p.offlineMode()
	}
	return r
}
