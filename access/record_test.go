package access_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/policy"
)

var update = flag.Bool("update", false, "rewrite the golden record files")

// goldenRecords holds one record of every kind, every field set. A record is
// anchored forever: its JSON is what auditors and verifiers read back years
// later, so a change of shape must be deliberate (go test -update, and a
// note in docs/anchoring.md), never a side effect of a refactor.
var goldenRecords = map[access.Kind]any{
	access.KindAccessDecision: access.Decision{
		Kind: access.KindAccessDecision, Time: "2026-12-06T10:00:00.123456Z", Client: "ehr-1",
		Actor: "PractitionerRole/tok-00112233445566778899aabbccddeeff", Organization: "Organization/org-a", Roles: []string{"physician"},
		Action: "read", Purpose: "TREAT", Patient: "Patient/tok-0123456789abcdef0123456789abcdef",
		Resource: "Observation/tok-fedcba9876543210fedcba9876543210/_history/2", Allow: true,
		Reasons:        []string{"break-the-glass: Consent/tok-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa denies, emergency treatment overrides"},
		Obligations:    []policy.Obligation{{Type: "redact", SecurityLabels: []policy.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "PSY"}}}},
		BasedOn:        []policy.ConsentRef{{ID: "tok-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", VersionID: "3"}},
		PolicyRevision: "5d41402abc4b2a76b9719d911017c592", PolicyVersion: 4, BreakGlass: true,
	},
	access.KindResearchDecision: access.ResearchDecision{
		Kind: access.KindResearchDecision, Time: "2026-12-06T10:00:01Z", Client: "research-1", Actor: "Practitioner/r1",
		Organization: "Organization/univ", Roles: []string{"researcher"}, Action: "export", Purpose: "HRESCH",
		Query: "q-0123", Shape: "s-4567", Criteria: "sealed-criteria", Breakdown: []string{"gender"}, Allow: true,
		Reasons: []string{}, Permitted: 40, Refused: 2, Released: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Answer:         json.RawMessage(`{"count":40}`),
		Files:          []access.ExportFile{{Type: "Patient", Count: 40, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},
		PolicyRevision: "5d41402abc4b2a76b9719d911017c592", PolicyVersion: 4,
	},
	access.KindConsentEvent: access.ConsentEvent{
		Kind: access.KindConsentEvent, Event: "inactivated", Patient: "Patient/tok-0123456789abcdef0123456789abcdef",
		Consent: "Consent/tok-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/_history/3", Status: "inactive",
		Commitment: anchor.Hex(bytes.Repeat([]byte{0xab}, 32)), Client: "ehr-1", Time: "2026-12-06T10:00:02Z",
	},
	access.KindPolicyActivation: access.PolicyActivation{
		Kind: access.KindPolicyActivation, Version: 5, Revision: "5d41402abc4b2a76b9719d911017c592", Previous: 4,
		Rollback: true, Client: "admin-1", Time: "2026-12-06T10:00:03Z",
	},
	access.KindErasure: access.Erasure{
		Kind: access.KindErasure, Erased: "Patient/tok-0123456789abcdef0123456789abcdef", ErasedAt: "2026-12-06T10:00:04.000001Z",
		Versions: 17, Client: "admin-1",
	},
	access.KindDeidentification: access.Deidentification{
		Kind: access.KindDeidentification, Time: "2026-12-06T10:00:05Z", Resource: "Observation/tok-fedcba9876543210fedcba9876543210/_history/2",
		Source: "abababababababababababababababababababababababababababababababab", Output: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		Profile: "safe-harbor", ProfileRevision: "r1", Labels: []string{"90+"},
		Rules:   []access.DeidRule{{Rule: "references", Method: "cryptoHash", Paths: []string{"encounter.reference", "subject.reference"}}},
		Changes: []deid.Change{{Path: "Observation.subject", Rule: "ids", Method: "pseudonymize"}},
	},
}

func TestRecordsMatchGoldenFiles(t *testing.T) {
	for kind, rec := range goldenRecords {
		t.Run(string(kind), func(t *testing.T) {
			got, err := json.MarshalIndent(rec, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "records", string(kind)+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("no golden file for %s (go test ./access -update writes it): %v", kind, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s record changed shape:\ngot  %s\nwant %s", kind, got, want)
			}
			// Every field is set in the golden record, so a field added to
			// the type without a golden value shows up as a zero here.
			checkAllFieldsSet(t, reflect.ValueOf(rec))
			// And the kind names its leaf type.
			if kind.LeafType() == 0 || !strings.Contains(string(got), `"kind": "`+string(kind)+`"`) {
				t.Errorf("%s: no leaf type, or the record does not carry its kind", kind)
			}
		})
	}
}

func checkAllFieldsSet(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("golden %s leaves field %s unset", v.Type().Name(), v.Type().Field(i).Name)
		}
	}
}

