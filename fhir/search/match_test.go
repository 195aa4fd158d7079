package search

import (
	"net/url"
	"testing"
	"time"
)

// clause parses one parameter of resourceType strictly.
func clause(t *testing.T, resourceType, name, value string) Clause {
	t.Helper()
	q, err := Parse(resourceType, url.Values{name: {value}}, true)
	if err != nil {
		t.Fatalf("Parse %s=%s: %v", name, value, err)
	}
	if len(q.Clauses) != 1 {
		t.Fatalf("Parse %s=%s: %d clauses", name, value, len(q.Clauses))
	}
	return q.Clauses[0]
}

func dateValue(t *testing.T, param, s string) Value {
	t.Helper()
	r, err := ParseDate(s)
	if err != nil {
		t.Fatal(err)
	}
	return Value{Param: param, Type: TypeDate, Date: r}
}

type matchCase struct {
	name, value string
	values      []Value
	want        bool
}

func runMatch(t *testing.T, resourceType string, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		c := clause(t, resourceType, tc.name, tc.value)
		if got := c.Match(tc.values); got != tc.want {
			t.Errorf("%s %s=%s on %+v: Match = %v, want %v", resourceType, tc.name, tc.value, tc.values, got, tc.want)
		}
		// Whatever Match says, a match must be found through the index.
		if c.Match(tc.values) {
			assertCovered(t, resourceType, c, tc.values)
		}
	}
}

// assertCovered checks the superset invariant for one clause and resource.
func assertCovered(t testing.TB, resourceType string, c Clause, values []Value) {
	t.Helper()
	keys, narrows := c.Keys()
	if !narrows {
		return
	}
	idx := make(map[string]bool)
	for _, k := range IndexKeys(resourceType, values) {
		idx[k] = true
	}
	for _, k := range keys {
		if idx[k] {
			return
		}
	}
	t.Errorf("clause %s:%s %+v matches but none of its %d keys is indexed", c.Param.Code, c.Modifier, c.Values, len(keys))
}

