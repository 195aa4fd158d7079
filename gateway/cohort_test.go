package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/vault"
)

// syntheaInput is what the test reads from the input Bundles itself, to
// check the research copies and the cohort answers against.
type syntheaInput struct {
	// patients by the server's id of their Patient, once ingested.
	patients map[string]*inputPatient
	names    []string // every HumanName part of every resource: whole words
	values   []string // street lines, phones, emails, identifier values: substrings
}

type inputPatient struct {
	gender     string
	conditions map[string]bool // "system|code"
	a1c        []float64       // LOINC 4548-4 values
}

// readSynthea collects names and identifying values from every resource of
// the Bundles, and each patient's facts.
func readSynthea(t *testing.T, files []string) (*syntheaInput, map[string]*inputPatient) {
	t.Helper()
	in := &syntheaInput{patients: map[string]*inputPatient{}}
	seen := map[string]bool{}
	add := func(list *[]string, v string, min int) {
		if len(v) >= min && !seen[v] {
			seen[v] = true
			*list = append(*list, v)
		}
	}
	byFile := map[string]*inputPatient{}
	for _, f := range files {
		var b struct {
			Entry []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(readFile(t, f), &b); err != nil {
			t.Fatal(err)
		}
		var p *inputPatient
		for _, e := range b.Entry {
			var r struct {
				ResourceType string
				Gender       string
				Name         json.RawMessage // HumanName[], or an Organization's string
				Address      []struct{ Line []string }
				Telecom      []struct{ Value string }
				Identifier   []struct{ Value string }
				Code         struct {
					Coding []struct{ System, Code string }
				}
				ValueQuantity *struct{ Value float64 }
			}
			if err := json.Unmarshal(e.Resource, &r); err != nil {
				t.Fatal(err)
			}
			var humanNames []struct {
				Family string
				Given  []string
			}
			if bytes.HasPrefix(r.Name, []byte("[")) {
				if err := json.Unmarshal(r.Name, &humanNames); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range humanNames {
				add(&in.names, n.Family, 3)
				for _, g := range n.Given {
					add(&in.names, g, 3)
				}
			}
			for _, a := range r.Address {
				for _, l := range a.Line {
					add(&in.values, l, 4)
				}
			}
			for _, tc := range r.Telecom {
				add(&in.values, tc.Value, 4)
			}
			for _, id := range r.Identifier {
				add(&in.values, id.Value, 4)
			}
			switch r.ResourceType {
			case "Patient":
				p = &inputPatient{gender: r.Gender, conditions: map[string]bool{}}
				byFile[f] = p
			case "Condition":
				for _, c := range r.Code.Coding {
					p.conditions[c.System+"|"+c.Code] = true
				}
			case "Observation":
				for _, c := range r.Code.Coding {
					if c.System == "http://loinc.org" && c.Code == "4548-4" && r.ValueQuantity != nil {
						p.a1c = append(p.a1c, r.ValueQuantity.Value)
					}
				}
			}
		}
	}
	if len(in.names) < 100 || len(in.values) < 200 {
		t.Fatalf("collected only %d names and %d values; the scan would prove little", len(in.names), len(in.values))
	}
	return in, byFile
}

// researcher mints a researcher's token: research purpose, cohort scopes.
func researcher(t testing.TB, g *testonly.Gateway, client string) []string {
	t.Helper()
	tok := g.TokenFor(t, auth.Claims{ClientID: client, TTL: time.Hour, PurposeOfUse: "HRESCH",
		Scopes: []string{gateway.CohortQueryScope, gateway.CohortExportScope}})
	return []string{"Authorization", "Bearer " + tok}
}

type cohortResult struct {
	Result struct {
		Count      *int                  `json:"count"`
		Suppressed bool                  `json:"suppressed"`
		Reason     string                `json:"reason"`
		Noise      string                `json:"noise"`
		RoundedTo  int                   `json:"roundedTo"`
		Breakdown  []string              `json:"breakdown"`
		Total      cohort.Released       `json:"total"`
		Cells      []cohort.ReleasedCell `json:"cells"`
	} `json:"result"`
	Decision    uint64 `json:"decision"`
	Released    string `json:"released"`
	RepeatsLeft int    `json:"repeatsLeft"`
}

func askCohort(t *testing.T, g *testonly.Gateway, op, query string, hdr []string) (cohortResult, testonly.Response) {
	t.Helper()
	r := g.DoRoot(t, http.MethodPost, "/v1/cohorts:"+op, []byte(query), hdr...)
	var out cohortResult
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &out); err != nil {
			t.Fatalf("cohort answer is not JSON: %v: %s", err, r.Body)
		}
	}
	return out, r
}

