package deid

import (
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/google/go-cmp/cmp"
)

func TestScrub(t *testing.T) {
	m := newMatcher([]string{"John Smith", "John", "Smith", "Jo Li", "742 Evergreen Terrace", "Quahog Falls", "MRN-7734", "Zoë Ångström", "Ångström", "Jo"})
	tests := []struct{ in, want string }{
		{"Smith, John called", "[X] called"},
		{"JOHN SMITH and john", "[X] and [X]"},
		{"Johnson and Smithers stay", "Johnson and Smithers stay"},
		{"Li, Jo and Jo alone", "[X] and Jo alone"},
		{"lives at 742 evergreen terrace, Quahog Falls", "lives at [X], [X]"},
		{"id mrn-7734 here", "id [X] here"},
		{"ZOË ÅNGSTRÖM visited", "[X] visited"},
		{"mail jo@example.org or http://x.example/a?b=1", "mail [X] or [X]"},
		{"see www.acme.com and portal.acme-hospital.health/p", "see [X] and [X]"},
		{"host 192.168.1.20 and fe80::1ff:fe23:4567:890a", "host [X] and [X]"},
		{"on 2020-01-02, 3/4/2021, March 3rd, 2020 and 4 Jan 1999", "on [X], [X], [X] and [X]"},
		{"Dec 2019 and may 5", "[X] and [X]"},
		{"ssn 999-12-3456 phone (617) 555-0199 or +1 617.555.0199", "ssn [X] phone [X] or [X]"},
		{"acct 1234567 but 1234 stays", "acct [X] but 1234 stays"},
		{"aged 95, 102 years old, 93 y/o; 89 years stays", "[X], [X], [X]; 89 years stays"},
		{"Hemoglobin [Mass/volume] in Blood", "Hemoglobin [Mass/volume] in Blood"},
		{"Bilirubin.total [Mass/volume] in Serum or Plasma", "Bilirubin.total [Mass/volume] in Serum or Plasma"},
		{"Glomerular filtration rate/1.73 sq M.predicted", "Glomerular filtration rate/1.73 sq M.predicted"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := scrub(tt.in, "[X]", m); got != tt.want {
			t.Errorf("scrub(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLexicon(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{
			name: "patient, contact, contained",
			in: `{"resourceType":"Patient","name":[{"prefix":["Dr."],"given":["Jo","Anne-Marie"],"family":"O'Brien"}],
			"address":[{"line":["1 Main St"],"city":"Springfield","district":"Hampden","state":"MA","postalCode":"01101"}],
			"telecom":[{"value":"555-0100"}],"identifier":[{"value":"MRN1"}],
			"contact":[{"name":{"given":["Bea"]},"telecom":[{"value":"bea@x.org"}]}],
			"generalPractitioner":[{"reference":"Practitioner/1","display":"Dr. Okafor"},{"reference":"Observation/2","display":"Sodium"}],
			"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"Vanderhoeven"}],
			"contained":[{"resourceType":"Organization","id":"o","name":"Acme Clinic"}]}`,
			want: []string{"01101", "1 Main St", "555-0100", "Acme Clinic", "Anne", "Anne-Marie", "Bea", "Brien", "Dr. Okafor", "Hampden", "Jo", "Jo Anne-Marie O'Brien", "MRN1", "Marie", "O'Brien", "Springfield", "Vanderhoeven", "bea@x.org"},
		},
		{
			name: "family member history without relationship words",
			in:   `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"text":"aunt"},"name":"Aunt Philippa Quarrington"}`,
			want: []string{"Philippa", "Philippa Quarrington", "Quarrington"},
		},
		{
			name: "result displays are not people",
			in:   `{"resourceType":"DiagnosticReport","status":"final","code":{"text":"x"},"result":[{"reference":"urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da9","display":"Sodium"}],"performer":[{"reference":"urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da8","display":"Dr. Okafor"}]}`,
			want: []string{"Dr. Okafor"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := mustDecode(t, tt.in)
			if diff := cmp.Diff(tt.want, Lexicon(tree)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSubjectKnown checks that Options.Subject.Known reaches clean and the
// display checks: a name the resource does not hold is removed.
func TestSubjectKnown(t *testing.T) {
	e := engineFor(t, `rules:
- {id: d, path: Coding.display, method: vet}
- {id: c, path: CodeableConcept.text, method: clean}
`)
	in := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003","display":"Hypertension per Maribel"}],"text":"Told by Quintanilla, Maribel"}}`
	res := apply(t, e, in, Options{})
	want := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003","display":"Hypertension per Maribel"}],"text":"Told by Quintanilla, Maribel"}}`
	if diff := cmp.Diff(canon(t, want), jsonOf(t, res.Tree)); diff != "" {
		t.Errorf("without Known (-want +got):\n%s", diff)
	}
	res = apply(t, e, in, Options{Subject: Subject{Known: []string{"Maribel Quintanilla", "Maribel", "Quintanilla"}}})
	want = `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003"}],"text":"Told by [REDACTED]"}}`
	if diff := cmp.Diff(canon(t, want), jsonOf(t, res.Tree)); diff != "" {
		t.Errorf("with Known (-want +got):\n%s", diff)
	}
}

func mustDecode(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := fhir.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}
