package search

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"testing"
)

// FuzzExtract feeds untrusted resources to Extract; its corpus is in
// testdata/fuzz/FuzzExtract. Extract must not panic, what it returns
// must be values of the type's parameters, of their types, and the same as
// the general evaluation of their expressions gives (checkPlan); their
// index keys those of refIndexKeys, and of Extractor.IndexKeys.
func FuzzExtract(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Patient","name":[{"family":"F","given":["A",null]}],"birthDate":"1970","deceasedDateTime":"2020-01-01T00:00:00.5+01:00"}`,
		`{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}]},"subject":{"reference":"#p"},"contained":[{"resourceType":"Patient","id":"p"}],"valueQuantity":{"value":1E-22}}`,
		`{"resourceType":"Observation","component":[{"code":{"text":"t"},"valueRange":{"low":{"value":1}}},{"valueQuantity":{"value":-0.0}}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}}]}`,
		`{"resourceType":"CarePlan","activity":[{"detail":{"scheduledTiming":{"event":["2020"],"repeat":{"boundsPeriod":{"end":"2021-02"}}}}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var tree map[string]any
		if dec.Decode(&tree) != nil {
			return
		}
		rt, _ := tree["resourceType"].(string)
		if _, ok := load().plans[rt]; ok {
			for _, indexed := range []bool{false, true} {
				checkPlan(t, &Extractor{Indexed: indexed}, "fuzz", rt, tree)
			}
		}
		vals, err := Extract(rt, tree)
		if keys, kerr := (&Extractor{}).IndexKeys(rt, tree); (kerr != nil) != (err != nil) || !slices.Equal(keys, IndexKeys(rt, vals)) {
			t.Fatalf("Extractor.IndexKeys = %q, %v; Extract then IndexKeys: %q, %v", keys, kerr, IndexKeys(rt, vals), err)
		}
		if got, want := IndexKeys(rt, vals), refIndexKeys(rt, vals); !slices.Equal(got, want) {
			t.Fatalf("IndexKeys = %q, reference %q", got, want)
		}
		if err != nil {
			return
		}
		for _, v := range vals {
			p, ok := Lookup(rt, v.Param)
			if !ok || p.Type != v.Type {
				t.Fatalf("value of %s has type %s", v.Param, v.Type)
			}
			if v.Type == TypeComposite && len(v.Components) != len(p.Components) {
				t.Fatalf("%s: %d components, want %d", v.Param, len(v.Components), len(p.Components))
			}
		}
	})
}

// FuzzParse feeds untrusted query strings to Parse; its corpus is in
// testdata/fuzz/FuzzParse. Parse must not panic, nor Match, Keys and
// Compare on what it returns; an error is a *QueryError.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"name=peter&birthdate=ge1970-05&_count=10",
		"code=http://loinc.org|8867-4,|x,sys|&code:text=heart&code:not=1",
		"value-quantity=le5.4|http://unitsofmeasure.org|mg&value-quantity=ap1e2||mg",
		"subject:Patient.name=x&subject.organization.name=y&_has:Observation:patient:code=1",
		"code-value-quantity=8480-6$gt100&_sort=-date,code&_include=Observation:subject:Patient&_revinclude:iterate=Provenance:target",
		`_id=a\,b&_lastUpdated=ne2020&_tag=s|&_profile:below=http://x/&date=eb2020-01-01T00:00:00.5%2B01:00`,
		"_type=Patient,Practitioner&name=x&_summary=count&_total=none&_elements=id",
	} {
		f.Add("Observation", seed, true)
	}
	f.Add("Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent=Practitioner/1&gender:missing=true", false)
	f.Add("", "_id=1&_lastUpdated=1970", true)
	f.Fuzz(func(t *testing.T, rt, query string, strict bool) {
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q, err := Parse(rt, vals, strict)
		if err != nil {
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("error %T is not a *QueryError", err)
			}
			return
		}
		values := []Value{
			{Param: "code", Type: TypeToken, Token: Token{System: "s", Code: "c", Display: "d"}},
			{Param: "name", Type: TypeString, String: "Zoë"},
			{Param: "date", Type: TypeDate, Date: DateRange{Low: MinTime, High: MaxTime}},
			{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Low: "1", High: "1e300"}},
			{Param: "subject", Type: TypeReference, Reference: Reference{Type: "Patient", ID: "1"}},
		}
		for _, c := range q.Clauses {
			c.Targets = []string{"Patient/1", "1"}
			match := c.Match(values)
			keys, narrows := c.Keys()
			if len(keys) > 4*maxCover {
				t.Fatalf("%d keys", len(keys))
			}
			if match && narrows {
				idx := IndexKeys(rt, values)
				if !slices.ContainsFunc(keys, func(k string) bool { return slices.Contains(idx, k) }) {
					t.Fatalf("clause %s matches but no key is indexed", c.Param.Code)
				}
			}
		}
		Compare(q.Sort, values, nil)
	})
}
