package access_test

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/vault"
)

// TestResourceOfMatchesFacts: ResourceOf, which decodes only the elements
// the policy reads, describes every resource of the Synthea set, and odd
// shapes, exactly as Facts of the whole decoded tree does.
func TestResourceOfMatchesFacts(t *testing.T) {
	bodies := [][]byte{
		[]byte(`{"resourceType":"Observation","meta":"odd","code":[{"coding":[]}],"effectiveDateTime":7,"issued":"2020-01-01"}`),
		[]byte(`{"resourceType":"Observation","meta":{"security":[{"code":"PSY"},{"system":"s"},7,{"code":"R","system":3}]},"code":null,"effectivePeriod":{"end":"x"},"date":"2021"}`),
		[]byte(`{"resourceType":"Encounter","type":{"coding":[{"system":"a","code":"b"}]},"type":{"coding":[{"code":"c"}]},"period":{"start":"2019-05"}}`),
		[]byte(`{"resourceType":"Immunization","vaccineCode":{"coding":[{"system":"cvx","code":"140"}]},"occurrenceDateTime":"2014-03-01","meta":{}}`),
	}
	n := 0
	for _, f := range shareddata.Files(t, "synthea") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			bodies = append(bodies, e.Resource)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no Synthea files")
	}
	for i, body := range bodies {
		var tree map[string]any
		if err := json.Unmarshal(body, &tree); err != nil {
			t.Fatal(err)
		}
		typ, _ := tree["resourceType"].(string)
		want := access.Facts(typ, "x", tree)
		got, err := access.ResourceOf(vault.Version{Type: typ, ID: "x", Body: body})
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("body %d (%s): ResourceOf = %+v, %v; Facts = %+v", i, typ, got, err, want)
		}
	}
	t.Logf("%d bodies", len(bodies))
}
