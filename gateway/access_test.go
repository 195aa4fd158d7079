package gateway_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/policy"
)

// created POSTs a resource and returns its id.
func created(t *testing.T, g *testonly.Gateway, tok, typ, body string) string {
	t.Helper()
	r := g.Do(t, "POST", "/"+typ, []byte(body), "Authorization", "Bearer "+tok)
	if r.Status != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", typ, r.Status, r.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m["id"].(string)
}

// sendJSON sends a /v1 request with a JSON body and decodes the answer.
func sendJSON(t *testing.T, g *testonly.Gateway, tok, method, path string, in, out any) (int, []byte) {
	t.Helper()
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			t.Fatal(err)
		}
	}
	r := g.DoRoot(t, method, path, body, "Authorization", "Bearer "+tok)
	if out != nil && r.Status < 300 {
		if err := json.Unmarshal(r.Body, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, r.Body)
		}
	}
	return r.Status, r.Body
}

type recordEntry struct {
	LeafIndex uint64            `json:"leafIndex"`
	Receipt   string            `json:"receipt"`
	Record    json.RawMessage   `json:"record"`
	Salt      string            `json:"salt"`
	Resolved  map[string]string `json:"resolved"`
}

type decisionDoc struct {
	Client   string   `json:"client"`
	Actor    string   `json:"actor"`
	Action   string   `json:"action"`
	Purpose  string   `json:"purpose"`
	Patient  string   `json:"patient"`
	Resource string   `json:"resource"`
	Allow    bool     `json:"allow"`
	Reasons  []string `json:"reasons"`
	BasedOn  []struct {
		ID, VersionID string
	} `json:"basedOn"`
	PolicyRevision string `json:"policyRevision"`
	PolicyVersion  int64  `json:"policyVersion"`
}

// verifyRecord waits for a record leaf's receipt and checks it, and its
// content, the way an auditor with `fhiranchor verify` would.
func verifyRecord(t *testing.T, g *testonly.Gateway, tok string, e recordEntry) {
	t.Helper()
	rc := waitReceipt(t, g, tok, g.Root+e.Receipt)
	if err := anchor.VerifyReceipt(rc); err != nil {
		t.Fatalf("receipt of leaf %d: %v", e.LeafIndex, err)
	}
	salt, err := hex.DecodeString(e.Salt)
	if err != nil {
		t.Fatal(err)
	}
	if err := anchor.VerifyContent(rc, salt, e.Record); err != nil {
		t.Fatalf("content of leaf %d: %v", e.LeafIndex, err)
	}
	tampered := bytes.Replace(e.Record, []byte(`"allow":`), []byte(`"allow" :`), 1)
	tampered = append(tampered[:len(tampered)-1:len(tampered)-1], ' ', '}')
	if err := anchor.VerifyContent(rc, salt, tampered); err == nil {
		t.Fatalf("a changed record of leaf %d still verifies", e.LeafIndex)
	}
}

