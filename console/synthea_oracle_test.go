package console_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// The researcher test's oracle: what the raw Synthea Bundles say, read
// here independently of the gateway and of the console's code.

// rawPatient is what a raw Synthea Patient holds that the test needs:
// its demographics (to predict a small breakdown cell) and its identifying
// strings (which no de-identified export may contain).
type rawPatient struct {
	gender    string
	race      string // an OMB code, "multiple" or "unknown", as cohort's breakdown names it
	ethnicity string
	deceased  bool
	birthDate string
	// hba1c are the values of its HbA1c Observations (LOINC 4548-4) in %.
	hba1c []float64
	// phi are the patient's names, identifiers, telecom, address lines and
	// city, full postal code, birthplace, mother's maiden name and the ids of
	// every resource of the patient's Bundle.
	phi []string
}

// syntheaPatients reads every Patient of the shared Synthea Bundles.
func syntheaPatients(t *testing.T) []rawPatient {
	t.Helper()
	var out []rawPatient
	for _, path := range shareddata.Files(t, "synthea") {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var p *rawPatient
		var ids []string
		var hba1c []float64
		for _, e := range b.Entry {
			var r map[string]any
			if err := json.Unmarshal(e.Resource, &r); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			typ, _ := r["resourceType"].(string)
			switch typ {
			case "Organization", "Practitioner", "PractitionerRole", "Location":
				continue // not the patient's
			}
			if id, ok := r["id"].(string); ok {
				ids = append(ids, id)
			}
			if typ == "Patient" {
				p = readPatient(r)
			}
			if v, ok := percentOf(r, "http://loinc.org", "4548-4"); ok && typ == "Observation" {
				hba1c = append(hba1c, v)
			}
		}
		if p == nil {
			continue // the hospital and practitioner Bundles
		}
		p.hba1c = hba1c
		p.phi = append(p.phi, ids...)
		out = append(out, *p)
	}
	if len(out) < 20 {
		t.Fatalf("only %d Synthea patients", len(out))
	}
	return out
}

func readPatient(r map[string]any) *rawPatient {
	p := &rawPatient{race: "unknown", ethnicity: "unknown"}
	p.gender, _ = r["gender"].(string)
	p.birthDate, _ = r["birthDate"].(string)
	_, dead := r["deceasedDateTime"]
	p.deceased = dead || r["deceasedBoolean"] == true
	add := func(s any) {
		if v, ok := s.(string); ok && v != "" {
			p.phi = append(p.phi, v)
		}
	}
	for _, n := range list(r["name"]) {
		m, _ := n.(map[string]any)
		add(m["family"])
		for _, g := range list(m["given"]) {
			add(g)
		}
	}
	for _, i := range list(r["identifier"]) {
		m, _ := i.(map[string]any)
		add(m["value"])
	}
	for _, c := range list(r["telecom"]) {
		m, _ := c.(map[string]any)
		add(m["value"])
	}
	for _, a := range list(r["address"]) {
		m, _ := a.(map[string]any)
		for _, l := range list(m["line"]) {
			add(l)
		}
		add(m["city"])
		add(m["postalCode"])
	}
	for _, e := range list(r["extension"]) {
		m, _ := e.(map[string]any)
		url, _ := m["url"].(string)
		switch {
		case strings.HasSuffix(url, "us-core-race"):
			p.race = ombCategory(m)
		case strings.HasSuffix(url, "us-core-ethnicity"):
			p.ethnicity = ombCategory(m)
		case strings.HasSuffix(url, "patient-mothersMaidenName"):
			add(m["valueString"])
		case strings.HasSuffix(url, "patient-birthPlace"):
			addr, _ := m["valueAddress"].(map[string]any)
			add(addr["city"])
		}
	}
	return p
}

// percentOf returns the valueQuantity of an Observation coded system|code
// whose unit (or UCUM code) is "%".
func percentOf(r map[string]any, system, code string) (float64, bool) {
	c, _ := r["code"].(map[string]any)
	coded := false
	for _, x := range list(c["coding"]) {
		m, _ := x.(map[string]any)
		coded = coded || m["system"] == system && m["code"] == code
	}
	q, _ := r["valueQuantity"].(map[string]any)
	v, ok := q["value"].(float64)
	if !coded || !ok || q["unit"] != "%" && q["code"] != "%" {
		return 0, false
	}
	return v, true
}

