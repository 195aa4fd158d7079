package gateway_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

const jsonPatch = "application/json-patch+json"

// TestPatch applies JSON Patches (RFC 6902) to a resource: the result is
// stored as the next version, If-Match is honoured, and each way a patch
// can fail has its status and an outcome that quotes nothing the client
// wrote.
func TestPatch(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	patch := func(path, doc string, headers ...string) testonly.Response {
		t.Helper()
		return g.Do(t, "PATCH", path, []byte(doc), append(append([]string{"Content-Type", jsonPatch}, auth...), headers...)...)
	}
	mustStatus(t, g.Do(t, "PUT", "/Patient/pp", []byte(`{"resourceType":"Patient","id":"pp","gender":"female","name":[{"family":"Doe"}]}`), auth...), http.StatusCreated)
	versions := g.Stats(t).Versions

	r := patch("/Patient/pp", `[{"op":"test","path":"/gender","value":"female"},
		{"op":"replace","path":"/gender","value":"male"},
		{"op":"add","path":"/birthDate","value":"1970-01-02"},
		{"op":"add","path":"/name/0/given","value":["Jo"]}]`)
	mustStatus(t, r, http.StatusOK)
	var p struct {
		ID        string
		Gender    string
		BirthDate string
		Name      []struct {
			Family string
			Given  []string
		}
		Meta struct{ VersionID string }
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.ID != "pp" || p.Gender != "male" || p.BirthDate != "1970-01-02" || len(p.Name) != 1 || p.Name[0].Family != "Doe" ||
		strings.Join(p.Name[0].Given, ",") != "Jo" || p.Meta.VersionID != "2" {
		t.Fatalf("patched: %s", r.Body)
	}
	if r.Header.Get("ETag") != `W/"2"` || !strings.HasSuffix(r.Header.Get("Location"), "/Patient/pp/_history/2") ||
		!strings.Contains(r.Header.Get("Link"), `rel="receipt"`) {
		t.Errorf("headers: ETag %q Location %q Link %q", r.Header.Get("ETag"), r.Header.Get("Location"), r.Header.Get("Link"))
	}
	if got := g.Do(t, "GET", "/Patient/pp", nil, auth...); !strings.Contains(string(got.Body), `"gender":"male"`) {
		t.Errorf("read after patch: %s", got.Body)
	}
	if st := g.Stats(t); st.Versions != versions+1 {
		t.Errorf("a patch stored %d versions, want 1", st.Versions-versions)
	}

	// If-Match: the version patched must be the one named.
	mustStatus(t, patch("/Patient/pp", `[{"op":"remove","path":"/birthDate"}]`, "If-Match", `W/"1"`), http.StatusPreconditionFailed)
	mustStatus(t, patch("/Patient/pp", `[{"op":"remove","path":"/birthDate"}]`, "If-Match", `W/"2"`), http.StatusOK)
	mustStatus(t, patch("/Patient/pp", `[{"op":"remove","path":"/birthDate"}]`, "If-Match", `nonsense`), http.StatusBadRequest)

	const secret = "Zanzibar-4711"
	quotes := func(r testonly.Response) bool { return strings.Contains(string(r.Body), secret) }
	for _, c := range []struct {
		name, doc string
		status    int
	}{
		{"not an array", `{"op":"remove","path":"/` + secret + `"}`, http.StatusBadRequest},
		{"not JSON", `[{"op":"` + secret, http.StatusBadRequest},
		{"empty", `[]`, http.StatusBadRequest},
		{"unknown op", `[{"op":"` + secret + `","path":"/gender"}]`, http.StatusBadRequest},
		{"no path", `[{"op":"remove"}]`, http.StatusBadRequest},
		{"bad pointer", `[{"op":"remove","path":"` + secret + `"}]`, http.StatusBadRequest},
		{"no value", `[{"op":"add","path":"/gender"}]`, http.StatusBadRequest},
		{"no from", `[{"op":"move","path":"/gender"}]`, http.StatusBadRequest},
		{"failed test", `[{"op":"test","path":"/gender","value":"` + secret + `"}]`, http.StatusConflict},
		{"missing path", `[{"op":"replace","path":"/` + secret + `/x","value":1}]`, http.StatusConflict},
		{"invalid result", `[{"op":"replace","path":"/gender","value":"` + secret + `"}]`, http.StatusUnprocessableEntity},
		{"unknown element", `[{"op":"add","path":"/` + secret + `","value":"x"}]`, http.StatusUnprocessableEntity},
		{"id changed", `[{"op":"replace","path":"/id","value":"other"}]`, http.StatusUnprocessableEntity},
		{"id removed", `[{"op":"remove","path":"/id"}]`, http.StatusUnprocessableEntity},
		{"type changed", `[{"op":"replace","path":"/resourceType","value":"Group"}]`, http.StatusUnprocessableEntity},
		{"root replaced", `[{"op":"replace","path":"","value":["x"]}]`, http.StatusUnprocessableEntity},
	} {
		r := patch("/Patient/pp", c.doc)
		if r.Status != c.status || quotes(r) || !strings.Contains(string(r.Body), `"OperationOutcome"`) {
			t.Errorf("%s: %d %s, want %d and an outcome quoting nothing", c.name, r.Status, r.Body, c.status)
		}
	}
	if st := g.Stats(t); st.Versions != versions+2 {
		t.Errorf("refused patches stored versions: %d, want %d", st.Versions, versions+2)
	}

	// Media types: FHIRPath Patch (a Parameters body) and XML are 415.
	for _, ct := range []string{"application/fhir+json", "application/fhir+xml", "application/json"} {
		r := g.Do(t, "PATCH", "/Patient/pp", []byte(`{"resourceType":"Parameters"}`), append([]string{"Content-Type", ct}, auth...)...)
		mustStatus(t, r, http.StatusUnsupportedMediaType)
	}
	mustStatus(t, patch("/Patient/nobody", `[{"op":"remove","path":"/gender"}]`), http.StatusNotFound)
	mustStatus(t, g.Do(t, "DELETE", "/Patient/pp", nil, auth...), http.StatusOK)
	mustStatus(t, patch("/Patient/pp", `[{"op":"remove","path":"/gender"}]`), http.StatusGone)

	// Patching reads: it needs the read scope besides update, and a token.
	writeOnly := []string{"Authorization", "Bearer " + g.Token(t, "system/*.write")}
	mustStatus(t, g.Do(t, "PUT", "/Patient/p2", []byte(`{"resourceType":"Patient","id":"p2"}`), auth...), http.StatusCreated)
	mustStatus(t, g.Do(t, "PATCH", "/Patient/p2", []byte(`[{"op":"add","path":"/gender","value":"male"}]`), append([]string{"Content-Type", jsonPatch}, writeOnly...)...), http.StatusForbidden)
	mustStatus(t, g.Do(t, "PATCH", "/Patient/p2", []byte(`[{"op":"add","path":"/gender","value":"male"}]`), "Content-Type", jsonPatch), http.StatusUnauthorized)
}

// TestPatchIsDecidedByConsent: a patch goes through consent as a read of
// the current version and a write of the next; a client the patient's
// consent denies patches nothing, and the refusal is recorded.
func TestPatchIsDecidedByConsent(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient","name":[{"family":"Quixote"}]}`)
	obs := created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"preliminary",
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/`+patient+`"},
		"effectiveDateTime":"2025-03-01"}`)
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
	created(t, g, ehr, "Consent", string(body))

	client := func(id, actor string) string {
		return g.TokenFor(t, auth.Claims{ClientID: id, FHIRUser: actor, PurposeOfUse: "TREAT",
			Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour})
	}
	doc := []byte(`[{"op":"replace","path":"/status","value":"final"}]`)
	before := g.Stats(t).Versions
	r := g.Do(t, "PATCH", "/Observation/"+obs, doc, "Content-Type", jsonPatch, "Authorization", "Bearer "+client("good-health", "Organization/f001"))
	mustStatus(t, r, http.StatusForbidden)
	if g.Stats(t).Versions != before {
		t.Fatal("a refused patch stored a version")
	}
	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour})
	var all struct{ Decisions []recordEntry }
	if st, b := sendJSON(t, g, auditor, "GET", "/v1/decisions?patient=Patient/"+patient, nil, &all); st != http.StatusOK {
		t.Fatalf("decisions: %d %s", st, b)
	}
	denied := 0
	for _, e := range all.Decisions {
		var d decisionDoc
		if err := json.Unmarshal(e.Record, &d); err != nil {
			t.Fatal(err)
		}
		if !d.Allow {
			denied++
		}
	}
	if denied == 0 {
		t.Fatalf("no refusal recorded among %d decisions", len(all.Decisions))
	}

	r = g.Do(t, "PATCH", "/Observation/"+obs, doc, "Content-Type", jsonPatch, "Authorization", "Bearer "+client("other-clinic", "Organization/other"))
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"status":"final"`) || g.Stats(t).Versions != before+1 {
		t.Fatalf("allowed patch: %s", r.Body)
	}
}