// TestConsentEnforcement follows one patient's consent through its life:
// with no consent on file treatment reads are implied; the HL7 "Out"
// example (withhold from Organization/f001) denies that organization and
// no one else; revoking it flips the very next decision; every decision and
// consent event is listed for the auditor and the patient, and verifies
// against its anchored receipt.
func TestConsentEnforcement(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient","name":[{"family":"Quixote"}]}`)
	obs := created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/`+patient+`"},
		"effectiveDateTime":"2025-03-01"}`)
	reader := func(client, actor string) string {
		return g.TokenFor(t, auth.Claims{ClientID: client, FHIRUser: actor, PurposeOfUse: "TREAT",
			Scopes: []string{"system/*.read"}, TTL: time.Hour})
	}
	goodHealth, other := reader("good-health", "Organization/f001"), reader("other-clinic", "Organization/other")
	read := func(tok string) testonly.Response {
		return g.Do(t, "GET", "/Observation/"+obs, nil, "Authorization", "Bearer "+tok)
	}
	if r := read(goodHealth); r.Status != http.StatusOK {
		t.Fatalf("no consent on file, TREAT read: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, "GET", "/Observation/"+obs, nil, "Authorization", "Bearer "+goodHealth, "X-Purpose-Of-Use", "HMARKT"); r.Status != http.StatusForbidden {
		t.Fatalf("no consent on file, marketing read: %d, want 403", r.Status)
	}

	raw, err := os.ReadFile(filepath.Join(shareddata.Dir(t), "hl7-examples", "Consent-consent-example-Out.json"))
	if err != nil {
		t.Fatal(err)
	}
	var consent map[string]any
	if err := json.Unmarshal(raw, &consent); err != nil {
		t.Fatal(err)
	}
	delete(consent, "id")
	consent["patient"] = map[string]any{"reference": "Patient/" + patient}
	body, _ := json.Marshal(consent)
	cid := created(t, g, ehr, "Consent", string(body))

	r := read(goodHealth)
	if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "OperationOutcome") || !strings.Contains(string(r.Body), "Consent/"+cid) {
		t.Fatalf("Out consent, Organization/f001 read: %d %s", r.Status, r.Body)
	}
	if r := read(other); r.Status != http.StatusOK {
		t.Fatalf("Out consent, another organization: %d %s", r.Status, r.Body)
	}

	consent["id"] = cid
	consent["status"] = "inactive"
	body, _ = json.Marshal(consent)
	if r := g.Do(t, "PUT", "/Consent/"+cid, body, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if r := read(goodHealth); r.Status != http.StatusOK {
		t.Fatalf("after revocation: %d %s", r.Status, r.Body)
	}

	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour})
	var events struct{ Events []recordEntry }
	if st, b := sendJSON(t, g, auditor, "GET", "/v1/patients/"+patient+"/consent-events", nil, &events); st != http.StatusOK {
		t.Fatalf("consent events: %d %s", st, b)
	}
	var kinds []string
	for _, e := range events.Events {
		var ev struct{ Event, Consent, Patient string }
		json.Unmarshal(e.Record, &ev)
		if ev.Patient != g.RecordRef("Patient", patient) || !strings.HasPrefix(ev.Consent, g.RecordRef("Consent", cid)+"/_history/") {
			t.Errorf("event %s", e.Record)
		}
		if e.Resolved[g.RecordRef("Patient", patient)] != "Patient/"+patient || e.Resolved[g.RecordRef("Consent", cid)] != "Consent/"+cid {
			t.Errorf("event %s resolved to %v", e.Record, e.Resolved)
		}
		if strings.Contains(string(e.Record), patient) || strings.Contains(string(e.Record), cid) {
			t.Errorf("event %s names an id", e.Record)
		}
		kinds = append(kinds, ev.Event)
	}
	if strings.Join(kinds, ",") != "inactivated,created" {
		t.Fatalf("consent events newest first = %v, want inactivated, created", kinds)
	}

	// The patient sees the same decisions about them; the auditor sees them all.
	self := g.TokenFor(t, auth.Claims{ClientID: "patient-app", FHIRUser: "Patient/" + patient,
		Scopes: []string{"fhiranchor/patient.self"}, TTL: time.Hour})
	var mine, all struct{ Decisions []recordEntry }
	if st, b := sendJSON(t, g, self, "GET", "/v1/decisions", nil, &mine); st != http.StatusOK {
		t.Fatalf("patient's decisions: %d %s", st, b)
	}
	if st, b := sendJSON(t, g, auditor, "GET", "/v1/decisions?patient=Patient/"+patient, nil, &all); st != http.StatusOK {
		t.Fatalf("auditor's decisions: %d %s", st, b)
	}
	if len(mine.Decisions) != len(all.Decisions) || len(all.Decisions) < 6 {
		t.Fatalf("patient sees %d decisions, auditor %d; want the same, at least 6", len(mine.Decisions), len(all.Decisions))
	}
	var deny *recordEntry
	var denyDoc decisionDoc
	for i, e := range all.Decisions {
		var d decisionDoc
		if err := json.Unmarshal(e.Record, &d); err != nil {
			t.Fatal(err)
		}
		if d.Patient != g.RecordRef("Patient", patient) || len(d.PolicyRevision) != 64 || d.PolicyVersion != 1 {
			t.Errorf("decision %s", e.Record)
		}
		if strings.Contains(string(e.Record), patient) || strings.Contains(string(e.Record), cid) || strings.Contains(string(e.Record), obs) {
			t.Errorf("decision %s names an id", e.Record)
		}
		if !d.Allow && d.Client == "good-health" && d.Purpose == "TREAT" {
			deny, denyDoc = &all.Decisions[i], d
		}
	}
	if deny == nil {
		t.Fatal("no recorded denial for good-health")
	}
	if denyDoc.Action != "read" || denyDoc.Actor != "Organization/f001" || denyDoc.Resource != g.RecordRef("Observation", obs)+"/_history/1" ||
		len(denyDoc.BasedOn) != 1 || "Consent/"+denyDoc.BasedOn[0].ID != g.RecordRef("Consent", cid) || denyDoc.BasedOn[0].VersionID != "1" {
		t.Fatalf("denial record: %s", deny.Record)
	}
	if deny.Resolved[g.RecordRef("Observation", obs)] != "Observation/"+obs || deny.Resolved[g.RecordRef("Patient", patient)] != "Patient/"+patient {
		t.Errorf("denial resolved to %v", deny.Resolved)
	}
	verifyRecord(t, g, auditor, *deny)
	verifyRecord(t, g, auditor, events.Events[0])
}

// TestWriteForManagingOrganization: a client bound to one organization may
// write only for that organization's patients; a refused transaction
// stores nothing but its decision.
func TestWriteForManagingOrganization(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	acme := g.TokenFor(t, auth.Claims{ClientID: "acme-ehr", Organization: "Organization/acme", PurposeOfUse: "TREAT",
		Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour})
	rival := g.TokenFor(t, auth.Claims{ClientID: "rival-ehr", Organization: "Organization/rival", PurposeOfUse: "TREAT",
		Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour})
	patient := created(t, g, acme, "Patient", `{"resourceType":"Patient","managingOrganization":{"reference":"Organization/acme"}}`)
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"}}`
	before := g.Stats(t)
	r := g.Do(t, "POST", "/Observation", []byte(obs), "Authorization", "Bearer "+rival)
	if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "managing organization") {
		t.Fatalf("rival writes for acme's patient: %d %s", r.Status, r.Body)
	}
	after := g.Stats(t)
	if after.Versions != before.Versions || after.Leaves != before.Leaves+1 {
		t.Fatalf("refused write: versions %d -> %d, leaves %d -> %d; want no version, one decision leaf",
			before.Versions, after.Versions, before.Leaves, after.Leaves)
	}
	created(t, g, acme, "Observation", obs)
}

