package cohort

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// The Synthea bundles are not de-identified, but their structure is that of
// de-identified resources; deidentifyForTest does the one thing the index
// relies on (birthDate becomes a year). Patient keys are the Patient
// fullUrls.

type syntheaEntry struct {
	patient, key, typ string
	tree              map[string]any
}

var (
	syntheaOnce    sync.Once
	syntheaEntries []syntheaEntry
	syntheaErr     error
)

func loadSynthea(t testing.TB) []syntheaEntry {
	t.Helper()
	files := shareddata.Files(t, "synthea")
	syntheaOnce.Do(func() {
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				syntheaErr = err
				return
			}
			v, err := fhir.Decode(data)
			if err != nil {
				syntheaErr = err
				return
			}
			entries := arr(obj(v)["entry"])
			patient := ""
			for _, e := range entries {
				if text(obj(obj(e)["resource"])["resourceType"]) == "Patient" {
					patient = text(obj(e)["fullUrl"])
				}
			}
			if patient == "" {
				continue // the shared Organization and Practitioner bundles
			}
			for _, e := range entries {
				r := obj(obj(e)["resource"])
				typ := text(r["resourceType"])
				if typ == "Organization" || typ == "Practitioner" {
					continue
				}
				if typ == "Patient" {
					deidentifyForTest(r)
				}
				syntheaEntries = append(syntheaEntries, syntheaEntry{patient, text(obj(e)["fullUrl"]), typ, r})
			}
		}
	})
	if syntheaErr != nil {
		t.Fatal(syntheaErr)
	}
	return syntheaEntries
}

func deidentifyForTest(p map[string]any) {
	if bd, ok := p["birthDate"].(string); ok && len(bd) >= 4 {
		p["birthDate"] = bd[:4]
	}
}

func syntheaIndex(t testing.TB) *Index {
	t.Helper()
	ix := NewIndex()
	for _, e := range loadSynthea(t) {
		if err := ix.Put(e.key, e.patient, e.typ, e.tree); err != nil {
			t.Fatalf("Put %s: %v", e.typ, err)
		}
	}
	return ix
}

// raw is the independent side of the comparison: it reads the bundles with
// encoding/json into plain structs, not through the index's extraction.
type rawCoded struct {
	Code struct {
		Coding []struct{ System, Code string } `json:"coding"`
	} `json:"code"`
	ValueQuantity *struct {
		Value float64 `json:"value"`
		Code  string  `json:"code"`
	} `json:"valueQuantity"`
}

type rawResource struct {
	rawCoded
	ResourceType      string     `json:"resourceType"`
	Gender            string     `json:"gender"`
	BirthDate         string     `json:"birthDate"`
	OnsetDateTime     string     `json:"onsetDateTime"`
	EffectiveDateTime string     `json:"effectiveDateTime"`
	Component         []rawCoded `json:"component"`
}

type rawPatient struct {
	gender    string
	birth     time.Time
	dx        map[string][]time.Time // SNOMED code -> onsets
	obs       map[string][]rawObs    // LOINC code -> observations, components included
	immunized bool
}

type rawObs struct {
	when  time.Time
	value float64
	unit  string
}

