package search

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// valuesOf extracts src (decoded both with and without UseNumber, which
// must agree) and returns the values of param.
func valuesOf(t *testing.T, x *Extractor, src, param string) []Value {
	t.Helper()
	var results [2][]Value
	for i, useNumber := range []bool{true, false} {
		dec := json.NewDecoder(strings.NewReader(src))
		if useNumber {
			dec.UseNumber()
		}
		var tree map[string]any
		if err := dec.Decode(&tree); err != nil {
			t.Fatal(err)
		}
		vals, err := x.Extract(tree["resourceType"].(string), tree)
		if err != nil {
			t.Fatalf("Extract: %v", err)
		}
		for _, v := range vals {
			if v.Param == param {
				results[i] = append(results[i], v)
			}
		}
	}
	if diff := cmp.Diff(results[0], results[1]); diff != "" {
		t.Errorf("json.Number and float64 differ (-Number +float64):\n%s", diff)
	}
	return results[0]
}

func TestExtractCases(t *testing.T) {
	tok := func(param string, tk Token) Value { return Value{Param: param, Type: TypeToken, Token: tk} }
	ref := func(param string, r Reference) Value { return Value{Param: param, Type: TypeReference, Reference: r} }
	qty := func(param string, q Quantity) Value { return Value{Param: param, Type: TypeQuantity, Quantity: q} }
	x := &Extractor{ReferenceType: func(s string) string {
		if s == "urn:uuid:p" {
			return "Patient"
		}
		return ""
	}}
	for _, tc := range []struct {
		name, src, param string
		want             []Value
	}{
		{"telecom where(system='phone')", `{"resourceType":"Patient","telecom":[{"system":"email","value":"a@b"},{"system":"phone","value":"555","use":"home"}]}`,
			"phone", []Value{tok("phone", Token{System: "phone", Code: "555"})}},
		{"telecom where(system='email')", `{"resourceType":"Patient","telecom":[{"system":"email","value":"a@b"},{"system":"phone","value":"555"}]}`,
			"email", []Value{tok("email", Token{System: "email", Code: "a@b"})}},
		{"deceased absent", `{"resourceType":"Patient"}`, "deceased", []Value{tok("deceased", Token{Code: "false"})}},
		{"deceasedBoolean", `{"resourceType":"Patient","deceasedBoolean":true}`, "deceased", []Value{tok("deceased", Token{Code: "true"})}},
		{"deceasedBoolean false", `{"resourceType":"Patient","deceasedBoolean":false}`, "deceased", []Value{tok("deceased", Token{Code: "false"})}},
		{"deceasedDateTime", `{"resourceType":"Patient","deceasedDateTime":"2020"}`, "deceased", []Value{tok("deceased", Token{Code: "true"})}},
		{"identifier of-type", `{"resourceType":"Patient","identifier":[{"system":"s","value":"v","type":{"coding":[{"system":"ts","code":"MR"}],"text":"MRN"}}]}`,
			"identifier", []Value{tok("identifier", Token{System: "s", Code: "v", OfType: []Coding{{"ts", "MR"}}})}},
		{"CodeableConcept text", `{"resourceType":"Observation","code":{"coding":[{"system":"l","code":"1","display":"One"},{"code":"2"}],"text":"T"}}`,
			"code", []Value{tok("code", Token{System: "l", Code: "1", Display: "One", Text: "T"}), tok("code", Token{Code: "2", Text: "T"})}},
		{"CodeableConcept text only", `{"resourceType":"Observation","code":{"text":"T"}}`, "code", []Value{tok("code", Token{Text: "T"})}},
		{"patient: relative", `{"resourceType":"Observation","subject":{"reference":"Patient/1/_history/2"}}`,
			"patient", []Value{ref("patient", Reference{Type: "Patient", ID: "1", Version: "2"})}},
		{"patient: absolute", `{"resourceType":"Observation","subject":{"reference":"https://h/fhir/Patient/9"}}`,
			"patient", []Value{ref("patient", Reference{Type: "Patient", ID: "9", URL: "https://h/fhir/Patient/9"})}},
		{"patient: not a Patient", `{"resourceType":"Observation","subject":{"reference":"Group/1"}}`, "patient", nil},
		{"patient: contained", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p1"}],"subject":{"reference":"#p1"}}`,
			"patient", []Value{ref("patient", Reference{Type: "Patient", URL: "#p1"})}},
		{"patient: urn:uuid via ReferenceType", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:p"}}`,
			"patient", []Value{ref("patient", Reference{Type: "Patient", URL: "urn:uuid:p"})}},
		{"patient: Reference.type", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:q","type":"Patient"}}`,
			"patient", []Value{ref("patient", Reference{Type: "Patient", URL: "urn:uuid:q"})}},
		{"subject: identifier only", `{"resourceType":"Observation","subject":{"identifier":{"system":"s","value":"v"}}}`,
			"subject", []Value{ref("subject", Reference{Identifier: &Token{System: "s", Code: "v"}})}},
		{"canonical with version", `{"resourceType":"Library","relatedArtifact":[{"type":"depends-on","resource":"http://x/Library/lib|1.0"},{"type":"successor","resource":"http://x/Library/n"}]}`,
			"depends-on", []Value{ref("depends-on", Reference{Type: "Library", ID: "lib", Version: "1.0", URL: "http://x/Library/lib"})}},
		{"Bundle composition", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}},{"resource":{"resourceType":"Patient","id":"p"}}]}`,
			"composition", []Value{ref("composition", Reference{Type: "Composition", ID: "c"})}},
		{"Bundle message: entry[0] is no MessageHeader", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}}]}`, "message", nil},
		{"value-quantity", `{"resourceType":"Observation","valueQuantity":{"value":1.5,"comparator":"<","unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}`,
			"value-quantity", []Value{qty("value-quantity", Quantity{Value: "1.5", Comparator: "<", Unit: "mg", System: "http://unitsofmeasure.org", Code: "mg"})}},
		{"value-quantity: SampledData not indexed", `{"resourceType":"Observation","valueSampledData":{"origin":{"value":1},"period":1,"dimensions":1}}`, "value-quantity", nil},
		{"onset-age: Range", `{"resourceType":"Condition","onsetRange":{"low":{"value":10,"unit":"a"},"high":{"value":20,"unit":"a"}}}`,
			"onset-age", []Value{qty("onset-age", Quantity{Low: "10", High: "20", Unit: "a"})}},
		{"onset-age: Age", `{"resourceType":"Condition","onsetAge":{"value":42,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}}`,
			"onset-age", []Value{qty("onset-age", Quantity{Value: "42", Unit: "a", System: "http://unitsofmeasure.org", Code: "a"})}},
		{"Money", `{"resourceType":"ChargeItem","priceOverride":{"value":12.5,"currency":"EUR"}}`,
			"price-override", []Value{qty("price-override", Quantity{Value: "12.5", System: "urn:iso:std:iso:4217", Code: "EUR"})}},
		{"choice below a data type (UsageContext)", `{"resourceType":"Library","useContext":[{"code":{"code":"age"},"valueQuantity":{"value":3}},{"code":{"code":"focus"},"valueCodeableConcept":{"text":"x"}}]}`,
			"context-quantity", []Value{qty("context-quantity", Quantity{Value: "3"})}},
		{"number and Range", `{"resourceType":"RiskAssessment","prediction":[{"probabilityDecimal":0.25},{"probabilityRange":{"low":{"value":0.1}}}]}`,
			"probability", []Value{{Param: "probability", Type: TypeNumber, Number: "0.25"}, {Param: "probability", Type: TypeNumber, Quantity: Quantity{Low: "0.1"}}}},
		{"Group value boolean", `{"resourceType":"Group","characteristic":[{"code":{"text":"c"},"valueBoolean":true}]}`,
			"value", []Value{tok("value", Token{Code: "true"})}},
		{"value-string from CodeableConcept text", `{"resourceType":"Observation","valueCodeableConcept":{"text":"Positive"}}`,
			"value-string", []Value{{Param: "value-string", Type: TypeString, String: "Positive"}}},
		{"not a key prefix: no choice for plain elements", `{"resourceType":"Coverage","subscriberId":"123"}`, "subscriber", nil},
		{"scheduledString is no date", `{"resourceType":"CarePlan","activity":[{"detail":{"scheduledString":"every day"}}]}`, "activity-date", nil},
		{"Timing events", `{"resourceType":"CarePlan","activity":[{"detail":{"scheduledTiming":{"event":["2020-01-02"],"repeat":{"boundsPeriod":{"start":"2021"}}}}}]}`,
			"activity-date", []Value{
				{Param: "activity-date", Type: TypeDate, Date: mustDate(t, "2020-01-02")},
				{Param: "activity-date", Type: TypeDate, Date: DateRange{mustDate(t, "2021").Low, MaxTime}},
			}},
		{"_id, _tag, _profile, _lastUpdated", `{"resourceType":"Basic","id":"b1","meta":{"tag":[{"system":"s","code":"t"}],"profile":["http://p"]}}`,
			"_id", []Value{tok("_id", Token{Code: "b1"})}},
		{"_profile", `{"resourceType":"Basic","meta":{"profile":["http://p"]}}`, "_profile", []Value{{Param: "_profile", Type: TypeURI, URI: "http://p"}}},
		{"_lastUpdated", `{"resourceType":"Basic","meta":{"lastUpdated":"2020-01-01T00:00:00.000Z"}}`, "_lastUpdated",
			[]Value{{Param: "_lastUpdated", Type: TypeDate, Date: mustDate(t, "2020-01-01T00:00:00.000Z")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, valuesOf(t, x, tc.src, tc.param)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.param, diff)
			}
		})
	}
}

