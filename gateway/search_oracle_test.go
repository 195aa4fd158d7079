package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// The search oracle: every answer of the gateway's FHIR search over Synthea
// data is compared with one computed here, independently, from the raw
// input Bundles: plain Go over decoded JSON, without package fhir/search
// and without the gateway's index.

// oracleFiles is the fixed subset of Synthea patients loaded (by file name
// prefix): loading all 60 takes too long for a test run. Emilia Palomino
// and Felipe Cazares are there for accents, the two Balistreris for a name
// shared by two patients, Morgan Gislason as a busy patient.
var oracleFiles = []string{
	"Alejandro_Riojas_", "Amiee_Buckridge_", "Antonio_Castellanos_", "Bill_Reinger_",
	"Blake_Eichmann_", "Brett_Gottlieb_", "Buster_Hoeger_", "Chauncey_Johnston_", "Chet_Thompson_",
	"Christian_Balistreri_", "Dannie_Schmitt_", "Emilia_Palomino_", "Enda_Schaefer_",
	"Felipe_Cazares_", "Morgan_Gislason_", "Stanley_Balistreri_", "Yi_Weissnat_",
}

const (
	loinc  = "http://loinc.org"
	snomed = "http://snomed.info/sct"
	ucum   = "http://unitsofmeasure.org"
	v20203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
)

// res is a resource as the oracle keeps it: the input JSON (numbers as
// written), with id set to the server's id and urn:uuid: references
// rewritten to the server's Type/id.
type res = map[string]any

type oracle struct {
	byType map[string]map[string]res // type -> id -> resource
}

// ids returns "Type/id" of the resources of typ for which keep holds, sorted.
func (o *oracle) ids(typ string, keep func(res) bool) []string {
	var out []string
	for id, r := range o.byType[typ] {
		if keep == nil || keep(r) {
			out = append(out, typ+"/"+id)
		}
	}
	slices.Sort(out)
	return out
}

func (o *oracle) get(ref string) res {
	typ, id, _ := strings.Cut(ref, "/")
	return o.byType[typ][id]
}

func (o *oracle) add(typ, id string, r res) {
	if o.byType[typ] == nil {
		o.byType[typ] = map[string]res{}
	}
	o.byType[typ][id] = r
}

// loadOracle posts the subset as transaction Bundles and builds the oracle
// from the same bytes, mapping each entry to its Location (entry order).
func loadOracle(t *testing.T, g *testonly.Gateway, hdr []string) *oracle {
	t.Helper()
	var files []string
	for _, f := range shareddata.Files(t, "synthea") {
		if slices.ContainsFunc(oracleFiles, func(p string) bool { return strings.HasPrefix(filepath.Base(f), p) }) {
			files = append(files, f)
		}
	}
	if len(files) != len(oracleFiles) {
		t.Fatalf("found %d of the %d oracle files", len(files), len(oracleFiles))
	}
	o := &oracle{byType: map[string]map[string]res{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 3)
	for _, f := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			data := readFile(t, f)
			r := g.Do(t, http.MethodPost, "", data, hdr...)
			if r.Status != http.StatusOK {
				t.Errorf("%s: status %d %s", filepath.Base(f), r.Status, clip(r.Body, 500))
				return
			}
			resp := decodeBundle(t, r.Body)
			var in struct {
				Entry []struct {
					FullURL  string `json:"fullUrl"`
					Resource res    `json:"resource"`
				} `json:"entry"`
			}
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if err := dec.Decode(&in); err != nil {
				t.Error(err)
				return
			}
			if len(resp.Entry) != len(in.Entry) {
				t.Errorf("%s: %d response entries for %d", filepath.Base(f), len(resp.Entry), len(in.Entry))
				return
			}
			urn := map[string]string{}
			for i, e := range resp.Entry {
				parts := strings.Split(relativeLocation(e.Response.Location), "/")
				if len(parts) < 2 || parts[0] != in.Entry[i].Resource["resourceType"] {
					t.Errorf("%s entry %d: location %q", filepath.Base(f), i, e.Response.Location)
					return
				}
				urn[in.Entry[i].FullURL] = parts[0] + "/" + parts[1]
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range in.Entry {
				rewriteRefs(e.Resource, urn)
				typ, id, _ := strings.Cut(urn[e.FullURL], "/")
				e.Resource["id"] = id
				o.add(typ, id, e.Resource)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return o
}

func rewriteRefs(v any, urn map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "reference" {
				if to, ok := urn[s]; ok {
					x[k] = to
				}
				continue
			}
			rewriteRefs(c, urn)
		}
	case []any:
		for _, c := range x {
			rewriteRefs(c, urn)
		}
	}
}

// at follows a dotted path, flattening arrays at every step.
func at(v any, path string) []any {
	cur := []any{v}
	for _, step := range strings.Split(path, ".") {
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			switch x := m[step].(type) {
			case nil:
			case []any:
				next = append(next, x...)
			default:
				next = append(next, x)
			}
		}
		cur = next
	}
	return cur
}

