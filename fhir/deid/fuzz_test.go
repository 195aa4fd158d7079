package deid

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
)

func FuzzParseConfig(f *testing.F) {
	for _, name := range ProfileNames() {
		data, err := profileFS.ReadFile("profiles/" + name + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`rules: [{id: a, type: HumanName, method: substitute, replaceWith: {text: x}}]`))
	f.Add([]byte(`{"rules":[{"id":"p","path":"Quantity.value","method":"perturb","span":1,"roundTo":2}]}`))
	f.Add([]byte(`rules: [{id: a, path: Patient.contact.name, method: redact}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		if _, err := New(cfg, testKeys()); err != nil {
			t.Fatalf("a config ParseConfig accepts fails New: %v", err)
		}
	})
}

func FuzzApply(f *testing.F) {
	seeds := []string{
		`{"resourceType":"Patient","id":"p","name":[{"family":"Doe","given":["A",null],"_given":[null,{"extension":[{"url":"http://x","valueString":"y"}]}]}],"birthDate":"1920-01-01","_birthDate":{"id":"b"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"Jo 555-123-4567"},"valueQuantity":{"value":1.50},"note":[{"text":"x"}],"subject":{"reference":"urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da9"}}`,
		`{"resourceType":"Claim","status":"active","type":{"coding":[{"code":"x"}]},"use":"claim","patient":{"reference":"Patient/1"},"created":"2020-01-01","provider":{"display":"P"},"priority":{"coding":[{"code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"display":"private"}}],"contained":[{"resourceType":"Coverage","id":"c","status":"active","beneficiary":{"reference":"Patient/1"},"payor":[{"display":"private"}]}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da9","resource":{"resourceType":"Patient","address":[{"postalCode":"0"}]}}]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// The HL7 examples are good seeds too, when present.
	if files, _ := filepath.Glob(filepath.Join(examplesDir, "*.json")); len(files) > 0 {
		for _, file := range files[:min(len(files), 12)] {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	p, err := fhir.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	e, err := New(SafeHarbor(), testKeys())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := p.Parse(data)
		if err != nil {
			return
		}
		res, err := e.Apply(r.Type, r.Tree, Options{Patient: "Patient/f", Now: testNow})
		if err != nil {
			t.Fatalf("Apply of a valid resource: %v", err)
		}
		out, err := fhir.Canonical(res.Tree)
		if err != nil {
			t.Fatalf("output has no canonical form: %v", err)
		}
		if _, err := p.Parse(out); err != nil {
			t.Fatalf("output is not valid FHIR: %v\n%s", err, out)
		}
	})
}
