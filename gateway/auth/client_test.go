package auth

import (
	"slices"
	"testing"
)

func TestClientGrant(t *testing.T) {
	c := Client{Scopes: []string{"system/*.rs", "system/Observation.cruds", "system/Encounter.read", "fhiranchor/audit"}}
	tests := []struct {
		requested []string
		want      []string
	}{
		{[]string{"system/Patient.rs", "system/Patient.r", "system/*.s"}, []string{"system/Patient.rs", "system/Patient.r", "system/*.s"}},
		{[]string{"system/Patient.cruds", "system/*.cruds"}, nil},
		{[]string{"system/Observation.cud", "system/Encounter.rs", "system/Encounter.write"}, []string{"system/Observation.cud", "system/Encounter.rs"}},
		{[]string{"fhiranchor/audit", "fhiranchor/admin", "patient/*.rs", "system/Patient.rs?gender=male"}, []string{"fhiranchor/audit"}},
		{[]string{"system/Patient.rs", "system/Patient.rs"}, []string{"system/Patient.rs"}},
	}
	for _, tt := range tests {
		if got := c.grant(tt.requested); !slices.Equal(got, tt.want) {
			t.Errorf("grant(%v) = %v, want %v", tt.requested, got, tt.want)
		}
	}
}
