package presence

import (
	"strings"
	"testing"
	"time"
)

func mustSchedule(t *testing.T, tz string, hours map[string][]string) *Schedule {
	t.Helper()
	s, errs := ParseSchedule(tz, hours)
	if len(errs) > 0 {
		t.Fatalf("ParseSchedule: %v", errs)
	}
	return s
}

func TestScheduleOpen(t *testing.T) {
	berlin := mustSchedule(t, "Europe/Berlin", map[string][]string{
		"mon": {"09:00-17:30"}, "tue": {"09:00-12:00", "13:00-17:30"},
		"fri": {"22:00-02:00"}, // past midnight into Saturday
		"sun": {"00:00-24:00"},
	})
	loc, _ := time.LoadLocation("Europe/Berlin")
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, loc) }
	tests := []struct {
		name string
		t    time.Time
		want bool
	}{
		{"mon before opening", at(2026, 3, 9, 8, 59), false},
		{"mon at opening", at(2026, 3, 9, 9, 0), true},
		{"mon last minute", at(2026, 3, 9, 17, 29), true},
		{"mon at closing", at(2026, 3, 9, 17, 30), false},
		{"tue lunch break", at(2026, 3, 10, 12, 30), false},
		{"tue afternoon", at(2026, 3, 10, 13, 0), true},
		{"wed no hours", at(2026, 3, 11, 10, 0), false},
		{"fri before overnight span", at(2026, 3, 13, 21, 59), false},
		{"fri overnight span starts", at(2026, 3, 13, 22, 0), true},
		{"sat after midnight, fri span", at(2026, 3, 14, 1, 59), true},
		{"sat span ended", at(2026, 3, 14, 2, 0), false},
		{"sun whole day", at(2026, 3, 15, 23, 59), true},
		{"sun midnight", at(2026, 3, 15, 0, 0), true},
		// The same UTC instant is 09:30 in Berlin's winter time (UTC+1) and
		// 10:30 in summer (UTC+2): hours follow the wall clock across DST.
		{"utc 08:30 in winter is 09:30 Mon", time.Date(2026, 3, 23, 8, 30, 0, 0, time.UTC), true},
		{"utc 07:30 in summer is 09:30 Mon", time.Date(2026, 3, 30, 7, 30, 0, 0, time.UTC), true},
		{"utc 07:30 in winter is 08:30 Mon", time.Date(2026, 3, 23, 7, 30, 0, 0, time.UTC), false},
		// DST starts Sunday 2026-03-29 02:00 → 03:00 in Berlin.
		{"DST change day open", time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC), true},
		// Back to winter time: Sunday 2026-10-25, 03:00 → 02:00.
		{"fall back mon 09:00 local", time.Date(2026, 10, 26, 8, 0, 0, 0, time.UTC), true},
		{"fall back mon 08:00 local", time.Date(2026, 10, 26, 7, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := berlin.Open(tt.t); got != tt.want {
				t.Errorf("Open(%s) = %v, want %v", tt.t.In(loc).Format("Mon 15:04 MST"), got, tt.want)
			}
		})
	}
	var none *Schedule
	if !none.Open(t0) {
		t.Error("nil schedule must be always open")
	}
}

func TestParseScheduleErrors(t *testing.T) {
	tests := []struct {
		name  string
		tz    string
		hours map[string][]string
		want  []string
	}{
		{"unknown zone", "Mars/Olympus", nil, []string{`timezone: unknown time zone "Mars/Olympus"`}},
		{"missing zone", "", map[string][]string{"mon": {"09:00-10:00"}}, []string{"timezone: required"}},
		{"bad day", "UTC", map[string][]string{"monday": {"09:00-10:00"}}, []string{"hours.monday: unknown day"}},
		{"bad span", "UTC", map[string][]string{"mon": {"9-17"}}, []string{"hours.mon[0]"}},
		{"bad minute", "UTC", map[string][]string{"tue": {"09:60-10:00"}}, []string{"hours.tue[0]"}},
		{"25 o'clock", "UTC", map[string][]string{"tue": {"09:00-25:00"}}, []string{"hours.tue[0]"}},
		{"empty span", "UTC", map[string][]string{"tue": {"09:00-09:00"}}, []string{"empty span"}},
		{"signed hour", "UTC", map[string][]string{"wed": {"+9:00-17:00"}}, []string{"hours.wed[0]"}},
		{"signed minute", "UTC", map[string][]string{"wed": {"09:+5-17:00"}}, []string{"hours.wed[0]"}},
		{"every problem", "Nowhere", map[string][]string{"xyz": {"1"}, "mon": {"a-b", "09:00-10:00"}}, []string{"timezone", "hours.mon[0]", "hours.xyz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := ParseSchedule(tt.tz, tt.hours)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors %v, want %d", len(errs), errs, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to mention %q", i, errs[i], w)
				}
			}
		})
	}
}
