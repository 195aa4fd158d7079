package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/vault"
)

// TestEveryRecordIsOfOneKind drives every path that anchors a record (a
// policy activation at first start, writes with their research copies and
// decisions, a consent event, a read, a refused write, a cohort count, an
// erasure) and reads every record back from the vault: each must decode
// strictly as the type its kind names (no field that type lacks) and sit
// under its kind's leaf type. The probe found two different
// "access-decision" shapes and an erasure record with no kind.
func TestEveryRecordIsOfOneKind(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient","birthDate":"1970-01-01","gender":"female"}`)
	obs := created(t, g, ehr, "Observation", obsJSON("", patient))
	created(t, g, ehr, "Consent", `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},`+
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/`+patient+`"},`+
		`"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT"}]}}`)
	if r := g.Do(t, "GET", "/Observation/"+obs, nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("read: %d %s", r.Status, r.Body)
	}
	bound := g.TokenFor(t, auth.Claims{ClientID: "other-ehr", Organization: "Organization/other", PurposeOfUse: "TREAT",
		Scopes: []string{"system/*.write"}, TTL: time.Hour})
	if r := g.Do(t, "PUT", "/Patient/x", []byte(patientJSON("x", "Organization/acme")), "Authorization", "Bearer "+ehr); r.Status != http.StatusCreated {
		t.Fatalf("acme's patient: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, "PUT", "/Patient/x", []byte(patientJSON("x", "")), "Authorization", "Bearer "+bound); r.Status != http.StatusForbidden {
		t.Fatalf("refused write: %d %s", r.Status, r.Body)
	}
	if r := g.DoRoot(t, http.MethodPost, "/v1/cohorts:count", []byte(`{"criteria":{"gender":"female"}}`), researcher(t, g, "lab")...); r.Status != http.StatusOK {
		t.Fatalf("cohort count: %d %s", r.Status, r.Body)
	}
	admin := g.Token(t, gateway.AdminScope)
	if r := g.DoRoot(t, http.MethodPost, "/v1/patients/"+patient+":erase", nil, "Authorization", "Bearer "+admin); r.Status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.Status, r.Body)
	}

	seen := map[access.Kind]int{}
	ls, err := g.Vault.Store().FindLeaves(context.Background(), vault.LeafFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		kind, _, err := access.Decode(l.Record)
		if err != nil {
			t.Errorf("leaf %d: %v: %s", l.Seq-1, err, l.Record)
			continue
		}
		if kind.LeafType() != anchor.LeafType(l.Type) {
			t.Errorf("leaf %d: a %s record under leaf type %s", l.Seq-1, kind, anchor.LeafType(l.Type))
		}
		seen[kind]++
	}
	for _, k := range []access.Kind{access.KindAccessDecision, access.KindResearchDecision, access.KindConsentEvent,
		access.KindPolicyActivation, access.KindErasure, access.KindDeidentification} {
		if seen[k] == 0 {
			t.Errorf("no %s record was made: the test does not cover that path", k)
		}
	}
}