func TestMatchDate(t *testing.T) {
	bd := func(s string) []Value { return []Value{dateValue(t, "birthdate", s)} }
	runMatch(t, "Patient", []matchCase{
		{"birthdate", "1970", bd("1970-05-02"), true},
		{"birthdate", "1970", bd("1969-12-31T23:59:59Z"), false},
		{"birthdate", "1970", bd("1970-12-31T23:59:59Z"), true},
		{"birthdate", "1970", bd("1971-01-01T00:00:00Z"), false},
		{"birthdate", "1970", bd("1970"), true},
		{"birthdate", "1970-05", bd("1970"), false}, // the value's span is wider
		{"birthdate", "eq1970-05-02", bd("1970-05-02"), true},
		{"birthdate", "ne1970-05-02", bd("1970-05-02"), false},
		{"birthdate", "ne1970-05-02", bd("1970-05-03"), true},
		// lt: the value's span starts before the query's.
		{"birthdate", "lt1970-05-02", bd("1970-05-01"), true},
		{"birthdate", "lt1970-05-02", bd("1970-05-02"), false},
		{"birthdate", "lt1970-05-02T00:00:00Z", bd("1970-05-01T23:59:59Z"), true},
		{"birthdate", "lt1970-05-02T00:00:00Z", bd("1970-05-02T00:00:00Z"), false},
		{"birthdate", "lt1970-05-02", bd("1970-05"), true}, // May starts before the 2nd
		// le: lt or eq.
		{"birthdate", "le1970-05-02", bd("1970-05-02"), true},
		{"birthdate", "le1970-05-02", bd("1970-05-02T23:59:59Z"), true},
		{"birthdate", "le1970-05-02", bd("1970-05-03"), false},
		// gt: the span ends after the query's.
		{"birthdate", "gt1970-05-02", bd("1970-05-03"), true},
		{"birthdate", "gt1970-05-02", bd("1970-05-02T23:59:59Z"), false},
		{"birthdate", "gt1970-05-02", bd("1970-05-02"), false},
		{"birthdate", "ge1970-05-02", bd("1970-05-02"), true},
		{"birthdate", "ge1970-05-02", bd("1970-05-01"), false},
		{"birthdate", "ge1970", bd("1969-12-31"), false},
		{"birthdate", "sa1970-05-02", bd("1970-05-03T00:00:00Z"), true},
		{"birthdate", "sa1970-05-02", bd("1970-05-02T23:59:59Z"), false},
		{"birthdate", "eb1970-05-02", bd("1970-05-01T23:59:59Z"), true},
		{"birthdate", "eb1970-05-02", bd("1970-05-02T00:00:00Z"), false},
		// A time zone moves the span: 1970-01-01T00:30+01:00 is 1969 in UTC.
		{"birthdate", "1970", bd("1970-01-01T00:30:00+01:00"), false},
		{"birthdate", "1969", bd("1970-01-01T00:30:00+01:00"), true},
		{"birthdate", "lt1970-01-01T00:30:00 01:00", bd("1969-12-31T23:29:59Z"), true}, // "+" decoded as a space
		{"birthdate", "lt1970-01-01T00:30:00 01:00", bd("1969-12-31T23:30:00Z"), false},
		// OR over values, any value of the resource.
		{"birthdate", "1980,1970", bd("1970-05-02"), true},
		{"birthdate", "1980,1990", bd("1970-05-02"), false},
	})
	// A Period: Encounter date [2020-01-01, 2020-01-03).
	enc := []Value{{Param: "date", Type: TypeDate, Date: DateRange{
		Low: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), High: time.Date(2020, 1, 3, 0, 0, 0, 0, time.UTC)}}}
	open := []Value{{Param: "date", Type: TypeDate, Date: DateRange{Low: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), High: MaxTime}}}
	runMatch(t, "Encounter", []matchCase{
		{"date", "2020-01", enc, true},
		{"date", "2020-01-01", enc, false},
		{"date", "gt2020-01-01", enc, true},
		{"date", "lt2020-01-02", enc, true},
		{"date", "lt2020-01-01", enc, false},
		{"date", "sa2019-12-31", enc, true},
		{"date", "eb2020-01-03", enc, true},
		{"date", "eb2020-01-02", enc, false},
		{"date", "gt3000", open, true},
		{"date", "2020", open, false},
		{"date", "ap2020-01-02", enc, true},
		{"date:missing", "true", enc, false},
		{"date:missing", "false", enc, true},
		{"date:missing", "true", nil, true},
	})
}

func TestMatchDateApproximate(t *testing.T) {
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }
	bd := func(s string) []Value { return []Value{dateValue(t, "birthdate", s)} }
	// ap2015: the gap to now is 10 years (to 2015's Low), 10% is one year:
	// [2014-01-01, 2017-01-01) less a day or so each side.
	runMatch(t, "Patient", []matchCase{
		{"birthdate", "ap2015", bd("2014-03-01"), true},
		{"birthdate", "ap2015", bd("2016-10-01"), true},
		{"birthdate", "ap2015", bd("2013-06-01"), false},
		{"birthdate", "ap2015", bd("2017-06-01"), false},
	})
}

