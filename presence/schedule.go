package presence

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Schedule is a property's weekly opening hours in its time zone. Hours are
// wall-clock times, so a DST change moves them with the clock. A span whose end
// is not after its start runs past midnight into the next day. Closed days and
// special days (see AddClosures) override the weekly hours for whole dates.
type Schedule struct {
	Location *time.Location
	// Days holds the spans of each weekday, indexed by time.Weekday.
	Days [7][]Span
	// Closed lists whole days, in Location, when the property is closed.
	Closed []DateRange
	// Special replaces the weekly hours of a date (nil or empty spans: closed).
	Special map[Date][]Span
}

// Date is a calendar day as a number YYYYMMDD, so dates compare as numbers.
type Date int

// DateOf is the calendar day of t in its own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date(y*10000 + int(m)*100 + d)
}

// String writes the date as YYYY-MM-DD.
func (d Date) String() string {
	return fmt.Sprintf("%04d-%02d-%02d", int(d)/10000, int(d)/100%100, int(d)%100)
}

// ParseDate reads "YYYY-MM-DD" (a real date of the calendar).
func ParseDate(s string) (Date, error) {
	t, err := time.Parse("2006-01-02", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q: want a date YYYY-MM-DD", s)
	}
	return DateOf(t), nil
}

// DateRange is an inclusive range of days.
type DateRange struct{ From, To Date }

// Contains reports whether d is within the range.
func (r DateRange) Contains(d Date) bool { return d >= r.From && d <= r.To }

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
		errs = append(errs, fmt.Errorf("timezone: required (hours and dates are in the property's time zone)"))
	}
	if len(hours) == 0 {
		// No weekly hours (only closures, say): open all day, every day.
		for d := range s.Days {
			s.Days[d] = []Span{{Start: 0, End: 1440}}
		}
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

// AddClosures adds closed days ("2026-12-25" or an inclusive range
// "2026-12-31..2027-01-01") and special days (date → "HH:MM-HH:MM" spans that
// replace that day's weekly hours; an empty list closes the day). It returns
// every problem found, each naming the key below "schedule".
func (s *Schedule) AddClosures(closed []string, special map[string][]string) []error {
	var errs []error
	for i, txt := range closed {
		a, b, isRange := strings.Cut(txt, "..")
		from, err := ParseDate(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("closed[%d]: %w (or a range YYYY-MM-DD..YYYY-MM-DD)", i, err))
			continue
		}
		to := from
		if isRange {
			if to, err = ParseDate(b); err != nil {
				errs = append(errs, fmt.Errorf("closed[%d]: %w (or a range YYYY-MM-DD..YYYY-MM-DD)", i, err))
				continue
			}
			if to < from {
				errs = append(errs, fmt.Errorf("closed[%d]: %q: the range ends before it starts", i, txt))
				continue
			}
		}
		s.Closed = append(s.Closed, DateRange{From: from, To: to})
	}
	dates := make([]string, 0, len(special))
	for d := range special {
		dates = append(dates, d)
	}
	sort.Strings(dates)
	for _, txt := range dates {
		d, err := ParseDate(txt)
		if err != nil {
			errs = append(errs, fmt.Errorf("special.%s: %w", txt, err))
			continue
		}
		if s.Special == nil {
			s.Special = make(map[Date][]Span)
		}
		spans := []Span{}
		for i, sp := range special[txt] {
			parsed, err := parseSpan(sp)
			if err != nil {
				errs = append(errs, fmt.Errorf("special.%s[%d]: %w", txt, i, err))
				continue
			}
			spans = append(spans, parsed)
		}
		s.Special[d] = spans
	}
	return errs
}

// ClosedOn reports whether the day of t (in the schedule's time zone) is a
// closed day, and which.
func (s *Schedule) ClosedOn(t time.Time) (Date, bool) {
	if s == nil {
		return 0, false
	}
	d := DateOf(t.In(s.Location))
	return d, s.closed(d)
}

func (s *Schedule) closed(d Date) bool {
	for _, r := range s.Closed {
		if r.Contains(d) {
			return true
		}
	}
	return false
}

// spansOn is the opening hours of a date: none on a closed day, a special
// day's own hours, else the weekly hours of its weekday.
func (s *Schedule) spansOn(day time.Time) []Span {
	d := DateOf(day)
	if s.closed(d) {
		return nil
	}
	if sp, ok := s.Special[d]; ok {
		return sp
	}
	return s.Days[day.Weekday()]
}

// SpecialOn reports whether the day of t has special hours.
func (s *Schedule) SpecialOn(t time.Time) (Date, bool) {
	if s == nil {
		return 0, false
	}
	d := DateOf(t.In(s.Location))
	_, ok := s.Special[d]
	return d, ok && !s.closed(d)
}

// Open reports whether t falls within the schedule. A nil schedule is always
// open. A closed day is closed from its midnight to the next, even for a span
// of the day before that runs past midnight.
func (s *Schedule) Open(t time.Time) bool {
	if s == nil {
		return true
	}
	lt := t.In(s.Location)
	m := lt.Hour()*60 + lt.Minute()
	y, mo, d := lt.Date()
	today := time.Date(y, mo, d, 12, 0, 0, 0, time.UTC) // the civil day only
	if s.closed(DateOf(today)) {
		return false
	}
	for _, sp := range s.spansOn(today) {
		if sp.End > sp.Start && m >= sp.Start && m < sp.End {
			return true
		}
		if sp.End < sp.Start && m >= sp.Start {
			return true
		}
	}
	for _, sp := range s.spansOn(today.AddDate(0, 0, -1)) {
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
	out := "weekly hours in " + s.Location.String()
	if n := len(s.Closed); n > 0 {
		out += fmt.Sprintf(", %d %s", n, plural(n, "closure", "closures"))
	}
	if n := len(s.Special); n > 0 {
		out += fmt.Sprintf(", %d special %s", n, plural(n, "day", "days"))
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
