package presence

import (
	"fmt"
	"slices"
	"time"
)

// AgentID names an agent across every chat app and the admin API.
type AgentID string

// Surface names a chat app agents answer from, as its adapter names itself
// (Adapter.Name). Presence treats it as an opaque name.
type Surface string

// PropertyID names a website (a "property") whose widget shows a status.
type PropertyID string

// Status is the status an agent chose, or the effective status derived from it.
type Status string

// The four statuses of SPEC §2.
const (
	Online    Status = "online"
	Away      Status = "away"
	Invisible Status = "invisible"
	Offline   Status = "offline"
)

// IsValid reports whether s is one of the four statuses.
func (s Status) IsValid() bool {
	switch s {
	case Online, Away, Invisible, Offline:
		return true
	}
	return false
}

// ParseStatus returns the status named by s.
func ParseStatus(s string) (Status, error) {
	st := Status(s)
	if !st.IsValid() {
		return "", fmt.Errorf("unknown status %q (want online, away, invisible or offline)", s)
	}
	return st, nil
}

// Condition decides whether silence changes an agent's effective status.
type Condition string

// Conditions of SPEC §2.
const (
	// Activity agents go away, then offline, when silent.
	Activity Condition = "activity"
	// Always agents keep their chosen status until they change it.
	Always Condition = "always"
)

// IsValid reports whether c is activity or always.
func (c Condition) IsValid() bool { return c == Activity || c == Always }

// Permission is one of the per-agent rights of SPEC §2.
type Permission string

// Permissions, as in Live Helper Chat.
const (
	ChangeOnlineStatus Permission = "change_online_status"
	ChangeVisibility   Permission = "change_visibility"
	ChangeAlwaysOnline Permission = "change_always_online"
)

// AllPermissions is the default set.
var AllPermissions = []Permission{ChangeOnlineStatus, ChangeVisibility, ChangeAlwaysOnline}

// IsValid reports whether p is a known permission.
func (p Permission) IsValid() bool { return slices.Contains(AllPermissions, p) }

// Defaults of the idle thresholds.
const (
	DefaultIdleAwayAfter    = 10 * time.Minute
	DefaultIdleOfflineAfter = 30 * time.Minute
)

// Agent is an agent as configured. It does not change while the process runs.
type Agent struct {
	ID         AgentID
	Name       string
	Properties []PropertyID
	// Condition is the default condition; a stored /alwayson choice overrides it.
	// Zero means Activity.
	Condition Condition
	// IdleAwayAfter: silence after which an activity agent counts as away. Zero means 10m.
	IdleAwayAfter time.Duration
	// IdleOfflineAfter: silence after which an activity agent counts as offline. Zero means 30m.
	IdleOfflineAfter time.Duration
	// Permissions the agent holds. Nil means all of them.
	Permissions []Permission
	// InitialStatus is the status before the agent ever chose one. Zero means Offline.
	InitialStatus Status

	// Accounts maps each chat app the agent answers from to the agent's
	// account there, spelled as that app's adapter documents (its Surface
	// constant). An empty account counts as none.
	Accounts map[Surface]string
}

// Account is the agent's account on surface s, or "" if it has none there.
func (a Agent) Account(s Surface) string { return a.Accounts[s] }

// Can reports whether the agent holds permission p.
func (a Agent) Can(p Permission) bool {
	if a.Permissions == nil {
		return true
	}
	return slices.Contains(a.Permissions, p)
}

// PermissionFor is the permission needed to choose status s.
func PermissionFor(s Status) Permission {
	if s == Invisible {
		return ChangeVisibility
	}
	return ChangeOnlineStatus
}

func (a Agent) idleAway() time.Duration {
	if a.IdleAwayAfter > 0 {
		return a.IdleAwayAfter
	}
	return DefaultIdleAwayAfter
}

func (a Agent) idleOffline() time.Duration {
	if a.IdleOfflineAfter > 0 {
		return a.IdleOfflineAfter
	}
	return DefaultIdleOfflineAfter
}

func (a Agent) defaultCondition() Condition {
	if a.Condition.IsValid() {
		return a.Condition
	}
	return Activity
}

// State is what is stored of an agent: the chosen status, the condition and the
// time of the last activity.
type State struct {
	// Status is the chosen status; empty means the agent never chose one.
	Status Status `json:"status"`
	// Condition is the stored condition; empty means the configured default.
	Condition Condition `json:"condition,omitempty"`
	// LastActivity is zero if the agent was never active.
	LastActivity time.Time `json:"last_activity"`
	// Version grows by one with every stored change; a watcher ignores older ones.
	Version int64 `json:"version"`
}

// Chosen is the chosen status, falling back to the agent's initial status.
func (s State) Chosen(a Agent) Status {
	if s.Status.IsValid() {
		return s.Status
	}
	if a.InitialStatus.IsValid() {
		return a.InitialStatus
	}
	return Offline
}

// ConditionOf is the condition in force for a.
func (s State) ConditionOf(a Agent) Condition {
	if s.Condition.IsValid() {
		return s.Condition
	}
	return a.defaultCondition()
}
