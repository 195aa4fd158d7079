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

// TestIdempotencyKeyOtherBody: a key first used with one body refuses
// another body (422, quoting nothing) and writes nothing, for a create and
// for a Bundle; the first body is still replayed.
func TestIdempotencyKeyOtherBody(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := []string{"Authorization", "Bearer " + g.Token(t), "Idempotency-Key", "k-other"}
	first := []byte(`{"resourceType":"Patient","gender":"female"}`)
	a := g.Do(t, "POST", "/Patient", first, ehr...)
	mustStatus(t, a, http.StatusCreated)
	bundle := func(family string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"` +
			family + `"}]},"request":{"method":"POST","url":"Patient"}}]}`)
	}
	bundleKey := []string{"Authorization", "Bearer " + g.Token(t), "Idempotency-Key", "b-other"}
	ba := g.Do(t, "POST", "", bundle("Abernathy"), bundleKey...)
	mustStatus(t, ba, http.StatusOK)
	before := g.Stats(t)

	for _, tc := range []struct {
		name, path string
		body       []byte
		headers    []string
	}{
		{"create", "/Patient", []byte(`{"resourceType":"Patient","gender":"male","name":[{"family":"Zebulon"}]}`), ehr},
		{"bundle", "", bundle("Zebulon"), bundleKey},
		{"create, not even FHIR", "/Patient", []byte(`{"Zebulon"`), ehr},
	} {
		r := g.Do(t, "POST", tc.path, tc.body, tc.headers...)
		if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), "OperationOutcome") || strings.Contains(string(r.Body), "Zebulon") {
			t.Errorf("%s with a used key and another body: %d %s, want 422 quoting nothing", tc.name, r.Status, r.Body)
		}
	}
	if after := g.Stats(t); after != before {
		t.Errorf("refused retries changed the vault: %+v -> %+v", before, after)
	}
	if r := g.Do(t, "POST", "/Patient", first, ehr...); r.Status != http.StatusCreated || r.Header.Get("Location") != a.Header.Get("Location") {
		t.Errorf("the first body again: %d %s, want the first answer", r.Status, r.Header.Get("Location"))
	}
	if r := g.Do(t, "POST", "", bundle("Abernathy"), bundleKey...); r.Status != http.StatusOK || string(r.Body) != string(ba.Body) {
		t.Errorf("the first Bundle again: %d, want the first answer", r.Status)
	}
}

// TestReplayChecksTheCaller: a replay answered before the body is parsed
// still answers only what the caller may have now. A token of the same
// client without write scopes gets the refusal of a request it may not
// make, not the remembered answer; a create replayed after the patient's
// consent came to deny the client returns no resource (its body is read
// back through a decided read).
func TestReplayChecksTheCaller(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient","name":[{"family":"Quixote"}]}`)
	claims := auth.Claims{ClientID: "good-health", FHIRUser: "Organization/f001", PurposeOfUse: "TREAT",
		Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour}
	writer := g.TokenFor(t, claims)
	claims.Scopes = []string{"system/*.read"}
	reader := g.TokenFor(t, claims)

	obs := []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
		"subject":{"reference":"Patient/` + patient + `"},"valueString":"Quixotic pulse"}`)
	bundle := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(obs) +
		`,"request":{"method":"POST","url":"Observation"}}]}`)
	first := g.Do(t, "POST", "/Observation", obs, "Authorization", "Bearer "+writer, "Idempotency-Key", "obs-1")
	mustStatus(t, first, http.StatusCreated)
	mustStatus(t, g.Do(t, "POST", "", bundle, "Authorization", "Bearer "+writer, "Idempotency-Key", "bundle-1"), http.StatusOK)
	mustStatus(t, g.Do(t, "POST", "/Observation", obs, "Authorization", "Bearer "+writer, "Idempotency-Key", "obs-1"), http.StatusCreated)

	before := g.Stats(t)
	for _, path := range []string{"/Observation", ""} {
		key, body := "obs-1", obs
		if path == "" {
			key, body = "bundle-1", bundle
		}
		if r := g.Do(t, "POST", path, body, "Authorization", "Bearer "+reader, "Idempotency-Key", key); r.Status != http.StatusForbidden || strings.Contains(string(r.Body), "Quixotic") {
			t.Errorf("POST %q replayed to a read-only token: %d %s, want 403", path, r.Status, r.Body)
		}
	}
	if after := g.Stats(t); after.Versions != before.Versions {
		t.Errorf("refused replays wrote %d versions", after.Versions-before.Versions)
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
	created(t, g, ehr, "Consent", string(body))
	r := g.Do(t, "POST", "/Observation", obs, "Authorization", "Bearer "+writer, "Idempotency-Key", "obs-1")
	if r.Status != http.StatusForbidden || strings.Contains(string(r.Body), "Quixotic") {
		t.Errorf("create replayed after a denying consent: %d %s, want 403 without the resource", r.Status, r.Body)
	}
	if r := g.Do(t, "POST", "/Observation", obs, "Authorization", "Bearer "+writer, "Idempotency-Key", "obs-1", "Prefer", "return=minimal"); r.Status != http.StatusCreated || r.Header.Get("Location") != first.Header.Get("Location") {
		t.Errorf("create replayed with return=minimal: %d %q, want the first answer's status and Location", r.Status, r.Header.Get("Location"))
	}
}

// TestReadHonoursConsentWrittenBetweenReads: reads reuse decisions, yet a
// consent created, then revoked, between two reads decides the very next
// read, and every read is recorded.
func TestReadHonoursConsentWrittenBetweenReads(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient","name":[{"family":"Quixote"}]}`)
	obs := created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/`+patient+`"}}`)
	tok := g.TokenFor(t, auth.Claims{ClientID: "good-health", FHIRUser: "Organization/f001", PurposeOfUse: "TREAT",
		Scopes: []string{"system/*.read"}, TTL: time.Hour})
	leaves := g.Stats(t).Leaves
	read := func(want int, when string) {
		t.Helper()
		if r := g.Do(t, "GET", "/Observation/"+obs, nil, "Authorization", "Bearer "+tok); r.Status != want {
			t.Fatalf("%s: %d %s, want %d", when, r.Status, r.Body, want)
		}
		leaves++
		if got := g.Stats(t).Leaves; got != leaves {
			t.Fatalf("%s: %d leaves, want %d: every read is recorded", when, got, leaves)
		}
	}
	read(http.StatusOK, "no consent")
	read(http.StatusOK, "no consent, again")

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
	leaves = g.Stats(t).Leaves // the consent's version and event
	read(http.StatusForbidden, "after a consent denying the client")
	read(http.StatusForbidden, "after a consent denying the client, again")

	consent["id"] = cid
	consent["status"] = "inactive"
	body, _ = json.Marshal(consent)
	mustStatus(t, g.Do(t, "PUT", "/Consent/"+cid, body, "Authorization", "Bearer "+ehr), http.StatusOK)
	leaves = g.Stats(t).Leaves
	read(http.StatusOK, "after the consent was revoked")
}
