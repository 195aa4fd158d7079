package search

import (
	"slices"
	"testing"
)

func TestCompare(t *testing.T) {
	bd := func(s ...string) []Value {
		var out []Value
		for _, x := range s {
			out = append(out, dateValue(t, "birthdate", x))
		}
		return out
	}
	birth, _ := Lookup("Patient", "birthdate")
	name, _ := Lookup("Patient", "name")
	asc := []Sort{{Param: birth}}
	desc := []Sort{{Param: birth, Desc: true}}
	for _, tc := range []struct {
		sorts []Sort
		a, b  []Value
		want  int
	}{
		{asc, bd("1970"), bd("1971"), -1},
		{desc, bd("1970"), bd("1971"), 1},
		{asc, bd("1970"), bd("1970"), 0},
		// Low ascending: 1970 starts before 1970-06.
		{asc, bd("1970"), bd("1970-06"), -1},
		// High descending: 1970 ends after 1970-06.
		{desc, bd("1970"), bd("1970-06"), -1},
		// Several values: the least ascending, the greatest descending.
		{asc, bd("1980", "1960"), bd("1970"), -1},
		{desc, bd("1980", "1960"), bd("1970"), -1},
		{desc, bd("1965", "1960"), bd("1970"), 1},
		// Missing values last, both ways.
		{asc, nil, bd("1970"), 1},
		{desc, nil, bd("1970"), 1},
		{asc, bd("1970"), nil, -1},
		{asc, nil, nil, 0},
		// A second key breaks the tie.
		{append(asc, Sort{Param: name}), append(bd("1970"), Value{Param: "name", Type: TypeString, String: "Zoë"}),
			append(bd("1970"), Value{Param: "name", Type: TypeString, String: "adam"}), 1},
	} {
		if got := Compare(tc.sorts, tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	prob, _ := Lookup("RiskAssessment", "probability")
	n := func(s string) []Value { return []Value{{Param: "probability", Type: TypeNumber, Number: s}} }
	if Compare([]Sort{{Param: prob}}, n("9.5"), n("10")) != -1 || Compare([]Sort{{Param: prob}}, n("-1"), n("1E-3")) != -1 {
		t.Error("numbers compare as strings")
	}
}

func TestSummaryElements(t *testing.T) {
	for rt, want := range map[string][]string{
		"Patient":     {"id", "meta", "implicitRules", "identifier", "active", "name", "telecom", "gender", "birthDate", "deceased[x]", "address", "managingOrganization", "link"},
		"Observation": {"id", "meta", "status", "code", "subject", "effective[x]", "value[x]", "encounter", "issued", "performer"},
	} {
		got := SummaryElements(rt)
		for _, e := range want {
			if !slices.Contains(got, e) {
				t.Errorf("%s: %s not in %v", rt, e, got)
			}
		}
		for _, e := range []string{"text", "contained", "extension", "photo", "note", "communication"} {
			if slices.Contains(got, e) {
				t.Errorf("%s: %s is not a summary element", rt, e)
			}
		}
	}
	if SummaryElements("Nonsense") != nil {
		t.Error("unknown type has summary elements")
	}
	for _, rt := range ResourceTypes() {
		if !slices.Contains(SummaryElements(rt), "id") {
			t.Errorf("%s: no id in summary", rt)
		}
	}
}
