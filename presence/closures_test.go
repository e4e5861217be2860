package presence

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/wait"
)

// berlinHolidays: weekdays 09:00-17:00, Friday 22:00-02:00 past midnight,
// Christmas Eve with special hours, Christmas Day, New Year's Eve to New
// Year's Day, and the Sunday summer time ends (2026-10-25, a 25-hour day)
// closed.
func berlinHolidays(t *testing.T) *Schedule {
	t.Helper()
	s := mustSchedule(t, "Europe/Berlin", map[string][]string{
		"mon": {"09:00-17:00"}, "tue": {"09:00-17:00"}, "wed": {"09:00-17:00"},
		"thu": {"09:00-17:00"}, "fri": {"09:00-17:00", "22:00-02:00"}, "sat": {"10:00-12:00"},
		"sun": {"00:00-24:00"},
	})
	if errs := s.AddClosures(
		[]string{"2026-12-25", "2026-12-31..2027-01-01", "2026-10-25", "2026-03-28"},
		map[string][]string{"2026-12-24": {"09:00-12:00"}, "2026-03-29": {"01:00-04:00"}, "2026-12-27": {}},
	); len(errs) > 0 {
		t.Fatal(errs)
	}
	return s
}

func TestScheduleClosures(t *testing.T) {
	s := berlinHolidays(t)
	loc := s.Location
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, loc) }
	tests := []struct {
		name   string
		t      time.Time
		open   bool
		closed string // the closed day ClosedOn reports, "" for none
	}{
		{"christmas eve special morning", at(2026, 12, 24, 9, 0), true, ""},
		{"christmas eve special ends", at(2026, 12, 24, 12, 0), false, ""},
		{"christmas eve afternoon (weekly hours replaced)", at(2026, 12, 24, 15, 0), false, ""},
		{"christmas day 00:00", at(2026, 12, 25, 0, 0), false, "2026-12-25"},
		// A Friday: its weekly 09:00-17:00 does not apply, nor its overnight span.
		{"christmas day in weekly hours", at(2026, 12, 25, 10, 0), false, "2026-12-25"},
		{"christmas day last minute", at(2026, 12, 25, 23, 59), false, "2026-12-25"},
		// Saturday after a closed Friday: no overnight span carries over.
		{"day after a closed friday 01:00", at(2026, 12, 26, 1, 0), false, ""},
		{"day after, weekly hours again", at(2026, 12, 26, 10, 0), true, ""},
		{"special day with no hours", at(2026, 12, 27, 10, 0), false, ""},
		{"range first day", at(2026, 12, 31, 10, 0), false, "2026-12-31"},
		{"range across the year", at(2027, 1, 1, 10, 0), false, "2027-01-01"},
		{"after the range", at(2027, 1, 4, 10, 0), true, ""},
		// 2026-10-25: Berlin falls back at 03:00 CEST to 02:00 CET, so the
		// closed day runs 25 hours: from 22:00 UTC on the 24th to 23:00 UTC.
		{"fall back: closed day starts (UTC 22:00 on the 24th)", time.Date(2026, 10, 24, 22, 0, 0, 0, time.UTC), false, "2026-10-25"},
		{"fall back: Saturday last minute before", time.Date(2026, 10, 24, 21, 59, 0, 0, time.UTC), false, ""},
		{"fall back: still closed at UTC 22:59 on the 25th", time.Date(2026, 10, 25, 22, 59, 0, 0, time.UTC), false, "2026-10-25"},
		{"fall back: Monday 00:00 CET is UTC 23:00", time.Date(2026, 10, 25, 23, 0, 0, 0, time.UTC), false, ""},
		{"fall back: Monday 09:00 CET is UTC 08:00", time.Date(2026, 10, 26, 8, 0, 0, 0, time.UTC), true, ""},
		// 2026-03-29: spring forward at 02:00 CET to 03:00 CEST (a 23-hour
		// day) with special hours 01:00-04:00; the Saturday before is closed.
		{"spring: closed Saturday ends at UTC 23:00", time.Date(2026, 3, 28, 22, 59, 0, 0, time.UTC), false, "2026-03-28"},
		{"spring: special hours 01:00 CET = UTC 00:00", time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC), true, ""},
		{"spring: 03:30 CEST = UTC 01:30 still special", time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC), true, ""},
		{"spring: 04:00 CEST = UTC 02:00 closes", time.Date(2026, 3, 29, 2, 0, 0, 0, time.UTC), false, ""},
		{"spring: weekly Sunday all-day replaced", time.Date(2026, 3, 29, 12, 0, 0, 0, time.UTC), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Open(tt.t); got != tt.open {
				t.Errorf("Open(%s) = %v, want %v", tt.t.In(loc).Format("Mon 2006-01-02 15:04 MST"), got, tt.open)
			}
			d, ok := s.ClosedOn(tt.t)
			got := ""
			if ok {
				got = d.String()
			}
			if got != tt.closed {
				t.Errorf("ClosedOn(%s) = %q, want %q", tt.t.In(loc).Format("2006-01-02 15:04 MST"), got, tt.closed)
			}
		})
	}
}