// TestPolicyAdministration: a bundle whose tests fail is refused naming the
// test; a stricter version, once activated, changes the next decision and
// its activation verifies against its receipt; a rollback restores the
// previous decisions.
func TestPolicyAdministration(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	admin := g.TokenFor(t, auth.Claims{ClientID: "policy-admin", Scopes: []string{"fhiranchor/policy.admin", "fhiranchor/audit"}, TTL: time.Hour})
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient"}`)
	read := func() int { return g.Do(t, "GET", "/Patient/"+patient, nil, "Authorization", "Bearer "+ehr).Status }

	var list struct {
		Policies      []struct{ Version string }
		ActiveVersion string
	}
	if st, b := sendJSON(t, g, admin, "GET", "/v1/policies", nil, &list); st != http.StatusOK || list.ActiveVersion != "1" || len(list.Policies) != 1 {
		t.Fatalf("policies at start: %d %s", st, b)
	}

	files, err := policy.ReadFiles(policy.DefaultBundle())
	if err != nil {
		t.Fatal(err)
	}
	broken := clone(files)
	// A test that expects treatment reads to need a consent fails against
	// the default data (implied consent for treatment).
	treatNoConsent := `{"action": "read", "purpose": "TREAT", "patient": "Patient/p", "actor": {"clientId": "c", "reference": "", "roles": []}, "resource": {"type": "Patient", "securityLabels": [], "codes": []}, "consents": [], "time": "2026-01-01T00:00:00Z"}`
	broken["consent_test.rego"] += "\ntest_treatment_needs_a_consent if {\n\tnot consent.decision.allow with input as " + treatNoConsent + "\n}\n"
	st, b := sendJSON(t, g, admin, "POST", "/v1/policies", map[string]any{"files": broken}, nil)
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(b), "test_treatment_needs_a_consent") {
		t.Fatalf("bundle with a failing test: %d %s", st, b)
	}
	st, b = sendJSON(t, g, admin, "POST", "/v1/policies", map[string]any{"files": map[string]string{"consent.rego": "package fhiranchor.consent\n\nallow if {"}}, nil)
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(b), "consent.rego:") {
		t.Fatalf("bundle that does not compile: %d %s", st, b)
	}

	// Stricter: no implied consent for treatment reads, and a test that says so.
	strict := clone(files)
	var data map[string]any
	if err := json.Unmarshal([]byte(strict["data.json"]), &data); err != nil {
		t.Fatal(err)
	}
	cfg := data["fhiranchor"].(map[string]any)["config"].(map[string]any)
	cfg["implied"].(map[string]any)["read"] = []string{"HPAYMT"}
	nb, _ := json.Marshal(data)
	strict["data.json"] = string(nb)
	// ...whose tests no longer hold the default's implied-consent test.
	tests := strict["consent_test.rego"]
	start := strings.Index(tests, "test_no_consent_implies_treatment_payment_operations if {")
	end := start + strings.Index(tests[start:], "\n}\n") + 3
	if start < 0 {
		t.Fatal("the default bundle's implied-consent test moved")
	}
	strict["consent_test.rego"] = tests[:start] + tests[end:]
	strict["strict_test.rego"] = "package fhiranchor.consent\n\nimport rego.v1\n\ntest_treatment_needs_a_consent if {\n\tnot decision.allow with input as " + treatNoConsent + "\n}\n"
	var createdPolicy struct {
		Policy struct{ Version string }
		Tests  []struct{ Name string }
	}
	if st, b := sendJSON(t, g, admin, "POST", "/v1/policies", map[string]any{"files": strict}, &createdPolicy); st != http.StatusCreated || createdPolicy.Policy.Version != "2" {
		t.Fatalf("stricter bundle: %d %s", st, b)
	}
	if read() != http.StatusOK {
		t.Fatal("storing a version must not activate it")
	}
	var act struct {
		Version   string
		LeafIndex string
		Revision  string
	}
	if st, b := sendJSON(t, g, admin, "POST", "/v1/policies/2:activate", map[string]any{}, &act); st != http.StatusOK || act.Version != "2" {
		t.Fatalf("activate: %d %s", st, b)
	}
	if st := read(); st != http.StatusForbidden {
		t.Fatalf("treatment read under the stricter policy: %d, want 403", st)
	}
	idx, _ := strconv.ParseUint(act.LeafIndex, 10, 64)
	var ev recordEntry
	if st, b := sendJSON(t, g, admin, "GET", "/v1/evidence/leaves/"+act.LeafIndex, nil, &ev); st != http.StatusOK || ev.LeafIndex != idx {
		t.Fatalf("activation evidence: %d %s", st, b)
	}
	if !strings.Contains(string(ev.Record), act.Revision) {
		t.Fatalf("activation record %s does not name revision %s", ev.Record, act.Revision)
	}
	verifyRecord(t, g, admin, ev)

	if st, b := sendJSON(t, g, admin, "POST", "/v1/policies:rollback", map[string]any{}, &act); st != http.StatusOK || act.Version != "1" {
		t.Fatalf("rollback: %d %s", st, b)
	}
	if st := read(); st != http.StatusOK {
		t.Fatalf("after rollback: %d", st)
	}
	var hist struct {
		Activations []struct {
			Version  string
			Rollback bool
		}
	}
	sendJSON(t, g, admin, "GET", "/v1/policy-activations", nil, &hist)
	if len(hist.Activations) != 3 || hist.Activations[0].Version != "1" || !hist.Activations[0].Rollback || hist.Activations[1].Version != "2" {
		t.Fatalf("history: %+v", hist.Activations)
	}

	var eval struct {
		Allow   bool
		Reasons []string
		Fired   []string
	}
	if st, b := sendJSON(t, g, admin, "POST", "/v1/policies:evaluate", map[string]any{"action": "read", "purpose": "TREAT", "patient": patient,
		"resource_type": "Patient", "resource_id": patient}, &eval); st != http.StatusOK || !eval.Allow || len(eval.Fired) == 0 {
		t.Fatalf("evaluate: %d %s", st, b)
	}
}

