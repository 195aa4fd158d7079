package fhir_test

import (
	"fmt"
	"strings"
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
		`{"resourceType":"Patient","active":null}`,
		`{"resourceType":"Patient","active":true,"Active":false}`,
		`{"resourceType":"Patient","Active":"ZZSECRETZZ"}`,
		`{"resourceType":"Patient","BirthDate":"1990-01-01"}`,
		`{"resourceType":"Patient","birthDate":"1990-01-01","BirthDate":"2000-01-01"}`,
		`{"resourceType":"Observation","status":"final","code":null}`,
		`{"resourceType":"Observation","status":"final","code":{}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"Subject":{"reference":"Patient/1"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1"},"Subject":{"reference":"Patient/2"}}`,
		`{"resourceType":"Patient","name":null}`,
		`{"resourceType":"Patient","name":[null]}`,
		`{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"id":"x"}]}]}`,
		`{"resourceType":"Patient","name":[{"given":["a",null]}]}`,
		`{"resourceType":"Patient","_active":{"id":"x"}}`,
		`{"resourceType":"Patient","_Active":{"id":"x"},"active":true}`,
		`{"resourceType":"Patient","id":null}`,
		`{"resourceType":"Patient","meta":null}`,
		`{"resourceType":"Patient","resourceType":"Patient"}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Patient","Active":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","ValueQuantity":1}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"ValueQuantity":{"value":1}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1},"valueString":"ZZSECRETZZ"}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"ZZSECRETZZ"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a\u0000b"}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"ZZSECRETZZ"}}`,
		`{"resourceType":"Patient","extension":[{"url":"ZZSECRETZZ","valueString":"x"}]}`,
		`{"resourceType":"Patient","extension":[{"valueString":"x"}]}`,
		`{"resourceType":"Patient","birthDate":1990}`,
		`{"resourceType":"Patient","resourceType":"Nope"}`,
		`{"resourceType":7}`,
		`{"resourceType":"ZZSECRETZZ","id":"x"}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","contained":[{"resourceType":"ZZSECRETZZ"}]}}]}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","contained":[{"id":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","generalPractitioner":[{"reference":"ZZSECRET ZZ"}]}`,
		`{"resourceType":"Patient","generalPractitioner":[{"reference":"Patient/ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","link":[{"type":"seealso"}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"}}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Medication/1"},"medicationCodeableConcept":{"text":"x"}}}]}`,
		`{"resourceType":"Patient","multipleBirthInteger":99999999999}`,
		`{"resourceType":"Patient","photo":[{"data":"ZZSECRETZZ!"}]}`,
		`{"resourceType":"Patient","communication":[{"language":{"text":"x"},"preferred":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","name":[{"text":"a\u0001ZZSECRETZZ"}]}`,
		`  {"resourceType":"Patient"}  `,
		`{"resourceType":"Patient"} {}`,
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