// TestEveryKindHasAGoldenRecord: a new kind needs its golden file too.
func TestEveryKindHasAGoldenRecord(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "records", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(goldenRecords) {
		t.Errorf("%d golden files for %d kinds", len(files), len(goldenRecords))
	}
	types := map[anchor.LeafType]bool{}
	for kind := range goldenRecords {
		types[kind.LeafType()] = true
	}
	for _, lt := range []anchor.LeafType{anchor.LeafConsentEvent, anchor.LeafPolicyActivation, anchor.LeafAccessDecision, anchor.LeafErasure, anchor.LeafDeidentification} {
		if !types[lt] {
			t.Errorf("no record kind for leaf type %s", lt)
		}
	}
}

func TestDecodeIsStrict(t *testing.T) {
	for kind, rec := range goldenRecords {
		b, _ := json.Marshal(rec)
		got, _, err := access.Decode(b)
		if err != nil || got != kind {
			t.Errorf("%s: decoded as %q, %v", kind, got, err)
		}
		extra := append(b[:len(b)-1:len(b)-1], []byte(`,"patientName":"x"}`)...)
		if _, _, err := access.Decode(extra); err == nil {
			t.Errorf("%s with a field no kind has: decoded", kind)
		}
	}
	for _, legacy := range []struct {
		record string
		want   access.Kind
	}{
		{`{"erased":"Patient/tok-00","erasedAt":"2026-01-01T00:00:00Z","versions":3}`, access.KindErasure},
		{`{"kind":"access-decision","time":"t","client":"c","action":"export","query":"q","shape":"s","allow":true,"reasons":[],"permitted":1,"refused":0,"policyVersion":1}`, access.KindResearchDecision},
		// A de-identification record as written before Rules: one entry per change.
		{`{"kind":"deidentification","time":"t","resource":"r","source":"s","output":"o","profile":"p","profileRevision":"v","labels":[],` +
			`"changes":[{"rule":"ids","path":"Observation.id","method":"cryptoHash"}]}`, access.KindDeidentification},
	} {
		if got, _, err := access.Decode([]byte(legacy.record)); err != nil || got != legacy.want {
			t.Errorf("legacy %s: %q, %v", legacy.record, got, err)
		}
	}
	if _, _, err := access.Decode([]byte(`{"kind":"mystery"}`)); err == nil {
		t.Error("unknown kind decoded")
	}
}

// TestDeidRules: the record names each rule and method once, with the
// paths it changed relative to the resource, whatever order the changes
// came in; and it loses no change.
func TestDeidRules(t *testing.T) {
	changes := []deid.Change{
		{Rule: "references", Path: "Claim.patient.reference", Method: "cryptoHash"},
		{Rule: "date-times", Path: "Claim.created", Method: "dateShift"},
		{Rule: "ids", Path: "Claim.id", Method: "cryptoHash"},
		{Rule: "references", Path: "Claim.item[0].encounter[0].reference", Method: "cryptoHash"},
		{Rule: "(required)", Path: "Claim.insurance[0].coverage", Method: "substitute"},
		{Rule: "free-text", Path: "Claim.insurance[0].coverage.display", Method: "redact"},
		{Rule: "free-text", Path: "Claim.insurance[0].coverage.display", Method: "clean"},
		{Rule: "whole", Path: "Claim", Method: "redact"},
		// A path that only starts like the type keeps its first segment.
		{Rule: "odd", Path: "Claimant.x", Method: "redact"},
	}
	want := []access.DeidRule{
		{Rule: "(required)", Method: "substitute", Paths: []string{"insurance[0].coverage"}},
		{Rule: "date-times", Method: "dateShift", Paths: []string{"created"}},
		{Rule: "free-text", Method: "clean", Paths: []string{"insurance[0].coverage.display"}},
		{Rule: "free-text", Method: "redact", Paths: []string{"insurance[0].coverage.display"}},
		{Rule: "ids", Method: "cryptoHash", Paths: []string{"id"}},
		{Rule: "odd", Method: "redact", Paths: []string{"Claimant.x"}},
		{Rule: "references", Method: "cryptoHash", Paths: []string{"item[0].encounter[0].reference", "patient.reference"}},
		{Rule: "whole", Method: "redact", Paths: []string{""}},
	}
	for range 5 {
		rand.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
		if diff := cmp.Diff(want, access.DeidRules("Claim", changes)); diff != "" {
			t.Fatalf("DeidRules (-want +got):\n%s", diff)
		}
	}
	if got := access.DeidRules("Claim", nil); got != nil {
		t.Errorf("DeidRules of no changes = %v, want nil (the record leaves rules out)", got)
	}
}
