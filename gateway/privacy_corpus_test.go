package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/vault"
)

// The adversary's tests. They ingest the PHI corpus of
// testdata/phi-corpus (invented patients with identifiers planted in every
// free-text place FHIR has) beside the Synthea Bundles, collect everything
// a party outside the vault can obtain, and search it for the planted
// strings, using the corpus's own oracle (phi.json), not the
// de-identification engine's idea of what is identifying.

// plant is one planted string of phi.json.
type plant struct {
	Value    string `json:"value"`
	Category string `json:"category"` // "text" or "id"
	Kind     string `json:"kind"`
	// Check is "anywhere", "outside-export" (exact dates: the export is
	// checked structurally, since a shifted Synthea date may coincide) or
	// "structural" (ages: structural checks only).
	Check string `json:"check"`
}

type phiCorpus struct {
	files  []string // the Bundles
	plants []plant
}

// corpusDir is testdata/phi-corpus at the repository root.
func corpusDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "phi-corpus")
}

func loadPHICorpus(t testing.TB) phiCorpus {
	t.Helper()
	dir := corpusDir(t)
	var oracle struct {
		PHI []plant `json:"phi"`
	}
	if err := json.Unmarshal(readFileTB(t, filepath.Join(dir, "phi.json")), &oracle); err != nil {
		t.Fatalf("phi.json: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "[0-9]*.json"))
	if err != nil || len(files) < 6 {
		t.Fatalf("the PHI corpus holds %d Bundles (%v); want at least 6", len(files), err)
	}
	if len(oracle.PHI) < 100 {
		t.Fatalf("phi.json lists only %d strings", len(oracle.PHI))
	}
	return phiCorpus{files: files, plants: oracle.PHI}
}

func readFileTB(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leakScanner finds planted strings in bytes: ASCII case-insensitively, as
// whole words (not inside a longer run of letters and digits, so a short
// number does not match inside a hex pseudonym).
type leakScanner struct {
	plants []plant
	lower  [][]byte
}

func newLeakScanner(plants []plant) *leakScanner {
	s := &leakScanner{plants: plants}
	for _, p := range plants {
		s.lower = append(s.lower, asciiLower([]byte(p.Value)))
	}
	return s
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// sinkRules says which plants a sink must not hold.
type sinkRules struct {
	ids         bool // client-chosen ids: not outside the vault's own files
	exactDates  bool // "outside-export" plants: not in sinks other than export files
	exportFiles bool // an export file: dates and ages are checked structurally
	// binary: raw files holding ciphertext. A plant shorter than 6 bytes
	// ("John") counts only inside a run of printable text, as any clear
	// JSON or log line is: tens of megabytes of random bytes spell a short
	// word by chance about once in five runs.
	binary bool
}

// shortPlant is the length under which a binary sink needs text around a
// hit, and textRun how much printable text a hit there must sit in.
const (
	shortPlant = 6
	textRun    = 24
)

// find returns the indexes of the plants data holds.
func (s *leakScanner) find(data []byte, r sinkRules) []int {
	low := asciiLower(data)
	var out []int
	for i, p := range s.plants {
		switch {
		case p.Check == "structural":
			continue
		case p.Category == "id" && !r.ids:
			continue
		case p.Check == "outside-export" && (!r.exactDates || r.exportFiles):
			continue
		}
		if r.binary && len(s.lower[i]) < shortPlant {
			if containsWordInText(low, s.lower[i]) {
				out = append(out, i)
			}
			continue
		}
		if containsWord(low, s.lower[i]) {
			out = append(out, i)
		}
	}
	return out
}

func containsWord(hay, needle []byte) bool { return containsWordIn(hay, needle, 0) }

// containsWordInText is containsWord for binary data: the word must sit in
// a run of at least textRun printable ASCII bytes.
func containsWordInText(hay, needle []byte) bool { return containsWordIn(hay, needle, textRun) }

// containsWordIn finds needle as a whole word (where its ends are
// alphanumeric) inside a run of at least minRun printable bytes.
func containsWordIn(hay, needle []byte, minRun int) bool {
	for off := 0; ; {
		j := bytes.Index(hay[off:], needle)
		if j < 0 {
			return false
		}
		j += off
		end := j + len(needle)
		if (j == 0 || !isAlnum(hay[j-1]) || !isAlnum(needle[0])) && (end == len(hay) || !isAlnum(hay[end]) || !isAlnum(needle[len(needle)-1])) {
			lo, hi := j, end
			for lo > 0 && hi-lo < minRun && printable(hay[lo-1]) {
				lo--
			}
			for hi < len(hay) && hi-lo < minRun && printable(hay[hi]) {
				hi++
			}
			if hi-lo >= minRun {
				return true
			}
		}
		off = j + 1
	}
}

func printable(b byte) bool { return b >= 0x20 && b < 0x7f }

// leakReport gathers findings: by sink, by plant.
type leakReport struct {
	mu    sync.Mutex
	found map[string]map[int][]string // sink -> plant -> where (paths), may be empty
}

func (r *leakReport) add(sink string, plant int, where string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.found == nil {
		r.found = map[string]map[int][]string{}
	}
	if r.found[sink] == nil {
		r.found[sink] = map[int][]string{}
	}
	w := r.found[sink][plant]
	if where != "" && len(w) < 3 && !slices.Contains(w, where) {
		w = append(w, where)
	}
	r.found[sink][plant] = w
}

// jsonPaths returns, for each plant data holds, where in the JSON document
// (member names and string values) it is.
func (s *leakScanner) jsonPaths(data []byte, r sinkRules) map[int][]string {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return nil
	}
	out := map[int][]string{}
	var walk func(p string, v any)
	note := func(p, str string) {
		for _, i := range s.find([]byte(str), r) {
			if len(out[i]) < 3 && !slices.Contains(out[i], p) {
				out[i] = append(out[i], p)
			}
		}
	}
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				note(p+"."+k+" (a member name)", k)
				walk(p+"."+k, c)
			}
		case []any:
			for _, c := range x {
				walk(p+"[]", c)
			}
		case string:
			note(p, x)
		}
	}
	walk("", v)
	return out
}

