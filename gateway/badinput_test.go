package gateway_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// marker stands for PHI in bad input: it must come back in no response and
// reach no log line.
const marker = "ZZPHIZZ"

type outcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Severity    string   `json:"severity"`
		Code        string   `json:"code"`
		Diagnostics string   `json:"diagnostics"`
		Expression  []string `json:"expression"`
	} `json:"issue"`
}

// TestBadInput sends input a gateway must refuse: each gets its 4xx and an
// OperationOutcome, echoes no value, and leaves the vault exactly as it was.
func TestBadInput(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{MaxBodyBytes: 1 << 20})
	tok := g.Token(t)
	readOnly := g.Token(t, "system/*.read")
	obsOnly := g.Token(t, "system/Observation.write", "system/Observation.read")
	expired := g.TokenFor(t, auth.Claims{ClientID: "test-client", TTL: time.Minute, Now: time.Now().Add(-time.Hour)})
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	freeTextPurpose := g.TokenFor(t, auth.Claims{ClientID: "test-client", Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour, PurposeOfUse: "John " + marker})
	nameAsUser := g.TokenFor(t, auth.Claims{ClientID: "test-client", Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour, FHIRUser: "Practitioner/Dr " + marker})
	searchAsUser := g.TokenFor(t, auth.Claims{ClientID: "test-client", Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour, FHIRUser: "Patient?name=" + marker})
	nameAsRole := g.TokenFor(t, auth.Claims{ClientID: "test-client", Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour, Roles: []string{"physician", "aunt of " + marker}})
	foreign, err := auth.MintToken(otherKey, auth.Claims{ClientID: "test-client", Scopes: []string{"system/*.write"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	// State some cases need: a Patient at version 1 and two Patients sharing
	// an identifier.
	bearer := "Bearer " + tok
	mustStatus(t, g.Do(t, "PUT", "/Patient/existing", []byte(`{"resourceType":"Patient","id":"existing"}`), "Authorization", bearer), 201)
	twin := []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"twin"}]}`)
	mustStatus(t, g.Do(t, "POST", "/Patient", twin, "Authorization", bearer), 201)
	mustStatus(t, g.Do(t, "POST", "/Patient", twin, "Authorization", bearer), 201)
	mustStatus(t, g.Do(t, "PUT", "/Patient/gone", []byte(`{"resourceType":"Patient","id":"gone"}`), "Authorization", bearer), 201)
	mustStatus(t, g.Do(t, "DELETE", "/Patient/gone", nil, "Authorization", bearer), 200)

	patient := func(extra string) []byte {
		return []byte(`{"resourceType":"Patient","name":[{"family":"` + marker + `"}]` + extra + `}`)
	}
	txn := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	post := func(typ, resource string) string {
		return `{"fullUrl":"urn:uuid:` + newUUID(t) + `","resource":` + resource + `,"request":{"method":"POST","url":"` + typ + `"}}`
	}
	goodPatient := `{"resourceType":"Patient","name":[{"family":"` + marker + `"}]}`
	big := append(append([]byte(`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">`),
		bytes.Repeat([]byte("x"), 2<<20)...), []byte(`</div>"}}`)...)
	nested := []byte(`{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, 100) + strings.Repeat(`]}`, 100) + `]}`)

	cases := []struct {
		name    string
		method  string
		path    string
		body    []byte
		headers []string // after the defaults
		noAuth  bool
		want    int
		expr    string // an expected issue.expression, when the element is known
	}{
		{name: "bad JSON", method: "POST", path: "/Patient", body: []byte(`{"resourceType":"Patient","name":[{"family":"` + marker), want: 400},
		{name: "empty body", method: "POST", path: "/Patient", body: []byte(``), want: 400},
		{name: "JSON array", method: "POST", path: "/Patient", body: []byte(`[{"resourceType":"Patient"}]`), want: 400},
		{name: "JSON null", method: "POST", path: "/Patient", body: []byte(`null`), want: 400},
		{name: "invalid UTF-8", method: "POST", path: "/Patient", body: []byte("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}"), want: 400},
		{name: "duplicate member", method: "POST", path: "/Patient", body: []byte(`{"resourceType":"Patient","gender":"male","gender":"female"}`), want: 400},
		{name: "trailing data", method: "POST", path: "/Patient", body: []byte(`{"resourceType":"Patient"} {"x":1}`), want: 400},
		{name: "unknown resourceType", method: "POST", path: "/Patient", body: []byte(`{"resourceType":"` + marker + `"}`), want: 400},
		{name: "unknown type in URL", method: "POST", path: "/" + marker, body: patient(""), want: 404},
		{name: "body type differs from URL", method: "POST", path: "/Observation", body: patient(""), want: 400},
		{name: "invalid date", method: "POST", path: "/Patient", body: patient(`,"birthDate":"1970-13-45` + marker + `"`), want: 400, expr: "Patient.birthDate"},
		{name: "unknown element", method: "POST", path: "/Patient", body: patient(`,"favouriteColour":"` + marker + `"`), want: 400, expr: "Patient"},
		{name: "unknown element named like a surname", method: "POST", path: "/Patient", body: patient(`,"` + strings.ToLower(marker) + `":"x"`), want: 400, expr: "Patient"},
		{name: "reference id holding a name and an SSN", method: "POST", path: "/Observation", body: []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/John ` + marker + ` 078-05-1120"}}`), want: 400, expr: "Observation.subject.reference"},
		{name: "reference without a resource type", method: "POST", path: "/Observation", body: []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"` + marker + `"}}`), want: 400, expr: "Observation.subject.reference"},
		{name: "identifier system holding a name", method: "POST", path: "/Patient", body: patient(`,"identifier":[{"system":"Dr ` + marker + `","value":"1"}]`), want: 400, expr: "Patient.identifier[0].system"},
		{name: "extension url with spaces", method: "POST", path: "/Patient", body: patient(`,"extension":[{"url":"http://x.org/` + marker + ` family","valueString":"x"}]`), want: 400, expr: "Patient.extension[0].url"},
		{name: "transaction entry URL holding a name", method: "POST", path: "", body: txn(`{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/John ` + marker + `"}}`), want: 400},
		{name: "purpose header in free text", method: "GET", path: "/Patient/existing", headers: []string{"X-Purpose-Of-Use", "care by " + marker}, want: 400},
		{name: "purpose header not a PurposeOfUse code", method: "POST", path: "/Patient", body: patient(""), headers: []string{"X-Purpose-Of-Use", marker}, want: 400},
		{name: "token purpose in free text", method: "GET", path: "/Patient/existing", noAuth: true, headers: []string{"Authorization", "Bearer " + freeTextPurpose}, want: 401},
		{name: "token fhirUser holding a name", method: "GET", path: "/Patient/existing", noAuth: true, headers: []string{"Authorization", "Bearer " + nameAsUser}, want: 401},
		{name: "token fhirUser as a search", method: "GET", path: "/Patient/existing", noAuth: true, headers: []string{"Authorization", "Bearer " + searchAsUser}, want: 401},
		{name: "token role in free text", method: "GET", path: "/Patient/existing", noAuth: true, headers: []string{"Authorization", "Bearer " + nameAsRole}, want: 401},
		{name: "wrong primitive type", method: "POST", path: "/Patient", body: patient(`,"active":"` + marker + `"`), want: 400, expr: "Patient.active"},
		{name: "invalid code", method: "POST", path: "/Patient", body: patient(`,"gender":"` + marker + `"`), want: 400, expr: "Patient.gender"},
		{name: "missing required element", method: "POST", path: "/Observation", body: []byte(`{"resourceType":"Observation","status":"final","note":[{"text":"` + marker + `"}]}`), want: 400},
		{name: "reference to wrong type", method: "POST", path: "/Observation", body: []byte(`{"resourceType":"Observation","status":"final","code":{"text":"` + marker + `"},"subject":{"reference":"Medication/1"}}`), want: 400, expr: "Observation.subject"},
		{name: "too deeply nested", method: "POST", path: "/Patient", body: nested, want: 400},
		{name: "invalid id in URL", method: "PUT", path: "/Patient/bad_id!", body: patient(""), want: 400},
		{name: "body id differs from URL", method: "PUT", path: "/Patient/abc", body: patient(`,"id":"xyz"`), want: 400},
		{name: "If-Match on another version", method: "PUT", path: "/Patient/existing", body: []byte(`{"resourceType":"Patient","id":"existing"}`), headers: []string{"If-Match", `W/"7"`}, want: 412},
		{name: "malformed If-Match", method: "PUT", path: "/Patient/existing", body: []byte(`{"resourceType":"Patient","id":"existing"}`), headers: []string{"If-Match", marker}, want: 400},
		{name: "If-None-Exist matches two", method: "POST", path: "/Patient", body: patient(""), headers: []string{"If-None-Exist", "identifier=urn:test|twin"}, want: 412},
		{name: "If-None-Exist on an unindexed parameter", method: "POST", path: "/Patient", body: patient(""), headers: []string{"If-None-Exist", "name=" + marker}, want: 400},
		{name: "Bundle of type document", method: "POST", path: "", body: []byte(`{"resourceType":"Bundle","type":"document","entry":[{"resource":` + goodPatient + `}]}`), want: 400, expr: "Bundle.type"},
		{name: "not a Bundle to the base", method: "POST", path: "", body: patient(""), want: 400},
		{name: "transaction entry without request", method: "POST", path: "", body: txn(post("Patient", goodPatient), `{"resource":`+goodPatient+`}`), want: 400, expr: "Bundle.entry[1].request"},
		{name: "transaction entry url names another type", method: "POST", path: "", body: txn(post("Observation", goodPatient)), want: 400, expr: "Bundle.entry[0].resource.resourceType"},
		{name: "transaction with an invalid entry", method: "POST", path: "", body: txn(post("Patient", goodPatient), post("Patient", goodPatient), post("Patient", goodPatient),
			post("Patient", `{"resourceType":"Patient","birthDate":"`+marker+`"}`)), want: 400, expr: "Bundle.entry[3].resource.birthDate"},
		{name: "dangling urn:uuid reference", method: "POST", path: "", body: txn(post("Patient", goodPatient),
			post("Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:`+newUUID(t)+`"}}`)),
			want: 400, expr: "Bundle.entry[1].resource.subject.reference"},
		{name: "transaction writes one resource twice", method: "POST", path: "", body: txn(
			`{"resource":{"resourceType":"Patient","id":"twice"},"request":{"method":"PUT","url":"Patient/twice"}}`,
			`{"resource":{"resourceType":"Patient","id":"twice"},"request":{"method":"PUT","url":"Patient/twice"}}`), want: 400},
		{name: "unknown method in an entry", method: "POST", path: "", body: txn(`{"resource":` + goodPatient + `,"request":{"method":"FROB","url":"Patient/x"}}`), want: 400},
		{name: "oversize body", method: "POST", path: "/Patient", body: big, want: 413},
		{name: "wrong content type", method: "POST", path: "/Patient", body: patient(""), headers: []string{"Content-Type", "text/plain"}, want: 415},
		{name: "XML content type", method: "POST", path: "/Patient", body: []byte(`<Patient xmlns="http://hl7.org/fhir"/>`), headers: []string{"Content-Type", "application/fhir+xml"}, want: 415},
		{name: "non-UTF-8 charset", method: "POST", path: "/Patient", body: patient(""), headers: []string{"Content-Type", "application/fhir+json; charset=latin1"}, want: 415},
		{name: "no token", method: "POST", path: "/Patient", body: patient(""), noAuth: true, want: 401},
		{name: "not a bearer token", method: "POST", path: "/Patient", body: patient(""), noAuth: true, headers: []string{"Authorization", "Basic dXNlcjpwYXNz"}, want: 401},
		{name: "malformed token", method: "POST", path: "/Patient", body: patient(""), noAuth: true, headers: []string{"Authorization", "Bearer " + marker + ".x.y"}, want: 401},
		{name: "expired token", method: "POST", path: "/Patient", body: patient(""), noAuth: true, headers: []string{"Authorization", "Bearer " + expired}, want: 401},
		{name: "token from an untrusted key", method: "POST", path: "/Patient", body: patient(""), noAuth: true, headers: []string{"Authorization", "Bearer " + foreign}, want: 401},
		{name: "read-only scope writes", method: "POST", path: "/Patient", body: patient(""), noAuth: true, headers: []string{"Authorization", "Bearer " + readOnly}, want: 403},
		{name: "scope for another type", method: "POST", path: "/Patient", body: patient(""), noAuth: true, headers: []string{"Authorization", "Bearer " + obsOnly}, want: 403},
		{name: "scope for another type in a transaction", method: "POST", path: "", body: txn(post("Patient", goodPatient)), noAuth: true, headers: []string{"Authorization", "Bearer " + obsOnly}, want: 403, expr: "Bundle.entry[0]"},
		{name: "read a missing resource", method: "GET", path: "/Patient/nobody", want: 404},
		{name: "read a deleted resource", method: "GET", path: "/Patient/gone", want: 410},
		{name: "vread a bad version", method: "GET", path: "/Patient/existing/_history/x", want: 404},
		{name: "vread a missing version", method: "GET", path: "/Patient/existing/_history/9", want: 404},
		{name: "unknown endpoint", method: "GET", path: "/Patient/existing/_history/1/extra", want: 404},
		{name: "outside the FHIR API", method: "GET", path: "/../../v0/nothing", want: 404},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := g.Stats(t)
			headers := []string{}
			if !tc.noAuth {
				headers = append(headers, "Authorization", bearer)
			}
			headers = append(headers, tc.headers...)
			r := g.Do(t, tc.method, tc.path, tc.body, headers...)
			if r.Status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.want, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/fhir+json" {
				t.Errorf("Content-Type %q", ct)
			}
			var oo outcome
			if err := json.Unmarshal(r.Body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
				t.Fatalf("not an OperationOutcome: %s", r.Body)
			}
			for _, is := range oo.Issue {
				if is.Severity == "" || is.Code == "" {
					t.Errorf("issue without severity or code: %+v", is)
				}
			}
			if tc.expr != "" && !hasExpression(oo, tc.expr) {
				t.Errorf("no issue.expression %q in %s", tc.expr, r.Body)
			}
			if bytes.Contains(r.Body, []byte(marker)) {
				t.Errorf("the response echoes an input value: %s", r.Body)
			}
			if after := g.Stats(t); after != before {
				t.Errorf("vault changed: %+v -> %+v", before, after)
			}
			if tc.want == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if bytes.Contains(g.Logs.Bytes(), []byte(marker)) {
		t.Error("an input value reached the log")
	}
}

func hasExpression(oo outcome, expr string) bool {
	for _, is := range oo.Issue {
		for _, e := range is.Expression {
			if e == expr {
				return true
			}
		}
	}
	return false
}

func mustStatus(t *testing.T, r testonly.Response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d: %s", r.Status, want, r.Body)
	}
}

func newUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	const hex = "0123456789abcdef"
	var s strings.Builder
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s.WriteByte('-')
		}
		s.WriteByte(hex[c>>4])
		s.WriteByte(hex[c&15])
	}
	return s.String()
}