// ombCategory names a race or ethnicity extension's cell as the cohort
// breakdown does: its one ombCategory code, "multiple" or "unknown".
func ombCategory(ext map[string]any) string {
	var codes []string
	for _, x := range list(ext["extension"]) {
		m, _ := x.(map[string]any)
		if m["url"] != "ombCategory" {
			continue
		}
		c, _ := m["valueCoding"].(map[string]any)
		if code, ok := c["code"].(string); ok && !slices.Contains(codes, code) {
			codes = append(codes, code)
		}
	}
	switch len(codes) {
	case 0:
		return "unknown"
	case 1:
		return codes[0]
	}
	return "multiple"
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// smallCell picks a breakdown of every patient that certainly has a
// suppressed cell: a dimension whose values are exact in the research copy
// (race, ethnicity, deceased; not ages, which depend on the year) and a
// value held by 1 to 10 patients. It returns the dimension, the value and
// the number of patients.
func smallCell(t *testing.T, patients []rawPatient) (dim, value string, n int) {
	t.Helper()
	for _, dim := range []string{"race", "ethnicity", "deceased"} {
		counts := map[string]int{}
		for _, p := range patients {
			switch dim {
			case "race":
				counts[p.race]++
			case "ethnicity":
				counts[p.ethnicity]++
			case "deceased":
				counts[map[bool]string{true: "true", false: "false"}[p.deceased]]++
			}
		}
		var values []string
		for v := range counts {
			values = append(values, v)
		}
		slices.Sort(values)
		for _, v := range values {
			if c := counts[v]; c >= 1 && c < 11 {
				return dim, v, c
			}
		}
	}
	t.Fatal("no small cell in race, ethnicity or deceased of the Synthea set")
	return "", "", 0
}

// phiIn returns the identifying strings of patients that occur in text:
// whole JSON string values, or substrings for those long enough (at least
// 6 characters) not to occur by chance in codes or numbers.
func phiIn(text string, patients []rawPatient) []string {
	var values []string
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var v any
		if json.Unmarshal([]byte(line), &v) != nil {
			values = append(values, line)
			continue
		}
		values = append(values, stringsOf(v)...)
	}
	whole := map[string]bool{}
	for _, v := range values {
		whole[v] = true
	}
	all := strings.Join(values, "\x00")
	var found []string
	for _, p := range patients {
		for _, s := range p.phi {
			if whole[s] || len(s) >= 6 && strings.Contains(all, s) {
				found = append(found, s)
			}
		}
	}
	return found
}

func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, stringsOf(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range v {
			out = append(out, stringsOf(e)...)
		}
		return out
	}
	return nil
}

// TestSyntheaOracle checks the oracle on the raw data itself: it finds a
// small cell, and it finds the identifying strings in the raw Patients (so
// that finding none in an export means something).
func TestSyntheaOracle(t *testing.T) {
	patients := syntheaPatients(t)
	dim, value, n := smallCell(t, patients)
	t.Logf("small cell: %s=%s holds %d of %d patients", dim, value, n, len(patients))
	var raw strings.Builder
	for _, path := range shareddata.Files(t, "synthea") {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			var r struct {
				ResourceType string `json:"resourceType"`
			}
			if json.Unmarshal(e.Resource, &r) == nil && r.ResourceType == "Patient" {
				var compact map[string]any
				if err := json.Unmarshal(e.Resource, &compact); err != nil {
					t.Fatal(err)
				}
				line, _ := json.Marshal(compact)
				raw.Write(line)
				raw.WriteByte('\n')
			}
		}
	}
	found := phiIn(raw.String(), patients)
	if len(found) < 10*len(patients) {
		t.Errorf("the oracle finds only %d identifying strings in the raw Patients of %d patients", len(found), len(patients))
	}
}