// scan searches one sink; JSON documents (and NDJSON lines) get paths.
func (s *leakScanner) scan(rep *leakReport, sink string, data []byte, r sinkRules) {
	hits := s.find(data, r)
	if len(hits) == 0 {
		return
	}
	paths := map[int][]string{}
	trim := bytes.TrimSpace(data)
	if bytes.HasPrefix(trim, []byte("{")) || bytes.HasPrefix(trim, []byte("[")) {
		for _, line := range bytes.Split(trim, []byte("\n")) {
			var typ struct{ ResourceType string }
			_ = json.Unmarshal(line, &typ)
			for i, ps := range s.jsonPaths(line, r) {
				for _, p := range ps {
					paths[i] = append(paths[i], typ.ResourceType+p)
				}
			}
		}
	}
	for _, i := range hits {
		if len(paths[i]) == 0 {
			rep.add(sink, i, "")
		}
		for _, p := range paths[i] {
			rep.add(sink, i, p)
		}
	}
}

// errorf reports every finding, one line per sink and plant.
func (r *leakReport) errorf(t *testing.T, plants []plant) int {
	t.Helper()
	sinks := make([]string, 0, len(r.found))
	for s := range r.found {
		sinks = append(sinks, s)
	}
	sort.Strings(sinks)
	n := 0
	for _, s := range sinks {
		idx := make([]int, 0, len(r.found[s]))
		for i := range r.found[s] {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		for _, i := range idx {
			p := plants[i]
			where := ""
			if w := r.found[s][i]; len(w) > 0 {
				where = " at " + strings.Join(w, ", ")
			}
			t.Errorf("%s: phi[%d] (%s, %s) %q%s", s, i, p.Category, p.Kind, p.Value, where)
			n++
		}
	}
	return n
}

// ingested is what a test learns from pushing a Bundle.
type ingested struct {
	file      string
	at        time.Time // when the transaction was answered
	locations []string  // "Type/id/_history/n" in entry order
}

// ingestBundles pushes the Bundles four at a time and returns what each
// answered, in the order of files.
func ingestBundles(t *testing.T, g *testonly.Gateway, files []string) []ingested {
	t.Helper()
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	out := make([]ingested, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := g.Do(t, http.MethodPost, "", readFileTB(t, f), ehr...)
			out[i] = ingested{file: f, at: time.Now()}
			if r.Status != http.StatusOK {
				t.Errorf("%s: status %d: %.500s", filepath.Base(f), r.Status, r.Body)
				return
			}
			br := decodeBundle(t, r.Body)
			if br.Type != "transaction-response" {
				t.Errorf("%s: answered a %s", filepath.Base(f), br.Type)
			}
			for _, e := range br.Entry {
				out[i].locations = append(out[i].locations, relativeLocation(e.Response.Location))
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// exported is a finished research export, as its client received it.
type exported struct {
	manifest       []byte
	manifestHeader http.Header
	transaction    time.Time
	files          map[string][]byte // by type
	headers        map[string]http.Header
}

// everyone is a criterion every indexed patient meets.
const everyone = `{"any": [{"gender": "male"}, {"not": {"gender": "male"}}]}`

// exportAll exports every resource of every type of every patient.
func exportAll(t *testing.T, g *testonly.Gateway, hdr []string) exported {
	t.Helper()
	r := g.DoRoot(t, http.MethodPost, "/v1/cohorts:export", []byte(`{"criteria": `+everyone+`}`), hdr...)
	if r.Status != http.StatusAccepted || r.Header.Get("Content-Location") == "" {
		t.Fatalf("export kick-off = %d %s", r.Status, r.Body)
	}
	status := strings.TrimPrefix(r.Header.Get("Content-Location"), g.Root)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r = g.DoRoot(t, http.MethodGet, status, nil, hdr...)
		if r.Status == http.StatusOK {
			break
		}
		if r.Status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("export status = %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var m struct {
		TransactionTime string `json:"transactionTime"`
		Output          []struct {
			Type, URL string
		} `json:"output"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("manifest: %v: %s", err, r.Body)
	}
	tt, err := time.Parse(time.RFC3339Nano, m.TransactionTime)
	if err != nil {
		t.Fatalf("manifest transactionTime %q: %v", m.TransactionTime, err)
	}
	ex := exported{manifest: r.Body, manifestHeader: r.Header, transaction: tt, files: map[string][]byte{}, headers: map[string]http.Header{}}
	for _, o := range m.Output {
		f := g.DoRoot(t, http.MethodGet, strings.TrimPrefix(o.URL, g.Root), nil, hdr...)
		if f.Status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", o.URL, f.Status, f.Body)
		}
		ex.files[o.Type], ex.headers[o.Type] = f.Body, f.Header
	}
	if len(ex.files) < 10 {
		t.Fatalf("the export holds %d types; want every type of the Synthea set and the corpus", len(ex.files))
	}
	return ex
}

// TestNothingIdentifyingLeaves ingests the PHI corpus and the Synthea
// Bundles, sends bad input laden with the corpus's PHI, and then collects
// everything a party outside the vault can get: a research export of every
// type, cohort answers, the decision log and every anchored record, the
// error bodies, the server log, and every file of the data and export
// directories read raw. None may hold a planted text string; the
// client-chosen (MRN-like) ids may appear only in the vault's own database
// files, where they are lookup keys. The export is also checked
// structurally: no birth date finer than a year, no age over 89, no
// meta.lastUpdated.
func TestNothingIdentifyingLeaves(t *testing.T) {
	corpus := loadPHICorpus(t)
	scan := newLeakScanner(corpus.plants)
	g := testonly.StartGateway(t, testonly.Options{}) // not Quiet: the request log is a sink too
	// Each subtest reports what its sinks leak, by sink and plant.
	sink := func(t *testing.T) *leakReport {
		r := &leakReport{}
		t.Cleanup(func() { r.errorf(t, corpus.plants) })
		return r
	}

	ingestBundles(t, g, shareddata.Files(t, "synthea"))
	corpusIn := ingestBundles(t, g, corpus.files)
	patients := map[string]string{} // corpus file -> Patient id
	for _, in := range corpusIn {
		for _, loc := range in.locations {
			if strings.HasPrefix(loc, "Patient/") {
				patients[filepath.Base(in.file)] = strings.Split(loc, "/")[1]
			}
		}
	}
	if len(patients) != len(corpus.files) {
		t.Fatalf("found %d corpus Patients in %d Bundles", len(patients), len(corpus.files))
	}

	t.Run("bad input", func(t *testing.T) {
		badInput(t, g, scan, sink, patients["01-quillfeather.json"])
	})

	hdr := researcher(t, g, "privacy-adversary")
	ex := exportAll(t, g, hdr)
	t.Run("export", func(t *testing.T) {
		rep := sink(t)
		scan.scan(rep, "export manifest", ex.manifest, sinkRules{ids: true, exactDates: true})
		for typ, body := range ex.files {
			scan.scan(rep, "export "+typ+".ndjson", body, sinkRules{ids: true, exportFiles: true})
		}
		checkExportStructure(t, ex)
	})

	t.Run("cohort answers", func(t *testing.T) {
		rep := sink(t)
		var answers [][]byte
		for _, q := range []string{
			`{"criteria": ` + everyone + `}`,
			`{"criteria": {"observation": {"code": [{"system": "http://loinc.org", "code": "30525-0"}]}}}`,
			`{"criteria": {"condition": {"code": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}}`,
			// A researcher's own words end up in the anchored record of the
			// query (for the overlap control): a code is any string.
			`{"criteria": {"condition": {"code": [{"system": "urn:quillfeather", "code": "Ambrose Quillfeather 078-05-1120"}]}}}`,
		} {
			res, r := askCohort(t, g, "count", q, hdr)
			if r.Status != http.StatusOK {
				t.Errorf("count %s = %d %s", q, r.Status, r.Body)
			}
			_ = res
			answers = append(answers, r.Body)
		}
		for _, dim := range []string{"gender", "ageBand", "birthDecade", "zip3", "race", "ethnicity", "deceased"} {
			// A team per dimension: the repeat limit counts queries of one shape.
			_, r := askCohort(t, g, "breakdown", `{"criteria": `+everyone+`, "breakdown": ["`+dim+`"]}`, researcher(t, g, "privacy-adversary-"+dim))
			if r.Status != http.StatusOK {
				t.Errorf("breakdown by %s = %d %s", dim, r.Status, r.Body)
			}
			answers = append(answers, r.Body)
		}
		for i, a := range answers {
			scan.scan(rep, fmt.Sprintf("cohort answer %d", i), a, sinkRules{ids: true, exactDates: true})
		}
	})

	// A consent event and an erasure about corpus patients, so that those
	// records are searched too.
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	consent := `{"resourceType": "Consent", "status": "active",
		"scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
		"category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
		"patient": {"reference": "Patient/` + patients["05-ekwueme.json"] + `"},
		"policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
		"provision": {"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}}`
	if r := g.Do(t, http.MethodPost, "/Consent", []byte(consent), ehr...); r.Status != http.StatusCreated {
		t.Errorf("POST Consent = %d %s", r.Status, r.Body)
	}
	// A patient's own app reads their record and lists their decisions: its
	// fhirUser is the patient's (MRN-like) id, and lands in the records of
	// those reads as their actor.
	self := patients["01-quillfeather.json"]
	app := g.TokenFor(t, auth.Claims{ClientID: "patient-app", FHIRUser: "Patient/" + self, PurposeOfUse: "PATRQT",
		Scopes: []string{"system/*.read", gateway.PatientSelfScope}, TTL: time.Hour})
	if r := g.Do(t, http.MethodGet, "/Patient/"+self, nil, "Authorization", "Bearer "+app); r.Status != http.StatusOK && r.Status != http.StatusForbidden {
		t.Errorf("the patient's app reads their Patient: %d %s", r.Status, r.Body)
	}
	admin := g.TokenFor(t, auth.Claims{ClientID: "operator", Scopes: []string{gateway.AdminScope}, TTL: time.Hour})
	erasedID := patients["07-thistlewood.json"]
	erased := sendRoot(t, g, http.MethodPost, "/v1/patients/"+erasedID+":erase", admin, []byte(`{}`))
	if erased.Status != http.StatusOK {
		t.Errorf("erase = %d %s", erased.Status, erased.Body)
	}

	t.Run("decision log and anchored records", func(t *testing.T) {
		rep := sink(t)
		scan.scan(rep, "erasure answer", erased.Body, sinkRules{ids: true, exactDates: true})
		auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{gateway.AuditScope}, TTL: time.Hour})
		// The auditor gets the records' tokens resolved ("resolved") while a
		// patient exists: that is the auditor's right, not a leak. It is
		// taken out of what is scanned and checked on its own below.
		resolvedIDs := map[string]bool{}
		pages := 0
		for token := ""; ; pages++ {
			path := "/v1/decisions?page_size=1000"
			if token != "" {
				path += "&page_token=" + url.QueryEscape(token)
			}
			r := sendRoot(t, g, http.MethodGet, path, auditor, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
			}
			scan.scan(rep, "decision log", withoutResolved(t, r.Body, resolvedIDs), sinkRules{ids: true, exactDates: true})
			var page struct{ NextPageToken string }
			if err := json.Unmarshal(r.Body, &page); err != nil {
				t.Fatal(err)
			}
			if token = page.NextPageToken; token == "" {
				break
			}
		}
		for _, id := range patients {
			r := sendRoot(t, g, http.MethodGet, "/v1/patients/"+id+"/consent-events?page_size=1000", auditor, nil)
			scan.scan(rep, "consent events", withoutResolved(t, r.Body, resolvedIDs), sinkRules{ids: true, exactDates: true})
		}
		// Every record leaf, as GET /v1/evidence/leaves/{n} serves it.
		ls, err := g.Vault.Store().FindLeaves(t.Context(), vault.LeafFilter{Limit: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan vault.Leaf)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l := range next {
					r := sendRoot(t, g, http.MethodGet, "/v1/evidence/leaves/"+strconv.FormatInt(l.Seq-1, 10), auditor, nil)
					var rec struct {
						Record struct{ Kind string } `json:"record"`
					}
					_ = json.Unmarshal(r.Body, &rec)
					kind := rec.Record.Kind
					if r.Status != http.StatusOK {
						t.Errorf("GET /v1/evidence/leaves/%d = %d %.200s", l.Seq-1, r.Status, r.Body)
						kind = "unreadable"
					}
					switch {
					case kind == "" && l.Type == uint8(anchor.LeafErasure):
						kind = "erasure"
					case kind == "":
						kind = "leaf type " + strconv.Itoa(int(l.Type))
					}
					mu.Lock()
					kinds[kind]++
					mu.Unlock()
					mu.Lock()
					body := withoutResolved(t, r.Body, resolvedIDs)
					mu.Unlock()
					scan.scan(rep, "anchored record ("+kind+")", body, sinkRules{ids: true, exactDates: true})
				}
			}()
		}
		for _, l := range ls {
			next <- l
		}
		close(next)
		wg.Wait()
		t.Logf("searched %d decision log pages and %d anchored records: %v", pages+1, len(ls), kinds)
		for file, id := range patients {
			if id == erasedID {
				if resolvedIDs["Patient/"+id] {
					t.Errorf("%s: the erased patient's token still resolves", file)
				}
			} else if !resolvedIDs["Patient/"+id] {
				t.Errorf("%s: the auditor never got the patient's token resolved", file)
			}
		}
		if kinds["deidentification"] < 10000 || kinds["erasure"] != 1 {
			t.Errorf("records by kind %v: want the deidentification records of every version and one erasure", kinds)
		}
	})

	t.Run("server log", func(t *testing.T) {
		rep := sink(t)
		logs := g.Logs.Bytes()
		if len(logs) == 0 {
			t.Log("the gateway logged nothing at warning level")
		}
		scan.scan(rep, "server log", logs, sinkRules{ids: true, exactDates: true})
	})

	t.Run("files at rest", func(t *testing.T) {
		rep := sink(t)
		exportDir := filepath.Join(g.Dir, "exports")
		n := 0
		err := filepath.WalkDir(g.Dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			n++
			rel, _ := filepath.Rel(g.Dir, path)
			if strings.HasPrefix(path, exportDir+string(filepath.Separator)) {
				for _, body := range ex.files {
					if bytes.Equal(body, data) {
						return nil // searched as downloaded
					}
				}
				scan.scan(rep, "export dir "+rel, data, sinkRules{ids: true, exportFiles: true})
				return nil
			}
			// The vault's database files hold the client-chosen ids in
			// clear as lookup keys (a resource is found by Type/id): only
			// text is searched here.
			scan.scan(rep, "data dir "+rel, data, sinkRules{exactDates: true, binary: true})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 5 {
			t.Errorf("read %d files at rest", n)
		}
	})
}

// badInput sends PHI-laden input that must be refused: each gets a 4xx
// OperationOutcome quoting none of the corpus and changes nothing.
func badInput(t *testing.T, g *testonly.Gateway, scan *leakScanner, sink func(*testing.T) *leakReport, patientID string) {
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	const who = "John Quillfeather 078-05-1120"
	obs := func(ref string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"` + ref + `"},"valueQuantity":{"value":70,"unit":"/min"}}`
	}
	txn := func(res, method, u string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:5a0b9c2e-7d41-4c8e-9f3a-2b6d1e8c4f70","resource":` + res + `,"request":{"method":"` + method + `","url":"` + u + `"}}]}`)
	}
	big := `{"resourceType":"Patient","name":[{"family":"Quillfeather","given":["Ambrose"]}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">4417 Marrowbone Lane ` + strings.Repeat("Vantablack Quarry Cooperative ", (gateway.DefaultMaxBodyBytes+1<<20)/30) + `</div>"}}`
	cases := []struct {
		name    string
		method  string
		path    string // under the FHIR base, or /v1/... under the root
		body    string
		headers []string
		want    int
	}{
		{"invalid resource id in the URL", http.MethodPut, "/Patient/" + url.PathEscape(who),
			`{"resourceType":"Patient","id":"` + who + `","name":[{"family":"Quillfeather"}]}`, nil, http.StatusBadRequest},
		{"invalid resource id in the body", http.MethodPost, "/Patient", `{"resourceType":"Patient","id":"` + who + `"}`, nil, http.StatusBadRequest},
		{"invalid reference id", http.MethodPost, "/Observation", obs("Patient/" + who), nil, http.StatusBadRequest},
		{"invalid reference id in a transaction", http.MethodPost, "", string(txn(obs("Patient/"+who), "POST", "Observation")), nil, http.StatusBadRequest},
		{"invalid id in a transaction's request url", http.MethodPost, "", string(txn(`{"resourceType":"Patient","id":"`+who+`"}`, "PUT", "Patient/"+who)), nil, http.StatusBadRequest},
		{"identifier.system with spaces and a name", http.MethodPost, "/Patient",
			`{"resourceType":"Patient","identifier":[{"system":"urn:maplecrest mrn Perpetua Quillfeather-Ondaatje","value":"1"}]}`, nil, http.StatusBadRequest},
		{"extension url with spaces and a name", http.MethodPost, "/Patient",
			`{"resourceType":"Patient","extension":[{"url":"http://maplecrest.example/ext/Ambrose Quillfeather","valueString":"x"}]}`, nil, http.StatusBadRequest},
		{"unknown element named after a surname", http.MethodPost, "/Patient", `{"resourceType":"Patient","Quillfeather":{"Marrowbone":"Lane"}}`, nil, http.StatusBadRequest},
		{"unknown element in a transaction", http.MethodPost, "", string(txn(`{"resourceType":"Patient","Oyelaran":"x"}`, "POST", "Patient")), nil, http.StatusBadRequest},
		{"purpose of use naming a person (read)", http.MethodGet, "/Patient/" + patientID, "", []string{"X-Purpose-Of-Use", "Quillfeather"}, http.StatusBadRequest},
		{"purpose of use naming a person (write)", http.MethodPost, "/Observation", obs("Patient/" + patientID), []string{"X-Purpose-Of-Use", "Perpetua Quillfeather-Ondaatje"}, http.StatusBadRequest},
		{"malformed JSON", http.MethodPost, "/Patient", `{"resourceType":"Patient","name":[{"family":"Quillfeather","given":["Ambrose"`, nil, http.StatusBadRequest},
		{"invalid date holding PHI", http.MethodPost, "/Patient", `{"resourceType":"Patient","birthDate":"1931-05-11 Ambrose Quillfeather"}`, nil, http.StatusBadRequest},
		{"wrong type holding PHI", http.MethodPost, "/Patient", `{"resourceType":"Patient","active":"4417 Marrowbone Lane"}`, nil, http.StatusBadRequest},
		{"oversize body", http.MethodPost, "/Patient", big, nil, http.StatusRequestEntityTooLarge},
		{"cohort query holding PHI", http.MethodPost, "/v1/cohorts:count", `{"criteria": {"Quillfeather": "531-44-7821"}}`, nil, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, leaves := g.Stats(t), g.RecordLeaves(t)
			headers := ehr
			if strings.HasPrefix(tc.path, "/v1/") {
				headers = researcher(t, g, "privacy-adversary-bad-input")
			}
			headers = append(slices.Clone(headers), tc.headers...)
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			var r testonly.Response
			if strings.HasPrefix(tc.path, "/v1/") {
				r = g.DoRoot(t, tc.method, tc.path, body, headers...)
			} else {
				r = g.Do(t, tc.method, tc.path, body, headers...)
			}
			if r.Status >= 400 { // an accepted write echoes what its client sent: the status is the finding
				scan.scan(sink(t), "the error body", r.Body, sinkRules{ids: true, exactDates: true})
			}
			if r.Status != tc.want {
				t.Errorf("status %d, want %d: %.300s", r.Status, tc.want, r.Body)
			}
			var oo outcome
			if ct := r.Header.Get("Content-Type"); ct != "application/fhir+json" {
				t.Errorf("Content-Type %q, want application/fhir+json", ct)
			}
			if err := json.Unmarshal(r.Body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
				t.Errorf("not an OperationOutcome: %.300s", r.Body)
			}
			if after := g.Stats(t); after != before {
				t.Errorf("the vault changed: %+v -> %+v", before, after)
			}
			if after := g.RecordLeaves(t); after != leaves {
				t.Errorf("%d records were written", after-leaves)
			}
		})
	}
}

var (
	fullDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`)
	yearOnly = regexp.MustCompile(`^\d{4}$`)
)

// ageCodes are LOINC codes of observations whose value is an age.
var ageCodes = map[string]bool{"30525-0": true, "21612-7": true, "29553-5": true, "63900-5": true}

// checkExportStructure checks what a substring search cannot: no birth
// date of a patient or relative finer than a year, nor a birth year of
// someone over 89; no age over 89 (except the ">= 90" band); no
// meta.lastUpdated (it is when the copy was made: shifted, it gives the
// shift away).
func checkExportStructure(t *testing.T, ex exported) {
	t.Helper()
	thisYear := time.Now().Year()
	ageYear := thisYear // of the resource at hand
	type finding struct{ what, where string }
	counts := map[finding]int{}
	add := func(what, where string) { counts[finding{what, where}]++ }
	tooOld := func(age float64, comparator string) bool {
		return age > 89 && !(age == 90 && comparator == ">=")
	}
	checkAge := func(where string, q map[string]any) {
		v, _ := q["value"].(float64)
		c, _ := q["comparator"].(string)
		unit, _ := q["code"].(string)
		if unit == "" || unit == "a" {
			if tooOld(v, c) {
				add("an age over 89", where)
			}
		}
	}
	birth := func(where string, v any) {
		s, ok := v.(string)
		if !ok {
			if v != nil {
				add("a birth date other than a year", where)
			}
			return
		}
		if len(s) > 4 {
			add("a birth date finer than a year", where)
		}
		if y, err := strconv.Atoi(s[:min(4, len(s))]); err == nil && ageYear-y > 89 {
			add("the birth year of someone over 89", where)
		}
	}
	for typ, body := range ex.files {
		for line := range bytes.Lines(body) {
			var res map[string]any
			if err := json.Unmarshal(line, &res); err != nil {
				t.Fatalf("%s.ndjson: %v", typ, err)
			}
			// Ages are at death for the deceased (deid's birthYear rule).
			ageYear = thisYear
			for _, k := range []string{"deceasedDateTime", "deceasedDate"} {
				if d, ok := res[k].(string); ok && len(d) >= 4 {
					if y, err := strconv.Atoi(d[:4]); err == nil {
						ageYear = y
					}
				}
			}
			if m, ok := res["meta"].(map[string]any); ok && m["lastUpdated"] != nil {
				add("meta.lastUpdated", typ+".meta.lastUpdated")
			}
			switch typ {
			case "Patient", "RelatedPerson", "Person", "Practitioner":
				if v, ok := res["birthDate"]; ok {
					birth(typ+".birthDate", v)
				}
			case "FamilyMemberHistory":
				for _, k := range []string{"bornDate", "bornString", "bornPeriod"} {
					if v, ok := res[k]; ok {
						birth("FamilyMemberHistory."+k, v)
					}
				}
				if _, ok := res["ageString"]; ok {
					add("an age as free text", "FamilyMemberHistory.ageString")
				}
				if r, ok := res["ageRange"].(map[string]any); ok {
					for _, k := range []string{"low", "high"} {
						if q, ok := r[k].(map[string]any); ok {
							checkAge("FamilyMemberHistory.ageRange."+k, q)
						}
					}
				}
			case "Observation":
				code, _ := res["code"].(map[string]any)
				codings, _ := code["coding"].([]any)
				for _, c := range codings {
					c, _ := c.(map[string]any)
					if c["system"] == "http://loinc.org" && ageCodes[fmt.Sprint(c["code"])] {
						if q, ok := res["valueQuantity"].(map[string]any); ok {
							v, _ := q["value"].(float64)
							if cmp, _ := q["comparator"].(string); tooOld(v, cmp) {
								add("an age over 89", "Observation.valueQuantity (LOINC "+fmt.Sprint(c["code"])+")")
							}
						}
						if v, ok := res["valueInteger"].(float64); ok && v > 89 {
							add("an age over 89", "Observation.valueInteger (LOINC "+fmt.Sprint(c["code"])+")")
						}
					}
				}
			}
			// Every Age anywhere: the elements named *Age.
			var walk func(p string, v any)
			walk = func(p string, v any) {
				switch x := v.(type) {
				case map[string]any:
					for k, c := range x {
						if q, ok := c.(map[string]any); ok && strings.HasSuffix(k, "Age") {
							checkAge(p+"."+k, q)
						}
						walk(p+"."+k, c)
					}
				case []any:
					for _, c := range x {
						walk(p, c)
					}
				}
			}
			walk(typ, res)
		}
	}
	keys := make([]finding, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].where+keys[i].what < keys[j].where+keys[j].what })
	for _, k := range keys {
		t.Errorf("export %s.ndjson: %s at %s (%d resources)", strings.Split(k.where, ".")[0], k.what, k.where, counts[k])
	}
}

// ---------------------------------------------------------------- date shift

// sourcePatient is one input patient as the test reads it from its Bundle.
type sourcePatient struct {
	file      string
	ingested  time.Time
	resources []map[string]any // the Patient and every resource about them
}

// readSourcePatients reads the patient Bundles (not Synthea's hospitals and
// practitioners): each patient's resources, the Patient first.
func readSourcePatients(t *testing.T, in []ingested) []*sourcePatient {
	t.Helper()
	var out []*sourcePatient
	for _, b := range in {
		var doc struct {
			Entry []struct {
				FullURL  string         `json:"fullUrl"`
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(readFileTB(t, b.file), &doc); err != nil {
			t.Fatal(err)
		}
		refs := map[string]bool{}
		var p *sourcePatient
		for _, e := range doc.Entry {
			if e.Resource["resourceType"] == "Patient" {
				p = &sourcePatient{file: filepath.Base(b.file), ingested: b.at, resources: []map[string]any{e.Resource}}
				refs[e.FullURL] = true
				if id, _ := e.Resource["id"].(string); id != "" {
					refs["Patient/"+id] = true
				}
			}
		}
		if p == nil {
			continue
		}
		for _, e := range doc.Entry {
			if e.Resource["resourceType"] != "Patient" && refs[patientRef(e.Resource)] {
				p.resources = append(p.resources, e.Resource)
			}
		}
		out = append(out, p)
	}
	return out
}

// patientRef is the reference of the element that puts a resource in a
// patient's compartment.
func patientRef(res map[string]any) string {
	for _, f := range []string{"patient", "subject", "beneficiary", "individual", "who"} {
		if r, ok := res[f].(map[string]any); ok {
			if s, _ := r["reference"].(string); s != "" {
				return s
			}
		}
	}
	return ""
}

// signature identifies a resource without its ids or dates: its type, and
// every coding and number in it (de-identification keeps both).
func signature(res map[string]any) string {
	var parts []string
	var walk func(k string, v any)
	walk = func(k string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["system"].(string); ok {
				if c, ok := x["code"].(string); ok {
					parts = append(parts, s+"|"+c)
				}
			}
			for k, c := range x {
				if k == "meta" || k == "extension" || k == "contained" {
					continue
				}
				walk(k, c)
			}
		case []any:
			for _, c := range x {
				walk(k, c)
			}
		case float64:
			parts = append(parts, k+"="+strconv.FormatFloat(x, 'g', -1, 64))
		}
	}
	walk("", res)
	sort.Strings(parts)
	return fmt.Sprint(res["resourceType"], parts)
}

// datesByPath lists the full dates (YYYY-MM-DD...) of a resource by
// element path (array indexes kept), outside meta.
func datesByPath(res map[string]any) map[string]string {
	out := map[string]string{}
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "meta" {
					continue
				}
				walk(p+"."+k, c)
			}
		case []any:
			for i, c := range x {
				walk(p+"["+strconv.Itoa(i)+"]", c)
			}
		case string:
			if fullDate.MatchString(x) {
				out[p] = x
			}
		}
	}
	walk("", res)
	return out
}

// day is the calendar day a FHIR date or dateTime names, as written (in
// its own zone): shifting keeps the time and zone.
func day(s string) (time.Time, bool) {
	d, err := time.Parse("2006-01-02", s[:10])
	return d, err == nil
}

func daysBetween(a, b time.Time) int {
	return int(math.Round(a.Sub(b).Hours() / 24))
}

// copyPatient is one patient of the export: their resources, grouped by the
// pseudonymous reference to their Patient.
type copyPatient struct {
	id        string
	resources []map[string]any
}

func groupExport(t *testing.T, ex exported) map[string]*copyPatient {
	t.Helper()
	out := map[string]*copyPatient{}
	get := func(id string) *copyPatient {
		if out[id] == nil {
			out[id] = &copyPatient{id: id}
		}
		return out[id]
	}
	for typ, body := range ex.files {
		for line := range bytes.Lines(body) {
			var res map[string]any
			if err := json.Unmarshal(line, &res); err != nil {
				t.Fatalf("%s.ndjson: %v", typ, err)
			}
			if typ == "Patient" {
				id, _ := res["id"].(string)
				p := get(id)
				p.resources = append([]map[string]any{res}, p.resources...)
				continue
			}
			if id, ok := strings.CutPrefix(patientRef(res), "Patient/"); ok {
				get(id).resources = append(get(id).resources, res)
			}
		}
	}
	return out
}

// matchPatients pairs each source patient with the export's patient whose
// resources share the most signatures (codes and numbers): an oracle that
// does not depend on how ids are pseudonymized.
func matchPatients(t *testing.T, src []*sourcePatient, cp map[string]*copyPatient) map[*sourcePatient]*copyPatient {
	t.Helper()
	bag := func(rs []map[string]any) map[string]int {
		m := map[string]int{}
		for _, r := range rs {
			m[signature(r)]++
		}
		return m
	}
	out := map[*sourcePatient]*copyPatient{}
	used := map[*copyPatient]bool{}
	for _, s := range src {
		sb := bag(s.resources)
		var best *copyPatient
		bestN, second := 0, 0
		for _, c := range cp {
			n := 0
			for k, v := range bag(c.resources) {
				n += min(v, sb[k])
			}
			switch {
			case n > bestN:
				second, bestN, best = bestN, n, c
			case n > second:
				second = n
			}
		}
		if best == nil || bestN*2 < len(s.resources) || second*2 > bestN || used[best] {
			t.Logf("%s: no unambiguous match in the export (best %d, second %d of %d resources)", s.file, bestN, second, len(s.resources))
			continue
		}
		used[best] = true
		out[s] = best
	}
	return out
}

// trueOffset is the patient's shift, from the oracle: copy date - source
// date at the same element of resources matched by a signature unique in
// the patient. It returns the offset (the most common difference), how many
// dates agree with it and how many do not, and the paths whose dates were
// copied unshifted.
func trueOffset(s *sourcePatient, c *copyPatient) (offset, agree, disagree int, unshifted []string) {
	bySig := func(rs []map[string]any) map[string][]map[string]any {
		m := map[string][]map[string]any{}
		for _, r := range rs {
			k := signature(r)
			m[k] = append(m[k], r)
		}
		return m
	}
	ss, cs := bySig(s.resources), bySig(c.resources)
	diffs := map[int]int{}
	type pathDiff struct {
		path string
		diff int
	}
	var all []pathDiff
	for k, srs := range ss {
		crs := cs[k]
		if len(srs) != 1 || len(crs) != 1 {
			continue
		}
		sd, cd := datesByPath(srs[0]), datesByPath(crs[0])
		for p, sv := range sd {
			cv, ok := cd[p]
			if !ok {
				continue
			}
			a, ok1 := day(sv)
			b, ok2 := day(cv)
			if !ok1 || !ok2 {
				continue
			}
			d := daysBetween(b, a)
			diffs[d]++
			all = append(all, pathDiff{fmt.Sprint(srs[0]["resourceType"]) + p, d})
		}
	}
	best := 0
	for d, n := range diffs {
		if n > best || n == best && d < offset {
			offset, best = d, n
		}
	}
	for _, pd := range all {
		switch {
		case pd.diff == offset:
			agree++
		default:
			disagree++
			if pd.diff == 0 {
				unshifted = append(unshifted, pd.path)
			}
		}
	}
	if offset == 0 && agree > 0 {
		for _, pd := range all {
			unshifted = append(unshifted, pd.path)
		}
	}
	return offset, agree, disagree, unshifted
}

// TestDateShiftCannotBeRecovered plays a researcher who wants each
// patient's date shift back (to re-identify them by real event dates). From
// what a researcher receives (export files, the manifest's transactionTime,
// HTTP Date and Last-Modified headers) each attack guesses a shift per
// patient; the oracle is the raw input: for each patient the true offset is
// copy date - source date of matching elements. The true offset is never 0
// and at least 15 days in magnitude, no date is copied unshifted, and no
// attack names the true offset for more patients than chance would.
func TestDateShiftCannotBeRecovered(t *testing.T) {
	const minShift = 15 // days: the documented minimum of the profile
	corpus := loadPHICorpus(t)
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	var in []ingested
	in = append(in, ingestBundles(t, g, shareddata.Files(t, "synthea"))...)
	in = append(in, ingestBundles(t, g, corpus.files)...)
	src := readSourcePatients(t, in)
	ex := exportAll(t, g, researcher(t, g, "date-shift-adversary"))
	matched := matchPatients(t, src, groupExport(t, ex))
	if len(matched) < len(src)-2 || len(matched) < 60 {
		t.Fatalf("matched %d of %d input patients to the export", len(matched), len(src))
	}

	type patient struct {
		name   string
		offset int
		copy   *copyPatient
	}
	var ps []patient
	for s, c := range matched {
		off, agree, disagree, unshifted := trueOffset(s, c)
		if agree < 3 {
			t.Logf("%s: only %d dates to measure the shift by", s.file, agree)
			continue
		}
		if disagree > 0 {
			t.Logf("%s: %d dates moved by %d days, %d by something else", s.file, agree, off, disagree)
		}
		if len(unshifted) > 0 {
			slices.Sort(unshifted)
			t.Errorf("%s: %d dates copied unshifted (an anchor for the shift): %v", s.file, len(unshifted), slices.Compact(unshifted))
		}
		ps = append(ps, patient{s.file, off, c})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	small := 0
	for _, p := range ps {
		if p.offset == 0 || p.offset < minShift && p.offset > -minShift {
			small++
			t.Errorf("%s: the date shift is %d days; want at least %d in magnitude", p.name, p.offset, minShift)
		}
	}
	t.Logf("%d patients measured; %d with a shift under %d days", len(ps), small, minShift)

	// The attacks: each guesses a shift per patient from what the researcher
	// holds.
	lastUpdated := func(c *copyPatient) (time.Time, bool) {
		for _, r := range c.resources {
			if m, ok := r["meta"].(map[string]any); ok {
				if s, ok := m["lastUpdated"].(string); ok {
					if lu, err := time.Parse(time.RFC3339Nano, s); err == nil {
						return lu, true
					}
				}
			}
		}
		return time.Time{}, false
	}
	httpTime := func(h http.Header, k string) (time.Time, bool) {
		v, err := http.ParseTime(h.Get(k))
		return v, err == nil
	}
	var fileHeader http.Header
	for _, h := range ex.headers {
		fileHeader = h
		break
	}
	anchors := map[string]func() (time.Time, bool){
		"manifest transactionTime":  func() (time.Time, bool) { return ex.transaction, true },
		"manifest HTTP Date":        func() (time.Time, bool) { return httpTime(ex.manifestHeader, "Date") },
		"export file HTTP Date":     func() (time.Time, bool) { return httpTime(fileHeader, "Date") },
		"export file Last-Modified": func() (time.Time, bool) { return httpTime(fileHeader, "Last-Modified") },
		"manifest Last-Modified":    func() (time.Time, bool) { return httpTime(ex.manifestHeader, "Last-Modified") },
	}
	type attack struct {
		name  string
		guess func(p patient) (int, bool)
	}
	var attacks []attack
	for name, anchor := range anchors {
		attacks = append(attacks,
			attack{"shifted meta.lastUpdated - " + name + " (whole days)", func(p patient) (int, bool) {
				lu, ok1 := lastUpdated(p.copy)
				a, ok2 := anchor()
				return daysBetween(lu, a), ok1 && ok2
			}},
			attack{"shifted meta.lastUpdated - " + name + " (calendar days)", func(p patient) (int, bool) {
				lu, ok1 := lastUpdated(p.copy)
				a, ok2 := anchor()
				d1, _ := day(lu.UTC().Format(time.RFC3339))
				d2, _ := day(a.UTC().Format(time.RFC3339))
				return daysBetween(d1, d2), ok1 && ok2
			}})
	}
	ingestTime := map[string]time.Time{}
	for _, s := range src {
		ingestTime[s.file] = s.ingested
	}
	attacks = append(attacks,
		attack{"shifted meta.lastUpdated - ingest time", func(p patient) (int, bool) {
			lu, ok := lastUpdated(p.copy)
			return daysBetween(lu, ingestTime[p.name]), ok
		}},
		attack{"most common non-zero difference between dates of one resource (an unshifted element)", func(p patient) (int, bool) {
			return unshiftedAnchor(p.copy, 50)
		}},
		attack{"year-only values against full dates of the same resource", func(p patient) (int, bool) {
			return yearBoundary(p.copy, 50)
		}},
	)
	sort.Slice(attacks, func(i, j int) bool { return attacks[i].name < attacks[j].name })
	// No better than chance: at most 10 patients or 5%, whichever is more.
	// A correct shift has about 1 in 72 odds per patient and guess, so about
	// 0.9 lucky hits are expected among ~65 patients; more than 10 by luck
	// happens about once in a billion runs of an attack, while a working
	// attack (meta.lastUpdated before the fix) recovers all of them.
	allowed := max(10, int(math.Ceil(0.05*float64(len(ps)))))
	for _, a := range attacks {
		hits, tried := 0, 0
		for _, p := range ps {
			guess, ok := a.guess(p)
			if !ok {
				continue
			}
			tried++
			if guess == p.offset {
				hits++
			}
		}
		t.Logf("attack %q: %d of %d patients' shifts recovered (%d guessed)", a.name, hits, len(ps), tried)
		if hits > allowed {
			t.Errorf("attack %q recovers the date shift of %d of %d patients (chance: at most %d)", a.name, hits, len(ps), allowed)
		}
	}
}

// unshiftedAnchor guesses the shift from an element a de-identifier forgot
// to shift: such an element differs from the shifted dates of the same
// event by exactly the shift. The guess is the most common non-zero
// difference (in range) between two dates of one resource.
func unshiftedAnchor(c *copyPatient, maxShift int) (int, bool) {
	diffs := map[int]int{}
	for _, r := range c.resources {
		ds := datesByPath(r)
		var days []time.Time
		for _, v := range ds {
			if d, ok := day(v); ok {
				days = append(days, d)
			}
		}
		for i := range days {
			for j := range days {
				if d := daysBetween(days[i], days[j]); d != 0 && d >= -maxShift && d <= maxShift {
					diffs[d]++
				}
			}
		}
	}
	best, n := 0, 1
	for d, k := range diffs {
		if k > n || k == n && d < best {
			best, n = d, k
		}
	}
	return best, n > 1
}

// yearBoundary guesses the shift from year-only values kept unshifted next
// to shifted full dates: if the year-only value Y and the full date S of one
// resource are the same event, the shift lies in [S - Dec 31 of Y, S - Jan 1
// of Y]. It intersects those ranges with the documented range and guesses
// when one value remains.
func yearBoundary(c *copyPatient, maxShift int) (int, bool) {
	lo, hi := -maxShift, maxShift
	found := false
	for _, r := range c.resources {
		var years []int
		var full []time.Time
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, c := range x {
					if k != "meta" {
						walk(c)
					}
				}
			case []any:
				for _, c := range x {
					walk(c)
				}
			case string:
				if yearOnly.MatchString(x) {
					y, _ := strconv.Atoi(x)
					years = append(years, y)
				} else if fullDate.MatchString(x) {
					if d, ok := day(x); ok {
						full = append(full, d)
					}
				}
			}
		}
		walk(r)
		for _, y := range years {
			for _, s := range full {
				l := daysBetween(s, time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC))
				h := daysBetween(s, time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC))
				if h < lo || l > hi {
					continue // not the same event
				}
				lo, hi, found = max(lo, l), min(hi, h), true
			}
		}
	}
	if !found {
		return 0, false
	}
	if lo == 0 {
		lo = 1
	}
	if hi == 0 {
		hi = -1
	}
	return lo, lo == hi
}

// withoutResolved returns body (a record listing or one record, JSON) without
// its "resolved" members, adding the references they resolve to to ids.
func withoutResolved(t *testing.T, body []byte, ids map[string]bool) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return body // not JSON: scanned as it is
	}
	var strip func(v any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["resolved"].(map[string]any); ok {
				for _, ref := range r {
					if s, ok := ref.(string); ok {
						ids[s] = true
					}
				}
				delete(x, "resolved")
			}
			for _, c := range x {
				strip(c)
			}
		case []any:
			for _, c := range x {
				strip(c)
			}
		}
	}
	strip(v)
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestContainsWordInText: a short name in clear JSON amid ciphertext is
// found; the same letters between random bytes are not.
func TestContainsWordInText(t *testing.T) {
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(0x80 + i%100) // never printable ASCII
		}
		return b
	}
	clear := append(append(noise(64), []byte(`{"name":[{"given":["john"]}]}`)...), noise(64)...)
	if !containsWordInText(clear, []byte("john")) {
		t.Error("a name in clear JSON amid binary bytes was not found")
	}
	chance := append(append(noise(64), []byte(" john\x01")...), noise(64)...)
	if containsWordInText(chance, []byte("john")) {
		t.Error("four letters between binary bytes were taken for a leak")
	}
	if containsWordInText(clear, []byte("johnny")) {
		t.Error("a longer word matched")
	}
}
