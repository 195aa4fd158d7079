package search

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// dateRE matches FHIR date, dateTime and instant: the year is required,
// each later part is optional in order. A time without a zone (not valid
// FHIR) is accepted as UTC.
var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// ParseDate returns the span a FHIR date, dateTime or instant covers at its
// precision: "2020" is [2020-01-01, 2021-01-01), "2020-03-04T10:00:00Z"
// one second, "...T10:00:00.120Z" one millisecond. The error never quotes
// the input.
func ParseDate(s string) (DateRange, error) {
	m := dateRE.FindStringSubmatch(s)
	if m == nil {
		return DateRange{}, fmt.Errorf("invalid date")
	}
	n := func(i int, def int) int {
		if m[i] == "" {
			return def
		}
		v, _ := strconv.Atoi(m[i])
		return v
	}
	year, month, day, hour, min, sec := n(1, 0), n(2, 1), n(3, 1), n(4, 0), n(5, 0), n(6, 0)
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		h, _ := strconv.Atoi(z[1:3])
		mm, _ := strconv.Atoi(z[4:6])
		off := h*3600 + mm*60
		if h > 14 || mm > 59 {
			return DateRange{}, fmt.Errorf("invalid time zone")
		}
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	var nanos int
	frac := m[7]
	if len(frac) > 9 {
		frac = frac[:9] // beyond nanoseconds: the precision we keep
	}
	if frac != "" {
		f, _ := strconv.Atoi(frac)
		for i := len(frac); i < 9; i++ {
			f *= 10
		}
		nanos = f
	}
	low := time.Date(year, time.Month(month), day, hour, min, sec, nanos, loc)
	if low.Year() != year || int(low.Month()) != month || low.Day() != day || low.Hour() != hour || low.Minute() != min || low.Second() != sec {
		return DateRange{}, fmt.Errorf("invalid date") // 2021-02-30, 25:00 ...
	}
	var high time.Time
	switch {
	case m[2] == "":
		high = low.AddDate(1, 0, 0)
	case m[3] == "":
		high = low.AddDate(0, 1, 0)
	case m[4] == "":
		high = low.AddDate(0, 0, 1)
	case m[6] == "":
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
	return DateRange{Low: low.UTC(), High: high.UTC()}, nil
}
