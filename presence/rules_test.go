package presence

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func agent(cond Condition) Agent {
	return Agent{ID: "alice", Name: "Alice", Condition: cond, IdleAwayAfter: 10 * time.Minute, IdleOfflineAfter: 30 * time.Minute}
}

func TestEffective(t *testing.T) {
	tests := []struct {
		name   string
		agent  Agent
		state  State
		idle   time.Duration // since last activity; -1 = never active
		want   Status
		reason string
	}{
		{"never chose: offline", agent(Activity), State{}, 0, Offline, "chose offline"},
		{"demo agent starts online", Agent{Condition: Always, InitialStatus: Online}, State{}, -1, Online, "always online"},
		{"offline stays offline (always)", agent(Always), State{Status: Offline}, 0, Offline, "chose offline"},
		{"offline stays offline (activity)", agent(Activity), State{Status: Offline}, 0, Offline, "chose offline"},
		{"always online silent a week", agent(Always), State{Status: Online}, 7 * 24 * time.Hour, Online, "always online"},
		{"always away silent a day", agent(Always), State{Status: Away}, 24 * time.Hour, Away, "always online"},
		{"always invisible silent", agent(Always), State{Status: Invisible}, 24 * time.Hour, Invisible, ""},
		{"stored always overrides activity default", agent(Activity), State{Status: Online, Condition: Always}, 24 * time.Hour, Online, ""},
		{"stored activity overrides always default", agent(Always), State{Status: Online, Condition: Activity}, 31 * time.Minute, Offline, "idle_offline_after"},
		{"activity online, just active", agent(Activity), State{Status: Online}, 0, Online, "active"},
		{"activity online, 9m59s", agent(Activity), State{Status: Online}, 10*time.Minute - time.Second, Online, ""},
		{"activity online, 10m: away", agent(Activity), State{Status: Online}, 10 * time.Minute, Away, "idle_away_after"},
		{"activity online, 29m: away", agent(Activity), State{Status: Online}, 29 * time.Minute, Away, ""},
		{"activity online, 30m: offline", agent(Activity), State{Status: Online}, 30 * time.Minute, Offline, "idle_offline_after"},
		{"activity away, 15m: away", agent(Activity), State{Status: Away}, 15 * time.Minute, Away, ""},
		{"activity away, 30m: offline", agent(Activity), State{Status: Away}, 30 * time.Minute, Offline, ""},
		{"activity invisible, 15m: still invisible", agent(Activity), State{Status: Invisible}, 15 * time.Minute, Invisible, ""},
		{"activity invisible, 30m: offline", agent(Activity), State{Status: Invisible}, 30 * time.Minute, Offline, ""},
		{"activity, never active: offline", agent(Activity), State{Status: Online}, -1, Offline, "never active"},
		{"default thresholds 10m/30m", Agent{ID: "b"}, State{Status: Online}, 10 * time.Minute, Away, ""},
		{"default condition is activity", Agent{ID: "b"}, State{Status: Online}, 30 * time.Minute, Offline, ""},
		{"custom thresholds", Agent{IdleAwayAfter: time.Minute, IdleOfflineAfter: 2 * time.Minute}, State{Status: Online}, 90 * time.Second, Away, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.state
			if tt.idle >= 0 {
				st.LastActivity = t0.Add(-tt.idle)
			}
			got, why := Explain(tt.agent, st, t0)
			if got != tt.want {
				t.Fatalf("Effective = %s (%s), want %s", got, why, tt.want)
			}
			if !strings.Contains(why, tt.reason) {
				t.Errorf("reason %q does not mention %q", why, tt.reason)
			}
		})
	}
}

func TestActivityRestoresChosenStatus(t *testing.T) {
	a := agent(Activity)
	st := State{Status: Online, LastActivity: t0.Add(-40 * time.Minute)}
	if got := Effective(a, st, t0); got != Offline {
		t.Fatalf("silent 40m: %s, want offline", got)
	}
	st.LastActivity = t0
	if got := Effective(a, st, t0); got != Online {
		t.Fatalf("after activity: %s, want online", got)
	}
}

func TestNextChangeAndPrompt(t *testing.T) {
	a := agent(Activity)
	st := State{Status: Online, LastActivity: t0}
	if got := NextChange(a, st, t0); !got.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("next change of active online agent = %v, want +10m", got)
	}
	if got := NextChange(a, st, t0.Add(11*time.Minute)); !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("next change of away agent = %v, want +30m", got)
	}
	if got := NextChange(a, st, t0.Add(31*time.Minute)); !got.IsZero() {
		t.Errorf("next change of offline agent = %v, want none", got)
	}
	if got := NextChange(agent(Always), st, t0); !got.IsZero() {
		t.Errorf("always agent changes at %v, want never", got)
	}
	if got := PromptAt(a, st); !got.Equal(t0.Add(28 * time.Minute)) {
		t.Errorf("prompt at %v, want 2m before offline (+28m)", got)
	}
	short := Agent{IdleAwayAfter: 10 * time.Minute, IdleOfflineAfter: 11 * time.Minute}
	if got := PromptAt(short, st); !got.Equal(t0.Add(10*time.Minute + 30*time.Second)) {
		t.Errorf("prompt with a 1m gap at %v, want halfway (+10m30s)", got)
	}
	if got := PromptAt(agent(Always), st); !got.IsZero() {
		t.Errorf("always agent prompted at %v", got)
	}
	if got := PromptAt(a, State{Status: Offline, LastActivity: t0}); !got.IsZero() {
		t.Errorf("offline agent prompted at %v", got)
	}
}

