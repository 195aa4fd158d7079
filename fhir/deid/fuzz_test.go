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
		// Age and birth-date observations, integers and components.
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"30525-0"}]},"valueInteger":95,"component":[{"code":{"coding":[{"system":"http://snomed.info/sct","code":"424144002"}]},"valueQuantity":{"value":1200,"code":"mo"}},{"code":{"coding":[{"system":"http://loinc.org","code":"21112-8"}]},"valueDateTime":"1930-01-15T04:00:00Z","_valueDateTime":{"id":"x"}}]}`,
		// Displays, texts, units, uris and extensions vetted.
		`{"resourceType":"Condition","subject":{"reference":"Patient/1","type":"http://x/y"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003","display":"Dr. Jo 192.168.0.1","version":"v 1"},{"system":"http://x","display":"x"}],"text":"x"},"onsetRange":{"low":{"value":95}},"extension":[{"url":"ombCategory","valueString":"a"},{"url":"http://hl7.org/fhir/us/x","extension":[{"url":"a","valueUri":"http://10.0.0.1"},{"url":"http://x","valueString":"b"}]}],"modifierExtension":[{"url":"http://x","valueBoolean":true}],"meta":{"profile":["http://x"],"lastUpdated":"2020-01-01T00:00:00Z"}}`,
		// Required primitives a rule empties: string, uri, instant.
		`{"resourceType":"MessageHeader","eventCoding":{"code":"x"},"source":{"endpoint":"http://10.0.0.1/x"}}`,
		`{"resourceType":"Provenance","target":[{"reference":"Patient/1/_history/2"}],"recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"display":"Jo"}}],"signature":[{"type":[{"code":"x"}],"when":"2020-01-01T00:00:00Z","who":{"display":"Jo"}}]}`,
		`{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"text":"aunt"},"name":"Aunt Bea","bornPeriod":{"start":"1920","end":"1921-02-03"},"deceasedRange":{"high":{"value":100,"code":"x"}},"ageString":"95"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// The nasty corpus.
	if files, _ := filepath.Glob(filepath.Join("testdata", "nasty", "*.json")); len(files) > 0 {
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
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
		res, err := e.Apply(r.Type, r.Tree, Options{Patient: "Patient/f", Now: testNow, Subject: Subject{BirthDate: "1930", Known: Lexicon(r.Tree)}})
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