func TestScheduleString(t *testing.T) {
	if got, want := berlinHolidays(t).String(), "weekly hours in Europe/Berlin, 4 closures, 3 special days"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestScheduleOnlyClosures(t *testing.T) {
	s := mustSchedule(t, "America/New_York", nil)
	if errs := s.AddClosures([]string{"2026-07-04"}, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	loc := s.Location
	if !s.Open(time.Date(2026, 7, 3, 23, 59, 0, 0, loc)) {
		t.Error("without weekly hours the day before a closed day is open")
	}
	if s.Open(time.Date(2026, 7, 4, 0, 0, 0, 0, loc)) || s.Open(time.Date(2026, 7, 4, 23, 59, 0, 0, loc)) {
		t.Error("the closed day is open")
	}
	if !s.Open(time.Date(2026, 7, 5, 0, 0, 0, 0, loc)) {
		t.Error("the day after a closed day is closed")
	}
}

func TestAddClosuresErrors(t *testing.T) {
	tests := []struct {
		name    string
		closed  []string
		special map[string][]string
		want    []string
	}{
		{"not a date", []string{"Christmas"}, nil, []string{`closed[0]: "Christmas": want a date YYYY-MM-DD`}},
		{"impossible date", []string{"2026-02-30"}, nil, []string{`closed[0]: "2026-02-30"`}},
		{"bad range end", []string{"2026-12-25", "2026-12-31..soon"}, nil, []string{`closed[1]: "soon"`}},
		{"backwards range", []string{"2027-01-01..2026-12-31"}, nil, []string{"closed[0]: \"2027-01-01..2026-12-31\": the range ends before it starts"}},
		{"special bad date", nil, map[string][]string{"12/24": {"09:00-12:00"}}, []string{`special.12/24: "12/24": want a date`}},
		{"special bad span", nil, map[string][]string{"2026-12-24": {"9-12"}}, []string{`special.2026-12-24[0]: "9-12": want HH:MM-HH:MM`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Schedule
			errs := s.AddClosures(tt.closed, tt.special)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %v, want %d problems", errs, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

// TestWidgetClosedHoliday: the report says "closed: holiday" with the date,
// and the watcher flips the widget at the closed day's midnight on its own
// tick, with no request and no agent activity.
func TestWidgetClosedHoliday(t *testing.T) {
	sched := berlinHolidays(t)
	d, err := NewDirectory(
		[]Property{{ID: "acme", Name: "Acme", Schedule: sched}},
		[]Agent{{ID: "bob", Name: "Bob", Properties: []PropertyID{"acme"}, Condition: Always}})
	if err != nil {
		t.Fatal(err)
	}
	r := redistest.New(t)
	// From Saturday 2026-10-24 11:59:58 CEST (open 10:00-12:00) to the
	// closed Sunday 2026-10-25 (the day summer time ends) and on to Monday.
	c := &clock{t: time.Date(2026, 10, 24, 11, 59, 58, 0, sched.Location)}
	s := NewStore(r.Client, d, Keys{Prefix: r.Prefix}, c.Now)
	ctx := context.Background()
	if _, err := s.SetStatus(ctx, "bob", Online); err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(s, slog.New(slog.DiscardHandler))
	w.Tick = 10 * time.Millisecond
	runWatcher(t, w)
	wait.For(t, "first sync", func() bool { return !w.Stale() })
	snap := func() Report { sn, _ := w.Snapshot("acme"); return sn.Report }
	wait.For(t, "online on Saturday morning", func() bool { return snap().Status == Online })

	// 12:00 Saturday: outside the weekly hours, not a holiday.
	ch := w.StatusChanged("acme")
	c.Add(2 * time.Second)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the widget did not go offline at the end of Saturday's hours")
	}
	if got := snap(); got.Status != Offline || got.Closed != "" || !strings.Contains(got.Reason, "outside the schedule") {
		t.Fatalf("Saturday 12:00: %+v", got)
	}
	// Midnight: Sunday 2026-10-25 (all day open by the week) is closed.
	// The status stays offline; the report's reason and Closed change.
	changed := w.Changed("acme")
	c.Add(12*time.Hour + time.Second) // 00:00:01 Sunday
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the report did not change at the closed day's midnight")
	}
	if got := snap(); got.Status != Offline || got.Closed != "2026-10-25" || got.Reason != "closed: holiday 2026-10-25 (Europe/Berlin)" {
		t.Fatalf("Sunday 00:00:01: status %s closed %q reason %q", got.Status, got.Closed, got.Reason)
	}
	// 25 hours later (the day is 25 hours long), Monday 00:00:01 CET:
	// closed until 09:00.
	c.Add(25 * time.Hour)
	wait.For(t, "Monday: not a holiday", func() bool { return snap().Closed == "" })
	if got := snap(); got.Status != Offline || !strings.Contains(got.Reason, "outside the schedule") {
		t.Fatalf("Monday 00:00: %+v", got)
	}
	// 09:00 Monday: online again, on the tick alone.
	ch = w.StatusChanged("acme")
	c.Add(9 * time.Hour)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the widget did not come back online at Monday 09:00")
	}
	if got := snap(); got.Status != Online {
		t.Fatalf("Monday 09:00: %+v", got)
	}
}
