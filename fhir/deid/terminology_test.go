package deid

import "testing"

func TestStandardCode(t *testing.T) {
	tests := []struct {
		system, code string
		want         bool
	}{
		{systemSNOMED, "38341003", true},
		{systemSNOMED, "44054006", true},
		{systemSNOMED, "424144002", true},
		{systemSNOMED, "38341004", false}, // Verhoeff check digit wrong
		{systemSNOMED, "12345", false},    // too short
		{systemSNOMED, "34552-0", false},  // a LOINC code
		{systemLOINC, "8302-2", true},
		{systemLOINC, "30525-0", true},
		{systemLOINC, "2947-0", true},
		{systemLOINC, "8302-3", false},
		{systemLOINC, "8302", false},
		{systemRxNorm, "310798", true},
		{systemRxNorm, "31O798", false},
		{"http://hl7.org/fhir/sid/cvx", "140", true},
		{"http://hl7.org/fhir/sid/icd-10-cm", "E11.9", true},
		{"http://hl7.org/fhir/sid/icd-10", "e11.9", false},
		{"http://hl7.org/fhir/sid/icd-9-cm", "250.00", true},
		{"http://hl7.org/fhir/sid/ndc", "0069-2587-10", true},
		{systemUCUM, "mg/dL", true},
		{systemUCUM, "mg per dL", false},
		{systemCDCREC, "2106-3", true},
		{"urn:ietf:bcp:47", "en-US", true},
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", true},
		{"http://terminology.hl7.org/CodeSystem/", "M", false},
		{"http://hl7.org/fhir/administrative-gender", "female", true},
		{"http://hl7.org/fhir/us/core/CodeSystem/condition-category", "health-concern", true},
		{"http://hl7.org/fhir/sid/us-ssn", "999", false},
		{"http://acme.example/codes", "X1", false},
		{"https://smarthealthit.org/tags", "synthea-5-2019", false},
	}
	for _, tt := range tests {
		if got := standardCode(tt.system, tt.code); got != tt.want {
			t.Errorf("standardCode(%q, %q) = %v, want %v", tt.system, tt.code, got, tt.want)
		}
	}
}

func TestVet(t *testing.T) {
	e := safeHarbor(t)
	tests := []struct{ name, in, want string }{
		{
			name: "display and text",
			in:   `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"},{"system":"http://x.example","code":"d","display":"Diabetes"}],"text":"diabetes   MELLITUS type 2"}}`,
			want: `{"resourceType":"Condition","subject":{"reference":"Patient/` + e.Pseudonym("1") + `"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"},{"system":"http://x.example","code":"d"}],"text":"diabetes   MELLITUS type 2"}}`,
		},
		{
			name: "text repeating a dropped display goes",
			in:   `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"code":{"coding":[{"system":"http://x.example","code":"d","display":"Diabetes"}],"text":"Diabetes"}}`,
			want: `{"resourceType":"Condition","subject":{"reference":"Patient/` + e.Pseudonym("1") + `"},"code":{"coding":[{"system":"http://x.example","code":"d"}]}}`,
		},
		{
			name: "a title before a name",
			in:   `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes, Dr. Okafor"}]}}`,
			want: `{"resourceType":"Condition","subject":{"reference":"Patient/` + e.Pseudonym("1") + `"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]}}`,
		},
		{
			name: "required concept left empty",
			in:   `{"resourceType":"Observation","status":"final","code":{"text":"Told by Jo"}}`,
			want: `{"resourceType":"Observation","status":"final","code":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"masked"}]}}`,
		},
		{
			name: "uris, canonicals, extensions",
			in: `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},
			"meta":{"profile":["http://hl7.org/fhir/StructureDefinition/vitalsigns","https://ehr.example/sd/x"]},"implicitRules":"https://ehr.example/rules",
			"extension":[{"url":"http://synthetichealth.github.io/synthea/x","valueString":"Jo"},{"url":"http://hl7.org/fhir/StructureDefinition/workflow-instantiatesUri","valueUri":"http://10.0.0.1/p"}],
			"modifierExtension":[{"url":"https://ehr.example/mod","valueBoolean":true}],
			"focus":[{"type":"Patient","display":"Jo"},{"reference":"Patient/1","type":"https://ehr.example/Thing"}]}`,
			want: `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},
			"meta":{"profile":["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
			"focus":[{"type":"Patient"},{"reference":"Patient/` + e.Pseudonym("1") + `"}]}`,
		},
		{
			name: "units",
			in:   `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"valueQuantity":{"value":1,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"valueQuantity":{"value":2,"unit":"Jo's cups","code":"{cup}","system":"http://unitsofmeasure.org"}}]}`,
			want: `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"valueQuantity":{"value":1,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"valueQuantity":{"value":2,"code":"{cup}","system":"http://unitsofmeasure.org"}}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := apply(t, e, tt.in, Options{Patient: "Patient/1"})
			if got, want := jsonOf(t, res.Tree), canon(t, tt.want); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// FuzzPersonTitle: the prefilter never hides a title the expression finds.
func FuzzPersonTitle(f *testing.F) {
	for _, s := range []string{"Dr. Okafor", "seen by Mrs Li", "Prof Ng", "Fr. Brown", "Sr. Ana", "Mx Lee", "Ms. J",
		"Body Height", "Drug allergy", "Mr", "x Dr.\tZ", "ÀDr Ÿ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := hasPersonTitle(s), personTitle.MatchString(s); got != want {
			t.Fatalf("hasPersonTitle = %v, personTitle matches: %v", got, want)
		}
	})
}
