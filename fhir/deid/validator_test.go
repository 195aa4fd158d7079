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
// It needs node and an installed clients/fhir-validator/node_modules; it
// runs only with FHIRANCHOR_INTEGRATION=1, where a missing node is a
// failure.
func TestCopiesPassFHIRValidator(t *testing.T) {
	if os.Getenv("FHIRANCHOR_INTEGRATION") != "1" {
		t.Skip("FHIRANCHOR_INTEGRATION=1 not set")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found; the validator test needs node >= 20")
	}
	if _, err := os.Stat(filepath.Join(validatorDir, "node_modules", "fhir")); err != nil {
		t.Fatalf("validator not installed: run npm ci in clients/fhir-validator: %v", err)
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
