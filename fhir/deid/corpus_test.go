package deid

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/google/go-cmp/cmp"
)

// validatorDir is the npm `fhir` checker of the repository
// (clients/fhir-validator), relative to this package.
const validatorDir = "../../clients/fhir-validator"

// writeCopies de-identifies every test resource (the Synthea bundles'
// entries with Options{Patient: compartment}, the HL7 examples, the nasty
// corpus) and writes the copies as NDJSON files, one per resource type,
// into dir. It returns how many copies it wrote.
func writeCopies(t *testing.T, e *Engine, dir string) int {
	t.Helper()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]*bytes.Buffer{}
	n := 0
	add := func(typ string, tree map[string]any, o Options) {
		o.Now = testNow
		res, err := e.Apply(typ, tree, o)
		if err != nil {
			t.Fatalf("Apply %s: %v", typ, err)
		}
		b, err := json.Marshal(res.Tree)
		if err != nil {
			t.Fatal(err)
		}
		buf := byType[typ]
		if buf == nil {
			buf = &bytes.Buffer{}
			byType[typ] = buf
		}
		buf.Write(b)
		buf.WriteByte('\n')
		n++
	}
	files, _ := filepath.Glob(filepath.Join(syntheaDir, "*.json"))
	for _, f := range files {
		res, patient := loadBundle(t, f)
		for _, r := range res {
			add(r.typ, r.tree, Options{Patient: patient})
		}
	}
	files, _ = filepath.Glob(filepath.Join(examplesDir, "*.json"))
	files2, _ := filepath.Glob(filepath.Join("testdata", "nasty", "*.json"))
	files = append(files, files2...)
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.Parse(data)
		if err != nil {
			continue
		}
		add(r.Type, r.Tree, Options{Patient: fhir.PatientCompartment(r.Type, r.Tree)})
	}
	for typ, buf := range byType {
		if err := os.WriteFile(filepath.Join(dir, typ+".ndjson"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestCopiesPassFHIRValidator runs the npm `fhir` validator
// (clients/fhir-validator) on the research copies of every test resource.
// It needs node and npm (it installs clients/fhir-validator's pinned
// packages when they are missing); it runs only with
// FHIRANCHOR_INTEGRATION=1, where a missing node is a failure.
func TestCopiesPassFHIRValidator(t *testing.T) {
	if os.Getenv("FHIRANCHOR_INTEGRATION") != "1" {
		t.Skip("FHIRANCHOR_INTEGRATION=1 not set")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found; the validator test needs node >= 20")
	}
	if _, err := os.Stat(filepath.Join(validatorDir, "node_modules", "fhir")); err != nil {
		// A clean clone: install exactly what package-lock.json pins, as
		// check.sh does (the npm registry is reachable wherever CI runs).
		install := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		install.Dir = validatorDir
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in clients/fhir-validator: %v\n%s", err, out)
		}
	}
	for _, name := range ProfileNames() {
		t.Run(name, func(t *testing.T) {
			cfg, err := Profile(name)
			if err != nil {
				t.Fatal(err)
			}
			e, err := New(cfg, testKeys())
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if out := os.Getenv("FHIRANCHOR_DEID_OUT"); out != "" {
				dir = filepath.Join(out, name)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			n := writeCopies(t, e, dir)
			cmd := exec.Command(node, filepath.Join(validatorDir, "validate.mjs"), dir)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			t.Logf("%d copies; validator: %s", n, lines[len(lines)-1])
			if err != nil {
				t.Errorf("validator failed: %v\n%s", err, stderr.String())
			}
		})
	}
}

// nastyResource is a resource of the nasty corpus (testdata/nasty).
type nastyResource struct {
	file string
	typ  string
	tree map[string]any
}

func loadNasty(t *testing.T) ([]nastyResource, map[string][]string) {
	t.Helper()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "nasty", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no nasty corpus: %v", err)
	}
	sort.Strings(files)
	var out []nastyResource
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.Parse(data)
		if err != nil {
			t.Fatalf("%s: the corpus must be valid FHIR: %v", f, err)
		}
		out = append(out, nastyResource{filepath.Base(f), r.Type, r.Tree})
	}
	data, err := os.ReadFile(filepath.Join("testdata", "nasty.phi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var phi map[string][]string
	if err := json.Unmarshal(data, &phi); err != nil {
		t.Fatal(err)
	}
	return out, phi
}

// nastySubject is what the gateway would pass for the corpus: the
// patient's stored birth date and the lexicon of every resource of the
// request.
func nastySubject(corpus []nastyResource) Subject {
	set := map[string]bool{}
	for _, r := range corpus {
		for _, s := range Lexicon(r.tree) {
			set[s] = true
		}
	}
	var known []string
	for s := range set {
		known = append(known, s)
	}
	sort.Strings(known)
	return Subject{BirthDate: "1930-01-15", Known: known}
}

// TestNastyCorpus plants PHI in every free-text place of a 95-year-old's
// records and checks that none of it reaches the copies: the oracle is the
// list of planted strings (testdata/nasty.phi.json), searched for in the
// serialized output case-insensitively.
func TestNastyCorpus(t *testing.T) {
	corpus, phi := loadNasty(t)
	subject := nastySubject(corpus)
	for _, name := range []string{"safe-harbor", "safe-harbor-strict"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := Profile(name)
			if err != nil {
				t.Fatal(err)
			}
			e, err := New(cfg, testKeys())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range corpus {
				raw, _ := json.Marshal(r.tree)
				res, err := e.Apply(r.typ, r.tree, Options{Patient: "Patient/nasty-p1", Now: testNow, Subject: subject})
				if err != nil {
					t.Fatalf("%s: %v", r.file, err)
				}
				if again, _ := json.Marshal(r.tree); string(again) != string(raw) {
					t.Fatalf("%s: Apply modified its input", r.file)
				}
				out, err := json.Marshal(res.Tree)
				if err != nil {
					t.Fatal(err)
				}
				lower := strings.ToLower(string(out))
				for kind, list := range phi {
					for _, s := range list {
						if strings.Contains(lower, strings.ToLower(s)) {
							t.Errorf("%s: planted %s %q found in the copy:\n%s", r.file, kind, s, out)
						}
					}
				}
				checkOver89(t, r.file, res.Tree)
				for _, c := range res.Changes {
					if strings.Contains(strings.ToLower(c.Path), "thornquist") {
						t.Errorf("%s: change path %q holds a value", r.file, c.Path)
					}
				}
			}
		})
	}
}

// checkOver89 checks a copy of a 95-year-old's resource: no birth year of
// the people over 89 (1930, 1933, 1934), no date finer than a year (but a
// required instant's first instant of the year), no meta.lastUpdated.
func checkOver89(t *testing.T, file string, tree map[string]any) {
	t.Helper()
	if m, ok := tree["meta"].(map[string]any); ok && m["lastUpdated"] != nil {
		t.Errorf("%s: meta.lastUpdated kept", file)
	}
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
			for _, y := range []string{"1930", "1933", "1934"} {
				if strings.HasPrefix(x, y) {
					t.Errorf("%s: %s: birth year of a person over 89", file, p)
				}
			}
			if finerThanYear.MatchString(x) && !yearInstant.MatchString(x) {
				t.Errorf("%s: %s: a date finer than the year for a patient over 89", file, p)
			}
		}
	}
	walk(tree, "")
}

