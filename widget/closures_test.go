package widget

import (
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/presence"
)

// TestClosedHolidayStatus: on a closed day the widget status is offline
// although an agent is online, and the admin presence API and the board's
// property list say "closed: holiday" with the date.
func TestClosedHolidayStatus(t *testing.T) {
	sched, errs := presence.ParseSchedule("Pacific/Auckland", nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// Today in Auckland, with a day either side, so the test holds at midnight.
	now := time.Now().In(sched.Location)
	closed := now.AddDate(0, 0, -1).Format("2006-01-02") + ".." + now.AddDate(0, 0, 1).Format("2006-01-02")
	if errs := sched.AddClosures([]string{closed}, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: propAcme, Name: "Acme", OfflineMode: presence.ModeForm, Schedule: sched}},
		[]presence.Agent{{ID: agentAlice, Name: "Alice", Properties: []presence.PropertyID{propAcme}, Condition: presence.Always}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvDir(t, dir)
	e.setStatus(agentAlice, presence.Online)
	e.reload()

	r := e.do("GET", "/v1/properties/acme/status", nil)
	if r.code != 200 || !strings.Contains(string(r.body), `"status":"offline"`) || !strings.Contains(string(r.body), `"mode":"form"`) {
		t.Errorf("status: %d %s", r.code, r.body)
	}
	var pr presenceResponse
	r = e.do("GET", "/v1/admin/properties/acme/presence", nil, adminBearer...)
	r.json(t, &pr)
	if pr.Status != presence.Offline || pr.InSchedule || pr.Closed == "" ||
		pr.Reason != "closed: holiday "+pr.Closed+" (Pacific/Auckland)" {
		t.Errorf("presence: %s", r.body)
	}
	r = e.do("GET", "/v1/admin/properties", nil, adminBearer...)
	if r.code != 200 || !strings.Contains(string(r.body), `"closed":"`+pr.Closed+`"`) || !strings.Contains(string(r.body), "closed: holiday") {
		t.Errorf("properties: %d %s", r.code, r.body)
	}
}
