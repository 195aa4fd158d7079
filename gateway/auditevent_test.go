package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// auditEventDoc is what the tests read of an AuditEvent.
type auditEventDoc struct {
	ResourceType string
	ID           string
	Extension    []struct {
		URL       string
		ValueURL  string `json:"valueUrl"`
		Extension []struct {
			URL              string
			ValueUnsignedInt uint64
			ValueCode        string
			ValueString      string
		}
	}
	Type           struct{ System, Code string }
	Subtype        []struct{ System, Code string }
	Action         string
	Recorded       string
	Outcome        string
	PurposeOfEvent []struct {
		Coding []struct{ System, Code string }
	}
	Agent []struct {
		Who       refDoc
		Requestor bool
	}
	Entity []struct {
		What   refDoc
		Role   struct{ Code string }
		Detail []struct{ Type, ValueString string }
	}
}

type refDoc struct {
	Reference, Type string
	Identifier      struct{ System, Value string }
}

// derivedPages follows a searchset's next links from path and returns every
// entry's resource.
func derivedPages(t *testing.T, g *testonly.Gateway, tok, path string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	for pages := 0; path != ""; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages")
		}
		r := g.Do(t, http.MethodGet, path, nil, "Authorization", "Bearer "+tok)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		var b struct {
			Type  string
			Link  []struct{ Relation, URL string }
			Entry []struct {
				FullURL  string
				Resource json.RawMessage
			}
		}
		if err := json.Unmarshal(r.Body, &b); err != nil || b.Type != "searchset" {
			t.Fatalf("GET %s: not a searchset: %v %s", path, err, r.Body)
		}
		for _, e := range b.Entry {
			out = append(out, e.Resource)
		}
		path = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				path = strings.TrimPrefix(l.URL, g.URL)
			}
		}
	}
	return out
}

func decodeAuditEvents(t *testing.T, raw []json.RawMessage) map[string]auditEventDoc {
	t.Helper()
	out := map[string]auditEventDoc{}
	for _, r := range raw {
		var ev auditEventDoc
		if err := json.Unmarshal(r, &ev); err != nil || ev.ResourceType != "AuditEvent" {
			t.Fatalf("not an AuditEvent: %v %s", err, r)
		}
		if _, dup := out[ev.ID]; dup {
			t.Fatalf("AuditEvent %s listed twice", ev.ID)
		}
		out[ev.ID] = ev
	}
	return out
}

// listRecords pages through a /v1 record listing.
func listRecords(t *testing.T, g *testonly.Gateway, tok, path, key string) []recordEntry {
	t.Helper()
	var out []recordEntry
	for token := ""; ; {
		p := path + "?page_size=1000"
		if token != "" {
			p += "&page_token=" + url.QueryEscape(token)
		}
		r := sendRoot(t, g, http.MethodGet, p, tok, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatal(err)
		}
		var entries []recordEntry
		if err := json.Unmarshal(page[key], &entries); err != nil {
			t.Fatal(err)
		}
		out = append(out, entries...)
		var next string
		json.Unmarshal(page["nextPageToken"], &next)
		if token = next; token == "" {
			return out
		}
	}
}

