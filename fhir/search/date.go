package search

import (
	"errors"
	"time"
)

// Errors of ParseDate; they never quote the input.
var (
	errInvalidDate = errors.New("invalid date")
	errInvalidZone = errors.New("invalid time zone")
)

// ParseDate returns the span a FHIR date, dateTime or instant covers at its
// precision: "2020" is [2020-01-01, 2021-01-01), "2020-03-04T10:00:00Z"
// one second, "...T10:00:00.120Z" one millisecond. The error never quotes
// the input.
//
// The accepted form is that of FHIR date, dateTime and instant: the year
// is required, each later part is optional in order,
//
//	YYYY[-MM[-DD[Thh:mm[:ss[.f+]][Z|(+|-)hh:mm]]]]
//
// A time without a zone (not valid FHIR) is accepted as UTC. Extraction
// parses every date of every resource, so this is scanned by hand, not
// with a regular expression, and computed in UTC without a time.Location
// per offset.
func ParseDate(s string) (DateRange, error) {
	var d dateParts
	if !d.scan(s) {
		return DateRange{}, errInvalidDate
	}
	off := 0
	if d.zone != "" && d.zone != "Z" {
		h := digits(d.zone[1:3])
		mm := digits(d.zone[4:6])
		if h > 14 || mm > 59 {
			return DateRange{}, errInvalidZone
		}
		off = h*3600 + mm*60
		if d.zone[0] == '-' {
			off = -off
		}
	}
	frac := d.frac
	if len(frac) > 9 {
		frac = frac[:9] // beyond nanoseconds: the precision we keep
	}
	nanos := 0
	if frac != "" {
		nanos = digits(frac)
		for i := len(frac); i < 9; i++ {
			nanos *= 10
		}
	}
	// The wall clock as written, in UTC: with a fixed offset, calendar
	// arithmetic on it and then the shift by the offset gives what the
	// same arithmetic gives in the offset's own zone.
	low := time.Date(d.year, time.Month(d.month), d.day, d.hour, d.min, d.sec, nanos, time.UTC)
	if low.Year() != d.year || int(low.Month()) != d.month || low.Day() != d.day || low.Hour() != d.hour || low.Minute() != d.min || low.Second() != d.sec {
		return DateRange{}, errInvalidDate // 2021-02-30, 25:00 ...
	}
	var high time.Time
	switch {
	case d.prec == precYear:
		high = low.AddDate(1, 0, 0)
	case d.prec == precMonth:
		high = low.AddDate(0, 1, 0)
	case d.prec == precDay:
		high = low.AddDate(0, 0, 1)
	case d.prec == precMinute:
		high = low.Add(time.Minute)
	case frac == "":
		high = low.Add(time.Second)
	default:
		step := time.Duration(1)
		for i := len(frac); i < 9; i++ {
			step *= 10
		}
		high = low.Add(step)
	}
	shift := -time.Duration(off) * time.Second
	return DateRange{Low: low.Add(shift).UTC(), High: high.Add(shift).UTC()}, nil
}

// Precisions of a date, by the last part written.
const (
	precYear = iota
	precMonth
	precDay
	precMinute
	precSecond
)

// dateParts are the parts of a date as written; the absent ones hold their
// defaults (month and day 1, the rest 0).
type dateParts struct {
	year, month, day, hour, min, sec int
	prec                             int
	frac                             string // digits after the second's '.', "" if none
	zone                             string // "Z", "+hh:mm", "-hh:mm" or ""
}

// scan fills d from s; it reports false when s is not of the form
// ParseDate accepts.
func (d *dateParts) scan(s string) bool {
	*d = dateParts{month: 1, day: 1}
	num := func(n int) (int, bool) { // n ASCII digits at the front of s
		if len(s) < n {
			return 0, false
		}
		v := 0
		for i := range n {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		s = s[n:]
		return v, true
	}
	sep := func(c byte) bool {
		if len(s) > 0 && s[0] == c {
			s = s[1:]
			return true
		}
		return false
	}
	var ok bool
	if d.year, ok = num(4); !ok {
		return false
	}
	if s == "" {
		return true
	}
	if !sep('-') {
		return false
	}
	if d.month, ok = num(2); !ok {
		return false
	}
	if d.prec = precMonth; s == "" {
		return true
	}
	if !sep('-') {
		return false
	}
	if d.day, ok = num(2); !ok {
		return false
	}
	if d.prec = precDay; s == "" {
		return true
	}
	if !sep('T') {
		return false
	}
	if d.hour, ok = num(2); !ok || !sep(':') {
		return false
	}
	if d.min, ok = num(2); !ok {
		return false
	}
	d.prec = precMinute
	if sep(':') {
		if d.sec, ok = num(2); !ok {
			return false
		}
		d.prec = precSecond
		if sep('.') {
			n := 0
			for n < len(s) && s[n] >= '0' && s[n] <= '9' {
				n++
			}
			if n == 0 {
				return false
			}
			d.frac, s = s[:n], s[n:]
		}
	}
	switch {
	case s == "":
		return true
	case s == "Z":
		d.zone = s
		return true
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':' && isDigits(s[1:3]) && isDigits(s[4:6]):
		d.zone = s
		return true
	}
	return false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// digits is the value of a string of ASCII digits, at most 9.
func digits(s string) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
}
