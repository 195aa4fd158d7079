package search

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// entry is one resource of a test Bundle.
type entry struct {
	file, fullURL, resourceType string
	tree                        map[string]any
}

func decode(t testing.TB, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// resources returns the resources of the shared test data folder sub: the
// entries of Bundles, the Bundles themselves, and single resources.
func resources(t testing.TB, sub string) []entry {
	var out []entry
	for _, path := range shareddata.Files(t, sub) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tree := decode(t, data)
		rt, _ := tree["resourceType"].(string)
		out = append(out, entry{file: filepath.Base(path), resourceType: rt, tree: tree})
		if rt != "Bundle" {
			continue
		}
		entries, _ := tree["entry"].([]any)
		for _, e := range entries {
			e, _ := e.(map[string]any)
			if r, ok := e["resource"].(map[string]any); ok {
				rt, _ := r["resourceType"].(string)
				u, _ := e["fullUrl"].(string)
				out = append(out, entry{file: filepath.Base(path), fullURL: u, resourceType: rt, tree: r})
			}
		}
	}
	return out
}

// bundleTypes maps each fullUrl of the entries to its resource type, as the
// gateway knows it when it rewrites a transaction's urn:uuid: references.
func bundleTypes(es []entry) func(string) string {
	m := make(map[string]string)
	for _, e := range es {
		if e.fullURL != "" {
			m[e.fullURL] = e.resourceType
		}
	}
	return func(ref string) string { return m[ref] }
}

// TestOracleSynthea compares Extract, for the parameters searched most,
// with a direct reading of the raw JSON written here without FHIRPath.
func TestOracleSynthea(t *testing.T) {
	es := resources(t, "synthea")
	x := &Extractor{ReferenceType: bundleTypes(es)}
	oracles := map[string]map[string]func(map[string]any) []string{
		"Patient": {
			"name": func(r map[string]any) []string {
				var out []string
				for _, n := range list(r["name"]) {
					n := n.(map[string]any)
					for _, k := range []string{"family", "given", "prefix", "suffix", "text"} {
						out = append(out, strs(n[k])...)
					}
				}
				return out
			},
			"family": func(r map[string]any) []string { return field(r["name"], "family") },
			"given":  func(r map[string]any) []string { return field(r["name"], "given") },
			"birthdate": func(r map[string]any) []string {
				return oracleDates(t, r["birthDate"])
			},
			"gender": func(r map[string]any) []string { return codes(r["gender"]) },
			"identifier": func(r map[string]any) []string {
				var out []string
				for _, id := range list(r["identifier"]) {
					id := id.(map[string]any)
					out = append(out, fmt.Sprint(id["system"], "|", id["value"]))
				}
				return out
			},
		},
		"Observation": {
			"code":     func(r map[string]any) []string { return codings(r["code"]) },
			"category": func(r map[string]any) []string { return codings(r["category"]) },
			"status":   func(r map[string]any) []string { return codes(r["status"]) },
			"subject":  func(r map[string]any) []string { return oracleRefs(x, r["subject"], "") },
			"patient":  func(r map[string]any) []string { return oracleRefs(x, r["subject"], "Patient") },
			"date": func(r map[string]any) []string {
				return append(oracleDates(t, r["effectiveDateTime"]), oracleDates(t, r["effectiveInstant"])...)
			},
			"value-quantity": func(r map[string]any) []string {
				q, ok := r["valueQuantity"].(map[string]any)
				if !ok {
					return nil
				}
				return []string{fmt.Sprint(q["value"], "|", q["unit"], "|", q["system"], "|", q["code"])}
			},
		},
		"Condition": {
			"code":            func(r map[string]any) []string { return codings(r["code"]) },
			"clinical-status": func(r map[string]any) []string { return codings(r["clinicalStatus"]) },
			"subject":         func(r map[string]any) []string { return oracleRefs(x, r["subject"], "") },
			"onset-date":      func(r map[string]any) []string { return oracleDates(t, r["onsetDateTime"]) },
		},
	}
	checked := map[string]int{}
	for _, e := range es {
		params, ok := oracles[e.resourceType]
		if !ok {
			continue
		}
		if _, ok := e.tree["effectivePeriod"]; ok {
			t.Fatalf("%s: an effectivePeriod; extend the oracle", e.file)
		}
		vals, err := x.Extract(e.resourceType, e.tree)
		if err != nil {
			t.Fatalf("%s %s: %v", e.file, e.resourceType, err)
		}
		got := map[string][]string{}
		for _, v := range vals {
			got[v.Param] = append(got[v.Param], key(v))
		}
		for code, oracle := range params {
			want := oracle(e.tree)
			g := got[code]
			slices.Sort(want)
			slices.Sort(g)
			if diff := cmp.Diff(slices.Compact(want), slices.Compact(g)); diff != "" {
				t.Errorf("%s %s %s (-oracle +Extract):\n%s", e.file, e.resourceType, code, diff)
			}
			checked[code] += len(want)
		}
		checked[e.resourceType]++
	}
	for _, rt := range []string{"Patient", "Observation", "Condition"} {
		if checked[rt] == 0 {
			t.Errorf("no %s in the Synthea set", rt)
		}
	}
	t.Logf("checked: %v", checked)
}