func strs(v any, path string) []string {
	var out []string
	for _, x := range at(v, path) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func str(v any, path string) string {
	if s := strs(v, path); len(s) > 0 {
		return s[0]
	}
	return ""
}

// hasCoding: a coding at path (a CodeableConcept's "coding" or a Coding
// list) with that code; system "*" is any system, "" none.
func hasCoding(r res, path, system, code string) bool {
	for _, c := range at(r, path) {
		sys := str(c, "system")
		if (system == "*" || sys == system) && (code == "" || str(c, "code") == code) {
			return true
		}
	}
	return false
}

// fold is the case- and accent-insensitive form of a string.
func fold(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// span is a date's range at its precision: [lo, hi).
type span struct{ lo, hi time.Time }

var (
	farPast   = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
)

func dateSpan(s string) span {
	switch len(s) {
	case 4, 7, 10:
		layout := "2006-01-02"[:len(s)]
		lo, err := time.Parse(layout, s)
		if err != nil {
			panic(err)
		}
		switch len(s) {
		case 4:
			return span{lo, lo.AddDate(1, 0, 0)}
		case 7:
			return span{lo, lo.AddDate(0, 1, 0)}
		}
		return span{lo, lo.AddDate(0, 0, 1)}
	}
	lo, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	step := time.Second
	if i := strings.IndexByte(s, '.'); i > 0 {
		digits := strings.IndexFunc(s[i+1:], func(r rune) bool { return r < '0' || r > '9' })
		step = time.Duration(1)
		for range 9 - digits {
			step *= 10
		}
	}
	return span{lo, lo.Add(step)}
}

// spans returns the date spans at path: dates, or Periods (an open end
// is unbounded).
func spans(r res, path string) []span {
	var out []span
	var vals []any
	for _, p := range strings.Split(path, "|") {
		vals = append(vals, at(r, p)...)
	}
	for _, v := range vals {
		switch x := v.(type) {
		case string:
			out = append(out, dateSpan(x))
		case map[string]any:
			sp := span{farPast, farFuture}
			if s := str(x, "start"); s != "" {
				sp.lo = dateSpan(s).lo
			}
			if e := str(x, "end"); e != "" {
				sp.hi = dateSpan(e).hi
			}
			out = append(out, sp)
		}
	}
	return out
}

// dateOK is R4's date comparison of a target span v with query span q.
func dateOK(prefix string, q, v span) bool {
	contained := !v.lo.Before(q.lo) && !v.hi.After(q.hi)
	switch prefix {
	case "eq":
		return contained
	case "ne":
		return !contained
	case "gt":
		return v.hi.After(q.hi)
	case "lt":
		return v.lo.Before(q.lo)
	case "ge":
		return v.hi.After(q.hi) || contained
	case "le":
		return v.lo.Before(q.lo) || contained
	case "sa":
		return !v.lo.Before(q.hi)
	case "eb":
		return !v.hi.After(q.lo)
	}
	panic(prefix)
}

// dateMatch: any value at path satisfies prefix+date; ne: none is equal.
func dateMatch(r res, path, prefix, date string) bool {
	vs := spans(r, path)
	q := dateSpan(date)
	if prefix == "ne" {
		return len(vs) > 0 && !slices.ContainsFunc(vs, func(v span) bool { return dateOK("eq", q, v) })
	}
	return slices.ContainsFunc(vs, func(v span) bool { return dateOK(prefix, q, v) })
}

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return r
}

// quantity is Observation.valueQuantity's value (nil when absent).
func quantity(r res) *big.Rat {
	q, ok := r["valueQuantity"].(map[string]any)
	if !ok {
		return nil
	}
	n, ok := q["value"].(json.Number)
	if !ok {
		return nil
	}
	return rat(n.String())
}

// numOK compares a value with a query number at its precision (half a
// unit of its last digit either side for eq).
func numOK(prefix, query string, v *big.Rat) bool {
	if v == nil {
		return false
	}
	q := rat(query)
	decimals := 0
	if i := strings.IndexByte(query, '.'); i >= 0 {
		decimals = len(query) - i - 1
	}
	half := big.NewRat(1, 2)
	for range decimals {
		half.Quo(half, big.NewRat(10, 1))
	}
	lo, hi := new(big.Rat).Sub(q, half), new(big.Rat).Add(q, half)
	switch prefix {
	case "eq":
		return v.Cmp(lo) >= 0 && v.Cmp(hi) < 0
	case "ne":
		return !(v.Cmp(lo) >= 0 && v.Cmp(hi) < 0)
	case "gt", "sa":
		return v.Cmp(q) > 0
	case "lt", "eb":
		return v.Cmp(q) < 0
	case "ge":
		return v.Cmp(q) >= 0
	case "le":
		return v.Cmp(q) <= 0
	}
	panic(prefix)
}

// refTo: a reference at path is exactly ref ("Type/id").
func refTo(r res, path, ref string) bool {
	return slices.Contains(strs(r, path+".reference"), ref)
}

// searchResult is what a search (all its pages) answered.
type searchResult struct {
	matches  []string // Type/id, in order
	included []string
	total    int
	pages    int
	bundles  []map[string]any
}

// get runs one request and decodes the searchset.
func searchPage(t *testing.T, g *testonly.Gateway, method, path string, body []byte, hdr []string) map[string]any {
	t.Helper()
	r := g.Do(t, method, path, body, hdr...)
	if r.Status != http.StatusOK {
		t.Fatalf("%s %s: status %d %s", method, path, r.Status, clip(r.Body, 800))
	}
	var b map[string]any
	if err := json.Unmarshal(r.Body, &b); err != nil || b["type"] != "searchset" {
		t.Fatalf("%s %s: not a searchset: %v %s", method, path, err, clip(r.Body, 300))
	}
	return b
}

func link(b map[string]any, rel string) string {
	for _, l := range at(b, "link") {
		if str(l, "relation") == rel {
			u := str(l, "url")
			if i := strings.Index(u, "/fhir/r4"); i >= 0 {
				return u[i+len("/fhir/r4"):]
			}
			return u
		}
	}
	return ""
}

// searchEntries splits a searchset's entries by mode.
func searchEntries(t *testing.T, b map[string]any) (match, include []string) {
	t.Helper()
	for _, e := range at(b, "entry") {
		ref := str(e, "resource.resourceType") + "/" + str(e, "resource.id")
		switch str(e, "search.mode") {
		case "match":
			match = append(match, ref)
		case "include":
			include = append(include, ref)
		}
	}
	return match, include
}

// runSearch follows next links to the end.
func runSearch(t *testing.T, g *testonly.Gateway, path string, hdr []string) searchResult {
	t.Helper()
	var out searchResult
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "?") {
		path = "/" + path
	}
	for next := path; next != ""; {
		b := searchPage(t, g, http.MethodGet, next, nil, hdr)
		m, inc := searchEntries(t, b)
		out.matches = append(out.matches, m...)
		out.included = append(out.included, inc...)
		total, ok := b["total"].(float64)
		if !ok {
			t.Fatalf("%s: no total", next)
		}
		if out.pages > 0 && int(total) != out.total {
			t.Errorf("%s: total changed from %d to %d between pages", path, out.total, int(total))
		}
		out.total = int(total)
		out.pages++
		out.bundles = append(out.bundles, b)
		if out.pages > 200 {
			t.Fatalf("%s: more than 200 pages", path)
		}
		next = link(b, "next")
	}
	return out
}

