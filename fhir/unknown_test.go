package fhir

import (
	"errors"
	"testing"
)

func TestUnknownMemberPath(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in   string
		want string
	}{
		{`{"resourceType":"Patient","favouriteColour":"x"}`, "Patient.favouriteColour"},
		{`{"resourceType":"Patient","name":[{"family":"x","nickname":"y"}]}`, "Patient.name[0].nickname"},
		{`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1},"bar":1}`, "Observation.bar"},
		{`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","foo":1},"request":{"method":"POST","url":"Patient"}}]}`, "Bundle.entry[0].resource.foo"},
		// A member name that could be data is not echoed: the path stops at its holder.
		{`{"resourceType":"Patient","999-12-3456":"x"}`, "Patient"},
		{`{"resourceType":"Patient","a9fcc685c7a2":"x"}`, "Patient"},
	}
	for _, tt := range tests {
		_, err := p.Parse([]byte(tt.in))
		var ves ValidationErrors
		if !errors.As(err, &ves) || ves[0].Path != tt.want {
			t.Errorf("Parse(%s) = %v, want an error at %s", tt.in, err, tt.want)
		}
	}
}
