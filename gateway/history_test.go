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
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// historyDoc is a history Bundle as a client reads it.
type historyDoc struct {
	ResourceType string
	Type         string
	Total        *int
	Link         []struct{ Relation, URL string }
	Entry        []struct {
		FullURL  string
		Resource json.RawMessage
		Request  struct{ Method, URL string }
		Response struct{ Status, Etag, LastModified string }
	}
}

func (d historyDoc) next() string {
	for _, l := range d.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// refs are the entries as "Type/id/etag".
func (d historyDoc) refs() []string {
	var out []string
	for _, e := range d.Entry {
		parts := strings.Split(e.FullURL, "/")
		out = append(out, parts[len(parts)-2]+"/"+parts[len(parts)-1]+"/"+e.Response.Etag)
	}
	return out
}

func getHistory(t *testing.T, g *testonly.Gateway, tok, path string) historyDoc {
	t.Helper()
	r := g.Do(t, "GET", path, nil, "Authorization", "Bearer "+tok)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	var d historyDoc
	if err := json.Unmarshal(r.Body, &d); err != nil {
		t.Fatal(err)
	}
	if d.ResourceType != "Bundle" || d.Type != "history" {
		t.Fatalf("GET %s: a %s %s, want a history Bundle", path, d.Type, d.ResourceType)
	}
	return d
}

// allPages follows next links from path and returns every entry.
func allPages(t *testing.T, g *testonly.Gateway, tok, path string) []string {
	t.Helper()
	var refs []string
	for range 100 {
		d := getHistory(t, g, tok, path)
		if d.Total != nil {
			t.Errorf("a page of %s has a total", path)
		}
		refs = append(refs, d.refs()...)
		next := d.next()
		if next == "" {
			return refs
		}
		u, err := url.Parse(next)
		if err != nil {
			t.Fatal(err)
		}
		path = strings.TrimPrefix(u.Path, "/fhir/r4") + "?" + u.RawQuery
	}
	t.Fatalf("more than 100 pages of %s", path)
	return nil
}

// TestTypeAndSystemHistory: GET /{type}/_history and /_history list
// versions newest first, as instance history renders them, a page at a
// time; routing does not take them for reads; _since bounds them; research
// callers are refused as for reads.
func TestTypeAndSystemHistory(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	ehr := g.Token(t)
	p := created(t, g, ehr, "Patient", `{"resourceType":"Patient","gender":"female"}`)
	if r := g.Do(t, "PUT", "/Patient/"+p, []byte(`{"resourceType":"Patient","id":"`+p+`","gender":"male"}`), "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	obs := created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+p+`"}}`)
	org := created(t, g, ehr, "Organization", `{"resourceType":"Organization","name":"Acme"}`)
	if r := g.Do(t, "DELETE", "/Observation/"+obs, nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	time.Sleep(5 * time.Millisecond)
	later := created(t, g, ehr, "Patient", `{"resourceType":"Patient","gender":"other"}`)

	want := []string{"Patient/" + later + `/W/"1"`, "Observation/" + obs + `/W/"2"`, "Organization/" + org + `/W/"1"`,
		"Observation/" + obs + `/W/"1"`, "Patient/" + p + `/W/"2"`, "Patient/" + p + `/W/"1"`}
	sys := getHistory(t, g, ehr, "/_history")
	if got := sys.refs(); !slices.Equal(got, want) {
		t.Errorf("system history = %v, want %v", got, want)
	}
	typ := getHistory(t, g, ehr, "/Patient/_history")
	if got := typ.refs(); !slices.Equal(got, []string{want[0], want[4], want[5]}) {
		t.Errorf("Patient history = %v", got)
	}
	// Entries as instance history renders them.
	inst := getHistory(t, g, ehr, "/Patient/"+p+"/_history")
	for i, e := range inst.Entry {
		te := typ.Entry[i+1]
		if e.FullURL != te.FullURL || e.Request != te.Request || e.Response != te.Response || string(e.Resource) != string(te.Resource) {
			t.Errorf("type history entry %+v differs from instance history's %+v", te, e)
		}
	}
	tomb := sys.Entry[1]
	if tomb.Request.Method != "DELETE" || len(tomb.Resource) != 0 || !strings.HasPrefix(tomb.Response.Status, "204") {
		t.Errorf("tombstone entry %+v", tomb)
	}

	// Pages of every size walk the same list.
	for _, n := range []string{"1", "2", "5", "6", "1000"} {
		if got := allPages(t, g, ehr, "/_history?_count="+n); !slices.Equal(got, want) {
			t.Errorf("system history by pages of %s = %v", n, got)
		}
	}
	if got := allPages(t, g, ehr, "/Observation/_history?_count=1"); !slices.Equal(got, []string{want[1], want[3]}) {
		t.Errorf("Observation history by pages of 1 = %v", got)
	}
	if d := getHistory(t, g, ehr, "/Encounter/_history"); len(d.Entry) != 0 || d.next() != "" {
		t.Errorf("Encounter history = %v", d.refs())
	}

	// _since bounds by lastUpdated.
	var lu struct{ Meta struct{ LastUpdated string } }
	json.Unmarshal(g.Do(t, "GET", "/Patient/"+later, nil, "Authorization", "Bearer "+ehr).Body, &lu)
	if got := getHistory(t, g, ehr, "/_history?_since="+url.QueryEscape(lu.Meta.LastUpdated)).refs(); !slices.Equal(got, want[:1]) {
		t.Errorf("system history since the last write = %v", got)
	}
	if got := getHistory(t, g, ehr, "/Patient/_history?_since=2999").refs(); len(got) != 0 {
		t.Errorf("history since 2999 = %v", got)
	}
	if got := getHistory(t, g, ehr, "/Patient/_history?_since=2000-01-01").refs(); len(got) != 3 {
		t.Errorf("history since 2000 = %v", got)
	}
	for _, bad := range []string{"/_history?_since=yesterday", "/_history?_count=0", "/_history?_count=x", "/Patient/_history?_cursor=-1"} {
		if r := g.Do(t, "GET", bad, nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, r.Status)
		}
	}
	if r := g.Do(t, "GET", "/Nonsense/_history", nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusNotFound {
		t.Errorf("GET /Nonsense/_history: %d, want 404", r.Status)
	}

	// Scopes: a reader of Observations sees Observation history only, in
	// system history too; researchers and callers without a token none.
	obsReader := g.TokenFor(t, auth.Claims{ClientID: "obs", PurposeOfUse: "TREAT", Scopes: []string{"system/Observation.read"}, TTL: time.Hour})
	if r := g.Do(t, "GET", "/Patient/_history", nil, "Authorization", "Bearer "+obsReader); r.Status != http.StatusForbidden {
		t.Errorf("Patient history for an Observation reader: %d, want 403", r.Status)
	}
	if got := getHistory(t, g, obsReader, "/_history").refs(); !slices.Equal(got, []string{want[1], want[3]}) {
		t.Errorf("system history for an Observation reader = %v", got)
	}
	researcher := g.TokenFor(t, auth.Claims{ClientID: "research", Scopes: []string{gateway.CohortQueryScope, gateway.CohortExportScope}, TTL: time.Hour})
	for _, path := range []string{"/_history", "/Patient/_history"} {
		if r := g.Do(t, "GET", path, nil, "Authorization", "Bearer "+researcher); r.Status != http.StatusForbidden {
			t.Errorf("GET %s as a researcher: %d, want 403", path, r.Status)
		}
		if r := g.Do(t, "GET", path, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", path, r.Status)
		}
	}
}

// TestHistoryConsent: a Consent that withholds one patient's data from a
// client keeps every version of that patient's resources (the Consent
// itself and tombstones included) out of the client's type and system
// history, page after page, with nothing in the Bundle that tells; other
// clients still see them; each request decides once per patient, and the
// decisions are recorded.
func TestHistoryConsent(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	ehr := g.Token(t)
	observation := func(patient string) string {
		return created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+patient+`"}}`)
	}
	denied := created(t, g, ehr, "Patient", `{"resourceType":"Patient","gender":"female"}`)
	allowed := created(t, g, ehr, "Patient", `{"resourceType":"Patient","gender":"male"}`)
	deniedObs := []string{observation(denied), observation(denied)}
	allowedObs := observation(allowed)
	if r := g.Do(t, "DELETE", "/Observation/"+deniedObs[1], nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
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
	consent["patient"] = map[string]any{"reference": "Patient/" + denied}
	body, _ := json.Marshal(consent)
	cid := created(t, g, ehr, "Consent", string(body))
	// The newest version of the denied patient's data is a tombstone.
	tombOnly := observation(denied)
	if r := g.Do(t, "DELETE", "/Observation/"+tombOnly, nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}

	reader := func(client, actor string) string {
		return g.TokenFor(t, auth.Claims{ClientID: client, FHIRUser: actor, PurposeOfUse: "TREAT",
			Scopes: []string{"system/*.read"}, TTL: time.Hour})
	}
	goodHealth, other := reader("good-health", "Organization/f001"), reader("other-clinic", "Organization/other")
	hidden := append([]string{denied, cid, tombOnly}, deniedObs...)

	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour})
	decisions := func(patient string) (allow, deny int) {
		t.Helper()
		var all struct{ Decisions []recordEntry }
		if st, b := sendJSON(t, g, auditor, "GET", "/v1/decisions?patient=Patient/"+patient, nil, &all); st != http.StatusOK {
			t.Fatalf("decisions: %d %s", st, b)
		}
		for _, e := range all.Decisions {
			var d decisionDoc
			if err := json.Unmarshal(e.Record, &d); err != nil {
				t.Fatal(err)
			}
			if d.Client != "good-health" || d.Action != "read" {
				continue
			}
			if d.Allow {
				allow++
			} else {
				deny++
			}
		}
		return allow, deny
	}

	for _, path := range []string{"/_history", "/Observation/_history", "/Patient/_history", "/Consent/_history"} {
		_, deny0 := decisions(denied)
		allow0, _ := decisions(allowed)
		r := g.Do(t, "GET", path, nil, "Authorization", "Bearer "+goodHealth)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s for good-health: %d %s", path, r.Status, r.Body)
		}
		for _, id := range hidden {
			if strings.Contains(string(r.Body), id) {
				t.Errorf("GET %s for good-health shows %s of the patient who withholds", path, id)
			}
		}
		var d historyDoc
		json.Unmarshal(r.Body, &d)
		if d.Total != nil {
			t.Errorf("GET %s has a total", path)
		}
		_, deny1 := decisions(denied)
		allow1, _ := decisions(allowed)
		if path != "/Patient/_history" && path != "/Observation/_history" && path != "/_history" {
			continue // no version of the allowed patient in a Consent listing
		}
		if deny1-deny0 != 1 {
			t.Errorf("GET %s recorded %d denials for the patient, want 1 (once per patient per request)", path, deny1-deny0)
		}
		if allow1-allow0 != 1 {
			t.Errorf("GET %s recorded %d allowed reads of the other patient, want 1", path, allow1-allow0)
		}
	}
	// The allowed patient's data is listed.
	if got := getHistory(t, g, goodHealth, "/Observation/_history").refs(); !slices.Equal(got, []string{"Observation/" + allowedObs + `/W/"1"`}) {
		t.Errorf("Observation history for good-health = %v", got)
	}
	// Pages: the hidden versions never show, and paging reaches the end.
	for _, n := range []string{"1", "2", "3"} {
		got := allPages(t, g, goodHealth, "/_history?_count="+n)
		for _, ref := range got {
			for _, id := range hidden {
				if strings.Contains(ref, id) {
					t.Errorf("page of %s shows %s", n, ref)
				}
			}
		}
		if !slices.Contains(got, "Observation/"+allowedObs+`/W/"1"`) || !slices.Contains(got, "Patient/"+allowed+`/W/"1"`) {
			t.Errorf("pages of %s for good-health = %v", n, got)
		}
	}
	// Another client sees everything.
	all := strings.Join(getHistory(t, g, other, "/_history").refs(), " ")
	for _, id := range hidden {
		if !strings.Contains(all, id) {
			t.Errorf("system history for other-clinic lacks %s", id)
		}
	}
}