const (
	diabetes     = `{"condition": {"code": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}`
	hypertension = `{"condition": {"code": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}`
)

// TestResearchOverSynthea is issue 5's must-show: after ingesting the 60
// Synthea Bundles, no research copy holds PHI and every copy is valid FHIR;
// cohort answers equal an independent scan of the input; small counts are
// suppressed; a patient whose consent forbids research is neither counted
// nor exported; the repeat limit triggers; an export's files are what its
// anchored decision record says were released.
func TestResearchOverSynthea(t *testing.T) {
	// Exact counts: no noise, no rounding (the defaults add both; see
	// TestCohortDifferencingAttack).
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Research: gateway.ResearchConfig{
		Privacy: cohort.Privacy{Threshold: 1, Noise: cohort.NoiseNone, RoundTo: 1, RepeatLimit: 4},
	}})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	files := shareddata.Files(t, "synthea")
	in, byFile := readSynthea(t, files)

	// Ingest, and map each input patient to the server's id.
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := g.Do(t, http.MethodPost, "", readFile(t, f), ehr...)
			if r.Status != http.StatusOK {
				t.Errorf("%s: status %d", filepath.Base(f), r.Status)
				return
			}
			p := byFile[f]
			if p == nil {
				return // hospitals and practitioners
			}
			for _, e := range decodeBundle(t, r.Body).Entry {
				if loc := relativeLocation(e.Response.Location); strings.HasPrefix(loc, "Patient/") {
					mu.Lock()
					in.patients[strings.Split(loc, "/")[1]] = p
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() || len(in.patients) != 58 {
		t.Fatalf("ingested %d patients, want 58", len(in.patients))
	}
	hdr := researcher(t, g, "research-team")

	t.Run("research copies hold no PHI and are valid FHIR", func(t *testing.T) {
		checkResearchCopies(t, g, in)
	})

	// The patients of a condition, by server id, from the input.
	having := func(code string) []string {
		var ids []string
		for id, p := range in.patients {
			if p.conditions["http://snomed.info/sct|"+code] {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	byGender := func(ids []string) map[string]int {
		out := map[string]int{}
		for _, id := range ids {
			out[in.patients[id].gender]++
		}
		return out
	}
	// compare checks a count and a breakdown by gender against the input.
	compare := func(t *testing.T, hdr []string, criteria string, ids []string) {
		t.Helper()
		res, r := askCohort(t, g, "count", `{"criteria": `+criteria+`}`, hdr)
		if r.Status != http.StatusOK || res.Result.Count == nil || *res.Result.Count != len(ids) {
			t.Errorf("count of %s = %d %s, want %d", criteria, r.Status, r.Body, len(ids))
		}
		res, r = askCohort(t, g, "breakdown", `{"criteria": `+criteria+`, "breakdown": ["gender"]}`, hdr)
		if r.Status != http.StatusOK {
			t.Fatalf("breakdown = %d %s", r.Status, r.Body)
		}
		got := map[string]int{}
		for _, c := range res.Result.Cells {
			if c.Count == nil {
				t.Fatalf("cell %v suppressed with a threshold of 1", c)
			}
			if *c.Count > 0 {
				got[cellValue(c, "gender")] = *c.Count
			}
		}
		if want := byGender(ids); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s by gender = %v, want %v", criteria, got, want)
		}
	}
	diabetic, hypertensive := having("44054006"), having("38341003")
	if len(hypertensive) < 12 {
		t.Fatalf("only %d hypertensive patients in the input; the checks below need 12", len(hypertensive))
	}

	t.Run("counts equal an independent scan", func(t *testing.T) {
		t.Logf("in the input: diabetes (SNOMED 44054006) %v, hypertension (38341003) %v", byGender(diabetic), byGender(hypertensive))
		compare(t, hdr, diabetes, diabetic)
		compare(t, hdr, hypertension, hypertensive)

		// A value range: patients with an HbA1c over 5.7 %.
		want := 0
		for _, p := range in.patients {
			if slices.ContainsFunc(p.a1c, func(v float64) bool { return v > 5.7 }) {
				want++
			}
		}
		res, r := askCohort(t, g, "count", `{"criteria": {"observation": {"code": [{"system": "http://loinc.org", "code": "4548-4"}], "value": {"gt": 5.7}}}}`, hdr)
		if r.Status != http.StatusOK || res.Result.Count == nil || *res.Result.Count != want {
			t.Errorf("HbA1c > 5.7 count = %d %s, want %d", r.Status, r.Body, want)
		}
		t.Logf("HbA1c > 5.7 in the input: %d patients", want)
	})

	// One hypertensive patient opts out of research.
	optOut := hypertensive[0]
	consent := `{"resourceType": "Consent", "status": "active",
		"scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
		"category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
		"patient": {"reference": "Patient/` + optOut + `"},
		"policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
		"provision": {"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}}`
	if r := g.Do(t, http.MethodPost, "/Consent", []byte(consent), ehr...); r.Status != http.StatusCreated {
		t.Fatalf("POST Consent = %d %s", r.Status, r.Body)
	}

	t.Run("a patient who opted out is not counted", func(t *testing.T) {
		// Another team: each team has its own repeat limit.
		hdr := researcher(t, g, "research-team-b")
		compare(t, hdr, hypertension, hypertensive[1:])
		res, r := askCohort(t, g, "count", `{"criteria": `+hypertension+`}`, hdr)
		if r.Status != http.StatusOK || res.Result.Count == nil || *res.Result.Count != len(hypertensive)-1 {
			t.Fatalf("count after the opt-out = %d %s, want %d", r.Status, r.Body, len(hypertensive)-1)
		}
		// The decision record says so, and commits to what was released.
		rec, raw := decisionRecordAt(t, g, res.Decision)
		if rec["action"] != "research-query" || rec["refused"] != float64(1) || rec["allow"] != true {
			t.Errorf("record %v: want action research-query, 1 patient refused, allowed", rec)
		}
		sum := sha256.Sum256(raw["answer"])
		if rec["released"] != hex.EncodeToString(sum[:]) || res.Released != rec["released"] {
			t.Errorf("record releases %v, its answer hashes to %x, the response says %s", rec["released"], sum, res.Released)
		}
	})

	t.Run("export", func(t *testing.T) {
		checkExport(t, g, hdr, hypertensive, optOut)
	})

	t.Run("repeat limit", func(t *testing.T) {
		other := researcher(t, g, "another-team")
		// Four near-identical queries (only the threshold differs) are
		// answered; the fifth is refused, and recorded.
		for i, v := range []string{"5", "6", "7", "8", "9"} {
			q := `{"criteria": {"observation": {"code": [{"system": "http://loinc.org", "code": "4548-4"}], "value": {"gt": ` + v + `}}}}`
			res, r := askCohort(t, g, "count", q, other)
			want := http.StatusOK
			if i == 4 {
				want = http.StatusTooManyRequests
			}
			if r.Status != want {
				t.Fatalf("query %d = %d %s, want %d", i+1, r.Status, r.Body, want)
			}
			if want == http.StatusOK && res.RepeatsLeft != 3-i {
				t.Errorf("query %d says %d repeats left, want %d", i+1, res.RepeatsLeft, 3-i)
			}
		}
		// Another shape is not limited.
		if _, r := askCohort(t, g, "count", `{"criteria": `+diabetes+`}`, other); r.Status != http.StatusOK {
			t.Errorf("a different query after the limit = %d %s", r.Status, r.Body)
		}
	})

	// A restart rebuilds the index from the vault; with the default
	// threshold, small counts are suppressed (and the overlap control is on,
	// comparing this new client's releases only: with the default scope, the
	// releases of the subtests above would decide instead).
	g.RestartWith(t, func(o *testonly.Options) {
		o.Research.Privacy.Threshold = 0
		o.Research.Privacy.OverlapScope = cohort.OverlapClient
	})
	hdr = researcher(t, g, "research-team-2")
	t.Run("small counts are suppressed", func(t *testing.T) {
		res, r := askCohort(t, g, "count", `{"criteria": `+diabetes+`}`, hdr)
		if r.Status != http.StatusOK || len(diabetic) >= 11 || !res.Result.Suppressed || res.Result.Count != nil {
			t.Errorf("count of %d diabetic patients = %d %s; want it suppressed", len(diabetic), r.Status, r.Body)
		}
		res, r = askCohort(t, g, "count", `{"criteria": `+hypertension+`}`, hdr)
		if n := len(hypertensive) - 1; r.Status != http.StatusOK || res.Result.Count == nil || *res.Result.Count != n {
			t.Errorf("count of %d hypertensive patients = %d %s; want it released", n, r.Status, r.Body)
		}
		res, r = askCohort(t, g, "count", `{"criteria": {"gender": "female"}}`, hdr)
		females := 0 // the patient who opted out is not counted
		for id, p := range in.patients {
			if p.gender == "female" && id != optOut {
				females++
			}
		}
		if r.Status != http.StatusOK || res.Result.Count == nil || *res.Result.Count != females {
			t.Errorf("female count = %d %s, want %d", r.Status, r.Body, females)
		}
	})
}

func cellValue(c cohort.ReleasedCell, dim string) string {
	b, _ := json.Marshal(c)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if v, ok := m["values"].(map[string]any); ok {
		return fmt.Sprint(v[dim])
	}
	return ""
}

// decisionRecordAt reads the record of leaf idx from the vault, decoded and
// as raw members (to hash them as written).
func decisionRecordAt(t *testing.T, g *testonly.Gateway, idx uint64) (map[string]any, map[string]json.RawMessage) {
	t.Helper()
	l, err := g.Vault.Store().Leaf(t.Context(), int64(idx)+1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Data, anchor.LeafData(anchor.LeafType(l.Type), anchor.Commit(anchor.LeafType(l.Type), l.Salt, l.Record))) {
		t.Errorf("leaf %d does not commit to its record", idx)
	}
	var rec map[string]any
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(l.Record, &rec); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(l.Record, &raw); err != nil {
		t.Fatal(err)
	}
	return rec, raw
}

var fineDate = regexp.MustCompile(`^(\d{4}-\d{2}(-\d{2})?)`)

// checkResearchCopies scans every research copy the vault holds.
func checkResearchCopies(t *testing.T, g *testonly.Gateway, in *syntheaInput) {
	parser, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	// The date shift's offset, to prove each date was shifted: the engine
	// the gateway runs, keyed as the gateway keys it.
	engine, err := deid.New(deid.SafeHarbor(), deid.Keys{
		DateShift:  g.Vault.Token("research-key", "date-shift"),
		CryptoHash: g.Vault.Token("research-key", "crypto-hash"),
		Encrypt:    g.Vault.Token("research-key", "encrypt"),
	})
	if err != nil {
		t.Fatal(err)
	}
	leak := newLeakFinder(in)
	copies, shifted := 0, 0
	deidLeaves := map[string]map[string]any{} // by resource version
	ls, err := g.Vault.Store().FindLeaves(t.Context(), vault.LeafFilter{Type: uint8(anchor.LeafDeidentification), Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		var rec map[string]any
		if err := json.Unmarshal(l.Record, &rec); err != nil {
			t.Fatal(err)
		}
		deidLeaves[fmt.Sprint(rec["resource"])] = rec
	}
	after := int64(0)
	for {
		recs, err := g.Vault.Store().Versions(t.Context(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		after = recs[len(recs)-1].Leaf.Seq
		for _, r := range recs {
			v, err := g.Vault.Open(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			research, err := g.Vault.OpenCopy(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			where := v.Type + "/" + v.ID
			if v.Compartment == "" || v.Deleted {
				if research != nil {
					t.Errorf("%s outside any patient compartment has a research copy", where)
				}
				continue
			}
			if research == nil {
				t.Errorf("%s has no research copy", where)
				continue
			}
			copies++
			if _, err := parser.Parse(research); err != nil {
				t.Errorf("research copy of a %s is not valid FHIR R4: %v", v.Type, err)
			}
			// Whole words: a short number may turn up inside a 64-hex
			// pseudonym by chance.
			walkStrings(t, research, func(path, s string) {
				if m := leak.find(s); m != "" {
					t.Errorf("research copy of %s holds %q at %s", where, m, path)
				}
			})
			if bytes.Contains(research, []byte(v.ID)) || bytes.Contains(research, []byte(strings.TrimPrefix(v.Compartment, "Patient/"))) {
				t.Errorf("research copy of %s holds a server id", where)
			}
			// Every date finer than a year is the shifted form of a date
			// of the source version, and the shift is not zero.
			offset := engine.DateShiftDays(v.Compartment)
			if offset == 0 {
				t.Fatalf("the date shift of %s is zero", v.Compartment)
			}
			src := sourceDates(v.Body)
			walkStrings(t, research, func(path, s string) {
				if strings.HasSuffix(path, ".postalCode") && len(s) > 3 {
					t.Errorf("%s: %s keeps %d characters of ZIP", where, path, len(s))
				}
				m := fineDate.FindString(s)
				if m == "" || strings.HasSuffix(path, ".id") || strings.HasSuffix(path, ".versionId") {
					return
				}
				if len(m) == 7 {
					t.Errorf("%s: %s keeps a month the shift could not move", where, path)
					return
				}
				d, err := time.Parse("2006-01-02", m)
				if err != nil {
					return
				}
				if !src[d.AddDate(0, 0, -offset).Format("2006-01-02")] {
					t.Errorf("%s: %s is not a source date shifted by %d days", where, path, offset)
					return
				}
				shifted++
			})
			// Its deidentification leaf commits to exactly this copy.
			rec := deidLeaves[g.RecordRef(v.Type, v.ID)+"/_history/"+strconv.FormatInt(v.Version, 10)]
			sum := sha256.Sum256(research)
			if rec == nil || rec["output"] != hex.EncodeToString(sum[:]) || rec["source"] != hex.EncodeToString(v.Commitment) {
				t.Errorf("%s: its deidentification record %v does not name this copy and version", where, rec)
			}
		}
	}
	t.Logf("%d research copies scanned, %d shifted dates checked, %d deidentification records", copies, shifted, len(deidLeaves))
	if copies < 10000 || shifted < 10000 {
		t.Errorf("scanned %d copies and %d dates; want the whole Synthea set", copies, shifted)
	}
}

// leakFinder finds the input's names and identifying values in a string,
// as whole words: a short number may turn up inside a 64-hex pseudonym by
// chance, and a short name inside a longer word.
type leakFinder struct {
	words   map[string]bool // names and one-word values
	phrases []string        // values with spaces (street lines)
}

func newLeakFinder(in *syntheaInput) *leakFinder {
	f := &leakFinder{words: map[string]bool{}}
	for _, n := range in.names {
		f.words[n] = true
	}
	for _, v := range in.values {
		if strings.Contains(v, " ") {
			f.phrases = append(f.phrases, v)
		} else {
			f.words[v] = true
		}
	}
	return f
}

func (f *leakFinder) find(s string) string {
	if f.words[s] {
		return s
	}
	// Words are split at anything but letters, digits, '-' and '.': an
	// identifier like 999-93-4328 or a phone number stays one word.
	for _, w := range strings.FieldsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '.' && r != '@'
	}) {
		if f.words[w] || f.words[strings.Trim(w, ".-")] {
			return w
		}
	}
	if strings.Contains(s, " ") {
		for _, p := range f.phrases {
			if strings.Contains(s, p) {
				return p
			}
		}
	}
	return ""
}

// sourceDates lists every calendar day a source version's strings name.
func sourceDates(body []byte) map[string]bool {
	out := map[string]bool{}
	walkStrings(nil, body, func(_, s string) {
		if m := fineDate.FindString(s); len(m) == 10 {
			out[m] = true
		}
	})
	return out
}

// walkStrings calls fn with the path and value of every string in data.
func walkStrings(t *testing.T, data []byte, fn func(path, s string)) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		if t != nil {
			t.Fatal(err)
		}
		return
	}
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(p+"."+k, c)
			}
		case []any:
			for i, c := range x {
				walk(p+"["+strconv.Itoa(i)+"]", c)
			}
		case string:
			fn(p, x)
		}
	}
	walk("", v)
}

// checkExport exports the hypertensive cohort and checks the Bulk Data flow,
// that the patient who opted out is not in it, and that the files are what
// the anchored record says.
func checkExport(t *testing.T, g *testonly.Gateway, hdr []string, cohortIDs []string, optOut string) {
	r := g.DoRoot(t, http.MethodPost, "/v1/cohorts:export", []byte(`{"criteria": `+hypertension+`, "type": ["Patient", "Condition", "Observation"]}`), hdr...)
	if r.Status != http.StatusAccepted || r.Header.Get("Content-Location") == "" {
		t.Fatalf("export kick-off = %d (Content-Location %q) %s", r.Status, r.Header.Get("Content-Location"), r.Body)
	}
	status := strings.TrimPrefix(r.Header.Get("Content-Location"), g.Root)
	// Another client cannot see it.
	if r := g.DoRoot(t, http.MethodGet, status, nil, researcher(t, g, "someone-else")...); r.Status != http.StatusNotFound {
		t.Errorf("another client's status request = %d, want 404", r.Status)
	}
	var m struct {
		Output []struct {
			Type   string `json:"type"`
			URL    string `json:"url"`
			Count  int    `json:"count"`
			SHA256 string `json:"sha256"`
		} `json:"output"`
		Extension struct {
			Decision uint64 `json:"decision"`
			Released string `json:"released"`
			Patients int    `json:"patients"`
		} `json:"extension"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		r = g.DoRoot(t, http.MethodGet, status, nil, hdr...)
		if r.Status == http.StatusOK {
			break
		}
		if r.Status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("export status = %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("manifest: %v: %s", err, r.Body)
	}
	if m.Extension.Patients != len(cohortIDs)-1 || len(m.Output) != 3 {
		t.Fatalf("manifest lists %d patients and %d files; want %d patients, 3 files: %s", m.Extension.Patients, len(m.Output), len(cohortIDs)-1, r.Body)
	}
	// The opted-out patient's pseudonym, from their own research copy.
	r0, err := g.Vault.Store().Current(t.Context(), "Patient", optOut)
	if err != nil {
		t.Fatal(err)
	}
	research, err := g.Vault.OpenCopy(t.Context(), r0)
	if err != nil {
		t.Fatal(err)
	}
	var pseudo struct{ ID string }
	if err := json.Unmarshal(research, &pseudo); err != nil || len(pseudo.ID) < 16 {
		t.Fatalf("the opted-out patient's research copy has no pseudonymous id: %v", err)
	}
	patients := map[string]bool{}
	for _, f := range m.Output {
		r := g.DoRoot(t, http.MethodGet, strings.TrimPrefix(f.URL, g.Root), nil, hdr...)
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/fhir+ndjson") {
			t.Fatalf("GET %s = %d %s", f.Type, r.Status, r.Header.Get("Content-Type"))
		}
		sum := sha256.Sum256(r.Body)
		lines := bytes.Split(bytes.TrimSuffix(r.Body, []byte("\n")), []byte("\n"))
		if hex.EncodeToString(sum[:]) != f.SHA256 || len(lines) != f.Count {
			t.Errorf("%s: %d lines hashing to %x; the manifest says %d and %s", f.Type, len(lines), sum, f.Count, f.SHA256)
		}
		if bytes.Contains(r.Body, []byte(pseudo.ID)) {
			t.Errorf("%s export holds the patient who opted out", f.Type)
		}
		for _, l := range lines {
			var res struct {
				ResourceType string
				ID           string
				Subject      struct{ Reference string }
			}
			if err := json.Unmarshal(l, &res); err != nil || res.ResourceType != f.Type {
				t.Fatalf("%s export line is not a %s: %v", f.Type, f.Type, err)
			}
			if res.ResourceType == "Patient" {
				patients[res.ID] = true
			}
		}
	}
	if len(patients) != len(cohortIDs)-1 {
		t.Errorf("the Patient file holds %d patients, want %d", len(patients), len(cohortIDs)-1)
	}
	rec, raw := decisionRecordAt(t, g, m.Extension.Decision)
	sum := sha256.Sum256(raw["files"])
	if rec["action"] != "export" || rec["released"] != m.Extension.Released || hex.EncodeToString(sum[:]) != m.Extension.Released {
		t.Errorf("export record %v does not commit to the released files (%x)", rec, sum)
	}
	// Deleting it removes the files.
	if r := g.DoRoot(t, http.MethodDelete, status, nil, hdr...); r.Status != http.StatusAccepted {
		t.Errorf("DELETE export = %d %s", r.Status, r.Body)
	}
	if r := g.DoRoot(t, http.MethodGet, status, nil, hdr...); r.Status != http.StatusNotFound {
		t.Errorf("status of a deleted export = %d, want 404", r.Status)
	}
}

// TestCohortBadInput: a malformed query gets a 400 OperationOutcome that
// quotes nothing of it, and records nothing.
func TestCohortBadInput(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	hdr := researcher(t, g, "research-team")
	before := g.RecordLeaves(t)
	const marker = "Doe-MARKER-1961"
	cases := []struct {
		op, body string
		want     int
	}{
		{"count", `not json ` + marker, http.StatusBadRequest},
		{"count", `{"criteria": {"gender": "female"}, "extra": "` + marker + `"}`, http.StatusBadRequest},
		{"count", `{"criteria": {"nickname": "` + marker + `"}}`, http.StatusBadRequest},
		{"count", `{"criteria": {"all": []}}`, http.StatusBadRequest},
		{"count", `{"criteria": {"age": {"ge": "` + marker + `"}}}`, http.StatusBadRequest},
		{"count", strings.Repeat(`{"not": `, 40) + `{"gender": "male"}` + strings.Repeat(`}`, 40), http.StatusBadRequest},
		{"breakdown", `{"criteria": {"gender": "female"}}`, http.StatusBadRequest},
		{"breakdown", `{"criteria": {"gender": "female"}, "breakdown": ["` + marker + `"]}`, http.StatusBadRequest},
		{"export", `{"criteria": {"gender": "female"}, "type": ["` + marker + `"]}`, http.StatusBadRequest},
		{"export", `{"criteria": {"gender": "female"}, "type": "Patient"}`, http.StatusBadRequest},
		{"export", `[1, 2]`, http.StatusBadRequest},
	}
	for _, c := range cases {
		r := g.DoRoot(t, http.MethodPost, "/v1/cohorts:"+c.op, []byte(c.body), hdr...)
		var oo struct{ ResourceType string }
		if r.Status != c.want || json.Unmarshal(r.Body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
			t.Errorf("%s %.60s = %d %s, want %d and an OperationOutcome", c.op, c.body, r.Status, r.Body, c.want)
		}
		if bytes.Contains(r.Body, []byte(marker)) {
			t.Errorf("%s %.60s: the outcome quotes the input: %s", c.op, c.body, r.Body)
		}
	}
	for _, path := range []string{"/v1/cohorts/exports/not-an-id", "/v1/cohorts/exports/" + strings.Repeat("a", 32) + "/files/..%2Fvault.db"} {
		if r := g.DoRoot(t, http.MethodGet, path, nil, hdr...); r.Status != http.StatusNotFound {
			t.Errorf("GET %s = %d %s, want 404", path, r.Status, r.Body)
		}
	}
	if after := g.RecordLeaves(t); after != before {
		t.Errorf("bad requests wrote %d records", after-before)
	}
	if bytes.Contains(g.Logs.Bytes(), []byte(marker)) {
		t.Error("the log quotes a bad query")
	}
}
