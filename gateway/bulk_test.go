package gateway_test

import (
	"bytes"
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

// bulkManifest is what the tests read of a completion manifest.
type bulkManifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"error"`
}

// rootPath turns an absolute URL of the gateway into a path for DoRoot.
func rootPath(t *testing.T, g *testonly.Gateway, u string) string {
	t.Helper()
	p, ok := strings.CutPrefix(u, g.Root)
	if !ok {
		t.Fatalf("URL %s is not the gateway's (%s)", u, g.Root)
	}
	return p
}

// bulkKickOff starts an export at path (relative to the FHIR base) and
// returns its status URL.
func bulkKickOff(t *testing.T, g *testonly.Gateway, tok, path string) string {
	t.Helper()
	r := g.Do(t, "GET", path, nil, "Authorization", "Bearer "+tok, "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Fatalf("kick-off %s: %d %s", path, r.Status, r.Body)
	}
	loc := r.Header.Get("Content-Location")
	if loc == "" {
		t.Fatalf("kick-off %s: no Content-Location", path)
	}
	return loc
}

// bulkWait polls a status URL until the manifest is ready.
func bulkWait(t *testing.T, g *testonly.Gateway, tok, status string) bulkManifest {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := g.DoRoot(t, "GET", rootPath(t, g, status), nil, "Authorization", "Bearer "+tok)
		switch r.Status {
		case http.StatusAccepted:
			if r.Header.Get("X-Progress") == "" || r.Header.Get("Retry-After") == "" {
				t.Errorf("status 202 without X-Progress or Retry-After: %v", r.Header)
			}
			if time.Now().After(deadline) {
				t.Fatalf("export not done within a minute")
			}
			time.Sleep(20 * time.Millisecond)
			continue
		case http.StatusOK:
			var m bulkManifest
			if err := json.Unmarshal(r.Body, &m); err != nil {
				t.Fatalf("manifest: %v: %s", err, r.Body)
			}
			if !m.RequiresAccessToken || m.TransactionTime == "" || m.Request == "" || m.Error == nil {
				t.Errorf("manifest lacks a required member: %s", r.Body)
			}
			return m
		}
		t.Fatalf("status: %d %s", r.Status, r.Body)
	}
}

// bulkResources downloads every output file of m and returns "Type/id" of
// each line, checking that each line is a resource of the file's type.
func bulkResources(t *testing.T, g *testonly.Gateway, tok string, m bulkManifest) (refs []string, lines map[string][]map[string]any) {
	t.Helper()
	lines = map[string][]map[string]any{}
	for _, o := range m.Output {
		r := g.DoRoot(t, "GET", rootPath(t, g, o.URL), nil, "Authorization", "Bearer "+tok, "Accept", "application/fhir+ndjson")
		if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/fhir+ndjson" {
			t.Fatalf("file %s: %d %s %s", o.URL, r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		ls := bytes.Split(bytes.TrimSuffix(r.Body, []byte("\n")), []byte("\n"))
		if len(ls) != o.Count {
			t.Errorf("%s: %d lines, manifest says %d", o.Type, len(ls), o.Count)
		}
		for _, l := range ls {
			var res map[string]any
			if err := json.Unmarshal(l, &res); err != nil {
				t.Fatalf("%s: a line is not JSON: %v", o.Type, err)
			}
			if res["resourceType"] != o.Type {
				t.Errorf("%s file holds a %v", o.Type, res["resourceType"])
			}
			refs = append(refs, o.Type+"/"+res["id"].(string))
			lines[o.Type] = append(lines[o.Type], res)
		}
	}
	return refs, lines
}

func bulkExport(t *testing.T, g *testonly.Gateway, tok, path string) ([]string, bulkManifest) {
	t.Helper()
	m := bulkWait(t, g, tok, bulkKickOff(t, g, tok, path))
	refs, _ := bulkResources(t, g, tok, m)
	return refs, m
}

// TestBulkExport: system, Patient and Group kick-offs give the resources
// search would, in NDJSON files by type; _type, _since and _typeFilter
// narrow them; a patient whose consent denies the caller is in no file;
// types the token's scopes leave out are left out; decisions are recorded.
func TestBulkExport(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	const family = "Zzbulkexport"
	newPatient := func() string {
		return created(t, g, ehr, "Patient", `{"resourceType":"Patient","name":[{"family":"`+family+`"}],"gender":"female","birthDate":"1960-01-02"}`)
	}
	obs := func(patient, code string) string {
		return created(t, g, ehr, "Observation", `{"resourceType":"Observation","status":"final",
			"code":{"coding":[{"system":"http://loinc.org","code":"`+code+`"}]},"subject":{"reference":"Patient/`+patient+`"}}`)
	}
	a, b, c := newPatient(), newPatient(), newPatient()
	obsA, obsA2, obsB, obsC := obs(a, "8867-4"), obs(a, "29463-7"), obs(b, "8867-4"), obs(c, "8867-4")
	org := created(t, g, ehr, "Organization", `{"resourceType":"Organization","name":"Bulk Clinic"}`)

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

	reader := func(client, actor string, scopes ...string) string {
		return g.TokenFor(t, auth.Claims{ClientID: client, FHIRUser: actor, PurposeOfUse: "TREAT", Scopes: scopes, TTL: time.Hour})
	}
	f001 := reader("good-health", "Organization/f001", "system/*.read")
	other := reader("other-clinic", "Organization/other", "system/*.read")

	same := func(what string, got, want []string) {
		t.Helper()
		got, want = slices.Clone(got), slices.Clone(want)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	p := func(ids ...string) []string {
		var r []string
		for _, id := range ids {
			r = append(r, "Patient/"+id)
		}
		return r
	}
	o := func(ids ...string) []string {
		var r []string
		for _, id := range ids {
			r = append(r, "Observation/"+id)
		}
		return r
	}

	before := g.RecordLeaves(t)
	got, m := bulkExport(t, g, f001, "/$export?_type=Patient,Observation,Organization,Consent")
	same("system export for f001", got, append(append(p(a, c), o(obsA, obsA2, obsC)...), "Organization/"+org))
	if !strings.HasSuffix(m.Request, "/fhir/r4/$export?_type=Patient%2CObservation%2COrganization%2CConsent") {
		t.Errorf("manifest request %s", m.Request)
	}
	if after := g.RecordLeaves(t); after <= before {
		t.Errorf("the export recorded no decisions")
	}
	// B's release was decided, and recorded, per type: denied to f001.
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
	for _, typ := range []string{"Patient", "Observation"} {
		if !denied[typ] {
			t.Errorf("no recorded export denial of %s for B: %v", typ, denied)
		}
	}
	got, _ = bulkExport(t, g, other, "/$export?_type=Patient,Observation,Consent")
	same("system export for another organization", got, append(append(p(a, b, c), o(obsA, obsA2, obsB, obsC)...), "Consent/"+consentB))

	// Patient/$export: patient compartments only.
	got, _ = bulkExport(t, g, f001, "/Patient/$export?_type=Patient,Observation,Organization")
	same("Patient/$export", got, append(p(a, c), o(obsA, obsA2, obsC)...))

	// _typeFilter: two queries of one type are ORed; with _type they narrow.
	got, _ = bulkExport(t, g, other, "/$export?_type=Observation&_typeFilter="+url.QueryEscape("Observation?code=http://loinc.org|29463-7,Observation?_id="+obsB))
	same("_typeFilter", got, o(obsA2, obsB))
	got, _ = bulkExport(t, g, f001, "/$export?_type=Patient,Observation&_typeFilter="+url.QueryEscape("Observation?code=8867-4&subject="+b+","+"Observation?code=8867-4&subject="+c))
	same("_typeFilter over a denied patient", got, append(p(a, c), o(obsC)...))

	// _since: only what changed from then.
	time.Sleep(5 * time.Millisecond)
	since := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	obsA3, obsB3 := obs(a, "8867-4"), obs(b, "8867-4")
	got, _ = bulkExport(t, g, f001, "/$export?_type=Patient,Observation&_since="+url.QueryEscape(since.Format(time.RFC3339Nano)))
	same("_since", got, o(obsA3))
	got, _ = bulkExport(t, g, other, "/$export?_type=Observation&_since="+url.QueryEscape(since.Format(time.RFC3339Nano)))
	same("_since, another organization", got, o(obsA3, obsB3))

	// Group/[id]/$export: its members' compartments.
	grp := created(t, g, ehr, "Group", `{"resourceType":"Group","type":"person","actual":true,
		"member":[{"entity":{"reference":"Patient/`+a+`"}},{"entity":{"reference":"Patient/`+b+`"}}]}`)
	got, _ = bulkExport(t, g, f001, "/Group/"+grp+"/$export?_type=Patient,Observation")
	same("Group/$export for f001", got, append(p(a), o(obsA, obsA2, obsA3)...))
	got, _ = bulkExport(t, g, other, "/Group/"+grp+"/$export?_type=Patient")
	same("Group/$export for another organization", got, p(a, b))

	// POST with a Parameters body.
	params := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"},{"name":"_outputFormat","valueString":"application/fhir+ndjson"}]}`
	r := g.Do(t, "POST", "/$export", []byte(params), "Authorization", "Bearer "+other, "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST kick-off: %d %s", r.Status, r.Body)
	}
	m = bulkWait(t, g, other, r.Header.Get("Content-Location"))
	got, _ = bulkResources(t, g, other, m)
	same("POST kick-off", got, p(a, b, c))

	// _outputFormat and a _since offset with their "+" unescaped, as
	// clients send them.
	got, _ = bulkExport(t, g, other, "/$export?_type=Patient&_outputFormat=application/fhir+ndjson&_since=2000-01-01T00:00:00+01:00")
	same("unescaped +", got, p(a, b, c))

	// Scopes: a token for Patients only gets no Observation, and says so.
	patientsOnly := reader("good-health", "Organization/f001", "system/Patient.read")
	got, m = bulkExport(t, g, patientsOnly, "/$export?_type=Patient,Observation")
	same("Patient scope only", got, p(a, c))
	if len(m.Error) != 1 || m.Error[0].Type != "OperationOutcome" {
		t.Errorf("error files %+v, want one OperationOutcome file", m.Error)
	} else {
		r := g.DoRoot(t, "GET", rootPath(t, g, m.Error[0].URL), nil, "Authorization", "Bearer "+patientsOnly)
		if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"resourceType":"OperationOutcome"`)) {
			t.Errorf("error file: %d %s", r.Status, r.Body)
		}
	}
	got, _ = bulkExport(t, g, patientsOnly, "/$export")
	same("Patient scope only, every type", got, p(a, c))
}

// TestBulkBadRequests: a kick-off that is not one answers 4xx with an
// OperationOutcome that quotes nothing the client sent.
func TestBulkBadRequests(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	tok := g.Token(t)
	const secret = "Smith-078051120"
	async := []string{"Authorization", "Bearer " + tok, "Prefer", "respond-async"}
	for _, tc := range []struct {
		name, path string
		headers    []string
		want       int
	}{
		{"no Prefer", "/$export", []string{"Authorization", "Bearer " + tok}, http.StatusBadRequest},
		{"_outputFormat", "/$export?_outputFormat=" + secret, async, http.StatusBadRequest},
		{"_since", "/$export?_since=" + secret, async, http.StatusBadRequest},
		{"_type", "/$export?_type=Patient," + secret, async, http.StatusBadRequest},
		{"_typeFilter type", "/$export?_typeFilter=" + url.QueryEscape(secret+"?name=x"), async, http.StatusBadRequest},
		{"_typeFilter param", "/$export?_typeFilter=" + url.QueryEscape("Patient?"+secret+"=1"), async, http.StatusBadRequest},
		{"_typeFilter value", "/$export?_typeFilter=" + url.QueryEscape("Patient?birthdate="+secret), async, http.StatusBadRequest},
		{"_typeFilter outside _type", "/$export?_type=Patient&_typeFilter=" + url.QueryEscape("Observation?code="+secret), async, http.StatusBadRequest},
		{"unknown parameter", "/$export?" + secret + "=1", async, http.StatusBadRequest},
		{"Group id", "/Group/" + secret + "!/$export", async, http.StatusBadRequest},
		{"no such Group", "/Group/" + secret + "/$export", async, http.StatusNotFound},
		{"Patient/$export no Prefer", "/Patient/$export?_type=" + secret, nil, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.headers
			if h == nil {
				h = []string{"Authorization", "Bearer " + tok}
			}
			r := g.Do(t, "GET", tc.path, nil, h...)
			if r.Status != tc.want {
				t.Fatalf("%d %s, want %d", r.Status, r.Body, tc.want)
			}
			var oo struct{ ResourceType string }
			if err := json.Unmarshal(r.Body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
				t.Errorf("not an OperationOutcome: %s", r.Body)
			}
			if bytes.Contains(r.Body, []byte(secret)) || bytes.Contains(r.Body, []byte("078051120")) {
				t.Errorf("the answer quotes the request: %s", r.Body)
			}
		})
	}
	// A POST body that is not Parameters.
	r := g.Do(t, "POST", "/$export", []byte(`{"resourceType":"Patient","id":"x","name":[{"family":"`+secret+`"}]}`), async...)
	if r.Status != http.StatusBadRequest || bytes.Contains(r.Body, []byte(secret)) {
		t.Errorf("POST Patient body: %d %s", r.Status, r.Body)
	}
	// Prefer: handling=lenient ignores a parameter we do not know.
	if r := g.Do(t, "GET", "/$export?_type=Patient&"+secret+"=1", nil, "Authorization", "Bearer "+tok,
		"Prefer", "respond-async, handling=lenient"); r.Status != http.StatusAccepted {
		t.Errorf("lenient kick-off: %d %s", r.Status, r.Body)
	}
	// A token that may read nothing.
	writer := g.TokenFor(t, auth.Claims{ClientID: "writer", Scopes: []string{"system/Patient.write"}, TTL: time.Hour})
	if r := g.Do(t, "GET", "/$export", nil, "Authorization", "Bearer "+writer, "Prefer", "respond-async"); r.Status != http.StatusForbidden {
		t.Errorf("write-only token: %d %s", r.Status, r.Body)
	}
}

// TestBulkOwnerAndDelete: only the client that kicked an export off sees
// its status and files; DELETE deletes it (then 404), and cancels one that
// runs.
func TestBulkOwnerAndDelete(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	created(t, g, ehr, "Patient", `{"resourceType":"Patient","gender":"male"}`)
	owner := g.TokenFor(t, auth.Claims{ClientID: "owner", Scopes: []string{"system/*.read"}, TTL: time.Hour, PurposeOfUse: "TREAT"})
	thief := g.TokenFor(t, auth.Claims{ClientID: "thief", Scopes: []string{"system/*.read"}, TTL: time.Hour, PurposeOfUse: "TREAT"})

	status := bulkKickOff(t, g, owner, "/$export?_type=Patient")
	m := bulkWait(t, g, owner, status)
	if len(m.Output) != 1 {
		t.Fatalf("output %+v", m.Output)
	}
	for _, u := range []string{status, m.Output[0].URL} {
		if r := g.DoRoot(t, "GET", rootPath(t, g, u), nil, "Authorization", "Bearer "+thief); r.Status != http.StatusNotFound {
			t.Errorf("another client GET %s: %d", u, r.Status)
		}
	}
	if r := g.DoRoot(t, "DELETE", rootPath(t, g, status), nil, "Authorization", "Bearer "+thief); r.Status != http.StatusNotFound {
		t.Errorf("another client DELETE: %d", r.Status)
	}
	if r := g.DoRoot(t, "GET", rootPath(t, g, m.Output[0].URL), nil, "Authorization", "Bearer "+owner); r.Status != http.StatusOK {
		t.Errorf("owner file: %d", r.Status)
	}
	if r := g.DoRoot(t, "DELETE", rootPath(t, g, status), nil, "Authorization", "Bearer "+owner); r.Status != http.StatusAccepted {
		t.Errorf("owner DELETE: %d %s", r.Status, r.Body)
	}
	for _, u := range []string{status, m.Output[0].URL} {
		if r := g.DoRoot(t, "GET", rootPath(t, g, u), nil, "Authorization", "Bearer "+owner); r.Status != http.StatusNotFound {
			t.Errorf("after DELETE, GET %s: %d", u, r.Status)
		}
	}
	// DELETE at once, likely while queued or running: afterwards nothing
	// answers and no file is left.
	status = bulkKickOff(t, g, owner, "/$export")
	if r := g.DoRoot(t, "DELETE", rootPath(t, g, status), nil, "Authorization", "Bearer "+owner); r.Status != http.StatusAccepted {
		t.Errorf("cancel: %d %s", r.Status, r.Body)
	}
	time.Sleep(50 * time.Millisecond)
	if r := g.DoRoot(t, "GET", rootPath(t, g, status), nil, "Authorization", "Bearer "+owner); r.Status != http.StatusNotFound {
		t.Errorf("after cancel: %d", r.Status)
	}
	id := status[strings.LastIndex(status, "/")+1:]
	matches, _ := filepath.Glob(filepath.Join(g.Dir, "exports", "bulk-*", id))
	if len(matches) != 0 {
		t.Errorf("the cancelled export's directory is left: %v", matches)
	}
}

// TestBulkResearchGroup: a research client exports a Group that defines a
// cohort by criteria and gets the research export: de-identified copies of
// the consented patients the criteria select, nothing identified; it may
// not export identified data, and an EHR client may not export the cohort.
func TestBulkResearchGroup(t *testing.T) {
	f := startErasureFixture(t, 2, 1)
	g := f.g
	admin := g.Token(t)
	criteria := `{\"gender\": \"female\"}`
	grp := created(t, g, admin, "Group", `{"resourceType":"Group","type":"person","actual":false,
		"extension":[{"url":"https://fhiranchor.dev/fhir/StructureDefinition/cohort-criteria","valueString":"`+criteria+`"}]}`)
	research := g.TokenFor(t, auth.Claims{ClientID: "research-team", TTL: time.Hour, PurposeOfUse: "HRESCH",
		Scopes: []string{gateway.CohortQueryScope, gateway.CohortExportScope}})

	// The research client may define a cohort itself, and nothing else.
	own := created(t, g, research, "Group", `{"resourceType":"Group","type":"person","actual":false,
		"extension":[{"url":"https://fhiranchor.dev/fhir/StructureDefinition/cohort-criteria","valueString":"`+criteria+`"}]}`)
	for _, body := range []string{
		`{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/` + f.female[0] + `"}}],
			"extension":[{"url":"https://fhiranchor.dev/fhir/StructureDefinition/cohort-criteria","valueString":"` + criteria + `"}]}`,
		`{"resourceType":"Group","type":"person","actual":false}`,
		`{"resourceType":"Patient","gender":"female"}`,
	} {
		typ := "Group"
		if strings.Contains(body, `"Patient","gender"`) {
			typ = "Patient"
		}
		if r := g.Do(t, "POST", "/"+typ, []byte(body), "Authorization", "Bearer "+research); r.Status != http.StatusForbidden {
			t.Errorf("research client creates %.40s: %d %s", body, r.Status, r.Body)
		}
	}
	bad := `{"resourceType":"Group","type":"person","actual":false,
		"extension":[{"url":"https://fhiranchor.dev/fhir/StructureDefinition/cohort-criteria","valueString":"{\"zzUnknown\": 1}"}]}`
	if r := g.Do(t, "POST", "/Group", []byte(bad), "Authorization", "Bearer "+research); r.Status != http.StatusBadRequest || bytes.Contains(r.Body, []byte("zzUnknown")) {
		t.Errorf("research client creates a Group with bad criteria: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, "POST", "/Group", []byte(`{"resourceType":"Group","type":"person","actual":false,
		"extension":[{"url":"https://fhiranchor.dev/fhir/StructureDefinition/cohort-criteria","valueString":"`+criteria+`"}]}`),
		"Authorization", "Bearer "+research, "If-None-Exist", "name=x"); r.Status != http.StatusForbidden {
		t.Errorf("research client conditional create: %d %s", r.Status, r.Body)
	}
	m0 := bulkWait(t, g, research, bulkKickOff(t, g, research, "/Group/"+own+"/$export?_type=Patient"))
	if len(m0.Output) != 1 || m0.Output[0].Count != len(f.female) {
		t.Errorf("the research client's own cohort Group: %+v", m0.Output)
	}

	status := bulkKickOff(t, g, research, "/Group/"+grp+"/$export?_type=Patient,Condition")
	if !strings.Contains(status, "/v1/cohorts/exports/") {
		t.Errorf("status URL %s is not the research export's", status)
	}
	m := bulkWait(t, g, research, status)
	if !strings.HasSuffix(m.Request, "/fhir/r4/Group/"+grp+"/$export?_type=Patient%2CCondition") {
		t.Errorf("manifest request %s", m.Request)
	}
	_, lines := bulkResources(t, g, research, m)
	if len(lines["Patient"]) != len(f.female) {
		t.Fatalf("%d Patients, want %d", len(lines["Patient"]), len(f.female))
	}
	for _, typ := range []string{"Patient", "Condition"} {
		for _, res := range lines[typ] {
			if slices.Contains(f.female, res["id"].(string)) || slices.Contains(f.male, res["id"].(string)) {
				t.Errorf("a %s keeps a server id", typ)
			}
		}
	}
	for _, res := range lines["Patient"] {
		line, _ := json.Marshal(res)
		if res["gender"] != "female" || res["name"] != nil || res["identifier"] != nil || bytes.Contains(line, []byte(`"city"`)) ||
			bytes.Contains(line, []byte(`"line"`)) || !bytes.Contains(line, []byte(`"REDACTED"`)) {
			t.Errorf("not a de-identified female Patient: %s", line)
		}
	}
	for typ := range lines {
		if typ != "Patient" && typ != "Condition" {
			t.Errorf("_type not honoured: %s", typ)
		}
	}
	// The researcher gets no identified export; the EHR no cohort.
	for _, path := range []string{"/$export", "/Patient/$export"} {
		if r := g.Do(t, "GET", path, nil, "Authorization", "Bearer "+research, "Prefer", "respond-async"); r.Status != http.StatusForbidden {
			t.Errorf("research token %s: %d %s", path, r.Status, r.Body)
		}
	}
	if r := g.Do(t, "GET", "/Group/"+grp+"/$export", nil, "Authorization", "Bearer "+admin, "Prefer", "respond-async"); r.Status != http.StatusForbidden {
		t.Errorf("EHR token, cohort Group: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, "GET", "/Group/"+grp+"/$export?_since=2020-01-01T00:00:00Z", nil, "Authorization", "Bearer "+research, "Prefer", "respond-async"); r.Status != http.StatusBadRequest {
		t.Errorf("research _since: %d %s", r.Status, r.Body)
	}
}

// TestBulkCapability: the CapabilityStatement instantiates the Bulk Data
// server statement and lists the three export operations.
func TestBulkCapability(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	r := g.Do(t, "GET", "/metadata", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("metadata: %d", r.Status)
	}
	for _, want := range []string{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data",
		"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
		"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
		"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"} {
		if !bytes.Contains(r.Body, []byte(want)) {
			t.Errorf("CapabilityStatement lacks %s", want)
		}
	}
}

// TestBulkErasure: erasing a patient withdraws every identified export
// holding their data (status and files answer 410, files deleted) and no
// other.
func TestBulkErasure(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	a := created(t, g, ehr, "Patient", `{"resourceType":"Patient","gender":"female"}`)
	b := created(t, g, ehr, "Patient", `{"resourceType":"Patient","gender":"male"}`)
	grpB := created(t, g, ehr, "Group", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+b+`"}}]}`)
	tok := g.TokenFor(t, auth.Claims{ClientID: "bulk", Scopes: []string{"system/*.read"}, TTL: time.Hour, PurposeOfUse: "TREAT"})

	all := bulkKickOff(t, g, tok, "/$export?_type=Patient")
	mAll := bulkWait(t, g, tok, all)
	onlyB := bulkKickOff(t, g, tok, "/Group/"+grpB+"/$export?_type=Patient")
	bulkWait(t, g, tok, onlyB)

	admin := g.Token(t, gateway.AdminScope)
	if r := g.DoRoot(t, "POST", "/v1/patients/"+a+":erase", nil, "Authorization", "Bearer "+admin); r.Status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.Status, r.Body)
	}
	for _, u := range []string{all, mAll.Output[0].URL} {
		r := g.DoRoot(t, "GET", rootPath(t, g, u), nil, "Authorization", "Bearer "+tok)
		if r.Status != http.StatusGone || bytes.Contains(r.Body, []byte(a)) {
			t.Errorf("after the erasure, GET %s: %d %s", u, r.Status, r.Body)
		}
	}
	id := all[strings.LastIndex(all, "/")+1:]
	if matches, _ := filepath.Glob(filepath.Join(g.Dir, "exports", "bulk-*", id, "*")); len(matches) != 0 {
		t.Errorf("the withdrawn export's files are left: %v", matches)
	}
	if got, _ := bulkResources(t, g, tok, bulkWait(t, g, tok, onlyB)); !slices.Equal(got, []string{"Patient/" + b}) {
		t.Errorf("the export without the erased patient: %v", got)
	}
}