func TestPermissions(t *testing.T) {
	all := Agent{}
	none := Agent{Permissions: []Permission{}}
	some := Agent{Permissions: []Permission{ChangeOnlineStatus}}
	for _, p := range AllPermissions {
		if !all.Can(p) {
			t.Errorf("default agent lacks %s", p)
		}
		if none.Can(p) {
			t.Errorf("agent with [] has %s", p)
		}
	}
	if !some.Can(PermissionFor(Online)) || !some.Can(PermissionFor(Offline)) || !some.Can(PermissionFor(Away)) {
		t.Error("change_online_status should cover online, away, offline")
	}
	if some.Can(PermissionFor(Invisible)) {
		t.Error("invisible needs change_visibility")
	}
}

func view(name string, cond Condition, st Status, idle time.Duration) AgentView {
	a := agent(cond)
	a.ID, a.Name = AgentID(strings.ToLower(name)), name
	return AgentView{Agent: a, State: State{Status: st, LastActivity: t0.Add(-idle)}}
}

func TestWidget(t *testing.T) {
	sched, errs := ParseSchedule("UTC", map[string][]string{"tue": {"09:00-17:00"}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	closed, _ := ParseSchedule("UTC", map[string][]string{"wed": {"09:00-17:00"}})
	tests := []struct {
		name     string
		prop     Property
		agents   []AgentView
		status   Status
		mode     Mode
		greeting string
		reason   string
	}{
		{"one online", Property{}, []AgentView{view("Alice", Activity, Online, 0)}, Online, ModeLive, DefaultGreetings[Online], "Alice"},
		{"online beats away", Property{}, []AgentView{view("Alice", Activity, Away, 0), view("Bob", Always, Online, time.Hour)}, Online, ModeLive, "", "Bob"},
		{"away if nobody online", Property{}, []AgentView{view("Alice", Activity, Away, 0), view("Bob", Activity, Online, 12*time.Minute)}, Away, ModeLive, DefaultGreetings[Away], "away: Alice, Bob"},
		{"invisible does not count", Property{}, []AgentView{view("Alice", Always, Invisible, 0)}, Offline, ModeForm, DefaultGreetings[Offline], "nobody"},
		{"offline does not count", Property{}, []AgentView{view("Alice", Always, Offline, 0)}, Offline, ModeForm, "", ""},
		{"silent activity agent gone offline", Property{}, []AgentView{view("Alice", Activity, Online, time.Hour)}, Offline, ModeForm, "", ""},
		{"always agent silent stays online", Property{}, []AgentView{view("Alice", Always, Online, 72*time.Hour)}, Online, ModeLive, "", ""},
		{"no agents", Property{}, nil, Offline, ModeForm, "", "no agents"},
		{"offline mode messenger", Property{OfflineMode: ModeMessenger}, nil, Offline, ModeMessenger, "", ""},
		{"offline mode hidden", Property{OfflineMode: ModeHidden}, nil, Offline, ModeHidden, "", ""},
		{"custom greeting", Property{Greetings: map[Status]string{Online: "Hi!"}}, []AgentView{view("Alice", Always, Online, 0)}, Online, ModeLive, "Hi!", ""},
		{"in schedule", Property{Schedule: sched}, []AgentView{view("Alice", Always, Online, 0)}, Online, ModeLive, "", ""},
		{"outside schedule beats online agents", Property{Schedule: closed}, []AgentView{view("Alice", Always, Online, 0)}, Offline, ModeForm, "", "outside the schedule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.prop.ID = "acme"
			r := Widget(tt.prop, tt.agents, t0) // t0 is a Tuesday, 12:00 UTC
			if r.Status != tt.status || r.Mode != tt.mode || r.Property != "acme" {
				t.Fatalf("got %s/%s for %s, want %s/%s (%s)", r.Status, r.Mode, r.Property, tt.status, tt.mode, r.Reason)
			}
			if tt.greeting != "" && r.Greeting != tt.greeting {
				t.Errorf("greeting %q, want %q", r.Greeting, tt.greeting)
			}
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", r.Reason, tt.reason)
			}
			if len(r.Agents) != len(tt.agents) {
				t.Errorf("%d agent reports, want %d", len(r.Agents), len(tt.agents))
			}
			for _, ar := range r.Agents {
				if ar.Counts != (ar.Effective == Online || ar.Effective == Away) {
					t.Errorf("agent %s: counts=%v with effective %s", ar.ID, ar.Counts, ar.Effective)
				}
			}
		})
	}
}