// diff describes how got differs from want as sets.
func diff(got, want []string) string {
	g, w := map[string]int{}, map[string]bool{}
	for _, x := range got {
		g[x]++
	}
	for _, x := range want {
		w[x] = true
	}
	var missing, extra, dup []string
	for _, x := range want {
		if g[x] == 0 {
			missing = append(missing, x)
		}
	}
	for x, n := range g {
		if !w[x] {
			extra = append(extra, x)
		}
		if n > 1 {
			dup = append(dup, x)
		}
	}
	if len(missing)+len(extra)+len(dup) == 0 {
		return ""
	}
	slices.Sort(extra)
	slices.Sort(dup)
	clipIDs := func(s []string) string {
		if len(s) > 8 {
			return fmt.Sprint(s[:8], " ... (", len(s), ")")
		}
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("missing %s, extra %s, duplicated %s", clipIDs(missing), clipIDs(extra), clipIDs(dup))
}

// expect checks a search's matches and total against the oracle: as a set
// or, with ordered, as a list.
func expect(t *testing.T, query string, got searchResult, want []string, ordered bool) {
	t.Helper()
	if d := diff(got.matches, want); d != "" {
		t.Errorf("%s: %d matches, oracle %d: %s", query, len(got.matches), len(want), d)
	} else if ordered && !slices.Equal(got.matches, want) {
		t.Errorf("%s: order differs from the oracle's:\n got %v\nwant %v", query, got.matches, want)
	}
	if got.total != len(want) {
		t.Errorf("%s: total %d, oracle %d", query, got.total, len(want))
	}
}

// oq is one oracle query: the search, and the oracle's answer.
type oq struct {
	query string
	want  []string
	empty bool // the oracle's answer may be empty
}

// TestSearchOracleSynthea compares the gateway's search answers over a
// fixed subset of the Synthea Bundles with answers computed independently
// from the same input Bundles.
func TestSearchOracleSynthea(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	hdr := []string{"Authorization", "Bearer " + g.Token(t)}
	before := time.Now().UTC().Add(-time.Second)
	loadStart := time.Now()
	o := loadOracle(t, g, hdr)
	t.Logf("loaded %d files in %v", len(oracleFiles), time.Since(loadStart))

	// One resource of our own with a profile (Synthea has none), for uri
	// and _profile.
	prof := "http://hl7.org/fhir/StructureDefinition/vitalsigns"
	r := g.Do(t, http.MethodPost, "/Observation", []byte(`{"resourceType":"Observation","status":"final","meta":{"profile":["`+prof+
		`"]},"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"},{"code":"x-local"}]},"valueQuantity":{"value":61,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`), hdr...)
	if r.Status != http.StatusCreated {
		t.Fatalf("create profiled Observation: %d %s", r.Status, r.Body)
	}
	profiled := relativeLocation(r.Header.Get("Location"))
	profiled = strings.Join(strings.Split(profiled, "/")[:2], "/")
	{
		var pr res
		dec := json.NewDecoder(bytes.NewReader(r.Body))
		dec.UseNumber()
		if err := dec.Decode(&pr); err != nil {
			t.Fatal(err)
		}
		o.add("Observation", strings.TrimPrefix(profiled, "Observation/"), pr)
	}

	// Patients by family name; the busiest patient (most compartment
	// resources).
	patientByFamily := map[string]string{}
	for id, p := range o.byType["Patient"] {
		patientByFamily[str(p, "name.family")] = id
	}
	refsPatient := func(r res, pid string) bool {
		var found bool
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				if x["reference"] == "Patient/"+pid {
					found = true
				}
				for _, c := range x {
					walk(c)
				}
			case []any:
				for _, c := range x {
					walk(c)
				}
			}
		}
		walk(r)
		return found
	}
	compartmentOf := map[string]string{} // Type/id -> patient id
	perPatient := map[string]int{}
	for typ, m := range o.byType {
		for id, r := range m {
			for pid := range o.byType["Patient"] {
				if typ != "Patient" && refsPatient(r, pid) {
					compartmentOf[typ+"/"+id] = pid
					perPatient[pid]++
				}
			}
		}
	}
	busiest := ""
	for pid, n := range perPatient {
		if busiest == "" || n > perPatient[busiest] || (n == perPatient[busiest] && pid < busiest) {
			busiest = pid
		}
	}
	gislason := patientByFamily["Gislason"]
	palomino := patientByFamily["Palomino"]
	ssn := ""
	for _, id := range at(o.byType["Patient"][gislason], "identifier") {
		if hasCoding(id.(map[string]any), "type.coding", v20203, "SS") {
			ssn = str(id, "value")
		}
	}

	obsMonth := ""
	for _, r := range o.byType["Observation"] {
		if d := str(r, "effectiveDateTime"); len(d) >= 7 && (obsMonth == "" || d[:7] < obsMonth) && d[:4] >= "2015" {
			obsMonth = d[:7]
		}
	}
	obs := func(keep func(res) bool) []string { return o.ids("Observation", keep) }
	cond := func(keep func(res) bool) []string { return o.ids("Condition", keep) }
	enc := func(keep func(res) bool) []string { return o.ids("Encounter", keep) }
	pat := func(keep func(res) bool) []string { return o.ids("Patient", keep) }
	obsCode := func(sys, code string) func(res) bool {
		return func(r res) bool { return hasCoding(r, "code.coding", sys, code) }
	}
	isPatient := func(r res, path, pid string) bool { return refTo(r, path, "Patient/"+pid) }
	patientsWhere := func(keep func(res) bool) map[string]bool {
		out := map[string]bool{}
		for id, p := range o.byType["Patient"] {
			if keep(p) {
				out["Patient/"+id] = true
			}
		}
		return out
	}
	females := patientsWhere(func(p res) bool { return p["gender"] == "female" })
	before1970 := patientsWhere(func(p res) bool { return dateMatch(p, "birthDate", "lt", "1970") })
	someConditions := []string{}
	for _, c := range o.byType["Condition"] {
		someConditions = append(someConditions, str(c, "code.coding.code"))
	}
	_ = someConditions

	quantityUnit := func(r res, system, code string) bool {
		q, _ := r["valueQuantity"].(map[string]any)
		if q == nil {
			return false
		}
		if system == "" {
			return q["code"] == code || q["unit"] == code
		}
		return q["system"] == system && q["code"] == code
	}
	nameParts := func(r res) []string {
		var out []string
		for _, n := range at(r, "name") {
			out = append(out, strs(n, "family")...)
			out = append(out, strs(n, "given")...)
			out = append(out, strs(n, "prefix")...)
			out = append(out, strs(n, "suffix")...)
			out = append(out, strs(n, "text")...)
		}
		return out
	}
	anyPrefix := func(vals []string, q string) bool {
		return slices.ContainsFunc(vals, func(v string) bool { return strings.HasPrefix(fold(v), fold(q)) })
	}
	lastUpdatedBefore := before.Format(time.RFC3339)

	queries := []oq{
		// token
		{query: "Observation?code=" + loinc + "|8302-2", want: obs(obsCode(loinc, "8302-2"))},
		{query: "Observation?code=8302-2", want: obs(obsCode("*", "8302-2"))},
		{query: "Observation?code=|8302-2", want: obs(obsCode("", "8302-2")), empty: true},
		{query: "Observation?code=|x-local", want: obs(obsCode("", "x-local"))},
		{query: "Observation?code=x-local", want: obs(obsCode("*", "x-local"))},
		{query: "Condition?code=" + snomed + "|", want: cond(obsCode(snomed, ""))},
		{query: "Observation?code=8302-2,29463-7", want: obs(func(r res) bool {
			return hasCoding(r, "code.coding", "*", "8302-2") || hasCoding(r, "code.coding", "*", "29463-7")
		})},
		{query: "Patient?gender=female", want: pat(func(r res) bool { return r["gender"] == "female" })},
		{query: "Patient?gender:not=male", want: pat(func(r res) bool { return r["gender"] != "male" })},
		{query: "Condition?clinical-status:not=active", want: cond(func(r res) bool {
			return !hasCoding(r, "clinicalStatus.coding", "*", "active")
		})},
		{query: "Condition?code:text=viral", want: cond(func(r res) bool {
			// :text: a word of the text or a display starts with it.
			return slices.ContainsFunc(append(strs(r, "code.text"), strs(r, "code.coding.display")...), func(s string) bool {
				return slices.ContainsFunc(strings.Fields(fold(s)), func(w string) bool { return strings.HasPrefix(w, "viral") })
			})
		})},
		{query: "Patient?identifier:of-type=" + v20203 + "|SS|" + ssn, want: []string{"Patient/" + gislason}},
		{query: "Patient?identifier=http://hl7.org/fhir/sid/us-ssn|" + ssn, want: []string{"Patient/" + gislason}},
		{query: "Observation?value-quantity:missing=true", want: obs(func(r res) bool { return quantity(r) == nil })},
		{query: "Condition?abatement-date:missing=false", want: cond(func(r res) bool { return len(spans(r, "abatementDateTime")) > 0 })},
		{query: "Encounter?reason-code:missing=true", want: enc(func(r res) bool { return len(at(r, "reasonCode")) == 0 })},
		{query: "Observation?category=vital-signs&code=8302-2", want: obs(func(r res) bool {
			return hasCoding(r, "category.coding", "*", "vital-signs") && hasCoding(r, "code.coding", "*", "8302-2")
		})},
		// string
		{query: "Patient?family=Gis", want: pat(func(r res) bool { return anyPrefix(strs(r, "name.family"), "Gis") })},
		{query: "Patient?family:exact=Gislason", want: pat(func(r res) bool { return slices.Contains(strs(r, "name.family"), "Gislason") })},
		{query: "Patient?family:exact=gislason", want: nil, empty: true},
		{query: "Patient?family:exact=Balistreri", want: pat(func(r res) bool { return slices.Contains(strs(r, "name.family"), "Balistreri") })},
		{query: "Patient?name:contains=slas", want: pat(func(r res) bool {
			return slices.ContainsFunc(nameParts(r), func(s string) bool { return strings.Contains(fold(s), "slas") })
		})},
		{query: "Patient?name=PÁLOMÍNO", want: pat(func(r res) bool { return anyPrefix(nameParts(r), "palomino") })},
		{query: "Patient?address-city=boston", want: pat(func(r res) bool { return anyPrefix(strs(r, "address.city"), "boston") })},
		{query: "Patient?given=Mor&family=Gis", want: []string{"Patient/" + gislason}},
		// date
		{query: "Patient?birthdate=2007-12-15", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "eq", "2007-12-15") })},
		{query: "Patient?birthdate=ne2007-12", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "ne", "2007-12") })},
		{query: "Patient?birthdate=gt1990", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "gt", "1990") })},
		{query: "Patient?birthdate=lt1970-01", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "lt", "1970-01") })},
		{query: "Patient?birthdate=ge1981-07-23", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "ge", "1981-07-23") })},
		{query: "Patient?birthdate=le1983", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "le", "1983") })},
		{query: "Patient?birthdate=sa1990-06&birthdate=eb2005", want: pat(func(r res) bool {
			return dateMatch(r, "birthDate", "sa", "1990-06") && dateMatch(r, "birthDate", "eb", "2005")
		})},
		{query: "Observation?date=" + obsMonth, want: obs(func(r res) bool { return dateMatch(r, "effectiveDateTime", "eq", obsMonth) })},
		{query: "Observation?date=ge2019-06-01&code=8302-2", want: obs(func(r res) bool {
			return dateMatch(r, "effectiveDateTime", "ge", "2019-06-01") && hasCoding(r, "code.coding", "*", "8302-2")
		})},
		{query: "Condition?onset-date=lt2000", want: cond(func(r res) bool { return dateMatch(r, "onsetDateTime", "lt", "2000") })},
		{query: "Condition?onset-date=eb1990-01-01", want: cond(func(r res) bool { return dateMatch(r, "onsetDateTime", "eb", "1990-01-01") })},
		{query: "Encounter?date=2015", want: enc(func(r res) bool { return dateMatch(r, "period", "eq", "2015") })},
		{query: "Encounter?date=sa2020-06-15", want: enc(func(r res) bool { return dateMatch(r, "period", "sa", "2020-06-15") })},
		{query: "Encounter?date=ge2021-01&date=le2021-03", want: enc(func(r res) bool {
			return dateMatch(r, "period", "ge", "2021-01") && dateMatch(r, "period", "le", "2021-03")
		})},
		{query: "Encounter?date=ne2015", want: enc(func(r res) bool { return dateMatch(r, "period", "ne", "2015") })},
		{query: "Patient?birthdate=gt2007-12", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "gt", "2007-12") })},
		{query: "Patient?birthdate=le2007-12", want: pat(func(r res) bool { return dateMatch(r, "birthDate", "le", "2007-12") })},
		{query: "Encounter?date=gt2015", want: enc(func(r res) bool { return dateMatch(r, "period", "gt", "2015") })},
		{query: "Encounter?date=lt2015", want: enc(func(r res) bool { return dateMatch(r, "period", "lt", "2015") })},
		{query: "Encounter?date=ge2015-06&date=lt2016", want: enc(func(r res) bool {
			return dateMatch(r, "period", "ge", "2015-06") && dateMatch(r, "period", "lt", "2016")
		})},
		{query: "Observation?date=gt" + obsMonth + "&date=le" + obsMonth[:4], want: obs(func(r res) bool {
			return dateMatch(r, "effectiveDateTime", "gt", obsMonth) && dateMatch(r, "effectiveDateTime", "le", obsMonth[:4])
		})},
		{query: "Condition?onset-date=sa1990-06&onset-date=le2000", want: cond(func(r res) bool {
			return dateMatch(r, "onsetDateTime", "sa", "1990-06") && dateMatch(r, "onsetDateTime", "le", "2000")
		})},
		// number and quantity
		{query: "Observation?value-quantity=gt180&code=8302-2", want: obs(func(r res) bool {
			return numOK("gt", "180", quantity(r)) && hasCoding(r, "code.coding", "*", "8302-2")
		})},
		{query: "Observation?value-quantity=lt40|" + ucum + "|kg", want: obs(func(r res) bool {
			return numOK("lt", "40", quantity(r)) && quantityUnit(r, ucum, "kg")
		})},
		{query: "Observation?value-quantity=ge100||mg/dL", want: obs(func(r res) bool {
			return numOK("ge", "100", quantity(r)) && quantityUnit(r, "", "mg/dL")
		})},
		{query: "Observation?value-quantity=le2&code=" + loinc + "|72514-3", want: obs(func(r res) bool {
			return numOK("le", "2", quantity(r)) && hasCoding(r, "code.coding", loinc, "72514-3")
		}), empty: true},
		{query: "Observation?value-quantity=37", want: obs(func(r res) bool { return numOK("eq", "37", quantity(r)) })},
		{query: "Observation?value-quantity=ne37&code=8331-1", want: obs(func(r res) bool {
			return quantity(r) != nil && numOK("ne", "37", quantity(r)) && hasCoding(r, "code.coding", "*", "8331-1")
		})},
		// reference
		{query: "Observation?patient=" + gislason, want: obs(func(r res) bool { return isPatient(r, "subject", gislason) })},
		{query: "Observation?subject=Patient/" + gislason + "&code=8302-2", want: obs(func(r res) bool {
			return isPatient(r, "subject", gislason) && hasCoding(r, "code.coding", "*", "8302-2")
		})},
		{query: "Encounter?subject:Patient=" + palomino, want: enc(func(r res) bool { return isPatient(r, "subject", palomino) })},
		{query: "Condition?patient=" + gislason + "," + palomino, want: cond(func(r res) bool {
			return isPatient(r, "subject", gislason) || isPatient(r, "subject", palomino)
		})},
		// uri, _profile
		{query: "Observation?_profile=" + prof, want: []string{profiled}},
		// composite
		{query: "Observation?code-value-quantity=" + loinc + "|8302-2$gt180", want: obs(func(r res) bool {
			return hasCoding(r, "code.coding", loinc, "8302-2") && numOK("gt", "180", quantity(r))
		})},
		{query: "Observation?code-value-quantity=29463-7$lt20", want: obs(func(r res) bool {
			return hasCoding(r, "code.coding", "*", "29463-7") && numOK("lt", "20", quantity(r))
		})},
		// chaining
		{query: "Observation?subject:Patient.gender=female&code=8302-2", want: obs(func(r res) bool {
			return females[str(r, "subject.reference")] && hasCoding(r, "code.coding", "*", "8302-2")
		})},
		{query: "Condition?patient.birthdate=lt1970", want: cond(func(r res) bool { return before1970[str(r, "subject.reference")] })},
		// _has
		{query: "Patient?_has:Observation:patient:code=" + loinc + "|8302-2", want: pat(func(p res) bool {
			id := "Patient/" + str(p, "id")
			return len(obs(func(r res) bool { return refTo(r, "subject", id) && hasCoding(r, "code.coding", loinc, "8302-2") })) > 0
		})},
		{query: "Patient?_has:Condition:patient:code=444814009", want: pat(func(p res) bool {
			id := "Patient/" + str(p, "id")
			return len(cond(func(r res) bool { return refTo(r, "subject", id) && hasCoding(r, "code.coding", "*", "444814009") })) > 0
		})},
		// _id, _lastUpdated, _tag
		{query: "Patient?_id=" + gislason + "," + palomino, want: []string{"Patient/" + gislason, "Patient/" + palomino}},
		{query: "Condition?_lastUpdated=gt" + url.QueryEscape(lastUpdatedBefore), want: cond(nil)},
		{query: "Condition?_lastUpdated=lt" + url.QueryEscape(lastUpdatedBefore), want: nil, empty: true},
		{query: "Condition?_tag=https://smarthealthit.org/tags|synthea-5-2019", want: cond(func(r res) bool {
			return hasCoding(r, "meta.tag", "https://smarthealthit.org/tags", "synthea-5-2019")
		})},
		{query: "Observation?_tag:not=synthea-5-2019&code=8867-4", want: []string{profiled}},
		// compartment
		{query: "Patient/" + gislason + "/Observation?code=8302-2", want: obs(func(r res) bool {
			return isPatient(r, "subject", gislason) && hasCoding(r, "code.coding", "*", "8302-2")
		})},
		{query: "Patient/" + palomino + "/Condition", want: cond(func(r res) bool { return isPatient(r, "subject", palomino) })},
		// more edges
		{query: "Observation?code:not=8302-2&patient=" + gislason, want: obs(func(r res) bool {
			return isPatient(r, "subject", gislason) && !hasCoding(r, "code.coding", "*", "8302-2")
		})},
		{query: "Observation?component-code-value-quantity=" + loinc + "|8480-6$gt120", want: obs(func(r res) bool {
			for _, c := range at(r, "component") {
				if hasCoding(c.(map[string]any), "code.coding", loinc, "8480-6") && numOK("gt", "120", quantity(c.(map[string]any))) {
					return true
				}
			}
			return false
		})},
		{query: "Observation?combo-code=8462-4", want: obs(func(r res) bool {
			return hasCoding(r, "code.coding", "*", "8462-4") || hasCoding(r, "component.code.coding", "*", "8462-4")
		})},
		{query: "Patient?identifier=" + ssn, want: []string{"Patient/" + gislason}},
		{query: "Patient?phone=" + url.QueryEscape(str(o.byType["Patient"][palomino], "telecom.value")), want: pat(func(r res) bool {
			return slices.Contains(strs(r, "telecom.value"), str(o.byType["Patient"][palomino], "telecom.value"))
		})},
		{query: "Encounter?class=AMB&patient=" + palomino, want: enc(func(r res) bool {
			return isPatient(r, "subject", palomino) && hasCoding(r, "class", "*", "AMB")
		})},
		{query: "Patient?name:missing=false", want: pat(func(r res) bool { return len(at(r, "name")) > 0 })},
		{query: "Observation?date=ge2020-01-01T10:00:00Z&patient=" + gislason, want: obs(func(r res) bool {
			return isPatient(r, "subject", gislason) && dateMatch(r, "effectiveDateTime", "ge", "2020-01-01T10:00:00Z")
		})},
		{query: "Encounter?date=eb2015-03-01", want: enc(func(r res) bool { return dateMatch(r, "period", "eb", "2015-03-01") })},
		{query: "Encounter?date=lt2015-03-01T00:00:00Z&date=gt2014-03-01T00:00:00Z", want: enc(func(r res) bool {
			return dateMatch(r, "period", "lt", "2015-03-01T00:00:00Z") && dateMatch(r, "period", "gt", "2014-03-01T00:00:00Z")
		})},
		{query: "Immunization?vaccine-code=" + "http://hl7.org/fhir/sid/cvx|140&date=ge2018", want: o.ids("Immunization", func(r res) bool {
			return hasCoding(r, "vaccineCode.coding", "http://hl7.org/fhir/sid/cvx", "140") && dateMatch(r, "occurrenceDateTime", "ge", "2018")
		})},
		{query: "MedicationRequest?authoredon=lt2010&patient=" + gislason + "," + palomino, want: o.ids("MedicationRequest", func(r res) bool {
			return (isPatient(r, "subject", gislason) || isPatient(r, "subject", palomino)) && dateMatch(r, "authoredOn", "lt", "2010")
		}), empty: true},
		{query: "Observation?code=8302-2&code=" + loinc + "|8302-2&value-quantity=gt100&value-quantity=lt170", want: obs(func(r res) bool {
			return hasCoding(r, "code.coding", loinc, "8302-2") && numOK("gt", "100", quantity(r)) && numOK("lt", "170", quantity(r))
		})},
		{query: "Observation?value-quantity=sa180|" + ucum + "|cm", want: obs(func(r res) bool {
			return numOK("sa", "180", quantity(r)) && quantityUnit(r, ucum, "cm")
		})},
		{query: "Observation?value-quantity=eb3||%7Bscore%7D", want: obs(func(r res) bool {
			return numOK("eb", "3", quantity(r)) && quantityUnit(r, "", "{score}")
		}), empty: true},
		{query: "Procedure?patient=" + gislason + "&date=ge2010", want: o.ids("Procedure", func(r res) bool {
			return isPatient(r, "subject", gislason) && dateMatch(r, "performedDateTime|performedPeriod", "ge", "2010")
		}), empty: true},
		// system search
		{query: "?_type=Condition,AllergyIntolerance&patient=" + gislason, want: append(cond(func(r res) bool { return isPatient(r, "subject", gislason) }),
			o.ids("AllergyIntolerance", func(r res) bool { return isPatient(r, "patient", gislason) })...)},
	}
	// ap: a wide tolerance: everything equal is in, everything far is out.
	t.Run("queries", func(t *testing.T) {
		for _, q := range queries {
			if len(q.want) == 0 && !q.empty {
				t.Errorf("%s: the oracle finds nothing; pick a query that matches", q.query)
				continue
			}
			sep := "?"
			if strings.Contains(q.query, "?") {
				sep = "&"
			}
			got := runSearch(t, g, q.query+sep+"_count=200", hdr)
			expect(t, q.query, got, q.want, false)
			if testing.Verbose() {
				t.Logf("%4d  %s", len(q.want), q.query)
			}
		}
	})
	t.Logf("%d oracle queries", len(queries))

	t.Run("ap", func(t *testing.T) {
		got := runSearch(t, g, "Patient?birthdate=ap1981-07-23&_count=200", hdr)
		for _, must := range pat(func(r res) bool { return dateMatch(r, "birthDate", "eq", "1981-07-23") }) {
			if !slices.Contains(got.matches, must) {
				t.Errorf("birthdate=ap1981-07-23 lacks %s, born that day", must)
			}
		}
		for _, m := range got.matches {
			if b := dateSpan(str(o.get(m), "birthDate")).lo; b.Year() < 1976 || b.Year() > 1986 {
				t.Errorf("birthdate=ap1981-07-23 has %s, born %s", m, b.Format("2006-01-02"))
			}
		}
		got = runSearch(t, g, "Observation?value-quantity=ap37&code=8331-1&_count=200", hdr)
		for _, must := range obs(func(r res) bool { return numOK("eq", "37", quantity(r)) && hasCoding(r, "code.coding", "*", "8331-1") }) {
			if !slices.Contains(got.matches, must) {
				t.Errorf("value-quantity=ap37 lacks %s", must)
			}
		}
		for _, m := range got.matches {
			if v := quantity(o.get(m)); v == nil || v.Cmp(rat("30")) < 0 || v.Cmp(rat("44")) > 0 {
				t.Errorf("value-quantity=ap37 has %s, value %v", m, v)
			}
		}
	})

	t.Run("include and revinclude", func(t *testing.T) {
		q := "Condition?code=" + snomed + "|444814009&_include=Condition:subject&_count=200"
		want := cond(obsCode(snomed, "444814009"))
		if len(want) == 0 {
			t.Fatal("no viral sinusitis in the subset")
		}
		got := runSearch(t, g, q, hdr)
		expect(t, q, got, want, false)
		var subjects []string
		for _, c := range want {
			ref := str(o.get(c), "subject.reference")
			if !slices.Contains(subjects, ref) {
				subjects = append(subjects, ref)
			}
		}
		if d := diff(got.included, subjects); d != "" {
			t.Errorf("%s: included %s", q, d)
		}
		q = "Patient?_id=" + palomino + "&_revinclude=Encounter:patient"
		got = runSearch(t, g, q, hdr)
		expect(t, q, got, []string{"Patient/" + palomino}, false)
		if d := diff(got.included, enc(func(r res) bool { return isPatient(r, "subject", palomino) })); d != "" {
			t.Errorf("%s: included %s", q, d)
		}
	})

	t.Run("sort and paging", func(t *testing.T) {
		byID := func(a, b string) int { return strings.Compare(a, b) }
		type sorted struct {
			query string
			want  []string
		}
		// Tie-break: the gateway orders equal sort keys by type and id.
		birth := func(ref string, desc bool) time.Time {
			sp := dateSpan(str(o.get(ref), "birthDate"))
			if desc {
				return sp.hi
			}
			return sp.lo
		}
		ps := pat(nil)
		slices.SortFunc(ps, func(a, b string) int {
			if c := strings.Compare(str(o.get(a), "gender"), str(o.get(b), "gender")); c != 0 {
				return c
			}
			if c := birth(b, true).Compare(birth(a, true)); c != 0 {
				return c
			}
			return byID(a, b)
		})
		es := enc(func(r res) bool { return isPatient(r, "subject", busiest) })
		start := func(ref string) time.Time { return spans(o.get(ref), "period")[0].lo }
		slices.SortFunc(es, func(a, b string) int {
			if c := start(a).Compare(start(b)); c != 0 {
				return c
			}
			return byID(a, b)
		})
		// Observation: -date, then value-quantity ascending (no value last).
		os := obs(func(r res) bool { return isPatient(r, "subject", gislason) })
		eff := func(ref string) time.Time { return dateSpan(str(o.get(ref), "effectiveDateTime")).hi }
		slices.SortFunc(os, func(a, b string) int {
			if c := eff(b).Compare(eff(a)); c != 0 {
				return c
			}
			qa, qb := quantity(o.get(a)), quantity(o.get(b))
			switch {
			case qa == nil && qb != nil:
				return 1
			case qa != nil && qb == nil:
				return -1
			case qa != nil && qb != nil:
				if c := qa.Cmp(qb); c != 0 {
					return c
				}
			}
			return byID(a, b)
		})
		fam := pat(nil)
		// A resource with several values sorts by the greatest for a
		// descending key, the least for an ascending one.
		extreme := func(ref, path string, desc bool) string {
			var vs []string
			for _, v := range strs(o.get(ref), path) {
				vs = append(vs, fold(v))
			}
			if desc {
				return slices.Max(vs)
			}
			return slices.Min(vs)
		}
		slices.SortFunc(fam, func(a, b string) int {
			if c := strings.Compare(extreme(b, "name.family", true), extreme(a, "name.family", true)); c != 0 {
				return c
			}
			if c := strings.Compare(extreme(a, "name.given", false), extreme(b, "name.given", false)); c != 0 {
				return c
			}
			return byID(a, b)
		})
		multi := 0
		for _, ref := range fam {
			if len(strs(o.get(ref), "name.family")) > 1 {
				multi++
			}
		}
		t.Logf("%d patients with several family names", multi)
		// value-quantity ascending and descending, those without last.
		vq := func(desc bool) []string {
			out := obs(func(r res) bool { return isPatient(r, "subject", gislason) })
			slices.SortFunc(out, func(a, b string) int {
				qa, qb := quantity(o.get(a)), quantity(o.get(b))
				switch {
				case qa == nil && qb != nil:
					return 1
				case qa != nil && qb == nil:
					return -1
				case qa != nil && qb != nil:
					c := qa.Cmp(qb)
					if desc {
						c = -c
					}
					if c != 0 {
						return c
					}
				}
				return byID(a, b)
			})
			return out
		}
		for _, s := range []sorted{
			{"Observation?patient=" + gislason + "&_sort=value-quantity", vq(false)},
			{"Observation?patient=" + gislason + "&_sort=-value-quantity", vq(true)},
			{"Patient?_sort=gender,-birthdate", ps},
			{"Encounter?patient=" + busiest + "&_sort=date", es},
			{"Observation?patient=" + gislason + "&_sort=-date,value-quantity", os},
			{"Patient?_sort=-family,given", fam},
		} {
			s.query += fmt.Sprintf("&_count=%d", len(s.want)/4+1) // five pages
			got := runSearch(t, g, s.query, hdr)
			expect(t, s.query, got, s.want, true)
			if got.pages < 3 {
				t.Errorf("%s: %d pages; the test wants several", s.query, got.pages)
			}
			// Back with previous links from the last page.
			var back []string
			last := got.bundles[len(got.bundles)-1]
			for b, pages := last, 0; ; pages++ {
				m, _ := searchEntries(t, b)
				back = append(slices.Clone(m), back...)
				prev := link(b, "previous")
				if prev == "" || pages > 200 {
					break
				}
				b = searchPage(t, g, http.MethodGet, prev, nil, hdr)
			}
			if !slices.Equal(back, s.want) {
				t.Errorf("%s: pages followed back by previous links differ: %s", s.query, diff(back, s.want))
			}
		}
	})

	t.Run("everything", func(t *testing.T) {
		got := runSearch(t, g, "Patient/"+busiest+"/$everything?_count=50", hdr)
		want := []string{"Patient/" + busiest}
		for ref, pid := range compartmentOf {
			if pid == busiest {
				want = append(want, ref)
			}
		}
		if d := diff(got.matches, want); d != "" {
			t.Errorf("$everything: %s", d)
		}
		count := func(refs []string) map[string]int {
			out := map[string]int{}
			for _, r := range refs {
				out[strings.Split(r, "/")[0]]++
			}
			return out
		}
		if g, w := count(got.matches), count(want); !maps.Equal(g, w) {
			t.Errorf("$everything counts per type %v, oracle %v", g, w)
		}
		if got.total != len(want) {
			t.Errorf("$everything total %d, oracle %d", got.total, len(want))
		}
		if got.pages < 3 {
			t.Errorf("$everything: %d pages of 50; the test wants several", got.pages)
		}
		// Included: what the compartment refers to outside any compartment.
		var refd []string
		for _, ref := range want {
			for _, s := range strsDeep(o.get(ref), "reference") {
				typ, _, _ := strings.Cut(s, "/")
				if typ != "Patient" && o.get(s) != nil && compartmentOf[s] == "" && !slices.Contains(refd, s) {
					refd = append(refd, s)
				}
			}
		}
		if d := diff(uniq(got.included), refd); d != "" {
			t.Errorf("$everything included: %s", d)
		}
	})

	t.Run("summary count, POST _search", func(t *testing.T) {
		want := cond(obsCode(snomed, "444814009"))
		b := searchPage(t, g, http.MethodGet, "/Condition?code=444814009&_summary=count", nil, hdr)
		if n, _ := b["total"].(float64); int(n) != len(want) || len(at(b, "entry")) != 0 {
			t.Errorf("_summary=count: total %v, %d entries; oracle %d", b["total"], len(at(b, "entry")), len(want))
		}
		b = searchPage(t, g, http.MethodPost, "/Condition/_search", []byte("code="+url.QueryEscape(snomed+"|444814009")+"&_count=200"),
			append(slices.Clone(hdr), "Content-Type", "application/x-www-form-urlencoded"))
		m, _ := searchEntries(t, b)
		if d := diff(m, want); d != "" {
			t.Errorf("POST Condition/_search: %s", d)
		}
		// Pages of a POST search, followed by GET next links.
		all := cond(func(r res) bool { return isPatient(r, "subject", gislason) || isPatient(r, "subject", palomino) })
		b = searchPage(t, g, http.MethodPost, "/Condition/_search", []byte("patient="+gislason+","+palomino+"&_count=3&_sort=onset-date"),
			append(slices.Clone(hdr), "Content-Type", "application/x-www-form-urlencoded"))
		m, _ = searchEntries(t, b)
		pages := 1
		for next := link(b, "next"); next != ""; next = link(b, "next") {
			b = searchPage(t, g, http.MethodGet, next, nil, hdr)
			more, _ := searchEntries(t, b)
			m = append(m, more...)
			pages++
		}
		if d := diff(m, all); d != "" || pages < 3 {
			t.Errorf("POST Condition/_search paged by GET next links (%d pages): %s", pages, d)
		}
	})

	t.Run("handling", func(t *testing.T) {
		r := g.Do(t, http.MethodGet, "/Patient?family=Gislason&zzbogus=1", nil, append(slices.Clone(hdr), "Prefer", "handling=strict")...)
		if r.Status != http.StatusBadRequest || !bytes.Contains(r.Body, []byte(`"OperationOutcome"`)) || bytes.Contains(r.Body, []byte("zzbogus")) {
			t.Errorf("strict unknown parameter: %d %s", r.Status, r.Body)
		}
		got := runSearch(t, g, "/Patient?family=Gislason&zzbogus=1", hdr)
		expect(t, "lenient unknown parameter", got, pat(func(r res) bool { return anyPrefix(strs(r, "name.family"), "Gislason") }), false)
		if self := link(got.bundles[0], "self"); strings.Contains(self, "zzbogus") || !strings.Contains(self, "family=Gislason") {
			t.Errorf("lenient self link %q", self)
		}
	})
}

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// strsDeep returns every string under key anywhere in v.
func strsDeep(v any, key string) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == key {
				out = append(out, s)
				continue
			}
			out = append(out, strsDeep(c, key)...)
		}
	case []any:
		for _, c := range x {
			out = append(out, strsDeep(c, key)...)
		}
	}
	return out
}