func clone(f policy.Files) policy.Files {
	out := policy.Files{}
	for k, v := range f {
		out[k] = v
	}
	return out
}

// TestHistoryOfDeletedResourceIsDecided: the versions before a deletion
// are still the patient's data; their history is decided like a read.
func TestHistoryOfDeletedResourceIsDecided(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient"}`)
	obs := created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+patient+`"}}`)
	raw, err := os.ReadFile(filepath.Join(shareddata.Dir(t), "hl7-examples", "Consent-consent-example-Out.json"))
	if err != nil {
		t.Fatal(err)
	}
	var consent map[string]any
	json.Unmarshal(raw, &consent)
	delete(consent, "id")
	consent["patient"] = map[string]any{"reference": "Patient/" + patient}
	body, _ := json.Marshal(consent)
	created(t, g, ehr, "Consent", string(body))
	if r := g.Do(t, "DELETE", "/Observation/"+obs, nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	goodHealth := g.TokenFor(t, auth.Claims{ClientID: "good-health", FHIRUser: "Organization/f001", PurposeOfUse: "TREAT",
		Scopes: []string{"system/*.read"}, TTL: time.Hour})
	if r := g.Do(t, "GET", "/Observation/"+obs+"/_history", nil, "Authorization", "Bearer "+goodHealth); r.Status != http.StatusForbidden {
		t.Fatalf("history of a deleted Observation, withheld organization: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, "GET", "/Observation/"+obs+"/_history", nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("history for the EHR: %d %s", r.Status, r.Body)
	}
}
