package presence

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Schedule is a property's weekly opening hours in its time zone. Hours are
// wall-clock times, so a DST change moves them with the clock. A span whose end
// is not after its start runs past midnight into the next day.
type Schedule struct {
	Location *time.Location
	// Days holds the spans of each weekday, indexed by time.Weekday.
	Days [7][]Span
}

// Span is one opening interval in minutes after midnight: [Start, End).
// End may be 1440 ("24:00"); End <= Start means it ends the next day.
type Span struct{ Start, End int }

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseSchedule builds a schedule from a time zone name and day → "HH:MM-HH:MM"
// spans. It returns every problem found, each naming the key below "hours".
func ParseSchedule(tz string, hours map[string][]string) (*Schedule, []error) {
	var errs []error
	s := &Schedule{Location: time.UTC}
	if tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			errs = append(errs, fmt.Errorf("timezone: unknown time zone %q", tz))
		} else {
			s.Location = loc
		}
	} else {
		errs = append(errs, fmt.Errorf("timezone: required with hours"))
	}
	days := make([]string, 0, len(hours))
	for d := range hours {
		days = append(days, d)
	}
	sort.Strings(days)
	for _, d := range days {
		wd, ok := dayNames[strings.ToLower(d)]
		if !ok {
			errs = append(errs, fmt.Errorf("hours.%s: unknown day (want mon, tue, wed, thu, fri, sat or sun)", d))
			continue
		}
		for i, txt := range hours[d] {
			sp, err := parseSpan(txt)
			if err != nil {
				errs = append(errs, fmt.Errorf("hours.%s[%d]: %w", d, i, err))
				continue
			}
			s.Days[wd] = append(s.Days[wd], sp)
		}
	}
	return s, errs
}

func parseSpan(txt string) (Span, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(txt), "-")
	if !ok {
		return Span{}, fmt.Errorf("%q: want HH:MM-HH:MM", txt)
	}
	start, err1 := parseClock(a)
	end, err2 := parseClock(b)
	if err1 != nil || err2 != nil || start == 1440 {
		return Span{}, fmt.Errorf("%q: want HH:MM-HH:MM with times from 00:00 to 24:00", txt)
	}
	if start == end {
		return Span{}, fmt.Errorf("%q: empty span", txt)
	}
	return Span{Start: start, End: end}, nil
}

// parseClock reads "HH:MM" (two digits each; Sscanf's %d would also take signs).
func parseClock(s string) (int, error) {
	s = strings.TrimSpace(s)
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("bad time")
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad time")
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("bad time")
	}
	return h*60 + m, nil
}

// Open reports whether t falls within the schedule. A nil schedule is always open.
func (s *Schedule) Open(t time.Time) bool {
	if s == nil {
		return true
	}
	lt := t.In(s.Location)
	m := lt.Hour()*60 + lt.Minute()
	for _, sp := range s.Days[lt.Weekday()] {
		if sp.End > sp.Start && m >= sp.Start && m < sp.End {
			return true
		}
		if sp.End < sp.Start && m >= sp.Start {
			return true
		}
	}
	yesterday := (lt.Weekday() + 6) % 7
	for _, sp := range s.Days[yesterday] {
		if sp.End < sp.Start && m < sp.End {
			return true
		}
	}
	return false
}

// String describes the schedule briefly.
func (s *Schedule) String() string {
	if s == nil {
		return "always"
	}
	return "weekly hours in " + s.Location.String()
}
