package gateway_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestDecisionRecordsHoldNoPHI ingests three Synthea patients, reads back
// every Patient and Observation, provokes a few refusals and validation
// errors built from the patients' own data, and then checks that no
// decision record, consent event, OperationOutcome or log line holds any
// of the patients' names, identifiers (SSN, MRN, driver's license,
// passport), address lines, phone numbers or birth dates; and that every
// read left a well-formed decision record.
func TestDecisionRecordsHoldNoPHI(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{gateway.AuditScope}, TTL: time.Hour})
	files := smallestPatientBundles(t, 3)
	secrets, patientJSON := collectPatientSecrets(t, files)

	var outcomes [][]byte // every OperationOutcome the gateway answered
	var reads []string    // "Type/id/_history/1" of every resource read back
	patients := map[string]bool{}
	for _, f := range files {
		r := g.Do(t, http.MethodPost, "", readFile(t, f), ehr...)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", filepath.Base(f), r.Status, r.Body)
		}
		br := decodeBundle(t, r.Body)
		if br.Type != "transaction-response" {
			t.Fatalf("%s: a %s", filepath.Base(f), br.Type)
		}
		for _, e := range br.Entry {
			if len(e.Response.Outcome) > 0 {
				outcomes = append(outcomes, e.Response.Outcome)
			}
			loc := relativeLocation(e.Response.Location)
			switch typ, _, _ := strings.Cut(loc, "/"); typ {
			case "Patient":
				patients["Patient/"+strings.Split(loc, "/")[1]] = true
				reads = append(reads, loc)
			case "Observation":
				reads = append(reads, loc)
			}
		}
	}
	if len(patients) != 3 || len(reads) < 50 {
		t.Fatalf("ingested %d patients and %d Patients and Observations", len(patients), len(reads))
	}
	for _, loc := range reads {
		parts := strings.Split(loc, "/")
		r := g.Do(t, http.MethodGet, "/"+parts[0]+"/"+parts[1], nil, ehr...)
		if r.Status != http.StatusOK {
			outcomes = append(outcomes, r.Body)
			t.Errorf("read %s: %d %s", loc, r.Status, r.Body)
		}
	}

	// Refusals and errors about the same patients: what they answer and log
	// must not quote the data either.
	var somePatient string
	for p := range patients {
		somePatient = p
		break
	}
	probe := func(method, path string, body []byte, headers ...string) {
		t.Helper()
		r := g.Do(t, method, path, body, headers...)
		if r.Status < 400 {
			t.Errorf("%s %s: %d, want a refusal", method, path, r.Status)
			return
		}
		outcomes = append(outcomes, r.Body)
	}
	noScope := g.TokenFor(t, auth.Claims{ClientID: "no-scope", Scopes: []string{"openid"}, TTL: time.Hour})
	probe(http.MethodGet, "/"+somePatient, nil, "Authorization", "Bearer "+noScope)
	probe(http.MethodGet, "/"+somePatient, nil, append(ehr, "X-Purpose-Of-Use", "HMARKT")...)
	probe(http.MethodGet, "/Patient/never-stored", nil, ehr...)
	for _, pt := range patientJSON {
		var res map[string]any
		if err := json.Unmarshal(pt, &res); err != nil {
			t.Fatal(err)
		}
		names, _ := res["name"].([]any)
		name, _ := names[0].(map[string]any)
		telecom, _ := res["telecom"].([]any)
		phone, _ := telecom[0].(map[string]any)
		for field, value := range map[string]any{
			"gender":    name["family"],           // not a gender code
			"birthDate": name["given"].([]any)[0], // not a date
			"active":    phone["value"],           // not a boolean
		} {
			bad := map[string]any{}
			for k, v := range res {
				bad[k] = v
			}
			bad[field] = value
			delete(bad, "id")
			body, _ := json.Marshal(bad)
			probe(http.MethodPost, "/Patient", body, ehr...)
			txn, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": bad, "request": map[string]any{"method": "POST", "url": "Patient"}}}})
			probe(http.MethodPost, "", txn, ehr...)
		}
	}

	var pages [][]byte // every page of records and links scanned for PHI
	// Searches by the patients' own names and dates find them; bad
	// searches that carry those values are refused without quoting them;
	// page links carry sorted names only sealed.
	strict := append(slices.Clone(ehr), "Prefer", "handling=strict")
	for _, pt := range patientJSON {
		var res map[string]any
		if err := json.Unmarshal(pt, &res); err != nil {
			t.Fatal(err)
		}
		names, _ := res["name"].([]any)
		name, _ := names[0].(map[string]any)
		family, _ := name["family"].(string)
		birth, _ := res["birthDate"].(string)
		r := g.Do(t, http.MethodGet, "/Patient?family="+url.QueryEscape(family)+"&birthdate="+birth, nil, ehr...)
		if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"total":`)) || bytes.Contains(r.Body, []byte(`"total":0`)) {
			t.Errorf("search by family and birth date: %d %.300s", r.Status, r.Body)
		}
		probe(http.MethodGet, "/Patient?birthdate="+url.QueryEscape(family), nil, ehr...)
		probe(http.MethodGet, "/Patient?family:"+url.QueryEscape(family)+"="+url.QueryEscape(family), nil, strict...)
		probe(http.MethodGet, "/Patient?"+url.QueryEscape(family)+"="+birth, nil, strict...)
		probe(http.MethodGet, "/Patient?_sort="+url.QueryEscape(family), nil, ehr...)
		probe(http.MethodGet, "/Patient?_cursor="+url.QueryEscape(family), nil, ehr...)
		probe(http.MethodGet, "/Observation?value-quantity="+url.QueryEscape(birth)+"x", nil, ehr...)
	}
	for next := "/Patient?_sort=family,given&_count=1"; next != ""; {
		r := g.Do(t, http.MethodGet, next, nil, ehr...)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, r.Status, r.Body)
		}
		var b struct {
			Link []struct{ Relation, URL string }
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatal(err)
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" || l.Relation == "previous" {
				links, _ := json.Marshal(l.URL)
				pages = append(pages, links)
				if cur, err := url.Parse(l.URL); err == nil {
					raw, _ := base64.RawURLEncoding.DecodeString(cur.Query().Get("_cursor"))
					pages = append(pages, raw)
				}
			}
			if l.Relation == "next" {
				u, _ := url.Parse(l.URL)
				next = strings.TrimPrefix(u.Path, "/fhir/r4") + "?" + u.RawQuery
			}
		}
	}

	// Every decision and consent event, as an auditor sees them.
	type decision struct {
		LeafIndex uint64
		Record    json.RawMessage
	}
	var decisions []decision
	for token := ""; ; {
		path := "/v1/decisions?page_size=1000"
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		r := sendRoot(t, g, http.MethodGet, path, auditor, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		pages = append(pages, r.Body)
		var page struct {
			Decisions     []decision
			NextPageToken string
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("decisions page: %v", err)
		}
		decisions = append(decisions, page.Decisions...)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	for p := range patients {
		for token := ""; ; {
			path := "/v1/patients/" + strings.TrimPrefix(p, "Patient/") + "/consent-events?page_size=1000"
			if token != "" {
				path += "&page_token=" + url.QueryEscape(token)
			}
			r := sendRoot(t, g, http.MethodGet, path, auditor, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
			}
			pages = append(pages, r.Body)
			var page struct{ NextPageToken string }
			if err := json.Unmarshal(r.Body, &page); err != nil {
				t.Fatalf("consent events page: %v", err)
			}
			if token = page.NextPageToken; token == "" {
				break
			}
		}
	}

	t.Logf("%d reads, %d decisions, %d OperationOutcomes, %d names and %d other values searched",
		len(reads), len(decisions), len(outcomes), len(secrets.names), len(secrets.values))

	t.Run("decision records", func(t *testing.T) {
		patientRef := regexp.MustCompile(`^Patient/[A-Za-z0-9\-.]{1,64}$`)
		revision := regexp.MustCompile(`^[0-9a-f]{64}$`)
		// Records name patients and resources by token, never by id.
		byToken := map[string]string{}
		for p := range patients {
			byToken[g.RecordRef("Patient", strings.TrimPrefix(p, "Patient/"))] = p
		}
		readDecisions := map[string]int{}
		for _, d := range decisions {
			var rec struct {
				Kind, Client, Patient, PolicyRevision, Action, Resource string
			}
			if !json.Valid(d.Record) || json.Unmarshal(d.Record, &rec) != nil {
				t.Errorf("decision %d: the record is not JSON: %s", d.LeafIndex, d.Record)
				continue
			}
			if rec.Kind != "access-decision" || rec.Client == "" || !patientRef.MatchString(rec.Patient) ||
				!patients[byToken[rec.Patient]] || !revision.MatchString(rec.PolicyRevision) {
				t.Errorf("decision %d: malformed record %s", d.LeafIndex, d.Record)
			}
			if rec.Action == "read" {
				readDecisions[rec.Resource]++
			}
		}
		for _, loc := range reads {
			parts := strings.SplitN(loc, "/", 3)
			if readDecisions[g.RecordRef(parts[0], parts[1])+"/"+parts[2]] == 0 {
				t.Errorf("no decision recorded for the read of %s", loc)
			}
		}
	})

	t.Run("no PHI", func(t *testing.T) {
		for i, p := range pages {
			if found := secrets.find(p); len(found) > 0 {
				t.Errorf("decision or consent event page %d holds PHI: %q", i, found)
			}
		}
		if len(outcomes) < 10 {
			t.Errorf("only %d OperationOutcomes seen; the scan would prove little", len(outcomes))
		}
		for _, oo := range outcomes {
			if found := secrets.find(oo); len(found) > 0 {
				t.Errorf("an OperationOutcome holds PHI %q: %s", found, oo)
			}
		}
		logs := g.Logs.Bytes()
		if !bytes.Contains(logs, []byte("msg=rpc")) {
			t.Fatal("the gateway logged no request; the log scan would prove nothing")
		}
		if found := secrets.find(logs); len(found) > 0 {
			t.Errorf("the gateway's log holds PHI: %q", found)
		}
	})
}

// patientSecrets are the values of the ingested Patients that must never
// leave the vault.
type patientSecrets struct {
	names  []string // family and given names: matched as whole words
	values []string // identifiers, address lines, phones, birth dates
}

func (s patientSecrets) find(data []byte) []string {
	var found []string
	for _, v := range s.values {
		if bytes.Contains(data, []byte(v)) {
			found = append(found, v)
		}
	}
	for _, n := range s.names {
		if regexp.MustCompile(`\b` + regexp.QuoteMeta(n) + `\b`).Match(data) {
			found = append(found, n)
		}
	}
	return found
}

// collectPatientSecrets reads the Patients of the Bundles; it returns their
// secrets and the Patient resources themselves.
func collectPatientSecrets(t *testing.T, files []string) (patientSecrets, []json.RawMessage) {
	t.Helper()
	var s patientSecrets
	var resources []json.RawMessage
	seen := map[string]bool{}
	add := func(list *[]string, v string) {
		if len(v) >= 2 && !seen[v] {
			seen[v] = true
			*list = append(*list, v)
		}
	}
	for _, f := range files {
		var b struct {
			Entry []struct{ Resource json.RawMessage }
		}
		if err := json.Unmarshal(readFile(t, f), &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			var kind struct{ ResourceType string }
			if err := json.Unmarshal(e.Resource, &kind); err != nil {
				t.Fatal(err)
			}
			if kind.ResourceType != "Patient" {
				continue
			}
			var pt struct {
				Name []struct {
					Family string
					Given  []string
				}
				Identifier []struct {
					System, Value string
					Type          struct{ Coding []struct{ Code string } }
				}
				Address   []struct{ Line []string }
				Telecom   []struct{ Value string }
				BirthDate string
			}
			if err := json.Unmarshal(e.Resource, &pt); err != nil {
				t.Fatal(err)
			}
			resources = append(resources, e.Resource)
			for _, n := range pt.Name {
				add(&s.names, n.Family)
				for _, g := range n.Given {
					add(&s.names, g)
				}
			}
			for _, id := range pt.Identifier {
				code := ""
				if len(id.Type.Coding) > 0 {
					code = id.Type.Coding[0].Code
				}
				switch {
				case id.System == "http://hl7.org/fhir/sid/us-ssn", code == "SS", code == "MR", code == "DL", code == "PPN":
					add(&s.values, id.Value)
				}
			}
			for _, a := range pt.Address {
				for _, l := range a.Line {
					add(&s.values, l)
				}
			}
			for _, tc := range pt.Telecom {
				add(&s.values, tc.Value)
			}
			add(&s.values, pt.BirthDate)
		}
	}
	if len(resources) != len(files) || len(s.names) < 2*len(files) || len(s.values) < 5*len(files) {
		t.Fatalf("collected %d patients, %d names and %d other values from %d Bundles", len(resources), len(s.names), len(s.values), len(files))
	}
	return s, resources
}

// smallestPatientBundles returns the n smallest Synthea patient Bundles
// (not the hospital and practitioner Bundles).
func smallestPatientBundles(t *testing.T, n int) []string {
	t.Helper()
	type file struct {
		path string
		size int64
	}
	var fs []file
	for _, p := range shareddata.Files(t, "synthea") {
		base := filepath.Base(p)
		if strings.HasPrefix(base, "hospitalInformation") || strings.HasPrefix(base, "practitionerInformation") {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, file{p, st.Size()})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].size < fs[j].size })
	if len(fs) < n {
		t.Fatalf("only %d patient Bundles", len(fs))
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fs[i].path
	}
	return out
}

// relativeLocation turns a Location (absolute or not) into
// "Type/id/_history/n".
func relativeLocation(loc string) string {
	if i := strings.Index(loc, "/fhir/r4/"); i >= 0 {
		return loc[i+len("/fhir/r4/"):]
	}
	return strings.TrimPrefix(loc, "/")
}
