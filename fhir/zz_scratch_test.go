package fhir_test

import (
	"fmt"
	"strings"
	"time"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
)

func TestZZScratch(t *testing.T) {
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	deep := `{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, 200) + strings.Repeat(`]}`, 200) + `]}`
	cases := []string{
		`{"resourceType":"ZZ.SECRET"}`,
		`{"resourceType":"ZZ\"SE.CRET"}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"ZZ.SE\"C\\RET\u0001"}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"ZZ.SECRET"}}]}`,
		`{"resourceType":"Patient","name":[{"given":["a"],"_given":[null,{"id":"ZZSECRETZZ"}]}]}`,
		`{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationReference":{"reference":"Patient/ZZSECRETZZ"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueDateTime":"ZZSECRETZZ"}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"_valueString":{"extension":[{"url":"http://x","valueString":"\u0002"}]}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"extension":[{"url":"http://x","valueReference":{"reference":"Patient/\u0003"}}]}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a\u0003"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"\u0003"}}`,
		`{"resourceType":"Patient","name":[1]}`,
		`{"resourceType":"Patient","name":["ZZSECRETZZ"]}`,
		`{"resourceType":"Patient","birthDate":"1990-01-01","_birthDate":{"extension":[{"url":"http://x","valueCode":"a b\u0004"}]}}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"response":{"status":"200","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"ZZSECRETZZ","code":"x"}]}}}]}`,
		`{"resourceType":"Parameters","parameter":[{"name":"x","resource":{"resourceType":"Patient","active":"ZZSECRETZZ"}}]}`,
		`{"resourceType":"Parameters","parameter":[{"name":"x","resource":{"resourceType":"Observation","status":"final"}}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueCodeableConcept":{"coding":[{"code":"a\u0005"}]}}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valuePositiveInt":0}]}`,
		`{"resourceType":"Patient","multipleBirthInteger":-1}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueSampledData":{"origin":{"value":1},"period":1,"dimensions":0,"data":"1 2"}}`,
		`{"resourceType":"Patient","meta":{"versionId":"a b"}}`,
		`{"resourceType":"Patient","meta":{"lastUpdated":"2020"}}`,
		`{"resourceType":"Patient","contact":[{"gender":"x"}]}`,
		`{"resourceType":"Patient","Contact":[{"Gender":"x"}]}`,
		deep,
	}
	for _, c := range cases {
		_, err := p.Parse([]byte(c))
		if len(c) > 200 {
			c = c[:200]
		}
		fmt.Printf("IN  %s\n", c)
		if err == nil {
			fmt.Println("   OK")
			continue
		}
		fmt.Printf("ERR %v\n", err)
		if ves, ok := err.(fhir.ValidationErrors); ok {
			for _, ve := range ves {
				fmt.Printf("    path=%q reason=%q err=%v\n", ve.Path, ve.Reason, ve.Err)
			}
		}
	}
}

func TestZZExample(t *testing.T) {
	p, _ := fhir.NewParser()
	in := `{
  "resourceType": "Observation",
  "status": "final",
  "code": {"text": "Body weight"},
  "subject": {"reference": "urn:uuid:7f9c2b1e-3c4d-4e5f-8a6b-0c1d2e3f4a5b"},
  "valueQuantity": {"value": 72.50, "unit": "kg"}
}`
	r, err := p.Parse([]byte(in))
	if err != nil { t.Fatal(err) }
	fhir.RewriteReferences(r.Tree, "Observation", func(path, ref string) (string, error) { return "Patient/pat-1", nil })
	r.SetVersion("obs-1", 1, time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.UTC))
	c, _ := fhir.Canonical(r.Tree)
	fmt.Printf("%s\n", c)
	c2, _ := fhir.Canonical(fhir.Tombstone("Observation", "obs-1", 2, time.Date(2025, 1, 3, 0, 0, 0, 0, time.FixedZone("x", 3600))))
	fmt.Printf("%s\n", c2)
}
