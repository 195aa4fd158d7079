package fhir

import (
	"errors"
	"strings"
	"testing"
)

// TestUnknownElementPath: an unknown member is reported at its holder, by a
// fixed phrase; its name is the client's and may be a surname or an MRN.
func TestUnknownElementPath(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in   string
		want string
	}{
		{`{"resourceType":"Patient","quillfeather":"x"}`, "Patient"},
		{`{"resourceType":"Patient","name":[{"family":"x","Quillfeather":"y"}]}`, "Patient.name[0]"},
		{`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1},"bar":1}`, "Observation"},
		{`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","marrowbone":1},"request":{"method":"POST","url":"Patient"}}]}`, "Bundle.entry[0].resource"},
		{`{"resourceType":"Patient","999-12-3456":"x"}`, "Patient"},
	}
	for _, tt := range tests {
		_, err := p.Parse([]byte(tt.in))
		var ves ValidationErrors
		if !errors.As(err, &ves) || ves[0].Path != tt.want || ves[0].Reason != "unknown element" {
			t.Errorf("Parse(%s) = %v, want \"unknown element\" at %s", tt.in, err, tt.want)
			continue
		}
		for _, name := range []string{"quillfeather", "marrowbone", "bar", "999"} {
			if strings.Contains(strings.ToLower(err.Error()), name) {
				t.Errorf("Parse(%s) error %q names the unknown member", tt.in, err)
			}
		}
	}
}