func mustDate(t *testing.T, s string) DateRange {
	r, err := ParseDate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCompositeTuples(t *testing.T) {
	src := `{"resourceType":"Observation","code":{"coding":[{"system":"a","code":"1"},{"system":"b","code":"2"}]},
		"valueQuantity":{"value":5,"unit":"mm"},
		"component":[{"code":{"coding":[{"system":"c","code":"3"}]},"valueQuantity":{"value":7}}]}`
	got := valuesOf(t, &Extractor{}, src, "code-value-quantity")
	var keys []string
	for _, v := range got {
		if len(v.Components) != 2 {
			t.Fatalf("composite of %d components", len(v.Components))
		}
		keys = append(keys, key(v.Components[0])+" "+v.Components[1].Quantity.Value)
	}
	if diff := cmp.Diff([]string{"a|1 5", "b|2 5"}, keys); diff != "" {
		t.Errorf("code-value-quantity (-want +got):\n%s", diff)
	}
	got = valuesOf(t, &Extractor{}, src, "component-code-value-quantity")
	if len(got) != 1 || key(got[0].Components[0]) != "c|3" || got[0].Components[1].Quantity.Value != "7" {
		t.Errorf("component-code-value-quantity = %+v", got)
	}
}

func TestExtractErrorsNameNoValue(t *testing.T) {
	for _, src := range []string{
		`{"resourceType":"Patient","birthDate":"1970-02-31"}`,
		`{"resourceType":"Observation","valueQuantity":{"value":"12abc"}}`,
	} {
		var tree map[string]any
		if err := json.Unmarshal([]byte(src), &tree); err != nil {
			t.Fatal(err)
		}
		_, err := Extract(tree["resourceType"].(string), tree)
		if err == nil {
			t.Errorf("%s: no error", src)
			continue
		}
		for _, secret := range []string{"1970", "12abc"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes the value: %v", err)
			}
		}
	}
	if _, err := Extract("Nope", map[string]any{}); err != ErrUnknownResourceType {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := Extract("Patient", map[string]any{"resourceType": "Observation"}); err == nil {
		t.Error("mismatched resourceType accepted")
	}
}
