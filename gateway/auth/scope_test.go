package auth_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

var allAccess = []auth.Access{auth.Create, auth.Read, auth.Update, auth.Delete, auth.Search}

// grantsOn returns which accesses scopes allow on typ, as letters in
// "cruds" order, e.g. "rs".
func grantsOn(s auth.Scopes, typ string) string {
	var b strings.Builder
	for i, a := range allAccess {
		if s.Allows(typ, a) {
			b.WriteByte("cruds"[i])
		}
	}
	return b.String()
}

func TestScopesAllows(t *testing.T) {
	tests := []struct {
		scopes string
		typ    string
		want   string // accesses allowed on typ, as "cruds" letters
	}{
		// SMART v1.
		{"system/Patient.read", "Patient", "rs"},
		{"system/Patient.write", "Patient", "cud"},
		{"system/Patient.*", "Patient", "cruds"},
		{"system/*.read", "Observation", "rs"},
		{"system/*.write", "Encounter", "cud"},
		{"system/*.*", "Consent", "cruds"},
		{"system/Patient.read system/Patient.write", "Patient", "cruds"},
		{"system/Patient.read", "Observation", ""},
		// SMART v2.
		{"system/Patient.cruds", "Patient", "cruds"},
		{"system/Patient.rs", "Patient", "rs"},
		{"system/Patient.cud", "Patient", "cud"},
		{"system/Patient.c", "Patient", "c"},
		{"system/Patient.r", "Patient", "r"},
		{"system/Patient.u", "Patient", "u"},
		{"system/Patient.d", "Patient", "d"},
		{"system/Patient.s", "Patient", "s"},
		{"system/Patient.cs", "Patient", "cs"},
		{"system/Patient.rd", "Patient", "rd"},
		{"system/*.rs", "MedicationRequest", "rs"},
		{"system/*.cruds", "Bundle", "cruds"},
		{"system/Patient.r system/Patient.s", "Patient", "rs"},
		{"system/Patient.rs system/*.c", "Patient", "crs"},
		{"system/Patient.rs system/*.c", "Observation", "c"},
		// v2 letters out of order, repeated or unknown grant nothing.
		{"system/Patient.sr", "Patient", ""},
		{"system/Patient.rr", "Patient", ""},
		{"system/Patient.scrud", "Patient", ""},
		{"system/Patient.crudsx", "Patient", ""},
		{"system/Patient.x", "Patient", ""},
		{"system/Patient.R", "Patient", ""},
		{"system/Patient.READ", "Patient", ""},
		{"system/Patient.readwrite", "Patient", ""},
		// Query suffixes grant nothing (fail closed), v2 or not.
		{"system/Observation.rs?category=laboratory", "Observation", ""},
		{"system/Observation.rs?", "Observation", ""},
		{"system/*.cruds?_security=R", "Observation", ""},
		{"system/Observation.read?category=laboratory", "Observation", ""},
		{"system/Observation.rs?category=laboratory system/Observation.c", "Observation", "c"},
		// user/ and patient/ scopes are parsed but grant nothing yet.
		{"user/Patient.read", "Patient", ""},
		{"user/*.cruds", "Patient", ""},
		{"patient/Observation.rs", "Observation", ""},
		{"patient/*.*", "Observation", ""},
		{"launch/patient", "Patient", ""},
		// Malformed or foreign scopes.
		{"", "Patient", ""},
		{"system/Patient", "Patient", ""},
		{"system/Patient.", "Patient", ""},
		{"system/.read", "Patient", ""},
		{"system/patient.read", "Patient", ""},
		{"system/patient.read", "patient", ""},
		{"System/Patient.read", "Patient", ""},
		{"system//Patient.read", "Patient", ""},
		{"system/Pa-tient.read", "Pa-tient", ""},
		{"system/Patient.read.extra", "Patient", ""},
		{"system/Patient/x.read", "Patient", ""},
		{"/Patient.read", "Patient", ""},
		{"Patient.read", "Patient", ""},
		{"openid fhirUser offline_access", "Patient", ""},
		{"fhiranchor/policy.admin", "Patient", ""},
		{"system/Patient.read\x00", "Patient", ""},
		// Whitespace handling.
		{"  system/Patient.read \t system/Patient.c\n", "Patient", "crs"},
		// Resource type argument.
		{"system/*.cruds", "", ""},
		{"system/*.cruds", "*", ""},
		{"system/*.cruds", "patient", ""},
		{"system/*.cruds", "Patient/1", ""},
		{"system/*.cruds", "Pat ient", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q on %q", tt.scopes, tt.typ), func(t *testing.T) {
			s := auth.ParseScopes(tt.scopes)
			if got := grantsOn(s, tt.typ); got != tt.want {
				t.Errorf("ParseScopes(%q) allows %q on %q, want %q", tt.scopes, got, tt.typ, tt.want)
			}
		})
	}
}

func TestScopesAllowsInvalidAccess(t *testing.T) {
	s := auth.ParseScopes("system/*.*")
	for _, a := range []auth.Access{0, auth.Search + 1, 255} {
		if s.Allows("Patient", a) {
			t.Errorf("Allows(Patient, %d) = true, want false", a)
		}
	}
	if (auth.Scopes{}).Allows("Patient", auth.Read) {
		t.Error("zero Scopes allows Patient read")
	}
}

func TestAccessString(t *testing.T) {
	tests := []struct {
		a    auth.Access
		want string
	}{
		{auth.Create, "create"},
		{auth.Read, "read"},
		{auth.Update, "update"},
		{auth.Delete, "delete"},
		{auth.Search, "search"},
		{0, "invalid"},
		{99, "invalid"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Access(%d).String() = %q, want %q", uint8(tt.a), got, tt.want)
		}
	}
}

func TestScopesHasAndString(t *testing.T) {
	s := auth.ParseScopes("  fhiranchor/policy.admin system/Patient.rs openid system/Patient.rs \t bad\"quote user/*.read é\n")
	if got, want := s.String(), "fhiranchor/policy.admin system/Patient.rs openid user/*.read"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	tests := []struct {
		scope string
		want  bool
	}{
		{"fhiranchor/policy.admin", true},
		{"system/Patient.rs", true},
		{"openid", true},
		{"user/*.read", true}, // parsed and kept, even though it grants nothing
		{"fhiranchor/policy", false},
		{"FHIRANCHOR/POLICY.ADMIN", false},
		{"system/Patient.r", false},
		{"system/*.rs", false}, // Has compares exactly; wildcards are for Allows
		{"bad\"quote", false},
		{"é", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := s.Has(tt.scope); got != tt.want {
			t.Errorf("Has(%q) = %v, want %v", tt.scope, got, tt.want)
		}
	}
	if got := (auth.Scopes{}).String(); got != "" {
		t.Errorf("zero Scopes String() = %q, want empty", got)
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"system/Patient.rs", "system/*.cruds?x=1 user/Patient.read", "a b\tc", "system/Patient.sr"} {
		f.Add(s, "Patient")
	}
	f.Fuzz(func(t *testing.T, in, typ string) {
		s := auth.ParseScopes(in)
		again := auth.ParseScopes(s.String())
		if again.String() != s.String() {
			t.Fatalf("String() does not round-trip: %q then %q", s.String(), again.String())
		}
		for _, a := range allAccess {
			if s.Allows(typ, a) != again.Allows(typ, a) {
				t.Fatalf("Allows(%q, %v) changed after round trip of %q", typ, a, in)
			}
			if s.Allows(typ, a) && !strings.Contains(in, "system/") {
				t.Fatalf("%q grants %v on %q without a system/ scope", in, a, typ)
			}
		}
	})
}
