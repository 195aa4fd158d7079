package fhir

import (
	"errors"
	"strings"
	"testing"
)

func TestValidLiteralReference(t *testing.T) {
	for s, want := range map[string]bool{
		"Practitioner/p1": true, "https://idp.example/fhir/Patient/123": true, "Patient/1/_history/2": true,
		"Patient?name=Quill": false, "#p1": false, "urn:uuid:8f2c7a80-0f3b-4c2e-9a6e-2f1d0c3b4a5e": false,
		"Patient/Dr Quill": false, "Quill": false,
	} {
		if got := ValidLiteralReference(s); got != want {
			t.Errorf("ValidLiteralReference(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestValidReference(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"Patient/123", true},
		{"Patient/MRN-7730412", true},
		{"Patient/a.b-c/_history/2", true},
		{"#", true},
		{"#med1", true},
		{"urn:uuid:8f2c7a80-0f3b-4c2e-9a6e-2f1d0c3b4a5e", true},
		{"urn:oid:1.2.840.113619.2.62", true},
		{"https://ehr.example.org/fhir/r4/Patient/123", true},
		{"http://ehr.example.org/Patient/123/_history/4", true},
		{"Patient?identifier=http://hospital.example.org/mrn|7730412", true},
		{"Quillfeather?identifier=1", false},
		{"Patient/1#x", false},
		{"Patient/John Quillfeather 078-05-1120", false},
		{"Patient/a_b", false},
		{"Patient/" + strings.Repeat("a", 65), false},
		{"John Quillfeather", false},
		{"Quillfeather/123", false},
		{"Patient/123/extra", false},
		{"Patient/", false},
		{"#a b", false},
		{"urn:uuid:not-a-uuid", false},
		{"urn:oid:1.02", false},
		{"https://ehr.example.org/Patient/John Smith", false},
		{"https://x/Patient/a_b", false},
		{"Patient?name=John Smith", false},
		{"Patient/1\n", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidReference(tt.in); got != tt.want {
			t.Errorf("ValidReference(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestParseRejectsBadValues: client-chosen strings that would become keys
// or systems must follow their grammar, wherever they sit; the error names
// the element, never the value.
func TestParseRejectsBadValues(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	const obs = `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1-8"}]},`
	tests := []struct {
		name, in, path string
	}{
		{"reference with a name and SSN", obs + `"subject":{"reference":"Patient/John Quillfeather 078-05-1120"}}`, "Observation.subject.reference"},
		{"reference without a type", obs + `"subject":{"reference":"Quillfeather"}}`, "Observation.subject.reference"},
		{"identifier system with a name", `{"resourceType":"Patient","identifier":[{"system":"Dr Quillfeather","value":"1"}]}`, "Patient.identifier[0].system"},
		{"extension url with spaces", `{"resourceType":"Patient","extension":[{"url":"http://x.org/Quillfeather family","valueString":"1"}]}`, "Patient.extension[0].url"},
		{"coding system with spaces", obs + `"category":[{"coding":[{"system":"Quillfeather lab","code":"x"}]}]}`, "Observation.category[0].coding[0].system"},
		{"profile with spaces", `{"resourceType":"Patient","meta":{"profile":["http://x.org/a b"]}}`, "Patient.meta.profile[0]"},
		{"nested in a contained resource", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","partOf":{"reference":"Organization/Acme Steel"}}]}`, "Patient.contained[0].partOf.reference"},
		{"nested in a Bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:Quillfeather x","resource":{"resourceType":"Patient"}}]}`, "Bundle.entry[0].fullUrl"},
		{"extension's valueUri", `{"resourceType":"Patient","extension":[{"url":"http://x.org/e","valueUri":"http://x/a b"}]}`, "Patient.extension[0].valueUri"},
		{"primitive extension's url", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"a b","valueString":"x"}]},"birthDate":"1970-01-01"}`, "Patient.birthDate.extension[0].url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Parse([]byte(tt.in))
			var ves ValidationErrors
			if !errors.As(err, &ves) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want a ValidationErrors", err)
			}
			if ves[0].Path != tt.path {
				t.Errorf("path = %q, want %q", ves[0].Path, tt.path)
			}
			for _, s := range []string{"Quillfeather", "078-05-1120", "Acme", "a b"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q quotes the input", err)
				}
			}
		})
	}
	for _, ok := range []string{
		obs + `"subject":{"reference":"Patient/MRN-7730412"}}`,
		obs + `"subject":{"reference":"urn:uuid:8f2c7a80-0f3b-4c2e-9a6e-2f1d0c3b4a5e"}}`,
		obs + `"subject":{"display":"no reference at all"}}`,
		`{"resourceType":"Patient","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"text","valueString":"White"}]}]}`,
	} {
		if _, err := p.Parse([]byte(ok)); err != nil {
			t.Errorf("Parse(%s) = %v, want ok", ok, err)
		}
	}
}