func TestMatchToken(t *testing.T) {
	code := func(sys, c, display, text string) Value {
		return Value{Param: "code", Type: TypeToken, Token: Token{System: sys, Code: c, Display: display, Text: text}}
	}
	loinc := []Value{code("http://loinc.org", "8867-4", "Heart rate", "Pulse")}
	bare := []Value{code("", "8867-4", "", "")}
	runMatch(t, "Observation", []matchCase{
		{"code", "8867-4", loinc, true},
		{"code", "8867-4", bare, true},
		{"code", "8867-a", loinc, false},
		{"code", "http://loinc.org|8867-4", loinc, true},
		{"code", "http://loinc.org|8867-4", bare, false},
		{"code", "http://snomed.info/sct|8867-4", loinc, false},
		{"code", "|8867-4", loinc, false},
		{"code", "|8867-4", bare, true},
		{"code", "http://loinc.org|", loinc, true},
		{"code", "http://loinc.org|", bare, false},
		{"code", "x,http://loinc.org|8867-4", loinc, true},
		{"code:text", "heart", loinc, true},
		{"code:text", "RATE", loinc, true}, // a word's start
		{"code:text", "puls", loinc, true}, // CodeableConcept.text
		{"code:text", "art", loinc, false},
		{"code:not", "8867-4", loinc, false},
		{"code:not", "1234-5", loinc, true},
		{"code:not", "1234-5", nil, true},
		{"code:missing", "false", loinc, true},
		{"code:missing", "false", nil, false},
	})
	// Codes are case-sensitive.
	runMatch(t, "Patient", []matchCase{
		{"gender", "female", []Value{{Param: "gender", Type: TypeToken, Token: Token{Code: "female"}}}, true},
		{"gender", "Female", []Value{{Param: "gender", Type: TypeToken, Token: Token{Code: "female"}}}, false},
		{"identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|123", []Value{{Param: "identifier", Type: TypeToken,
			Token: Token{System: "urn:x", Code: "123", OfType: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "MR"}}}}}, true},
		{"identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|SS|123", []Value{{Param: "identifier", Type: TypeToken,
			Token: Token{System: "urn:x", Code: "123", OfType: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "MR"}}}}}, false},
		{"_id", "p1", []Value{{Param: "_id", Type: TypeToken, Token: Token{Code: "p1"}}}, true},
		{"_id", "p2", []Value{{Param: "_id", Type: TypeToken, Token: Token{Code: "p1"}}}, false},
	})
	// An escaped comma is part of the code.
	runMatch(t, "Observation", []matchCase{
		{"code", `a\,b`, []Value{code("", "a,b", "", "")}, true},
		{"code", `a\,b`, []Value{code("", "a", "", "")}, false},
	})
}

func TestMatchString(t *testing.T) {
	name := func(s ...string) []Value {
		var out []Value
		for _, x := range s {
			out = append(out, Value{Param: "name", Type: TypeString, String: x})
		}
		return out
	}
	runMatch(t, "Patient", []matchCase{
		{"name", "zoe", name("Zoë"), true},
		{"name", "ZO", name("Zoë", "Dupont"), true},
		{"name", "dup", name("Zoë", "Dupont"), true},
		{"name", "pont", name("Dupont"), false},
		{"name", "dupontel", name("Dupont"), false},
		{"name", "dupontel", name("Dupontelle"), true}, // longer than the prefix cap
		{"name", "dupontex", name("Dupontelle"), false},
		{"name:exact", "Zoë", name("Zoë"), true},
		{"name:exact", "zoë", name("Zoë"), false},
		{"name:exact", "Zoe", name("Zoë"), false},
		{"name:exact", "Zo", name("Zoë"), false},
		{"name:contains", "PON", name("Dupont"), true},
		{"name:contains", "pox", name("Dupont"), false},
		{"name", "van der", name("Van  Der Berg"), true},
	})
}