// TestNastyCorpusDetails checks what the default profile does to the
// corpus beyond the oracle: ages capped, birth dates gone with a band,
// standard displays kept.
func TestNastyCorpusDetails(t *testing.T) {
	corpus, _ := loadNasty(t)
	subject := nastySubject(corpus)
	e := safeHarbor(t)
	out := map[string]map[string]any{}
	for _, r := range corpus {
		res, err := e.Apply(r.typ, r.tree, Options{Patient: "Patient/nasty-p1", Now: testNow, Subject: subject})
		if err != nil {
			t.Fatal(err)
		}
		out[r.file] = res.Tree
	}
	get := func(file string, path ...any) any {
		var v any = out[file]
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, _ := v.(map[string]any)
				v = m[k]
			case int:
				a, _ := v.([]any)
				if k >= len(a) {
					return nil
				}
				v = a[k]
			}
		}
		return v
	}
	age90 := map[string]any{"value": json.Number("90"), "comparator": ">=", "unit": "years", "system": systemUCUM, "code": "a"}
	band := []any{map[string]any{"url": AgeBandURL, "valueString": "90+"}}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"age observation capped", get("observation-age.json", "valueQuantity"), age90},
		{"age component (integer) capped", get("observation-age.json", "component", 0, "valueQuantity"), age90},
		{"birth-date component removed", get("observation-age.json", "component", 1, "valueDateTime"), nil},
		{"LOINC display kept", get("observation-age.json", "code", "coding", 0, "display"), "Age"},
		{"code.text with a name dropped", get("observation-age.json", "code", "text"), nil},
		{"custom extension dropped", get("observation-age.json", "extension"), nil},
		{"onsetAge capped", get("condition.json", "onsetAge"), age90},
		{"made-up system: display dropped", get("condition.json", "code", "coding", 0, "display"), nil},
		{"made-up system: code kept", get("condition.json", "code", "coding", 0, "code"), "X1"},
		{"SNOMED display with a known name dropped", get("condition.json", "code", "coding", 1, "display"), nil},
		{"SNOMED code kept", get("condition.json", "code", "coding", 1, "code"), "38341003"},
		{"bad SNOMED check digit: display dropped", get("condition.json", "code", "coding", 2, "display"), nil},
		{"real SNOMED display kept", get("condition.json", "code", "coding", 3, "display"), "Diabetes mellitus type 2"},
		{"contained relative over 89: birth date removed", get("condition.json", "contained", 0, "birthDate"), nil},
		{"contained relative over 89: band", get("condition.json", "contained", 0, "extension"), band},
		{"patient: birth date removed", get("patient.json", "birthDate"), nil},
		{"patient: birth time removed", get("patient.json", "_birthDate"), nil},
		{"patient: race code kept", get("patient.json", "extension", 0, "extension", 0, "valueCoding", "code"), "2106-3"},
		{"patient: race display kept", get("patient.json", "extension", 0, "extension", 0, "valueCoding", "display"), "White"},
		{"patient: meta.profile keeps HL7 only", get("patient.json", "meta", "profile"), []any{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"}},
		{"patient: version kept", get("patient.json", "meta", "versionId"), "3"},
		{"relative over 89: birth date removed", get("related-person.json", "birthDate"), nil},
		{"relative over 89: band", get("related-person.json", "extension"), band},
		{"family member over 89: born removed", get("family-history.json", "bornDate"), nil},
		{"family member: no band on the patient's record of a relative", get("family-history.json", "extension"), nil},
		{"family member: onset age capped", get("family-history.json", "condition", 0, "onsetAge"), age90},
		{"family member: FHIR code system display kept", get("family-history.json", "sex", "coding", 0, "display"), "Female"},
		{"device url removed", get("device.json", "url"), nil},
		{"device serial removed", get("device.json", "serialNumber"), nil},
		{"dosage text removed", get("medication-request.json", "dosageInstruction", 0, "text"), nil},
		{"non-UCUM unit removed", get("medication-request.json", "dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "unit"), nil},
		{"RxNorm display kept", get("medication-request.json", "medicationCodeableConcept", "coding", 0, "display"), "Hydrochlorothiazide 25 MG Oral Tablet"},
		{"concept text equal to a kept display kept", get("encounter.json", "type", 0, "text"), "Encounter for check up (procedure)"},
		{"reason with only text: gone", get("encounter.json", "reasonCode"), nil},
		{"audit network removed", get("audit-event.json", "agent", 0, "network"), nil},
		{"audit recorded: required, year only", get("audit-event.json", "recorded"), e.yearStart("2025-05-30T10:11:12Z")},
		{"attachment title removed", get("document-reference.json", "content", 0, "attachment", "title"), nil},
		{"description removed", get("document-reference.json", "description"), nil},
		{"required type keeps its coding", get("document-reference.json", "type", "coding", 0, "code"), "34133-9"},
		{"interpretation display with a name dropped", get("observation-text.json", "interpretation", 0, "coding", 0, "display"), nil},
		{"valueString removed", get("observation-text.json", "valueString"), nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

// yearStart is the first instant of the shifted year of an instant of the
// nasty corpus's patient.
func (e *Engine) yearStart(s string) string {
	ns, _, _ := shiftDate(s, e.DateShiftDays("Patient/nasty-p1"))
	return ns[:4] + "-01-01T00:00:00Z"
}

// codingsOf returns system|code of the codings of a CodeableConcept (or a
// list of them).
func codingsOf(v any) []string {
	var out []string
	forEachObject(v, func(cc map[string]any) {
		forEachObject(cc["coding"], func(c map[string]any) {
			s, _ := c["system"].(string)
			code, _ := c["code"].(string)
			out = append(out, s+"|"+code)
		})
	})
	sort.Strings(out)
	return out
}

// displaysOf collects system|code|display of every SNOMED CT and LOINC
// coding in v.
func displaysOf(v any, out map[string]int) {
	switch x := v.(type) {
	case map[string]any:
		if s, _ := x["system"].(string); s == systemSNOMED || s == systemLOINC {
			if d, ok := x["display"].(string); ok {
				out[s+"|"+x["code"].(string)+"|"+d]++
			}
		}
		for _, e := range x {
			displaysOf(e, out)
		}
	case []any:
		for _, e := range x {
			displaysOf(e, out)
		}
	}
}

// TestSafeHarborUtility checks what researchers keep under the default
// profile on Synthea, with the Subject the gateway passes (the patient's
// birth date, and the lexicon of every resource of the bundle, the
// hardest case for displays): the codes of clinical resources, the
// SNOMED CT and LOINC displays, us-core race and ethnicity codes,
// Observation values.
func TestSafeHarborUtility(t *testing.T) {
	e := safeHarbor(t)
	concepts := map[string][]string{
		"Condition": {"code"}, "Observation": {"code", "valueCodeableConcept"}, "MedicationRequest": {"medicationCodeableConcept"},
		"Encounter": {"type"}, "Procedure": {"code"}, "Immunization": {"vaccineCode"},
	}
	inDisplays, outDisplays := map[string]int{}, map[string]int{}
	values := 0
	for _, f := range syntheaFiles(t) {
		res, patient := loadBundle(t, f)
		set := map[string]bool{}
		birth := ""
		for _, r := range res {
			for _, s := range Lexicon(r.tree) {
				set[s] = true
			}
			if r.typ == "Patient" {
				birth, _ = r.tree["birthDate"].(string)
			}
		}
		var known []string
		for s := range set {
			known = append(known, s)
		}
		for i, r := range res {
			where := filepath.Base(f) + " entry " + itoa(i) + " " + r.typ
			got, err := e.Apply(r.typ, r.tree, Options{Patient: patient, Now: testNow, Subject: Subject{BirthDate: birth, Known: known}})
			if err != nil {
				t.Fatal(err)
			}
			out := got.Tree
			if m, _ := out["meta"].(map[string]any); m["lastUpdated"] != nil {
				t.Errorf("%s: meta.lastUpdated kept", where)
			}
			for _, k := range concepts[r.typ] {
				if diff := cmp.Diff(codingsOf(r.tree[k]), codingsOf(out[k])); diff != "" {
					t.Errorf("%s: %s codes changed (-in +out):\n%s", where, k, diff)
				}
			}
			displaysOf(r.tree, inDisplays)
			displaysOf(out, outDisplays)
			switch r.typ {
			case "Observation":
				checkValues(t, where, r.tree, out)
				values++
			case "Patient":
				for _, url := range []string{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"} {
					if diff := cmp.Diff(ombOf(r.tree, url), ombOf(out, url)); diff != "" {
						t.Errorf("%s: %s codes changed (-in +out):\n%s", where, url, diff)
					}
				}
			}
		}
	}
	lost := 0
	for k, n := range inDisplays {
		if f := strings.SplitN(k, "|", 3); !standardCode(f[0], f[1]) {
			continue // Synthea writes a few LOINC codes under SNOMED CT's system: those displays go
		}
		if outDisplays[k] < n {
			lost += n - outDisplays[k]
			t.Errorf("display lost: %s (%d of %d)", k, n-outDisplays[k], n)
		}
	}
	t.Logf("%d SNOMED CT/LOINC displays, %d lost; %d observations", len(inDisplays), lost, values)
}

// checkValues checks that an Observation's values (and its components')
// survive: quantities (value, UCUM code) and coded values.
func checkValues(t *testing.T, where string, in, out map[string]any) {
	t.Helper()
	pairs := [][2]map[string]any{{in, out}}
	inC, _ := in["component"].([]any)
	outC, _ := out["component"].([]any)
	if len(inC) != len(outC) {
		t.Errorf("%s: %d components, want %d", where, len(outC), len(inC))
		return
	}
	for i := range inC {
		pairs = append(pairs, [2]map[string]any{inC[i].(map[string]any), outC[i].(map[string]any)})
	}
	for _, p := range pairs {
		if hasCode(p[0]["code"], ageCodes) {
			continue
		}
		if q, ok := p[0]["valueQuantity"].(map[string]any); ok {
			oq, _ := p[1]["valueQuantity"].(map[string]any)
			if oq == nil || oq["value"] != q["value"] || oq["code"] != q["code"] || oq["unit"] != q["unit"] {
				t.Errorf("%s: valueQuantity %v became %v", where, q, oq)
			}
		}
		if diff := cmp.Diff(codingsOf(p[0]["valueCodeableConcept"]), codingsOf(p[1]["valueCodeableConcept"])); diff != "" {
			t.Errorf("%s: valueCodeableConcept changed:\n%s", where, diff)
		}
	}
}

func ombOf(tree map[string]any, url string) []string {
	var out []string
	forEachObject(tree["extension"], func(ext map[string]any) {
		if ext["url"] != url {
			return
		}
		forEachObject(ext["extension"], func(sub map[string]any) {
			if c, ok := sub["valueCoding"].(map[string]any); ok {
				out = append(out, c["system"].(string)+"|"+c["code"].(string)+"|"+c["display"].(string))
			}
		})
	})
	return out
}