// key renders a Value as the oracle does.
func key(v Value) string {
	switch v.Type {
	case TypeToken:
		return v.Token.System + "|" + v.Token.Code
	case TypeString:
		return v.String
	case TypeDate:
		return v.Date.Low.Format(time.RFC3339Nano) + "/" + v.Date.High.Format(time.RFC3339Nano)
	case TypeReference:
		return v.Reference.Type + "|" + v.Reference.ID + "|" + v.Reference.URL
	case TypeQuantity:
		q := v.Quantity
		return q.Value + "|" + q.Unit + "|" + q.System + "|" + q.Code
	}
	return fmt.Sprintf("%+v", v)
}

func list(v any) []any {
	if a, ok := v.([]any); ok {
		return a
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func strs(v any) []string {
	var out []string
	for _, s := range list(v) {
		out = append(out, s.(string))
	}
	return out
}

func field(v any, k string) []string {
	var out []string
	for _, o := range list(v) {
		out = append(out, strs(o.(map[string]any)[k])...)
	}
	return out
}

func codes(v any) []string {
	var out []string
	for _, s := range strs(v) {
		out = append(out, "|"+s)
	}
	return out
}

func codings(v any) []string {
	var out []string
	for _, cc := range list(v) {
		for _, c := range list(cc.(map[string]any)["coding"]) {
			c := c.(map[string]any)
			out = append(out, fmt.Sprint(c["system"], "|", c["code"]))
		}
	}
	return out
}

// oracleRefs reads Reference.reference: Synthea writes urn:uuid: of
// another entry, resolved through the Bundle like the gateway does.
func oracleRefs(x *Extractor, v any, only string) []string {
	var out []string
	for _, r := range list(v) {
		ref := r.(map[string]any)["reference"].(string)
		typ, id, url := "", "", ref
		if strings.HasPrefix(ref, "urn:uuid:") {
			typ = x.ReferenceType(ref)
		} else if a, b, ok := strings.Cut(ref, "/"); ok && !strings.Contains(b, "/") {
			typ, id, url = a, b, ""
		}
		if only == "" || typ == only {
			out = append(out, typ+"|"+id+"|"+url)
		}
	}
	return out
}

// oracleDates parses the two forms Synthea writes, a date and a dateTime
// to the second, with the standard library's layouts.
func oracleDates(t testing.TB, v any) []string {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	var low time.Time
	var step func(time.Time) time.Time
	var err error
	if len(s) == len("2006-01-02") {
		low, err = time.Parse(time.DateOnly, s)
		step = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	} else {
		low, err = time.Parse(time.RFC3339, s)
		step = func(t time.Time) time.Time { return t.Add(time.Second) }
		if strings.Contains(s, ".") {
			t.Fatalf("fractional seconds in the Synthea set; extend the oracle")
		}
	}
	if err != nil {
		t.Fatalf("oracle cannot parse a date: %v", err)
	}
	return []string{low.UTC().Format(time.RFC3339Nano) + "/" + step(low).UTC().Format(time.RFC3339Nano)}
}

// TestExtractAllExamples extracts every resource of the Synthea set and of
// the HL7 examples: no error, no panic, and some values for each.
func TestExtractAllExamples(t *testing.T) {
	for _, sub := range []string{"synthea", "hl7-examples"} {
		es := resources(t, sub)
		x := &Extractor{ReferenceType: bundleTypes(es)}
		n, vals := 0, 0
		for _, e := range es {
			v, err := x.Extract(e.resourceType, e.tree)
			if err != nil {
				t.Errorf("%s %s: %v", e.file, e.resourceType, err)
			}
			n++
			vals += len(v)
			// Each value is of its parameter's type.
			for _, val := range v {
				p, ok := Lookup(e.resourceType, val.Param)
				if !ok || p.Type != val.Type {
					t.Fatalf("%s %s: value of %s has type %s", e.file, e.resourceType, val.Param, val.Type)
				}
			}
		}
		t.Logf("%s: %d resources, %d values", sub, n, vals)
	}
}

// BenchmarkExtract measures extraction alone over the Synthea resources
// (decoded once, before the timer).
//
// "indexed" extracts only the parameters with keys of their own, as the
// blind index does.
func BenchmarkExtract(b *testing.B) {
	es := resources(b, "synthea")
	for _, indexed := range []bool{false, true} {
		b.Run(fmt.Sprintf("indexed=%v", indexed), func(b *testing.B) {
			x := &Extractor{ReferenceType: bundleTypes(es), Indexed: indexed}
			for b.Loop() {
				for _, e := range es {
					if _, err := x.Extract(e.resourceType, e.tree); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/resource")
		})
	}
}

// TestNarrowKeepsValues checks that narrowing a definition's expression to
// one resource type (Param.Expression) selects what the whole definition
// selects on the example resources.
func TestNarrowKeepsValues(t *testing.T) {
	var raw struct{ Params []rawParam }
	if err := json.Unmarshal(r4JSON, &raw); err != nil {
		t.Fatal(err)
	}
	full := map[string]expr{}
	for _, rp := range raw.Params {
		var err error
		if full[rp.URL], err = compile(rp.Expression); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"synthea", "hl7-examples"} {
		es := resources(t, sub)
		x := &Extractor{ReferenceType: bundleTypes(es)}
		for _, e := range es {
			c := &evalCtx{root: item{v: e.tree, path: e.resourceType, typ: e.resourceType}, x: x}
			for _, p := range load().sorted[e.resourceType] {
				a, _ := p.expr.eval(c, []item{c.root})
				b, _ := full[p.URL].eval(c, []item{c.root})
				if len(a) != len(b) {
					t.Errorf("%s %s %s: %d items narrowed, %d whole", e.file, e.resourceType, p.Code, len(a), len(b))
				}
			}
		}
	}
}

// TestValidDecimal holds the hand-written decimal check to its definition,
// written the slow way (a regular expression, the exponent's bounds and
// big.Rat), over every string of up to six characters from the
// characters a decimal is made of.
func TestValidDecimal(t *testing.T) {
	re := regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	want := func(s string) bool {
		if !re.MatchString(s) {
			return false
		}
		if i := strings.IndexAny(s, "eE"); i >= 0 {
			exp, err := strconv.Atoi(s[i+1:])
			if err != nil || exp > 400 || exp < -400 {
				return false
			}
		}
		_, ok := new(big.Rat).SetString(s)
		return ok
	}
	const alphabet = "-+0.eE149"
	var walk func(s string)
	walk = func(s string) {
		if got := validDecimal(s); got != want(s) {
			t.Errorf("validDecimal(%q) = %v", s, got)
		}
		if len(s) < 6 {
			for i := range len(alphabet) {
				walk(s + alphabet[i:i+1])
			}
		}
	}
	walk("")
	for _, s := range []string{"1e400", "1e401", "1E-400", "-1e-401", "1e+0400", "1e99999999999999999999", "123456789.123456789e-12", "1.50", "01", "1..2", "1e", "1e+", "--1", "1e--1", "1e+-1"} {
		if got := validDecimal(s); got != want(s) {
			t.Errorf("validDecimal(%q) = %v", s, got)
		}
	}
}

// TestIndexedExtractKeepsKeys checks that extracting only the parameters
// with keys of their own (Extractor.Indexed, what the blind index derives
// its tokens from) gives every resource of the example sets the keys a
// full extraction gives, and fewer values wherever a parameter shares
// another's keys.
func TestIndexedExtractKeepsKeys(t *testing.T) {
	fewer := 0
	for _, sub := range []string{"synthea", "hl7-examples"} {
		es := resources(t, sub)
		full := &Extractor{ReferenceType: bundleTypes(es)}
		indexed := &Extractor{ReferenceType: full.ReferenceType, Indexed: true}
		for _, e := range es {
			all, err := full.Extract(e.resourceType, e.tree)
			if err != nil {
				continue // the index then holds no values of it either way
			}
			some, err := indexed.Extract(e.resourceType, e.tree)
			if err != nil {
				t.Fatalf("%s %s: indexed extraction failed where the full one did not: %v", sub, e.resourceType, err)
			}
			if want, got := IndexKeys(e.resourceType, all), IndexKeys(e.resourceType, some); !slices.Equal(want, got) {
				t.Errorf("%s %s: indexed extraction gives %d keys, the full one %d", sub, e.resourceType, len(got), len(want))
			}
			if len(some) < len(all) {
				fewer++
			}
		}
	}
	if fewer == 0 {
		t.Error("no resource had a value left out: Indexed skips nothing")
	}
}

// literalSplit is Extractor.literal as first written, splitting the
// reference at every '/': the oracle of TestLiteralOracle.
func (x *Extractor) literalSplit(root item, s string) Reference {
	r := Reference{URL: s}
	if strings.HasPrefix(s, "#") {
		return x.literal(root, s) // contained: unchanged
	}
	if u, ver, ok := strings.Cut(s, "|"); ok && !strings.Contains(s, "?") {
		r.URL, r.Version = u, ver
		s = u
	}
	parts := strings.Split(s, "/")
	if n := len(parts); n >= 4 && parts[n-2] == "_history" {
		r.Version = parts[n-1]
		parts = parts[:n-2]
	}
	if n := len(parts); n >= 2 && isResourceType(parts[n-2]) && parts[n-1] != "" {
		r.Type, r.ID = parts[n-2], parts[n-1]
		if n == 2 {
			r.URL = ""
		}
	}
	if r.Type == "" && x.ReferenceType != nil {
		r.Type = x.ReferenceType(s)
	}
	return r
}

// TestLiteralOracle compares Extractor.literal with literalSplit on
// references assembled from segments of every kind, with a ReferenceType
// that echoes what it is asked so that the string it gets is compared too.
func TestLiteralOracle(t *testing.T) {
	x := &Extractor{ReferenceType: func(s string) string { return "asked:" + s }}
	segs := []string{"", "Patient", "p1", "_history", "2", "http:", "x", "fhir", "Observation", "a|b", "c?d", "urn:uuid:1"}
	var walk func(s string, depth int)
	walk = func(s string, depth int) {
		if got, want := x.literal(item{}, s), x.literalSplit(item{}, s); !reflect.DeepEqual(got, want) {
			t.Fatalf("literal(%q) = %+v, want %+v", s, got, want)
		}
		if depth < 5 {
			for _, seg := range segs {
				if depth == 0 {
					walk(seg, 1)
				} else {
					walk(s+"/"+seg, depth+1)
				}
			}
		}
	}
	walk("", 0)
}

var update = flag.Bool("update", false, "rewrite testdata/extract-golden.txt and testdata/keys-golden.txt from the current Extract and IndexKeys")

// goldenFile holds, per test data file and extraction mode, a digest of
// everything Extract returned for its resources. It was written by the
// extractor before it was made faster (evaluation plans, item arena,
// hand-written date parsing); the digests hold every later change to the
// same output.
const goldenFile = "testdata/extract-golden.txt"

// TestExtractGolden extracts every resource of the shared test data, the
// fuzz corpus and mutants of the HL7 examples (tricky values put in place
// of their leaves, for the error paths), in every mode (Indexed or not,
// with or without a ReferenceType), and compares a digest of the complete
// output, values and errors alike, with goldenFile.
func TestExtractGolden(t *testing.T) {
	got := goldenDigests(t)
	if *update {
		var b strings.Builder
		for _, l := range got {
			b.WriteString(l + "\n")
		}
		if err := os.WriteFile(goldenFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(want) != len(got) {
		t.Fatalf("%d digests, %s has %d: did the shared test data change? If so, and only then, rewrite it with -update", len(got), goldenFile, len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("Extract's output changed (or the shared test data did; then rewrite with -update):\n got  %s\n want %s", got[i], want[i])
		}
	}
}

// goldenGroup is the resources digested together under one name.
type goldenGroup struct {
	name string
	es   []entry
	// types resolves the references between them, as the gateway does.
	types func(string) string
}

// goldenGroups returns the resources the golden tests digest: each file of
// the shared test data, mutants of one Synthea patient and of the HL7
// examples, and the fuzz corpus.
func goldenGroups(t *testing.T) []goldenGroup {
	var groups []goldenGroup
	for _, sub := range []string{"synthea", "hl7-examples"} {
		es := resources(t, sub)
		types := bundleTypes(es)
		byFile := map[string][]entry{}
		var files []string
		for _, e := range es {
			if _, ok := byFile[e.file]; !ok {
				files = append(files, e.file)
			}
			byFile[e.file] = append(byFile[e.file], e)
		}
		for _, f := range files {
			groups = append(groups, goldenGroup{name: sub + "/" + f, es: byFile[f], types: types})
		}
		mutate := es
		if sub == "synthea" {
			mutate = byFile[files[0]] // one patient's Bundle has every kind Synthea writes
		}
		groups = append(groups, goldenGroup{name: "mutants/" + sub, es: mutants(t, mutate), types: types})
	}
	var fuzz []entry
	paths, err := filepath.Glob("testdata/fuzz/FuzzExtract/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if tree, ok := fuzzCorpusTree(t, p); ok {
			rt, _ := tree["resourceType"].(string)
			fuzz = append(fuzz, entry{file: filepath.Base(p), resourceType: rt, tree: tree})
		}
	}
	return append(groups, goldenGroup{name: "fuzz-corpus", es: fuzz, types: func(string) string { return "" }})
}

func goldenDigests(t *testing.T) []string {
	groups := goldenGroups(t)
	var lines []string
	for _, g := range groups {
		for _, mode := range []struct {
			name    string
			indexed bool
			types   bool
		}{{"full", false, true}, {"indexed", true, true}, {"full-notypes", false, false}, {"indexed-notypes", true, false}} {
			x := &Extractor{Indexed: mode.indexed}
			if mode.types {
				x.ReferenceType = g.types
			}
			h := sha256.New()
			n, errs := 0, 0
			for _, e := range g.es {
				vals, err := x.Extract(e.resourceType, e.tree)
				if err != nil {
					errs++
				}
				fmt.Fprintf(h, "%s %s err=%v\n", e.resourceType, e.fullURL, err)
				for _, v := range vals {
					writeValue(h, v)
					n++
				}
			}
			lines = append(lines, fmt.Sprintf("%s %s resources=%d values=%d errors=%d %s", g.name, mode.name, len(g.es), n, errs, hex.EncodeToString(h.Sum(nil))))
		}
	}
	return lines
}

// writeValue renders every field of v, times to the nanosecond with their
// location, pointers by what they point to.
func writeValue(w interface{ Write([]byte) (int, error) }, v Value) {
	date := func(t time.Time) string {
		return fmt.Sprintf("%s/%d/%s", t.Format(time.RFC3339Nano), t.UnixNano(), t.Location())
	}
	fmt.Fprintf(w, "%q %q tok=%q,%q,%q,%q,%q str=%q date=%s..%s ref=%q,%q,%q,%q,",
		v.Param, v.Type, v.Token.System, v.Token.Code, v.Token.Display, v.Token.Text, v.Token.OfType,
		v.String, date(v.Date.Low), date(v.Date.High),
		v.Reference.Type, v.Reference.ID, v.Reference.Version, v.Reference.URL)
	if id := v.Reference.Identifier; id != nil {
		fmt.Fprintf(w, "id=%q,%q,%q,%q,%q", id.System, id.Code, id.Display, id.Text, id.OfType)
	} else {
		fmt.Fprintf(w, "id=nil")
	}
	q := v.Quantity
	fmt.Fprintf(w, " q=%q num=%q uri=%q comps=%v nil=%v[\n", []string{q.Value, q.Comparator, q.Low, q.High, q.Unit, q.System, q.Code},
		v.Number, v.URI, len(v.Components), v.Components == nil)
	for _, c := range v.Components {
		writeValue(w, c)
	}
	fmt.Fprintf(w, "]\n")
}

// fuzzCorpusTree decodes one file of Go's fuzz corpus format holding a
// []byte("...") argument.
func fuzzCorpusTree(t *testing.T, path string) (map[string]any, bool) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "[]byte("); ok {
			var data string
			if _, err := fmt.Sscanf(strings.TrimSuffix(s, ")"), "%q", &data); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			dec := json.NewDecoder(bytes.NewReader([]byte(data)))
			dec.UseNumber()
			var tree map[string]any
			if dec.Decode(&tree) != nil {
				return nil, false
			}
			return tree, true
		}
	}
	return nil, false
}

// mutantValues are put in place of leaves: bad and odd dates, references
// of every shape, decimals out of range, values of the wrong JSON kind.
var mutantValues = []func() any{
	func() any { return "2020-13" },
	func() any { return "2021-02-30T10:00:00+01:00" },
	func() any { return "2020-01-01T10:00:00+15:00" },
	func() any { return "2020-01-01T10:00:00.1234567891234-03:30" },
	func() any { return "1999-12-31T23:59:60Z" },
	func() any { return "0001" },
	func() any { return "2020-06" },
	func() any { return "2020-06-01T10:00" },
	func() any { return "Patient/1/_history/2" },
	func() any { return "http://x/fhir/Observation/o-1" },
	func() any { return "#p1" },
	func() any { return "urn:uuid:1|2" },
	func() any { return "Patient/" },
	func() any { return "a/b/_history/" },
	func() any { return "" },
	func() any { return json.Number("1e500") },
	func() any { return json.Number("-0.0") },
	func() any { return 1.5 },
	func() any { return true },
	func() any { return nil },
	func() any { return []any{"x", nil, map[string]any{"value": "v"}} },
	func() any { return map[string]any{"reference": "Patient/9", "type": "Group"} },
	func() any { return map[string]any{"start": "2020", "end": "bad"} },
	func() any {
		return map[string]any{"low": map[string]any{"value": json.Number("1")}, "high": map[string]any{"value": "x"}}
	},
	func() any {
		return map[string]any{"coding": []any{map[string]any{"system": "s", "code": "c"}}, "text": "t"}
	},
}

// mutants returns, for each resource of es, copies with one to three leaves
// replaced by mutantValues, chosen by a fixed seed.
func mutants(t *testing.T, es []entry) []entry {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []entry
	for _, e := range es {
		if e.resourceType == "Bundle" {
			continue
		}
		for range 12 {
			tree := deepCopy(e.tree).(map[string]any)
			var leaves []func(any)
			collectLeaves(tree, &leaves)
			if len(leaves) == 0 {
				continue
			}
			for range 1 + rng.IntN(3) {
				leaves[rng.IntN(len(leaves))](mutantValues[rng.IntN(len(mutantValues))]())
			}
			out = append(out, entry{file: e.file, resourceType: e.resourceType, tree: tree})
		}
	}
	return out
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// collectLeaves lists setters of every non-container value below v, in a
// fixed order (keys sorted), resourceType excepted.
func collectLeaves(v any, out *[]func(any)) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			switch v[k].(type) {
			case map[string]any, []any:
				*out = append(*out, func(x any) { v[k] = x })
				collectLeaves(v[k], out)
			default:
				if k != "resourceType" {
					*out = append(*out, func(x any) { v[k] = x })
				}
			}
		}
	case []any:
		for i := range v {
			switch v[i].(type) {
			case map[string]any, []any:
				collectLeaves(v[i], out)
			default:
				*out = append(*out, func(x any) { v[i] = x })
			}
		}
	}
}
