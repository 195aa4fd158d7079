package gateway

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/auditevent/*.json")

// TestAuditEventGolden pins the AuditEvent of each record kind, and the
// Provenance of a version, on a fixed clock: what an auditor's tools parse
// must not change silently.
func TestAuditEventGolden(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
	salt := bytes.Repeat([]byte{7}, 32)
	const (
		patient = "Patient/tok-00112233445566778899aabbccddeeff"
		obs     = "Observation/tok-ffeeddccbbaa99887766554433221100"
		consent = "tok-0123456789abcdef0123456789abcdef"
		rev     = "ab12000000000000000000000000000000000000000000000000000000000000"
	)
	resolved := map[string]string{patient: "Patient/p1", obs: "Observation/o1", "Consent/" + consent: "Consent/c1"}
	leaf := func(seq int64, t anchor.LeafType, rec any) vault.Leaf {
		b, err := json.Marshal(rec)
		if err != nil {
			panic(err)
		}
		return vault.Leaf{Seq: seq, Type: uint8(t), Record: b, Salt: salt, Time: at}
	}
	decision := access.Decision{Kind: access.KindAccessDecision, Time: at.Format(time.RFC3339Nano), Client: "good-health",
		Actor: "Organization/f001", Roles: []string{"doctor"}, Action: "read", Purpose: "TREAT", Patient: patient,
		Resource: obs + "/_history/2", Allow: false, Reasons: []string{"deny: Consent/" + consent + " provision"},
		BasedOn: []policy.ConsentRef{{ID: consent, VersionID: "1"}}, PolicyRevision: rev, PolicyVersion: 1}
	search := decision
	search.Resource, search.Allow, search.Reasons, search.BasedOn, search.Actor = "Observation", true, []string{}, nil, ""
	write := search
	write.Action, write.Resource = "write", ""
	cases := []struct {
		name string
		leaf vault.Leaf
	}{
		{"read-denied", leaf(11, anchor.LeafAccessDecision, decision)},
		{"search", leaf(12, anchor.LeafAccessDecision, search)},
		{"write", leaf(13, anchor.LeafAccessDecision, write)},
		{"consent-event", leaf(14, anchor.LeafConsentEvent, access.ConsentEvent{Kind: access.KindConsentEvent, Event: "created",
			Patient: patient, Consent: "Consent/" + consent + "/_history/1", Status: "active", Commitment: bytes.Repeat([]byte{9}, 32),
			Client: "ehr", Time: at.Format(time.RFC3339Nano)})},
		{"policy-activation", leaf(15, anchor.LeafPolicyActivation, access.PolicyActivation{Kind: access.KindPolicyActivation,
			Version: 2, Revision: rev, Previous: 1, Client: "admin", Time: at.Format(time.RFC3339Nano)})},
		{"erasure", leaf(16, anchor.LeafErasure, access.Erasure{Kind: access.KindErasure, Erased: patient,
			ErasedAt: at.Format(time.RFC3339Nano), Versions: 42, Client: "operator"})},
		{"research-decision", leaf(17, anchor.LeafAccessDecision, access.ResearchDecision{Kind: access.KindResearchDecision,
			Time: at.Format(time.RFC3339Nano), Client: "team-a", Action: "research-query", Purpose: "HRESCH", Query: "q1", Shape: "s1",
			Allow: true, Reasons: []string{}, Permitted: 40, Refused: 2, Released: "r1", PolicyRevision: rev, PolicyVersion: 1})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, ok, err := renderAuditEvent("https://fhir.example", tc.leaf, resolved)
			if err != nil || !ok {
				t.Fatalf("renderAuditEvent: %v, %v", ok, err)
			}
			golden(t, tc.name, ev)
		})
	}
	t.Run("deidentification is no AuditEvent", func(t *testing.T) {
		l := leaf(18, anchor.LeafDeidentification, access.Deidentification{Kind: access.KindDeidentification})
		if _, ok, err := renderAuditEvent("https://fhir.example", l, nil); ok || err != nil {
			t.Fatalf("renderAuditEvent(deidentification) = %v, %v", ok, err)
		}
	})
	t.Run("unresolved references keep the token only", func(t *testing.T) {
		ev, _, err := renderAuditEvent("https://fhir.example", cases[0].leaf, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		for _, id := range []string{"Patient/p1", "Observation/o1", "Consent/c1"} {
			if bytes.Contains(b, []byte(id)) {
				t.Errorf("an AuditEvent without resolved references names %s", id)
			}
		}
	})
	for _, r := range []vault.Record{
		{Type: "Patient", ID: "p1", Version: 1, LastUpdated: at, Commitment: bytes.Repeat([]byte{5}, 32), Client: "ehr",
			Leaf: vault.Leaf{Seq: 3}},
		{Type: "Patient", ID: "p1", Version: 2, LastUpdated: at, Deleted: true, Commitment: bytes.Repeat([]byte{6}, 32),
			Leaf: vault.Leaf{Seq: 9}},
	} {
		t.Run("provenance-"+r.Leaf.Ref+string(rune('0'+r.Version)), func(t *testing.T) {
			golden(t, "provenance-v"+string(rune('0'+r.Version)), renderProvenance("https://fhir.example", r))
		})
	}
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "auditevent", name+".json")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n%s", name, path, got)
	}
}
