package search

import (
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
