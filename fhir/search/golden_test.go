package search

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/extract-golden.txt from the current Extract")

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
	if *updateGolden {
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
		t.Fatalf("%d digests, golden has %d", len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("digest differs:\n got  %s\n want %s", got[i], want[i])
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

func goldenDigests(t *testing.T) []string {
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
	groups = append(groups, goldenGroup{name: "fuzz-corpus", es: fuzz, types: func(string) string { return "" }})

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