func TestMatchNumberAndQuantity(t *testing.T) {
	prob := func(s string) []Value { return []Value{{Param: "probability", Type: TypeNumber, Number: s}} }
	runMatch(t, "RiskAssessment", []matchCase{
		// 100 is [99.5, 100.5).
		{"probability", "100", prob("99.5"), true},
		{"probability", "100", prob("100.4999"), true},
		{"probability", "100", prob("100.5"), false},
		{"probability", "100", prob("99.49"), false},
		{"probability", "100.00", prob("100.004"), true},
		{"probability", "100.00", prob("100.006"), false},
		{"probability", "1e2", prob("140"), true}, // one significant digit: [50, 150)
		{"probability", "1e2", prob("150"), false},
		{"probability", "1.0E2", prob("104"), true},
		{"probability", "1.0E2", prob("106"), false},
		{"probability", "gt100", prob("100.0001"), true},
		{"probability", "gt100", prob("100"), false},
		{"probability", "ge100", prob("100"), true},
		{"probability", "lt100", prob("99.99"), true},
		{"probability", "lt100", prob("100"), false},
		{"probability", "le100", prob("100"), true},
		{"probability", "le100", prob("100.01"), false},
		{"probability", "ne100", prob("100.2"), false},
		{"probability", "ne100", prob("101"), true},
		{"probability", "ap100", prob("109"), true},
		{"probability", "ap100", prob("111"), false},
		{"probability", "lt0", prob("-0.5"), true},
		{"probability", "gt-1", prob("-0.5"), true},
		{"probability", "gt-1", prob("-1.5"), false},
		{"probability", "0.5", prob("5e-1"), true},
	})
	qty := func(v, sys, code, unit string) []Value {
		return []Value{{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Value: v, System: sys, Code: code, Unit: unit}}}
	}
	ucum := "http://unitsofmeasure.org"
	rng := func(lo, hi string) []Value {
		return []Value{{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Low: lo, High: hi, System: ucum, Code: "mg"}}}
	}
	runMatch(t, "Observation", []matchCase{
		{"value-quantity", "5.4|" + ucum + "|mg", qty("5.4", ucum, "mg", "mg"), true},
		{"value-quantity", "5.4|" + ucum + "|mg", qty("5.4", ucum, "g", "g"), false},
		{"value-quantity", "5.4|" + ucum + "|mg", qty("5.4", "", "mg", "mg"), false},
		{"value-quantity", "5.4||mg", qty("5.4", ucum, "mg", "milligram"), true},
		{"value-quantity", "5.4||milligram", qty("5.4", ucum, "mg", "milligram"), true},
		{"value-quantity", "5.4||g", qty("5.4", ucum, "mg", "mg"), false},
		{"value-quantity", "5.4", qty("5.44", ucum, "mg", "mg"), true},
		{"value-quantity", "5.4", qty("5.46", ucum, "mg", "mg"), false},
		{"value-quantity", "gt5.4|" + ucum + "|mg", qty("5.41", ucum, "mg", "mg"), true},
		{"value-quantity", "lt5.4|" + ucum + "|mg", qty("5.41", ucum, "mg", "mg"), false},
		// A Range [5, 10] mg.
		{"value-quantity", "gt7", rng("5", "10"), true},
		{"value-quantity", "gt10", rng("5", "10"), false},
		{"value-quantity", "lt5", rng("5", "10"), false},
		{"value-quantity", "lt6", rng("5", "10"), true},
		{"value-quantity", "gt1000", rng("5", ""), true}, // open high
		{"value-quantity", "lt0", rng("", "10"), true},   // open low
		{"value-quantity", "ap11", rng("5", "10"), true},
		{"value-quantity", "eq7", rng("5", "10"), false},
		{"value-quantity", "sa4", rng("5", "10"), true},
		{"value-quantity", "eb11", rng("5", "10"), true},
		{"value-quantity", "eb10", rng("5", "10"), false},
	})
}

func TestMatchReferenceAndURI(t *testing.T) {
	ref := func(typ, id, u string) []Value {
		return []Value{{Param: "subject", Type: TypeReference, Reference: Reference{Type: typ, ID: id, URL: u}}}
	}
	ident := []Value{{Param: "subject", Type: TypeReference, Reference: Reference{Identifier: &Token{System: "urn:mrn", Code: "42"}}}}
	runMatch(t, "Observation", []matchCase{
		{"subject", "Patient/p1", ref("Patient", "p1", ""), true},
		{"subject", "Patient/p2", ref("Patient", "p1", ""), false},
		{"subject", "Group/p1", ref("Patient", "p1", ""), false},
		{"subject", "p1", ref("Patient", "p1", ""), true},
		{"subject:Patient", "p1", ref("Patient", "p1", ""), true},
		{"subject:Group", "p1", ref("Patient", "p1", ""), false},
		{"subject", "http://other/fhir/Patient/p1", ref("Patient", "p1", "http://other/fhir/Patient/p1"), true},
		{"subject", "Patient/p1", ref("Patient", "p1", "http://other/fhir/Patient/p1"), false},
		{"subject:identifier", "urn:mrn|42", ident, true},
		{"subject:identifier", "urn:mrn|43", ident, false},
		{"subject:missing", "true", ref("Patient", "p1", ""), false},
	})
	uri := func(s string) []Value { return []Value{{Param: "url", Type: TypeURI, URI: s}} }
	runMatch(t, "ValueSet", []matchCase{
		{"url", "http://acme.org/fhir/ValueSet/123", uri("http://acme.org/fhir/ValueSet/123"), true},
		{"url", "http://acme.org/fhir/ValueSet/12", uri("http://acme.org/fhir/ValueSet/123"), false},
		{"url:below", "http://acme.org/fhir/", uri("http://acme.org/fhir/ValueSet/123"), true},
		{"url:below", "http://acme.org/fh", uri("http://acme.org/fhir/ValueSet/123"), false},
		{"url:above", "http://acme.org/fhir/ValueSet/123/_history/5", uri("http://acme.org/fhir/ValueSet/123"), true},
		{"url:above", "http://acme.org/fhir/ValueSet/1234", uri("http://acme.org/fhir/ValueSet/123"), false},
	})
}

