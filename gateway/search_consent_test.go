package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// searchset is what the consent tests read of a searchset Bundle.
type searchset struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation, URL string
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		} `json:"resource"`
		Search struct{ Mode string } `json:"search"`
	} `json:"entry"`
}

// refs lists "Type/id" of the entries of a mode ("" for any).
func (b searchset) refs(mode string) []string {
	var out []string
	for _, e := range b.Entry {
		if mode == "" || e.Search.Mode == mode {
			out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
		}
	}
	return out
}

func (b searchset) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// getSearch GETs a search path (relative to the FHIR base, or an absolute
// page link) and decodes the searchset.
func getSearch(t *testing.T, g *testonly.Gateway, tok, path string) searchset {
	t.Helper()
	if strings.HasPrefix(path, "http") {
		u, err := url.Parse(path)
		if err != nil {
			t.Fatal(err)
		}
		path = strings.TrimPrefix(u.Path, "/fhir/r4") + "?" + u.RawQuery
	}
	r := g.Do(t, "GET", path, nil, "Authorization", "Bearer "+tok)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	var b searchset
	if err := json.Unmarshal(r.Body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "searchset" {
		t.Fatalf("GET %s: not a searchset (%v): %s", path, err, r.Body)
	}
	return b
}

// allPages follows next links from path and returns every match.
func searchPages(t *testing.T, g *testonly.Gateway, tok, path string) (matches []string, pages int, totals []int) {
	t.Helper()
	for path != "" && pages < 100 {
		b := getSearch(t, g, tok, path)
		matches = append(matches, b.refs("match")...)
		if b.Total != nil {
			totals = append(totals, *b.Total)
		}
		pages++
		path = b.next()
	}
	return matches, pages, totals
}

// TestSearchConsent: a patient whose consent denies the caller is never in
// a search's matches, its total, its includes, a page or a page count, in
// any kind of search; a consent that withholds some resources by code is
// applied resource by resource; the decisions are recorded, once per
// patient and type, and another organization still finds everything.
func TestSearchConsent(t *testing.T) {
	testSearchConsent(t, testonly.StartGateway(t, testonly.Options{}))
}

// TestSearchConsentPostgres is the same over a PostgreSQL vault: the index
// and its lookups are the backend's.
func TestSearchConsentPostgres(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	testSearchConsent(t, testonly.StartGateway(t, testonly.Options{PostgresDSN: c.NewDatabase(t)}))
}

func testSearchConsent(t *testing.T, g *testonly.Gateway) {
	ehr := g.Token(t)
	const family = "Zzsearchconsent"
	newPatient := func() string {
		return created(t, g, ehr, "Patient", `{"resourceType":"Patient","name":[{"family":"`+family+`","given":["Ann"]}],"gender":"female","birthDate":"1950-02-03"}`)
	}
	obs := func(patient, code string) string {
		return created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"final",
			"code":{"coding":[{"system":"http://loinc.org","code":"`+code+`"}]},"subject":{"reference":"Patient/`+patient+`"},
			"effectiveDateTime":"2025-03-01"}`)
	}
	cond := func(patient string) string {
		return created(t, g, ehr, "Condition", `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},
			"subject":{"reference":"Patient/`+patient+`"}}`)
	}
	a, b, c := newPatient(), newPatient(), newPatient()
	obsA, obsB := []string{obs(a, "8867-4"), obs(a, "8867-4"), obs(a, "8867-4")}, []string{obs(b, "8867-4"), obs(b, "8867-4")}
	obsCHidden, obsCShown := obs(c, "29463-7"), obs(c, "8867-4")
	condA, condB, condC := cond(a), cond(b), cond(c)

	// B opts out of Organization/f001 (the HL7 "Out" example).
	raw, err := os.ReadFile(filepath.Join(shareddata.Dir(t), "hl7-examples", "Consent-consent-example-Out.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	delete(out, "id")
	out["patient"] = map[string]any{"reference": "Patient/" + b}
	body, _ := json.Marshal(out)
	consentB := created(t, g, ehr, "Consent", string(body))
	// C opts in, but denies everyone Observations coded 29463-7: a
	// resource-scoped provision.
	in := map[string]any{}
	for k, v := range out {
		in[k] = v
	}
	in["patient"] = map[string]any{"reference": "Patient/" + c}
	in["policyRule"] = map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}}}
	in["provision"] = map[string]any{"type": "permit", "provision": []any{map[string]any{"type": "deny",
		"code": []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "29463-7"}}}}}}}
	body, _ = json.Marshal(in)
	consentC := created(t, g, ehr, "Consent", string(body))

	reader := func(client, actor string) string {
		return g.TokenFor(t, auth.Claims{ClientID: client, FHIRUser: actor, PurposeOfUse: "TREAT",
			Scopes: []string{"system/*.read"}, TTL: time.Hour})
	}
	f001, other := reader("good-health", "Organization/f001"), reader("other-clinic", "Organization/other")
	// The setup decides as a read would: B denied to f001, C's 29463-7 to all.
	for _, tc := range []struct {
		tok, path string
		want      int
	}{
		{f001, "/Patient/" + b, http.StatusForbidden}, {other, "/Patient/" + b, http.StatusOK},
		{f001, "/Observation/" + obsCHidden, http.StatusForbidden}, {other, "/Observation/" + obsCHidden, http.StatusForbidden},
		{f001, "/Observation/" + obsCShown, http.StatusOK},
	} {
		if r := g.Do(t, "GET", tc.path, nil, "Authorization", "Bearer "+tc.tok); r.Status != tc.want {
			t.Fatalf("read %s: %d, want %d", tc.path, r.Status, tc.want)
		}
	}
	before := g.RecordLeaves(t)

	p := func(ids ...string) []string {
		var out []string
		for _, id := range ids {
			out = append(out, "Patient/"+id)
		}
		return out
	}
	o := func(ids ...string) []string {
		var out []string
		for _, id := range ids {
			out = append(out, "Observation/"+id)
		}
		return out
	}
	same := func(what string, got, want []string) {
		t.Helper()
		got, want = slices.Clone(got), slices.Clone(want)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	for _, tc := range []struct {
		name       string
		path       string
		f001, oth  []string // matches
		f001Includ []string // includes seen by f001
	}{
		{"by name", "/Patient?family=" + family, p(a, c), p(a, b, c), nil},
		{"by code", "/Observation?code=http://loinc.org|8867-4&subject:Patient.family=" + family, append(o(obsA...), o(obsCShown)...), append(append(o(obsA...), o(obsB...)...), o(obsCShown)...), nil},
		{"resource-scoped", "/Observation?code=29463-7&subject:Patient.family=" + family, nil, nil, nil},
		{"compartment of B", "/Patient/" + b + "/Observation", nil, o(obsB...), nil},
		{"_has", "/Patient?family=" + family + "&_has:Observation:patient:code=8867-4", p(a, c), p(a, b, c), nil},
		{"_has on a withheld resource", "/Patient?family=" + family + "&_has:Observation:patient:code=29463-7", nil, nil, nil},
		{"_include", "/Condition?code=44054006&subject:Patient.family=" + family + "&_include=Condition:subject",
			[]string{"Condition/" + condA, "Condition/" + condC}, []string{"Condition/" + condA, "Condition/" + condB, "Condition/" + condC}, p(a, c)},
		{"_revinclude", "/Patient?family=" + family + "&_revinclude=Observation:subject", p(a, c), p(a, b, c), append(o(obsA...), o(obsCShown)...)},
		{"system, every type", "/?_id=" + strings.Join([]string{a, b, c, condA, condB, condC}, ","),
			append(p(a, c), "Condition/"+condA, "Condition/"+condC), append(p(a, b, c), "Condition/"+condA, "Condition/"+condB, "Condition/"+condC), nil},
		{"system", "/?_type=Patient,Condition&_id=" + strings.Join([]string{a, b, c, condA, condB, condC}, ","),
			append(p(a, c), "Condition/"+condA, "Condition/"+condC), append(p(a, b, c), "Condition/"+condA, "Condition/"+condB, "Condition/"+condC), nil},
	} {
		got := getSearch(t, g, f001, tc.path+sep(tc.path)+"_count=1000")
		same(tc.name+" (f001 matches)", got.refs("match"), tc.f001)
		same(tc.name+" (f001 includes)", got.refs("include"), tc.f001Includ)
		if got.Total == nil || *got.Total != len(tc.f001) {
			t.Errorf("%s: f001 total %d, want %d", tc.name, totalOf(got), len(tc.f001))
		}
		if got := getSearch(t, g, f001, tc.path+sep(tc.path)+"_summary=count"); got.Total == nil || *got.Total != len(tc.f001) || len(got.Entry) != 0 {
			t.Errorf("%s: f001 _summary=count total %d entries %d, want %d and none", tc.name, totalOf(got), len(got.Entry), len(tc.f001))
		}
		// Pages of one: as many pages as allowed matches, none denied.
		if len(tc.f001) > 0 {
			m, pages, totals := searchPages(t, g, f001, tc.path+sep(tc.path)+"_count=1")
			same(tc.name+" (f001 pages)", m, tc.f001)
			if pages != len(tc.f001) || slices.ContainsFunc(totals, func(n int) bool { return n != len(tc.f001) }) {
				t.Errorf("%s: %d pages with totals %v, want %d", tc.name, pages, totals, len(tc.f001))
			}
		}
		oth := getSearch(t, g, other, tc.path+sep(tc.path)+"_count=1000")
		same(tc.name+" (other matches)", oth.refs("match"), tc.oth)
	}

	// Research scopes never reach identified search.
	research := g.TokenFor(t, auth.Claims{ClientID: "researcher", PurposeOfUse: "HRESCH",
		Scopes: []string{gateway.CohortQueryScope, gateway.CohortExportScope}, TTL: time.Hour})
	for _, path := range []string{"/Patient?family=" + family, "/?_type=Patient", "/Patient/" + a + "/$everything", "/Patient/" + a + "/Observation"} {
		if r := g.Do(t, "GET", path, nil, "Authorization", "Bearer "+research); r.Status != http.StatusForbidden {
			t.Errorf("research token, %s: %d, want 403", path, r.Status)
		}
	}

	// $everything: B's is refused to f001 as its read is; A's and C's leave
	// out nothing but C's withheld Observation.
	if r := g.Do(t, "GET", "/Patient/"+b+"/$everything", nil, "Authorization", "Bearer "+f001); r.Status != http.StatusForbidden {
		t.Errorf("$everything of B for f001: %d, want 403", r.Status)
	}
	ev := getSearch(t, g, f001, "/Patient/"+c+"/$everything")
	same("$everything of C", ev.refs("match"), append(p(c), "Observation/"+obsCShown, "Condition/"+condC, "Consent/"+consentC))
	same("$everything of B for another organization", getSearch(t, g, other, "/Patient/"+b+"/$everything").refs("match"),
		append(append(p(b), o(obsB...)...), "Condition/"+condB, "Consent/"+consentB))

	// Decisions were recorded: f001's searches left denials for B by type.
	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour})
	var all struct{ Decisions []recordEntry }
	if st, body := sendJSON(t, g, auditor, "GET", "/v1/decisions?patient=Patient/"+b, nil, &all); st != http.StatusOK {
		t.Fatalf("decisions: %d %s", st, body)
	}
	denied := map[string]bool{}
	for _, e := range all.Decisions {
		var d decisionDoc
		if err := json.Unmarshal(e.Record, &d); err != nil {
			t.Fatal(err)
		}
		if d.Client == "good-health" && !d.Allow {
			denied[d.Resource] = true
		}
	}
	for _, typ := range []string{"Patient", "Observation", "Condition"} {
		if !denied[typ] {
			t.Errorf("no recorded search denial of %s for B: %v", typ, denied)
		}
	}
	if after := g.RecordLeaves(t); after <= before {
		t.Errorf("searches recorded no decisions")
	}
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// totalOf is Bundle.total, or -1 when it is absent.
func totalOf(b searchset) int {
	if b.Total == nil {
		return -1
	}
	return *b.Total
}
