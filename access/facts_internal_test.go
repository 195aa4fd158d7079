package access

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// TestScanMatchesUnmarshal: factsDoc.scan cuts from every resource of the
// Synthea set and the HL7 examples, and from odd shapes, exactly the
// elements json.Unmarshal does, or declines (and ResourceOf then uses
// json.Unmarshal).
func TestScanMatchesUnmarshal(t *testing.T) {
	bodies := []string{
		`{}`, ` { } `, `{"resourceType":"Observation"}`,
		`{"resourceType":"Observation","meta":"odd","code":[{"coding":[]}],"effectiveDateTime":7,"issued":"2020-01-01"}`,
		`{"resourceType":"Observation","meta":{"security":[{"code":"PSY"},{"system":"s"},7,{"code":"R","system":3}]},"code":null,"effectivePeriod":{"end":"x"},"date":"2021"}`,
		`{"resourceType":"Encounter","type":{"coding":[{"system":"a","code":"b"}]},"type":{"coding":[{"code":"c"}]},"period":{"start":"2019-05"}}`,
		"{\n  \"code\" : { \"coding\" : [ { \"code\" : \"a\\\"}]\" } , 1.5e3, true, null, [] ] } ,\n\t\"date\"\r:\"2020\" , \"x\": [1,[2,{\"y\":\"}\"}]], \"issued\": false }",
		`{"Code":{"coding":[{"code":"a"}]}}`,                  // json.Unmarshal folds case: scan declines
		`{"DATE":"2020"}`,                                     // likewise
		`{"\u0063ode":{"coding":[{"code":"a"}]}}`,             // an escaped name: declines
		`{"cöde":{"coding":[{"code":"a"}]},"code":{"a":"é"}}`, // a non-ASCII name: declines
		`{"text":{"div":"<div>\\\" { [ </div>"},"code":{"coding":[{"code":"\\u00e9"}]}}`,
		`[{"code":{}}]`, `"code"`, `null`, `7`,
		`{"code":{"coding":[{"code":"a"}]},"code":null}`,
		`{"date":"2020","date":"2021"}`,
	}
	for _, dir := range []string{"synthea", "hl7-examples"} {
		for _, f := range shareddata.Files(t, dir) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, string(data))
			var b struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
			}
			if json.Unmarshal(data, &b) == nil {
				for _, e := range b.Entry {
					bodies = append(bodies, string(e.Resource))
				}
			}
		}
	}
	scanned := 0
	for i, body := range bodies {
		if !json.Valid([]byte(body)) {
			continue // ResourceOf leaves it to json.Unmarshal
		}
		var want factsDoc
		wantErr := json.Unmarshal([]byte(body), &want)
		var got factsDoc
		if !got.scan([]byte(body)) {
			continue
		}
		scanned++
		if wantErr != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("body %d: scan = %+v; json.Unmarshal = %+v, %v", i, got, want, wantErr)
		}
	}
	if scanned < len(bodies)/2 {
		t.Fatalf("scan took %d bodies of %d", scanned, len(bodies))
	}
	t.Logf("%d of %d bodies scanned", scanned, len(bodies))
}

// TestScanDeclines: scan declines what json.Unmarshal decides otherwise
// than by exact names.
func TestScanDeclines(t *testing.T) {
	for _, body := range []string{
		`{"Code":{}}`, `{"\u0063ode":{}}`, `{"cöde":{}}`, `[]`, `null`, `"x"`,
	} {
		var d factsDoc
		if d.scan([]byte(body)) {
			t.Errorf("scan(%s) = true", body)
		}
	}
}

// FuzzScanMatchesUnmarshal: on any valid JSON scan either declines or
// agrees with json.Unmarshal.
func FuzzScanMatchesUnmarshal(f *testing.F) {
	f.Add([]byte(`{"code":{"coding":[{"code":"a"}]},"date":"2020","x":[1,{"y":"\""}]}`))
	f.Add([]byte(`{"meta":{"security":[]} , "issued" : null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		var got factsDoc
		if !got.scan(body) {
			return
		}
		var want factsDoc
		if err := json.Unmarshal(body, &want); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("scan(%q) = %+v; json.Unmarshal = %+v, %v", body, got, want, err)
		}
	})
}

// FuzzValidJSON holds validJSON to encoding/json's Valid, which it
// replaces on every read: the same verdict on any bytes.
func FuzzValidJSON(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Patient","id":"a"}`, `{"a":1,"a":2}`, `{"a":"\xff"}`, "{\"a\":\"\xed\xa0\x80\"}",
		`{"a":"\ud800"}`, ` [1, 2.5e-3, -0, true, null] `, `{"a":1}{}`, `{"a":1,}`, `[01]`, `"\u00"`,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001), strings.Repeat("[", 9999) + strings.Repeat("]", 9999),
		"{\"a\":\"\t\"}", `1e400`, "\ufeff{}", "", " ", `{"a" : { } }`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", b, got, want)
		}
	})
}