// TestSearchPagingUnderWrites pages through a sorted search while
// resources are created and deleted between pages: no match already shown
// appears again, none not yet shown is skipped (but the one deleted), and
// one created after the cursor appears in its place.
func TestSearchPagingUnderWrites(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	hdr := []string{"Authorization", "Bearer " + g.Token(t)}
	create := func(body string) string {
		t.Helper()
		r := g.Do(t, http.MethodPost, "/"+str(decodeObject(t, body), "resourceType"), []byte(body), hdr...)
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		parts := strings.Split(relativeLocation(r.Header.Get("Location")), "/")
		return parts[0] + "/" + parts[1]
	}
	pid := strings.TrimPrefix(create(`{"resourceType":"Patient","name":[{"family":"Pager"}]}`), "Patient/")
	observation := func(date string) string {
		return create(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},` +
			`"subject":{"reference":"Patient/` + pid + `"},"effectiveDateTime":"` + date + `"}`)
	}
	var all []string // in date order
	for day := 1; day <= 20; day++ {
		all = append(all, observation(fmt.Sprintf("2020-01-%02dT10:00:00Z", day)))
	}

	shown := map[string]int{}
	var order []string
	var deleted, lateAfter, lateBefore string
	next := "/Observation?patient=" + pid + "&_sort=date&_count=5"
	for page := 0; next != ""; page++ {
		b := searchPage(t, g, http.MethodGet, next, nil, hdr)
		m, _ := searchEntries(t, b)
		for _, ref := range m {
			shown[ref]++
			order = append(order, ref)
		}
		next = link(b, "next")
		switch page {
		case 0:
			// Sorts before the current page: must not show up later.
			lateBefore = observation("2019-12-31T10:00:00Z")
			// Already seen: deleting it must not shift the next page.
			deleted = all[1]
			if r := g.Do(t, http.MethodDelete, "/"+deleted, nil, hdr...); r.Status/100 != 2 {
				t.Fatalf("delete %s: %d %s", deleted, r.Status, r.Body)
			}
		case 2:
			// The match the next link starts after: gone, the cursor holds.
			if r := g.Do(t, http.MethodDelete, "/"+order[len(order)-1], nil, hdr...); r.Status/100 != 2 {
				t.Fatalf("delete %s: %d %s", order[len(order)-1], r.Status, r.Body)
			}
		case 1:
			// Sorts after the cursor: must show up in its place.
			lateAfter = observation("2020-01-15T12:00:00Z")
			// Not yet seen, deleted: must not show up.
			if r := g.Do(t, http.MethodDelete, "/"+all[17], nil, hdr...); r.Status/100 != 2 {
				t.Fatalf("delete %s: %d %s", all[17], r.Status, r.Body)
			}
		}
		if page > 50 {
			t.Fatal("more than 50 pages")
		}
	}
	want := slices.Clone(all[:15])
	want = append(want, lateAfter)
	want = append(want, all[15:17]...)
	want = append(want, all[18:]...)
	if !slices.Equal(order, want) {
		t.Errorf("pages under writes showed %v\nwant %v\n(%s)", order, want, diff(order, want))
	}
	if shown[lateBefore] != 0 {
		t.Errorf("a match created before the cursor appeared on a later page")
	}
	for ref, n := range shown {
		if n > 1 {
			t.Errorf("%s shown %d times", ref, n)
		}
	}

	// Backwards: on the second page, three matches of the first go; the
	// previous link shows the two left, none of the page it came from.
	var mine []string
	for day := 1; day <= 10; day++ {
		mine = append(mine, observation(fmt.Sprintf("2021-02-%02dT10:00:00Z", day)))
	}
	q := "/Observation?patient=" + pid + "&date=ge2021&_sort=date&_count=5"
	b := searchPage(t, g, http.MethodGet, q, nil, hdr)
	b = searchPage(t, g, http.MethodGet, link(b, "next"), nil, hdr)
	if m, _ := searchEntries(t, b); !slices.Equal(m, mine[5:]) {
		t.Fatalf("second page %v, want %v", m, mine[5:])
	}
	for _, ref := range mine[:3] {
		if r := g.Do(t, http.MethodDelete, "/"+ref, nil, hdr...); r.Status/100 != 2 {
			t.Fatalf("delete %s: %d %s", ref, r.Status, r.Body)
		}
	}
	prev := link(b, "previous")
	if prev == "" {
		t.Fatal("second page without a previous link")
	}
	b = searchPage(t, g, http.MethodGet, prev, nil, hdr)
	if m, _ := searchEntries(t, b); !slices.Equal(m, mine[3:5]) {
		t.Errorf("previous page after deletes shows %v, want %v (what precedes the page it came from)", m, mine[3:5])
	}
}

func decodeObject(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSearchBundleGetEntries posts the HL7 example batch Bundles whose GET
// entries are searches: each search entry is answered 200 with a
// searchset.
func TestSearchBundleGetEntries(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	hdr := []string{"Authorization", "Bearer " + g.Token(t)}
	dir := filepath.Join(shareddata.Dir(t), "hl7-examples")
	if r := g.Do(t, http.MethodPut, "/Patient/example", readFile(t, filepath.Join(dir, "Patient-example.json")), hdr...); r.Status/100 != 2 {
		t.Fatalf("PUT Patient/example: %d %s", r.Status, r.Body)
	}
	searches := 0
	for _, f := range shareddata.Files(t, "hl7-examples") {
		if !strings.HasPrefix(filepath.Base(f), "Bundle-") {
			continue
		}
		data := readFile(t, f)
		in := decodeObject(t, string(data))
		if in["type"] != "batch" {
			continue
		}
		var isSearch []bool
		n := 0
		for _, e := range at(in, "entry") {
			s := str(e, "request.method") == "GET" && strings.Contains(str(e, "request.url"), "?")
			isSearch = append(isSearch, s)
			if s {
				n++
			}
		}
		if n == 0 {
			continue
		}
		r := g.Do(t, http.MethodPost, "", data, hdr...)
		if r.Status != http.StatusOK {
			t.Errorf("%s: %d %s", filepath.Base(f), r.Status, clip(r.Body, 500))
			continue
		}
		out := decodeObject(t, string(r.Body))
		entries := at(out, "entry")
		if len(entries) != len(isSearch) {
			t.Errorf("%s: %d response entries for %d", filepath.Base(f), len(entries), len(isSearch))
			continue
		}
		for i, e := range entries {
			if !isSearch[i] {
				continue
			}
			searches++
			url := str(at(in, "entry")[i], "request.url")
			if st := str(e, "response.status"); !strings.HasPrefix(st, "200") || str(e, "resource.resourceType") != "Bundle" || str(e, "resource.type") != "searchset" {
				t.Errorf("%s entry %d (GET %s): status %q, resource %s %s", filepath.Base(f), i, url, st,
					str(e, "resource.resourceType"), str(e, "resource.type"))
			}
		}
	}
	if searches < 5 {
		t.Errorf("%d search entries answered; the examples hold more", searches)
	}
}