// TestAuditEventsAreTheDecisionLog ingests two Synthea patients, reads and
// searches their data, provokes denials (a marketing purpose; a Consent
// that withholds from one organization), and checks that the AuditEvents
// are the decision log and consent events one to one, field by field on
// who, what, outcome and leaf; that the filters and the scoping hold; that
// no AuditEvent holds PHI; and that no client can write an AuditEvent.
func TestAuditEventsAreTheDecisionLog(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehrTok := g.Token(t)
	ehr := []string{"Authorization", "Bearer " + ehrTok}
	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{gateway.AuditScope}, TTL: time.Hour})
	files := smallestPatientBundles(t, 2)
	secrets, _ := collectPatientSecrets(t, files)

	var patients, observations []string
	for _, f := range files {
		r := g.Do(t, http.MethodPost, "", readFile(t, f), ehr...)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", filepath.Base(f), r.Status, r.Body)
		}
		for _, e := range decodeBundle(t, r.Body).Entry {
			parts := strings.Split(relativeLocation(e.Response.Location), "/")
			switch parts[0] {
			case "Patient":
				patients = append(patients, parts[1])
			case "Observation":
				observations = append(observations, parts[1])
			}
		}
	}
	if len(patients) != 2 || len(observations) < 4 {
		t.Fatalf("ingested %d patients, %d observations", len(patients), len(observations))
	}
	for _, p := range patients {
		if r := g.Do(t, http.MethodGet, "/Patient/"+p, nil, ehr...); r.Status != http.StatusOK {
			t.Fatalf("read: %d %s", r.Status, r.Body)
		}
		if r := g.Do(t, http.MethodGet, "/Observation?patient="+p+"&_count=2", nil, ehr...); r.Status != http.StatusOK {
			t.Fatalf("search: %d %s", r.Status, r.Body)
		}
	}
	for _, o := range observations[:3] {
		if r := g.Do(t, http.MethodGet, "/Observation/"+o, nil, ehr...); r.Status != http.StatusOK {
			t.Fatalf("read: %d %s", r.Status, r.Body)
		}
	}
	if r := g.Do(t, http.MethodGet, "/Patient/"+patients[1], nil, append(slices.Clone(ehr), "X-Purpose-Of-Use", "HMARKT")...); r.Status != http.StatusForbidden {
		t.Fatalf("marketing read: %d", r.Status)
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
	consent["patient"] = map[string]any{"reference": "Patient/" + patients[0]}
	body, _ := json.Marshal(consent)
	cid := created(t, g, ehrTok, "Consent", string(body))
	f001 := g.TokenFor(t, auth.Claims{ClientID: "good-health", FHIRUser: "Organization/f001", PurposeOfUse: "TREAT",
		Scopes: []string{"system/*.read"}, TTL: time.Hour})
	if r := g.Do(t, http.MethodGet, "/Patient/"+patients[0], nil, "Authorization", "Bearer "+f001); r.Status != http.StatusForbidden {
		t.Fatalf("withheld read: %d %s", r.Status, r.Body)
	}

	// The log as /v1 lists it, and as AuditEvents.
	want := map[string]recordEntry{}
	for _, e := range listRecords(t, g, auditor, "/v1/decisions", "decisions") {
		want[strconv.FormatUint(e.LeafIndex, 10)] = e
	}
	for _, p := range patients {
		for _, e := range listRecords(t, g, auditor, "/v1/patients/"+p+"/consent-events", "events") {
			want[strconv.FormatUint(e.LeafIndex, 10)] = e
		}
	}
	pages := derivedPages(t, g, auditor, "/AuditEvent?_count=7")
	got := decodeAuditEvents(t, pages)
	for id, ev := range got {
		kind := ""
		for _, x := range ev.Extension {
			if x.URL == gateway.LogLeafExtension {
				for _, s := range x.Extension {
					if s.URL == "kind" {
						kind = s.ValueCode
					}
					if s.URL == "index" && strconv.FormatUint(s.ValueUnsignedInt, 10) != id {
						t.Errorf("AuditEvent %s: leaf index %d", id, s.ValueUnsignedInt)
					}
				}
			}
			if x.URL == gateway.ReceiptExtension && !strings.HasSuffix(x.ValueURL, "/v1/receipts/leaves/"+id) {
				t.Errorf("AuditEvent %s: receipt %s", id, x.ValueURL)
			}
		}
		if kind == "policy-activation" || kind == "erasure" {
			delete(got, id) // not in the listings compared
		}
	}
	if len(got) != len(want) || len(want) < 10 {
		t.Fatalf("%d AuditEvents, %d decisions and consent events; want the same, at least 10", len(got), len(want))
	}
	denials := 0
	for id, e := range want {
		ev, ok := got[id]
		if !ok {
			t.Errorf("leaf %s: no AuditEvent", id)
			continue
		}
		checkAuditEvent(t, ev, e)
		if ev.Outcome != "0" {
			denials++
		}
		// Read by id: the same resource.
		r := g.Do(t, http.MethodGet, "/AuditEvent/"+id, nil, "Authorization", "Bearer "+auditor)
		if r.Status != http.StatusOK {
			t.Fatalf("GET AuditEvent/%s: %d %s", id, r.Status, r.Body)
		}
		if one := decodeAuditEvents(t, []json.RawMessage{r.Body}); !jsonEqual(one[id], ev) {
			t.Errorf("AuditEvent/%s differs from its search entry", id)
		}
	}
	if denials < 2 {
		t.Errorf("%d denials among the AuditEvents, want at least 2", denials)
	}

	t.Run("no PHI", func(t *testing.T) {
		for _, p := range pages {
			if found := secrets.find(p); len(found) > 0 {
				t.Errorf("an AuditEvent holds PHI %q: %s", found, p)
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		denied := decodeAuditEvents(t, derivedPages(t, g, auditor, "/AuditEvent?outcome=4"))
		if len(denied) != denials {
			t.Errorf("outcome=4: %d AuditEvents, want %d", len(denied), denials)
		}
		byClient := decodeAuditEvents(t, derivedPages(t, g, auditor, "/AuditEvent?agent=good-health"))
		if len(byClient) != 1 {
			t.Errorf("agent=good-health: %d AuditEvents, want 1", len(byClient))
		}
		for _, ev := range byClient {
			if ev.Agent[0].Who.Identifier.Value != "good-health" || ev.Outcome != "4" {
				t.Errorf("agent=good-health: %+v", ev)
			}
			// The Consent that decided, resolved for the auditor.
			if !slices.ContainsFunc(ev.Entity, func(e struct {
				What   refDoc
				Role   struct{ Code string }
				Detail []struct{ Type, ValueString string }
			}) bool {
				return e.What.Reference == "Consent/"+cid+"/_history/1" && e.What.Identifier.Value == g.RecordRef("Consent", cid)+"/_history/1"
			}) {
				t.Errorf("the withheld read's AuditEvent does not name the Consent: %+v", ev.Entity)
			}
		}
		future := time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05Z")
		if n := len(derivedPages(t, g, auditor, "/AuditEvent?date=gt"+url.QueryEscape(future))); n != 0 {
			t.Errorf("date=gt(an hour from now): %d AuditEvents", n)
		}
		if n := len(derivedPages(t, g, auditor, "/AuditEvent?date=lt"+url.QueryEscape(future))); n < len(want) {
			t.Errorf("date=lt(an hour from now): %d AuditEvents, want all %d", n, len(want))
		}
		mine := decodeAuditEvents(t, derivedPages(t, g, auditor, "/AuditEvent?patient=Patient/"+patients[0]))
		ref := g.RecordRef("Patient", patients[0])
		for id, ev := range mine {
			if !hasPatient(ev, ref) {
				t.Errorf("patient filter: AuditEvent %s is about another patient", id)
			}
		}
		if len(mine) < 5 {
			t.Errorf("patient filter: %d AuditEvents", len(mine))
		}
		if r := g.Do(t, http.MethodGet, "/AuditEvent?_count=x", nil, "Authorization", "Bearer "+auditor); r.Status != http.StatusBadRequest {
			t.Errorf("_count=x: %d", r.Status)
		}
	})

	t.Run("scoping", func(t *testing.T) {
		self := g.TokenFor(t, auth.Claims{ClientID: "patient-app", FHIRUser: "Patient/" + patients[0],
			Scopes: []string{gateway.PatientSelfScope}, TTL: time.Hour})
		mine := decodeAuditEvents(t, derivedPages(t, g, self, "/AuditEvent"))
		all := decodeAuditEvents(t, derivedPages(t, g, auditor, "/AuditEvent?patient="+patients[0]))
		// The patient's own listings are records too: compare what existed.
		for id := range all {
			if _, ok := mine[id]; !ok {
				t.Errorf("the patient does not see AuditEvent %s about them", id)
			}
		}
		ref := g.RecordRef("Patient", patients[0])
		for id, ev := range mine {
			if !hasPatient(ev, ref) {
				t.Errorf("the patient sees AuditEvent %s about someone else", id)
			}
		}
		if r := g.Do(t, http.MethodGet, "/AuditEvent?patient="+patients[1], nil, "Authorization", "Bearer "+self); r.Status != http.StatusForbidden {
			t.Errorf("patient.self asking for another patient: %d", r.Status)
		}
		for id, ev := range got {
			if hasPatient(ev, ref) {
				continue
			}
			if r := g.Do(t, http.MethodGet, "/AuditEvent/"+id, nil, "Authorization", "Bearer "+self); r.Status != http.StatusForbidden {
				t.Errorf("patient.self reading AuditEvent %s about another: %d", id, r.Status)
			}
			break
		}
		for _, tok := range []string{ehrTok, g.Token(t, "system/*.cruds"), f001} {
			if r := g.Do(t, http.MethodGet, "/AuditEvent", nil, "Authorization", "Bearer "+tok); r.Status != http.StatusForbidden {
				t.Errorf("an EHR token searching AuditEvents: %d", r.Status)
			}
			for id := range want {
				if r := g.Do(t, http.MethodGet, "/AuditEvent/"+id, nil, "Authorization", "Bearer "+tok); r.Status != http.StatusForbidden {
					t.Errorf("an EHR token reading AuditEvent %s: %d", id, r.Status)
				}
				break
			}
		}
		if r := g.Do(t, http.MethodGet, "/AuditEvent/999999", nil, "Authorization", "Bearer "+auditor); r.Status != http.StatusNotFound {
			t.Errorf("AuditEvent/999999: %d", r.Status)
		}
		if r := g.Do(t, http.MethodGet, "/?_type=AuditEvent", nil, ehr...); r.Status != http.StatusBadRequest {
			t.Errorf("system search of AuditEvent: %d", r.Status)
		}
	})

	t.Run("no forged AuditEvent", func(t *testing.T) {
		forged := `{"resourceType":"AuditEvent",%s"type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z",
			"agent":[{"requestor":true,"who":{"display":"x"}}],"source":{"observer":{"display":"x"}}}`
		plain := []byte(strings.Replace(forged, "%s", "", 1))
		withLeaf := []byte(strings.Replace(forged, "%s", `"extension":[{"url":"`+gateway.LogLeafExtension+`","extension":[{"url":"index","valueUnsignedInt":3}]}],`, 1))
		withReceipt := []byte(strings.Replace(forged, "%s", `"extension":[{"url":"`+gateway.ReceiptExtension+`","valueUrl":"http://x/v1/receipts/leaves/3"}],`, 1))
		for _, req := range []struct {
			method, path string
			body         []byte
			want         int
		}{
			{"PUT", "/AuditEvent/0", plain, http.StatusMethodNotAllowed},
			{"PUT", "/AuditEvent/123456", plain, http.StatusMethodNotAllowed},
			{"DELETE", "/AuditEvent/0", nil, http.StatusMethodNotAllowed},
			{"POST", "/AuditEvent", withLeaf, http.StatusUnprocessableEntity},
			{"POST", "/AuditEvent", withReceipt, http.StatusUnprocessableEntity},
			{"PUT", "/AuditEvent/mine", withLeaf, http.StatusUnprocessableEntity},
		} {
			if r := g.Do(t, req.method, req.path, req.body, ehr...); r.Status != req.want {
				t.Errorf("%s %s: %d, want %d: %s", req.method, req.path, r.Status, req.want, r.Body)
			}
		}
		txn, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
			map[string]any{"resource": json.RawMessage(plain), "request": map[string]any{"method": "PUT", "url": "AuditEvent/7"}}}})
		if r := g.Do(t, http.MethodPost, "", txn, ehr...); r.Status != http.StatusMethodNotAllowed {
			t.Errorf("transaction storing AuditEvent/7: %d %s", r.Status, r.Body)
		}
		// A client's own AuditEvent is stored apart: read by its id, never
		// searched with the log's.
		stored := created(t, g, ehrTok, "AuditEvent", string(plain))
		if isDigits(stored) {
			t.Fatalf("a stored AuditEvent got the log's id %s", stored)
		}
		if r := g.Do(t, http.MethodGet, "/AuditEvent/"+stored, nil, ehr...); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "2026-01-01T00:00:00") {
			t.Errorf("GET stored AuditEvent: %d %s", r.Status, r.Body)
		}
		for id, ev := range decodeAuditEvents(t, derivedPages(t, g, auditor, "/AuditEvent?_count=1000")) {
			if !isDigits(id) || strings.HasPrefix(ev.Recorded, "2026-01-01T00:00:00") {
				t.Errorf("the log's AuditEvents include %s", id)
			}
		}
	})
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func hasPatient(ev auditEventDoc, ref string) bool {
	for _, e := range ev.Entity {
		if e.Role.Code == "1" && e.What.Identifier.Value == ref {
			return true
		}
	}
	return false
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// checkAuditEvent compares an AuditEvent with the record it stands for.
func checkAuditEvent(t *testing.T, ev auditEventDoc, e recordEntry) {
	t.Helper()
	var rec struct {
		Kind, Client, Actor, Patient, Resource, Consent, Event, Time, Purpose, PolicyRevision string
		Allow                                                                                 *bool
		BasedOn                                                                               []struct{ ID, VersionID string }
	}
	if err := json.Unmarshal(e.Record, &rec); err != nil {
		t.Fatal(err)
	}
	id := ev.ID
	if ev.Agent[0].Who.Identifier.System != gateway.ClientSystem || ev.Agent[0].Who.Identifier.Value != rec.Client {
		t.Errorf("AuditEvent %s: client %+v, record %s", id, ev.Agent[0].Who, rec.Client)
	}
	recorded, err1 := time.Parse(time.RFC3339Nano, ev.Recorded)
	at, err2 := time.Parse(time.RFC3339Nano, rec.Time)
	if err1 != nil || err2 != nil || !recorded.Equal(at) {
		t.Errorf("AuditEvent %s: recorded %s, record time %s", id, ev.Recorded, rec.Time)
	}
	if !hasPatient(ev, rec.Patient) {
		t.Errorf("AuditEvent %s: no patient entity %s", id, rec.Patient)
	}
	for _, en := range ev.Entity {
		if en.Role.Code == "1" && en.What.Reference != e.Resolved[rec.Patient] {
			t.Errorf("AuditEvent %s: patient reference %q, resolved %q", id, en.What.Reference, e.Resolved[rec.Patient])
		}
	}
	entity := func(value string) bool {
		return slices.ContainsFunc(ev.Entity, func(en struct {
			What   refDoc
			Role   struct{ Code string }
			Detail []struct{ Type, ValueString string }
		}) bool {
			return en.What.Identifier.Value == value
		})
	}
	switch rec.Kind {
	case "access-decision":
		wantOutcome := "0"
		if !*rec.Allow {
			wantOutcome = "4"
		}
		if ev.Outcome != wantOutcome {
			t.Errorf("AuditEvent %s: outcome %s, record allow %v", id, ev.Outcome, *rec.Allow)
		}
		if rec.Actor != "" && !slices.ContainsFunc(ev.Agent, func(a struct {
			Who       refDoc
			Requestor bool
		}) bool {
			return a.Requestor && (a.Who.Reference == rec.Actor || a.Who.Identifier.Value == rec.Actor)
		}) {
			t.Errorf("AuditEvent %s: no requesting agent %s", id, rec.Actor)
		}
		if strings.Contains(rec.Resource, "/") && !entity(rec.Resource) {
			t.Errorf("AuditEvent %s: no entity %s", id, rec.Resource)
		}
		for _, c := range rec.BasedOn {
			if !entity("Consent/" + c.ID + "/_history/" + c.VersionID) {
				t.Errorf("AuditEvent %s: no consent entity %s", id, c.ID)
			}
		}
		if len(ev.PurposeOfEvent) != 1 || ev.PurposeOfEvent[0].Coding[0].Code != rec.Purpose {
			t.Errorf("AuditEvent %s: purpose %+v, record %s", id, ev.PurposeOfEvent, rec.Purpose)
		}
		if !entity(strconv.Itoa(1)) {
			t.Errorf("AuditEvent %s: no policy entity", id)
		}
	case "consent-event":
		if ev.Outcome != "0" || len(ev.Subtype) != 1 || ev.Subtype[0].Code != rec.Event || !entity(rec.Consent) {
			t.Errorf("AuditEvent %s: %+v for consent event %s", id, ev, e.Record)
		}
	default:
		t.Errorf("AuditEvent %s: record of kind %s", id, rec.Kind)
	}
}
