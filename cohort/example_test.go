package cohort_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
)

func Example() {
	ix := cohort.NewIndex()
	for _, r := range []struct{ key, patient, json string }{
		{"r1", "pt-a", `{"resourceType":"Patient","gender":"female","birthDate":"1963"}`},
		{"r2", "pt-a", `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2010-03-01"}`},
		{"r3", "pt-a", `{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"effectiveDateTime":"2010-06-01","valueQuantity":{"value":7.1,"unit":"%","code":"%"}}`},
		{"r4", "pt-b", `{"resourceType":"Patient","gender":"male","extension":[{"url":"https://fhiranchor.org/fhir/StructureDefinition/age-band","valueString":"90+"}]}`},
	} {
		tree, err := fhir.Decode([]byte(r.json))
		if err != nil {
			panic(err)
		}
		t := tree.(map[string]any)
		if err := ix.Put(r.key, r.patient, t["resourceType"].(string), t); err != nil {
			panic(err)
		}
	}
	q, err := cohort.ParseQuery([]byte(`{"criteria": {"all": [
		{"condition": {"code": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "as": "dx"},
		{"observation": {"code": [{"system": "http://loinc.org", "code": "4548-4"}], "value": {"gt": 6.5}, "unit": "%"},
		 "within": {"of": "dx", "from": {"days": 0}, "to": {"days": 365}}}]},
		"breakdown": ["ageBand"]}`))
	if err != nil {
		panic(err)
	}
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	consented := func(patient string) bool { return true }
	fmt.Println(ix.Match(q, at, consented))
	cells, _ := ix.Breakdown(q, at, consented)
	fmt.Println(cells)
	released, _ := json.Marshal(cohort.Privacy{}.Release(q.Fingerprint(), "", ix.Count(q, at, consented)))
	fmt.Println(string(released))
	// Output:
	// [pt-a]
	// [{map[ageBand:60-69] 1}]
	// {"suppressed":true,"threshold":11}
}
