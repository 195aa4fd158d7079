package deid

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
)

const (
	syntheaDir  = "/work/shared/testdata/synthea"
	examplesDir = "/work/shared/testdata/hl7-examples"
)

func testKeys() Keys {
	k := func(c byte) []byte { return []byte(strings.Repeat(string(c), 32)) }
	return Keys{DateShift: k('d'), CryptoHash: k('h'), Encrypt: k('e')}
}

func safeHarbor(t testing.TB) *Engine {
	t.Helper()
	e, err := New(SafeHarbor(), testKeys())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var testNow = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

type bundleResource struct {
	typ  string
	tree map[string]any
	raw  []byte
}

// loadBundle returns a Synthea bundle's entry resources and its patient
// compartment ("" for the provider bundles).
func loadBundle(t testing.TB, path string) ([]bundleResource, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []bundleResource
	patient := ""
	for _, e := range v.(map[string]any)["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		typ := r["resourceType"].(string)
		if typ == "Patient" {
			patient = "Patient/" + r["id"].(string)
		}
		raw, err := fhir.Canonical(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bundleResource{typ, r, raw})
	}
	return out, patient
}

func syntheaFiles(t testing.TB) []string {
	files, _ := filepath.Glob(filepath.Join(syntheaDir, "*.json"))
	if len(files) == 0 {
		t.Skip("no Synthea test data in " + syntheaDir)
	}
	return files
}

// identifying collects, independently of the engine (by JSON shape), the
// strings a de-identified resource must not contain: name parts, street
// lines, cities, telecom values, identifier values, mothers' maiden names,
// and (per resource, in displays) reference displays.
func identifying(v any, parentKey string, names, displays map[string]bool) {
	add := func(set map[string]bool, x any) {
		switch s := x.(type) {
		case string:
			set[s] = true
		case []any:
			for _, e := range s {
				if str, ok := e.(string); ok {
					set[str] = true
				}
			}
		}
	}
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["family"]; ok || x["given"] != nil {
			for _, k := range []string{"family", "given", "prefix", "suffix", "text"} {
				add(names, x[k])
			}
		}
		if x["line"] != nil || x["city"] != nil {
			for _, k := range []string{"line", "city", "district", "text"} {
				add(names, x[k])
			}
		}
		if parentKey == "telecom" || parentKey == "identifier" || parentKey == "valueContactPoint" || parentKey == "valueIdentifier" {
			add(names, x["value"])
		}
		if u, _ := x["url"].(string); strings.HasSuffix(u, "mothersMaidenName") {
			add(names, x["valueString"])
		}
		if _, hasCode := x["code"]; !hasCode && x["display"] != nil {
			add(displays, x["display"])
		}
		for k, e := range x {
			identifying(e, k, names, displays)
		}
	case []any:
		for _, e := range x {
			identifying(e, parentKey, names, displays)
		}
	}
}

// leaks reports where in tree a string of terms (at least 4 characters,
// case-insensitive) occurs.
func leaks(tree any, terms map[string]bool) []string {
	var lower []string
	for s := range terms {
		if len(strings.TrimSpace(s)) >= 4 {
			lower = append(lower, strings.ToLower(s))
		}
	}
	var found []string
	var walk func(v any, p string)
	walk = func(v any, p string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(e, p+"."+k)
			}
		case []any:
			for i, e := range x {
				walk(e, p+"["+itoa(i)+"]")
			}
		case string:
			ls := strings.ToLower(x)
			for _, t := range lower {
				if containsWord(ls, t) {
					found = append(found, p+" contains an input identifier")
				}
			}
		}
	}
	walk(tree, "")
	return found
}

