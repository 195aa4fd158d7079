package search

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseResultParameters(t *testing.T) {
	q, err := Parse("Patient", url.Values{
		"_count":               {"50"},
		"_sort":                {"-birthdate,name,_lastUpdated"},
		"_include":             {"Patient:general-practitioner:Practitioner", "Patient:organization"},
		"_include:iterate":     {"Organization:partof"},
		"_revinclude":          {"Observation:subject", "Provenance:target"},
		"_total":               {"accurate"},
		"_summary":             {"true"},
		"_elements":            {"name,birthDate"},
		"_type":                {"Patient"},
		"_contained":           {"false"},
		"name":                 {"peter", "pan"},
		"identifier":           {""}, // empty: ignored
		"general-practitioner": {"Practitioner/1"},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if q.Count != 50 || q.Total != "accurate" || q.Summary != "true" {
		t.Errorf("count, total, summary = %d %q %q", q.Count, q.Total, q.Summary)
	}
	var sorts []string
	for _, s := range q.Sort {
		sorts = append(sorts, s.Param.Code+map[bool]string{true: " desc", false: ""}[s.Desc])
	}
	if diff := cmp.Diff([]string{"birthdate desc", "name", "_lastUpdated"}, sorts); diff != "" {
		t.Errorf("sort (-want +got):\n%s", diff)
	}
	wantInc := []Include{
		{SourceType: "Patient", Param: "general-practitioner", TargetType: "Practitioner"},
		{SourceType: "Patient", Param: "organization"},
		{SourceType: "Organization", Param: "partof", Iterate: true},
	}
	if diff := cmp.Diff(wantInc, q.Include); diff != "" {
		t.Errorf("include (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Include{{SourceType: "Observation", Param: "subject"}, {SourceType: "Provenance", Param: "target"}}, q.RevInclude); diff != "" {
		t.Errorf("revinclude (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"name", "birthDate"}, q.Elements); diff != "" {
		t.Errorf("elements (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Patient"}, q.Types); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
	// name twice: two clauses (AND); general-practitioner one.
	var codes []string
	for _, c := range q.Clauses {
		codes = append(codes, c.Param.Code)
	}
	if diff := cmp.Diff([]string{"general-practitioner", "name", "name"}, codes); diff != "" {
		t.Errorf("clauses (-want +got):\n%s", diff)
	}
	if q, _ := Parse("Patient", nil, true); q.Count != -1 {
		t.Errorf("absent _count = %d, want -1", q.Count)
	}
	if q, _ := Parse("Patient", url.Values{"_include": {"*"}}, true); len(q.Include) != 1 || q.Include[0].Param != "*" {
		t.Errorf("_include=* = %+v", q.Include)
	}
}

func TestParsePredicates(t *testing.T) {
	c := clause(t, "Observation", "code", `http://loinc.org|8867-4,\|x,sys\,1|`)
	want := []Predicate{
		{System: "http://loinc.org", Code: "8867-4", HasSystem: true},
		{Code: "|x"},
		{System: "sys,1", HasSystem: true},
	}
	if diff := cmp.Diff(want, c.Values); diff != "" {
		t.Errorf("token values (-want +got):\n%s", diff)
	}
	d := clause(t, "Patient", "birthdate", "ge1970-05")
	if d.Values[0].Prefix != "ge" || d.Values[0].Date.Low.Format("2006-01-02") != "1970-05-01" || d.Values[0].Date.High.Format("2006-01-02") != "1970-06-01" {
		t.Errorf("date = %+v", d.Values[0])
	}
	if p := clause(t, "Patient", "birthdate", "1970").Values[0]; p.Prefix != "eq" {
		t.Errorf("default prefix = %q", p.Prefix)
	}
	n := clause(t, "Observation", "value-quantity", "le5.40|http://unitsofmeasure.org|mg").Values[0]
	if n.Prefix != "le" || n.Value.RatString() != "27/5" || n.Low.RatString() != "1079/200" || n.High.RatString() != "1081/200" ||
		n.System != "http://unitsofmeasure.org" || n.Code != "mg" {
		t.Errorf("quantity = %+v %v %v %v", n, n.Value, n.Low, n.High)
	}
	r := clause(t, "Observation", "subject", "Patient/1/_history/2").Values[0]
	if r.Type != "Patient" || r.ID != "1" || r.Version != "2" {
		t.Errorf("reference = %+v", r)
	}
	s := clause(t, "Patient", "name", "  ZOË ").Values[0]
	if s.Text != "zoe" {
		t.Errorf("string = %q", s.Text)
	}
}

func TestParseSystemSearch(t *testing.T) {
	if _, err := Parse("", url.Values{"_id": {"1"}, "_lastUpdated": {"gt2020"}}, true); err != nil {
		t.Errorf("common params: %v", err)
	}
	if _, err := Parse("", url.Values{"name": {"x"}}, true); err == nil {
		t.Error("name without _type: no error")
	}
	q, err := Parse("", url.Values{"_type": {"Patient,Practitioner"}, "name": {"x"}}, true)
	if err != nil || len(q.Clauses) != 1 || len(q.Types) != 2 {
		t.Errorf("name shared by _type: %v %+v", err, q)
	}
	if _, err := Parse("", url.Values{"_type": {"Patient,Observation"}, "birthdate": {"1970"}}, true); err == nil {
		t.Error("birthdate of Patient only: no error")
	}
	if _, err := Parse("Patient", url.Values{"_type": {"Observation"}}, true); err == nil {
		t.Error("_type differing from the type: no error")
	}
}

func TestParseStrictAndLenient(t *testing.T) {
	for _, v := range []url.Values{
		{"nonsense": {"1"}},
		{"name:below": {"x"}},
		{"code:in": {"http://vs"}},
		{"_contained": {"true"}},
		{"_text": {"x"}},
		{"_has:Observation:patient:nonsense": {"1"}},
		{"subject:Patient.nonsense": {"1"}},
		{"_include:recurse": {"Observation:subject"}},
	} {
		rt := "Patient"
		for k := range v {
			if strings.HasPrefix(k, "code") || strings.HasPrefix(k, "subject") {
				rt = "Observation"
			}
		}
		if _, err := Parse(rt, v, true); err == nil {
			t.Errorf("strict %v: no error", v)
		}
		q, err := Parse(rt, v, false)
		if err != nil || len(q.Ignored) != 1 || len(q.Clauses) != 0 {
			t.Errorf("lenient %v: %v, %+v", v, err, q)
		}
	}
	// Bad values are errors even when lenient.
	for _, v := range []url.Values{
		{"birthdate": {"1970-13"}},
		{"_count": {"1001"}},
		{"_count": {"-1"}},
		{"_total": {"all"}},
		{"_summary": {"maybe"}},
		{"_sort": {"nonsense"}},
		{"gender:missing": {"maybe"}},
	} {
		if _, err := Parse("Patient", v, false); err == nil {
			t.Errorf("lenient %v: no error", v)
		}
	}
}

// TestParseErrorsDoNotQuote checks that no error repeats what the client
// wrote, other than a known R4 parameter code.
func TestParseErrorsDoNotQuote(t *testing.T) {
	const m = "MARKER7q"
	for _, tc := range []struct {
		rt string
		v  url.Values
	}{
		{"Patient", url.Values{m: {"1"}}},
		{"Patient", url.Values{"name:" + m: {"1"}}},
		{"Patient", url.Values{"birthdate": {m}}},
		{"Patient", url.Values{"birthdate": {"ge" + m}}},
		{"Patient", url.Values{"_count": {m}}},
		{"Patient", url.Values{"_sort": {m}}},
		{"Patient", url.Values{"_sort": {"-" + m}}},
		{"Patient", url.Values{"_total": {m}}},
		{"Patient", url.Values{"_summary": {m}}},
		{"Patient", url.Values{"_elements": {m + "!"}}},
		{"Patient", url.Values{"_include": {m}}},
		{"Patient", url.Values{"_include": {"Patient:" + m}}},
		{"Patient", url.Values{"_revinclude": {m + ":x:y"}}},
		{"Patient", url.Values{"_type": {m}}},
		{"Patient", url.Values{"_has:" + m + ":patient:code": {"1"}}},
		{"Patient", url.Values{"_has:Observation:" + m + ":code": {"1"}}},
		{"Patient", url.Values{"_has:Observation:patient:" + m: {"1"}}},
		{"Patient", url.Values{"general-practitioner:" + m + ".name": {"1"}}},
		{"Patient", url.Values{"general-practitioner." + m: {"1"}}},
		{"Patient", url.Values{"gender:missing": {m}}},
		{"Observation", url.Values{"value-quantity": {m}}},
		{"Observation", url.Values{"value-quantity": {"5|" + m + "|" + m + "|" + m}}},
		{"Observation", url.Values{"code-value-quantity": {m}}},
		{"Observation", url.Values{"subject": {m + "/" + m + "/" + m}}},
		{"Observation", url.Values{"subject:Patient": {"Group/" + m}}},
		{"Observation", url.Values{"code:of-type": {m}}},
		{"RiskAssessment", url.Values{"probability": {"5|" + m}}},
		{m, url.Values{"_id": {"1"}}},
		{"", url.Values{m: {"1"}}},
		{"", url.Values{"_type": {"Patient"}, m: {"1"}}},
	} {
		_, err := Parse(tc.rt, tc.v, true)
		if err == nil {
			t.Errorf("%v: no error", tc.v)
			continue
		}
		var qe *QueryError
		if !errors.As(err, &qe) {
			t.Errorf("%v: %T is not a *QueryError", tc.v, err)
		}
		if strings.Contains(err.Error(), m) {
			t.Errorf("error quotes the client: %v", err)
		}
		if qe != nil && qe.Param != "" && knownCode(qe.Param) == "" {
			t.Errorf("error names %q, not an R4 code", qe.Param)
		}
	}
}
