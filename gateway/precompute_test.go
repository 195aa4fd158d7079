package gateway_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestPrecomputedTokens holds the tokens worked out before the vault
// transaction (unconditional creates whose references need no stored state)
// to the tokens audit derives again from each stored body: a reference
// rewritten differently, or a token set computed on the tree before its
// references were resolved, is an index finding. The Bundles mix every
// kind of reference the transaction resolves: to creates, to a PUT entry,
// to a conditional create, conditional references, a fullUrl written twice,
// literal references and urns in a batch (which name nothing). Then the
// searches an app would run find what the references name.
func TestPrecomputedTokens(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{WithoutPolicy: true, Quiet: true})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	post := func(body string) bundleResponse {
		t.Helper()
		r := g.Do(t, http.MethodPost, "/", []byte(body), auth...)
		mustStatus(t, r, http.StatusOK)
		return decodeBundle(t, r.Body)
	}
	mrn := func(v string) string {
		return `"identifier":[{"system":"http://h.example/mrn","value":"` + v + `"}]`
	}
	existing := idFromLocation(t, g.Do(t, http.MethodPost, "/Patient",
		[]byte(`{"resourceType":"Patient",`+mrn("E1")+`,"name":[{"family":"Existing"}]}`), auth...))

	obs := func(code string, refs ...string) string {
		var parts []string
		for i, r := range refs {
			field := []string{"subject", "encounter", "focus"}[i]
			if field == "focus" {
				parts = append(parts, `"focus":[{"reference":"`+r+`"}]`)
				continue
			}
			parts = append(parts, `"`+field+`":{"reference":"`+r+`"}`)
		}
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` +
			code + `"}]},"effectiveDateTime":"2021-03-04T05:06:07Z",` + strings.Join(parts, ",") + `}`
	}
	entry := func(full, method, url, resource, ifNoneExist string) string {
		req := `"method":"` + method + `","url":"` + url + `"`
		if ifNoneExist != "" {
			req += `,"ifNoneExist":"` + ifNoneExist + `"`
		}
		e := `{"request":{` + req + `},"resource":` + resource
		if full != "" {
			e += `,"fullUrl":"` + full + `"`
		}
		return e + `}`
	}
	tx := func(typ string, entries ...string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
	}
	urn := map[string]string{}
	for _, k := range []string{"p", "q", "r", "e", "d", "x", "s"} {
		urn[k] = "urn:uuid:" + newUUID(t)
	}
	enc := `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"` + urn["p"] + `"}}`
	br := post(tx("transaction",
		entry(urn["p"], "POST", "Patient", `{"resourceType":"Patient",`+mrn("P1")+`,"name":[{"family":"Created"}]}`, ""),
		entry(urn["q"], "PUT", "Patient/fixed-q", `{"resourceType":"Patient","id":"fixed-q",`+mrn("Q1")+`}`, ""),
		entry(urn["r"], "POST", "Patient", `{"resourceType":"Patient",`+mrn("E1")+`}`, "identifier=http://h.example/mrn|E1"),
		entry(urn["e"], "POST", "Encounter", enc, ""),
		entry(urn["d"], "POST", "Observation", obs("1-1", urn["p"]), ""),
		entry(urn["d"], "POST", "Observation", obs("1-2", urn["p"]), ""),
		entry("", "POST", "Observation", obs("2-1", urn["p"], urn["e"]), ""),
		entry("", "POST", "Observation", obs("2-2", urn["q"]), ""),
		entry("", "POST", "Observation", obs("2-3", urn["r"]), ""),
		entry("", "POST", "Observation", obs("2-4", "Patient?identifier=http://h.example/mrn|E1"), ""),
		entry("", "POST", "Observation", obs("2-5", "Patient/"+existing, urn["e"], urn["d"]), ""),
		entry("", "POST", "Observation", obs("2-6", urn["p"], urn["e"], urn["p"]), ""),
		// Itself, and a create beside a reference only the transaction
		// resolves (what precompute rewrote must stay right).
		entry(urn["s"], "POST", "Observation", obs("2-7", urn["p"], urn["e"], urn["s"]), ""),
		entry("", "POST", "Observation", obs("2-8", urn["p"], urn["e"], urn["q"]), ""),
	))
	created := map[string]string{}
	for i, e := range br.Entry {
		if !strings.HasPrefix(e.Response.Status, "20") {
			t.Fatalf("entry %d: %s %s", i, e.Response.Status, e.Response.Outcome)
		}
		if i < 4 {
			// Type/id of Type/id/_history/n
			parts := strings.Split(e.Response.Location, "/")
			created[[]string{"p", "q", "r", "e"}[i]] = parts[0] + "/" + parts[1]
		}
	}
	// A batch resolves no urn: the reference stays as written.
	post(tx("batch", entry(urn["x"], "POST", "Patient", `{"resourceType":"Patient",`+mrn("X1")+`}`, ""),
		entry("", "POST", "Observation", obs("3-1", urn["x"]), ""),
		entry("", "POST", "Observation", obs("3-2", "Patient/"+existing), "")))

	// Real Bundles too: every Synthea patient and the HL7 transaction
	// examples (their failures, if any, are TestHL7Examples' to judge).
	for _, f := range shareddata.Files(t, "synthea")[:3] {
		r := g.Do(t, http.MethodPost, "/", readFile(t, f), auth...)
		mustStatus(t, r, http.StatusOK)
	}
	for _, f := range shareddata.Files(t, "hl7-examples") {
		body := readFile(t, f)
		var head struct{ ResourceType, Type string }
		_ = json.Unmarshal(body, &head)
		if head.ResourceType == "Bundle" && (head.Type == "transaction" || head.Type == "batch") {
			g.Do(t, http.MethodPost, "/", body, auth...)
		}
	}

	rep, err := gateway.Audit(t.Context(), g.Vault, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		t.Errorf("audit: %+v", f)
	}

	patientID := func(loc string) string { return strings.Split(loc, "/")[1] }
	p, q, r := patientID(created["p"]), patientID(created["q"]), patientID(created["r"])
	if r != existing {
		t.Fatalf("the conditional create made %s, want the existing %s", r, existing)
	}
	codes := func(query string) string {
		t.Helper()
		resp := g.Do(t, http.MethodGet, query, nil, auth...)
		mustStatus(t, resp, http.StatusOK)
		var got []string
		for _, e := range decodeBundle(t, resp.Body).Entry {
			var o struct {
				Code struct{ Coding []struct{ Code string } }
			}
			if err := json.Unmarshal(e.Resource, &o); err != nil {
				t.Fatal(err)
			}
			got = append(got, o.Code.Coding[0].Code)
		}
		slices.Sort(got)
		return strings.Join(got, " ")
	}
	for query, want := range map[string]string{
		"/Observation?subject=Patient/" + p:              "1-1 1-2 2-1 2-6 2-7 2-8",
		"/Observation?subject=Patient/" + q:              "2-2",
		"/Observation?subject=Patient/" + existing:       "2-3 2-4 2-5 3-2",
		"/Observation?encounter=" + created["e"]:         "2-1 2-5 2-6 2-7 2-8",
		"/Observation?focus=Patient/" + q:                "2-8",
		"/Patient/" + p + "/Observation":                 "1-1 1-2 2-1 2-6 2-7 2-8",
		"/Patient/" + existing + "/Observation?code=2-5": "2-5",
		"/Observation?subject=" + urn["x"]:               "3-1",
	} {
		if got := codes(query); got != want {
			t.Errorf("%s: %q, want %q", query, got, want)
		}
	}
}