// containsWord reports whether t occurs in s not inside a longer word or
// number (a practitioner named "Gene" must not flag "GENERALIZED", nor an
// NPI "3030" a 64-digit hex pseudonym).
func containsWord(s, t string) bool {
	letter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for off := 0; ; {
		i := strings.Index(s[off:], t)
		if i < 0 {
			return false
		}
		i += off
		j := i + len(t)
		if (i == 0 || !letter(s[i-1]) || !letter(t[0])) && (j == len(s) || !letter(s[j]) || !letter(t[len(t)-1])) {
			return true
		}
		off = i + 1
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

var (
	finerThanYear = regexp.MustCompile(`^\d{4}-\d{2}(-\d{2})?`)
	yearInstant   = regexp.MustCompile(`^\d{4}-01-01T00:00:00Z$`)
)

// checkShifted checks every date finer than a year in out: shifted back by
// days it must be a string of the input; and postal codes have at most 3
// characters.
func checkShifted(t *testing.T, name string, out any, inStrings map[string]bool, days int) {
	t.Helper()
	var walk func(v any, p, key string)
	walk = func(v any, p, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(e, p+"."+k, k)
			}
		case []any:
			for i, e := range x {
				walk(e, p+"["+itoa(i)+"]", key)
			}
		case string:
			if key == "postalCode" && len(x) > 3 {
				t.Errorf("%s: %s: postal code longer than 3", name, p)
			}
			if !finerThanYear.MatchString(x) || yearInstant.MatchString(x) {
				return // a year, or a required instant cut to its year
			}
			back, _, ok := shiftDate(x, -days)
			if !ok || !inStrings[back] {
				t.Errorf("%s: %s: date is not an input date shifted by %d days", name, p, days)
			}
		}
	}
	walk(out, "", "")
}

func stringsOf(v any, set map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			stringsOf(e, set)
		}
	case []any:
		for _, e := range x {
			stringsOf(e, set)
		}
	case string:
		set[x] = true
	}
}

func parseOut(t *testing.T, p *fhir.Parser, tree map[string]any) error {
	t.Helper()
	b, err := fhir.Canonical(tree)
	if err != nil {
		return err
	}
	_, err = p.Parse(b)
	return err
}

func TestSafeHarborSynthea(t *testing.T) {
	e := safeHarbor(t)
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range syntheaFiles(t) {
		res, patient := loadBundle(t, f)
		days := e.DateShiftDays(patient)
		if days == 0 {
			t.Fatalf("%s: zero date shift", filepath.Base(f))
		}
		names := map[string]bool{}
		for _, r := range res {
			identifying(r.tree, "", names, map[string]bool{})
		}
		for i, r := range res {
			total++
			where := filepath.Base(f) + " entry " + itoa(i) + " " + r.typ
			displays := map[string]bool{}
			identifying(r.tree, "", map[string]bool{}, displays)
			got, err := e.Apply(r.typ, r.tree, Options{Patient: patient, Now: testNow})
			if err != nil {
				t.Fatalf("%s: Apply: %v", where, err)
			}
			if err := parseOut(t, p, got.Tree); err != nil {
				t.Errorf("%s: output is not valid FHIR: %v", where, err)
			}
			for _, l := range leaks(got.Tree, names) {
				t.Errorf("%s: %s", where, l)
			}
			for _, l := range leaks(got.Tree, displays) {
				t.Errorf("%s: %s (a reference display)", where, l)
			}
			in := map[string]bool{}
			stringsOf(r.tree, in)
			checkShifted(t, where, got.Tree, in, days)
			if t.Failed() {
				b, _ := json.MarshalIndent(got.Tree, "", " ")
				t.Fatalf("first failing output:\n%s", b)
			}
		}
	}
	t.Logf("%d resources de-identified", total)
}

func TestSafeHarborHL7Examples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.json"))
	if len(files) == 0 {
		t.Skip("no HL7 examples")
	}
	sort.Strings(files)
	e := safeHarbor(t)
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.Parse(data)
		if err != nil {
			t.Logf("%s: input does not parse, skipped: %v", filepath.Base(f), err)
			continue
		}
		patient := fhir.PatientCompartment(r.Type, r.Tree)
		got, err := e.Apply(r.Type, r.Tree, Options{Patient: patient, Now: testNow})
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		if err := parseOut(t, p, got.Tree); err != nil {
			t.Errorf("%s: output is not valid FHIR: %v", filepath.Base(f), err)
		}
		names, displays := map[string]bool{}, map[string]bool{}
		identifying(r.Tree, "", names, displays)
		for _, l := range leaks(got.Tree, names) {
			t.Errorf("%s: %s", filepath.Base(f), l)
		}
		for _, l := range leaks(got.Tree, displays) {
			t.Errorf("%s: %s (a display)", filepath.Base(f), l)
		}
		in := map[string]bool{}
		stringsOf(r.Tree, in)
		checkShifted(t, filepath.Base(f), got.Tree, in, e.DateShiftDays(patient))
	}
}
