package search

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	for _, tc := range []struct {
		in, low, high string
	}{
		{"2020", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"},
		{"2020-02", "2020-02-01T00:00:00Z", "2020-03-01T00:00:00Z"},
		{"2020-12", "2020-12-01T00:00:00Z", "2021-01-01T00:00:00Z"},
		{"2020-02-28", "2020-02-28T00:00:00Z", "2020-02-29T00:00:00Z"},
		{"2020-02-29", "2020-02-29T00:00:00Z", "2020-03-01T00:00:00Z"},
		{"2020-03-04T10:11Z", "2020-03-04T10:11:00Z", "2020-03-04T10:12:00Z"},
		{"2020-03-04T10:11:12Z", "2020-03-04T10:11:12Z", "2020-03-04T10:11:13Z"},
		{"2020-03-04T10:11:12+02:00", "2020-03-04T08:11:12Z", "2020-03-04T08:11:13Z"},
		{"2020-03-04T23:59:59-05:00", "2020-03-05T04:59:59Z", "2020-03-05T05:00:00Z"},
		{"2020-03-04T10:11:12.1Z", "2020-03-04T10:11:12.1Z", "2020-03-04T10:11:12.2Z"},
		{"2020-03-04T10:11:12.120Z", "2020-03-04T10:11:12.12Z", "2020-03-04T10:11:12.121Z"},
		{"2020-03-04T10:11:12.123456789123Z", "2020-03-04T10:11:12.123456789Z", "2020-03-04T10:11:12.12345679Z"},
		{"2020-03-04T10:11:12", "2020-03-04T10:11:12Z", "2020-03-04T10:11:13Z"}, // no zone: UTC
	} {
		got, err := ParseDate(tc.in)
		if err != nil {
			t.Errorf("ParseDate(%q): %v", tc.in, err)
			continue
		}
		if want := (DateRange{utc(tc.low), utc(tc.high)}); got != want {
			t.Errorf("ParseDate(%q) = [%s, %s), want [%s, %s)", tc.in, got.Low, got.High, want.Low, want.High)
		}
	}
	for _, bad := range []string{"", "20", "2020-13", "2020-02-30", "2020-1-1", "2020-01-01T25:00:00Z",
		"2020-01-01T10:00:00+15:00", "2020-01-01 10:00", "2020-01-01T10:00:00ZZ", "next tuesday"} {
		if _, err := ParseDate(bad); err == nil {
			t.Errorf("ParseDate(%q) accepted", bad)
		} else if bad != "" && containsSubstring(err.Error(), bad) {
			t.Errorf("ParseDate(%q) error quotes the value: %v", bad, err)
		}
	}
}

func containsSubstring(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestPeriodRange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		period map[string]any
		want   DateRange
	}{
		{"closed", map[string]any{"start": "2020-01", "end": "2020-03-04"},
			DateRange{time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 3, 5, 0, 0, 0, 0, time.UTC)}},
		{"open end", map[string]any{"start": "2020"}, DateRange{time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), MaxTime}},
		{"open start", map[string]any{"end": "2020"}, DateRange{MinTime, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		vals, err := Extract("Encounter", map[string]any{"resourceType": "Encounter", "period": tc.period})
		if err != nil {
			t.Fatal(err)
		}
		var got []DateRange
		for _, v := range vals {
			if v.Param == "date" {
				got = append(got, v.Date)
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: Encounter date = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// parseDateRegexp is ParseDate as first written, with a regular expression
// and a time.Location per offset: the oracle of TestParseDateOracle.
func parseDateRegexp(s string) (DateRange, error) {
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
		frac = frac[:9]
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
		return DateRange{}, fmt.Errorf("invalid date")
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

var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// TestParseDateOracle compares ParseDate with parseDateRegexp, field for
// field of the time.Time values, on dates built from parts at and around
// their limits, on every prefix of them, and on random mutations.
func TestParseDateOracle(t *testing.T) {
	check := func(s string) {
		got, gerr := ParseDate(s)
		want, werr := parseDateRegexp(s)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseDate(%q) = %#v, %v; the regular expression gives %#v, %v", s, got, gerr, want, werr)
		}
	}
	years := []string{"0000", "0001", "1969", "1970", "2000", "2020", "2100", "9999"}
	months := []string{"00", "01", "02", "12", "13"}
	days := []string{"00", "01", "28", "29", "30", "31", "32"}
	times := []string{"00:00", "23:59", "24:00", "10:60", "23:59:59", "23:59:60", "10:11:12.1", "10:11:12.123456789", "10:11:12.1234567891", "00:00:00."}
	zones := []string{"", "Z", "+00:00", "-00:00", "+14:00", "+14:59", "-14:60", "+15:00", "-05:30", "+5:30", "z"}
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "0123456789-T:.Z+ x"
	for _, y := range years {
		for _, mo := range months {
			for _, d := range days {
				for _, tm := range times {
					for _, z := range zones {
						s := y + "-" + mo + "-" + d + "T" + tm + z
						for i := range len(s) + 1 {
							check(s[:i])
						}
						b := []byte(s)
						for range 2 {
							b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
						}
						check(string(b))
					}
				}
			}
		}
	}
	for range 20000 {
		b := make([]byte, rng.IntN(30))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		check(string(b))
	}
}