func TestMatchComposite(t *testing.T) {
	cv := func(sys, code, v, unit string) Value {
		return Value{Param: "code-value-quantity", Type: TypeComposite, Components: []Value{
			{Param: "code", Type: TypeToken, Token: Token{System: sys, Code: code}},
			{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Value: v, System: "http://unitsofmeasure.org", Code: unit}},
		}}
	}
	// As Extract gives them: the composite's values and its first
	// component's own parameter (which the index narrows by).
	bp := []Value{cv("http://loinc.org", "8480-6", "120", "mm[Hg]"), cv("http://loinc.org", "8462-4", "80", "mm[Hg]"),
		{Param: "code", Type: TypeToken, Token: Token{System: "http://loinc.org", Code: "8480-6"}},
		{Param: "code", Type: TypeToken, Token: Token{System: "http://loinc.org", Code: "8462-4"}}}
	runMatch(t, "Observation", []matchCase{
		{"code-value-quantity", "http://loinc.org|8480-6$gt100", bp, true},
		{"code-value-quantity", "http://loinc.org|8462-4$gt100", bp, false}, // the pair, not any code with any value
		{"code-value-quantity", "8462-4$lt90|http://unitsofmeasure.org|mm[Hg]", bp, true},
		{"code-value-quantity", "8462-4$lt90|http://unitsofmeasure.org|mg", bp, false},
	})
}

func TestMatchChainAndHas(t *testing.T) {
	c := clause(t, "Observation", "subject:Patient.name", "peter")
	if c.Chain == nil || c.Chain.Type != "Patient" || c.Chain.Clause.Param.Code != "name" {
		t.Fatalf("chain = %+v", c.Chain)
	}
	vals := []Value{{Param: "subject", Type: TypeReference, Reference: Reference{Type: "Patient", ID: "p1"}}}
	if c.Match(vals) {
		t.Error("chain without Targets matched")
	}
	if keys, narrows := c.Keys(); !narrows || len(keys) != 0 {
		t.Errorf("Keys without Targets = %v, %v", keys, narrows)
	}
	c.Targets = []string{"Patient/p2", "Patient/p1"}
	if !c.Match(vals) {
		t.Error("chain with Targets did not match")
	}
	assertCovered(t, "Observation", c, vals)
	c.Targets = []string{"Patient/p2"}
	if c.Match(vals) {
		t.Error("chain matched a resource outside Targets")
	}

	h := clause(t, "Patient", "_has:Observation:patient:code", "1234-5")
	if h.Has == nil || h.Has.Type != "Observation" || h.Has.Ref.Code != "patient" || h.Has.Clause.Param.Code != "code" {
		t.Fatalf("has = %+v", h.Has)
	}
	pv := []Value{{Param: "_id", Type: TypeToken, Token: Token{Code: "p1"}}}
	h.Targets = []string{"p1"}
	if !h.Match(pv) {
		t.Error("_has with Targets did not match")
	}
	assertCovered(t, "Patient", h, pv)
	h.Targets = []string{"p9"}
	if h.Match(pv) {
		t.Error("_has matched outside Targets")
	}
	// Nested _has and a two-level chain.
	h2 := clause(t, "Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent", "Practitioner/1")
	if h2.Has == nil || h2.Has.Clause.Has == nil || h2.Has.Clause.Has.Type != "AuditEvent" {
		t.Fatalf("nested has = %+v", h2.Has)
	}
	c2 := clause(t, "Observation", "subject:Patient.organization.name", "acme")
	if c2.Chain == nil || c2.Chain.Clause.Chain == nil || c2.Chain.Clause.Chain.Type != "Organization" {
		t.Fatalf("two-level chain = %+v", c2.Chain)
	}
}