func rawSynthea(t *testing.T) map[string]*rawPatient {
	out := map[string]*rawPatient{}
	for _, path := range shareddata.Files(t, "synthea") {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				FullURL  string      `json:"fullUrl"`
				Resource rawResource `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		var p *rawPatient
		for _, e := range b.Entry {
			if e.Resource.ResourceType == "Patient" {
				p = &rawPatient{gender: e.Resource.Gender, dx: map[string][]time.Time{}, obs: map[string][]rawObs{}}
				p.birth, _ = time.Parse(time.DateOnly, e.Resource.BirthDate)
				out[e.FullURL] = p
			}
		}
		if p == nil {
			continue
		}
		for _, e := range b.Entry {
			r := e.Resource
			switch r.ResourceType {
			case "Condition":
				when, err := time.Parse(time.RFC3339, r.OnsetDateTime)
				if err != nil {
					t.Fatalf("onset %v", err)
				}
				for _, c := range r.Code.Coding {
					if c.System == snomed {
						p.dx[c.Code] = append(p.dx[c.Code], when)
					}
				}
			case "Observation":
				when, err := time.Parse(time.RFC3339, r.EffectiveDateTime)
				if err != nil {
					t.Fatalf("effective %v", err)
				}
				for _, c := range append([]rawCoded{r.rawCoded}, r.Component...) {
					for _, cc := range c.Code.Coding {
						if cc.System != loinc {
							continue
						}
						o := rawObs{when: when, value: math.NaN()}
						if c.ValueQuantity != nil {
							o.value, o.unit = c.ValueQuantity.Value, c.ValueQuantity.Code
						}
						p.obs[cc.Code] = append(p.obs[cc.Code], o)
					}
				}
			case "Immunization":
				p.immunized = true
			}
		}
	}
	return out
}

// utcDays is the number of UTC calendar days from a to b.
func utcDays(a, b time.Time) int {
	return int(b.UTC().Truncate(24*time.Hour).Sub(a.UTC().Truncate(24*time.Hour)).Hours() / 24)
}

// followedBy: some observation of code with value > over (unit) dated
// from..to days after an onset of condition dx.
func (p *rawPatient) followedBy(dx, code string, over float64, unit string, from, to int) bool {
	for _, d := range p.dx[dx] {
		for _, o := range p.obs[code] {
			if n := utcDays(d, o.when); o.value > over && o.unit == unit && n >= from && n <= to {
				return true
			}
		}
	}
	return false
}

func TestSynthea(t *testing.T) {
	ix := syntheaIndex(t)
	raw := rawSynthea(t)
	st := ix.Stats()
	t.Logf("index: %d patients, %d resources, %d facts", st.Patients, st.Resources, st.Facts)
	if st.Patients != len(raw) || st.Patients != 58 {
		t.Errorf("patients = %d, raw scan found %d", st.Patients, len(raw))
	}

	want := func(pred func(*rawPatient) bool) []string {
		var keys []string
		for k, p := range raw {
			if pred(p) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return keys
	}
	check := func(name, query string, expect []string) {
		t.Helper()
		q := mustParse(t, query)
		got := ix.Match(q, at, allow)
		if !slices.Equal(got, expect) {
			t.Errorf("%s: index %d patients, raw scan %d\nindex %v\nraw   %v", name, len(got), len(expect), got, expect)
		}
		t.Logf("%-70s %2d patients", name, len(got))
	}
	cond := func(c, as string) string {
		return `{"condition":{"code":` + code(snomed, c) + `},"as":"` + as + `"}`
	}
	const hypertension, obesity, prediabetes = "38341003", "162864005", "15777000"
	const systolic, bmi = "8480-6", "39156-5"
	for _, c := range []struct{ name, code string }{
		{"diabetes", diabetes}, {"prediabetes", prediabetes}, {"hypertension", hypertension}, {"obesity", obesity},
	} {
		for _, g := range []string{"female", "male"} {
			check(c.name+", "+g, `{"criteria":{"all":[`+cond(c.code, "dx")+`,{"gender":"`+g+`"}]}}`,
				want(func(p *rawPatient) bool { return len(p.dx[c.code]) > 0 && p.gender == g }))
		}
	}
	check("diabetes or prediabetes", `{"criteria":{"any":[`+cond(diabetes, "a")+`,`+cond(prediabetes, "b")+`]}}`,
		want(func(p *rawPatient) bool { return len(p.dx[diabetes])+len(p.dx[prediabetes]) > 0 }))
	for _, v := range []float64{6.5, 5.7} {
		check(fmt.Sprintf("HbA1c > %v%%", v), fmt.Sprintf(`{"criteria":{"observation":{"code":%s,"value":{"gt":%v},"unit":"%%"}}}`, code(loinc, hba1c), v),
			want(func(p *rawPatient) bool {
				return slices.ContainsFunc(p.obs[hba1c], func(o rawObs) bool { return o.value > v && o.unit == "%" })
			}))
	}
	window := func(dx, obsCode string, over float64, unit string, from, to int) string {
		return fmt.Sprintf(`{"criteria":{"all":[%s,{"observation":{"code":%s,"value":{"gt":%v},"unit":%q},"within":{"of":"dx","from":{"days":%d},"to":{"days":%d}}}]}}`,
			cond(dx, "dx"), code(loinc, obsCode), over, unit, from, to)
	}
	for _, w := range []struct {
		name, dx, obs string
		over          float64
		unit          string
		from, to      int
	}{
		{"HbA1c > 6.5% 0..365 days after diabetes onset", diabetes, hba1c, 6.5, "%", 0, 365},
		{"HbA1c > 5.7% 0..365 days after prediabetes onset", prediabetes, hba1c, 5.7, "%", 0, 365},
		{"HbA1c > 5.7% in the year before prediabetes onset", prediabetes, hba1c, 5.7, "%", -365, -1},
		{"systolic BP > 140 0..365 days after hypertension onset", hypertension, systolic, 140, "mm[Hg]", 0, 365},
		{"systolic BP > 140 on the day of hypertension onset", hypertension, systolic, 140, "mm[Hg]", 0, 0},
		{"BMI > 30 within 30 days of obesity finding", obesity, bmi, 30, "kg/m2", -30, 30},
	} {
		check(w.name, window(w.dx, w.obs, w.over, w.unit, w.from, w.to),
			want(func(p *rawPatient) bool { return p.followedBy(w.dx, w.obs, w.over, w.unit, w.from, w.to) }))
	}
	check("no immunization", `{"criteria":{"not":{"immunization":{}}}}`, want(func(p *rawPatient) bool { return !p.immunized }))
	check("born 1950-1969, aged 18+", `{"criteria":{"all":[{"birthYear":{"ge":1950,"lt":1970}},{"age":{"ge":18}}]}}`,
		want(func(p *rawPatient) bool { y := p.birth.Year(); return y >= 1950 && y < 1970 }))
	check("hypertension without a systolic BP > 140 after onset",
		`{"criteria":{"all":[`+cond(hypertension, "dx")+`,{"not":{"observation":{"code":`+code(loinc, systolic)+`,"value":{"gt":140}},"within":{"of":"dx","from":{"days":0}}}}]}}`,
		want(func(p *rawPatient) bool {
			return len(p.dx[hypertension]) > 0 && !p.followedBy(hypertension, systolic, 140, "mm[Hg]", 0, 1<<30)
		}))

	// Hypertension by gender, as a breakdown, against the raw scan.
	q := mustParse(t, `{"criteria":`+cond(hypertension, "dx")+`,"breakdown":["gender"]}`)
	cells, err := ix.Breakdown(q, at, allow)
	if err != nil {
		t.Fatal(err)
	}
	rawCells := map[string]int{}
	for _, p := range raw {
		if len(p.dx[hypertension]) > 0 {
			rawCells[p.gender]++
		}
	}
	for _, c := range cells {
		t.Logf("hypertension breakdown: gender=%s %d", c.Values["gender"], c.Count)
		if rawCells[c.Values["gender"]] != c.Count {
			t.Errorf("hypertension %s: index %d, raw %d", c.Values["gender"], c.Count, rawCells[c.Values["gender"]])
		}
		delete(rawCells, c.Values["gender"])
	}
	if len(rawCells) > 0 {
		t.Errorf("raw cells missing from breakdown: %v", rawCells)
	}
	released, _ := json.Marshal(exact.ReleaseBreakdown(q.Fingerprint(), cells))
	t.Logf("hypertension by gender as released (threshold 11): %s", released)
	ab, _ := ix.Breakdown(mustParse(t, `{"criteria":{"not":{"deceased":true}},"breakdown":["ageBand"]}`), at, allow)
	t.Logf("living patients by age band at %s: %v", at.Format(time.DateOnly), ab)
	rel, _ := json.Marshal(exact.ReleaseBreakdown("", ab))
	t.Logf("  as released: %s", rel)
}

func BenchmarkCount(b *testing.B) {
	ix := syntheaIndex(b)
	for _, bm := range []struct{ name, query string }{
		{"diabetes by gender", `{"criteria":{"all":[{"condition":{"code":` + code(snomed, diabetes) + `}},{"gender":"female"}]}}`},
		{"temporal", `{"criteria":{"all":[{"condition":{"code":` + code(snomed, diabetes) + `},"as":"dx"},{"observation":{"code":` + code(loinc, hba1c) + `,"value":{"gt":6.5},"unit":"%"},"within":{"of":"dx","from":{"days":0},"to":{"days":365}}}]}}`},
		{"not immunized, age 18+", `{"criteria":{"all":[{"not":{"immunization":{}}},{"age":{"ge":18}}]}}`},
	} {
		q := mustParse(b, bm.query)
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				ix.Count(q, at, allow)
			}
		})
	}
	q := mustParse(b, `{"criteria":{"condition":{"code":`+code(snomed, diabetes)+`}},"breakdown":["gender","ageBand"]}`)
	b.Run("breakdown gender x ageBand", func(b *testing.B) {
		for b.Loop() {
			if _, err := ix.Breakdown(q, at, allow); err != nil {
				b.Fatal(err)
			}
		}
	})
}
