package cohort

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
)

// Pseudonymous keys as the gateway would pass them.
const (
	p1, p2, p3, p4, p5 = "pat-1", "pat-2", "pat-3", "pat-4", "pat-5"
	snomed             = "http://snomed.info/sct"
	loinc              = "http://loinc.org"
	rxnorm             = "http://www.nlm.nih.gov/research/umls/rxnorm"
	diabetes           = "44054006"
	hba1c              = "4548-4"
)

var at = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

func tree(t testing.TB, s string) map[string]any {
	t.Helper()
	v, err := fhir.Decode([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v.(map[string]any)
}

func put(t testing.TB, ix *Index, key, patient, s string) {
	t.Helper()
	tr := tree(t, s)
	if err := ix.Put(key, patient, tr["resourceType"].(string), tr); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func patientJSON(gender, birth, zip, race string, extra string) string {
	s := `{"resourceType":"Patient","gender":"` + gender + `"`
	if birth != "" {
		s += `,"birthDate":"` + birth + `"`
	}
	if zip != "" {
		s += `,"address":[{"postalCode":"` + zip + `"}]`
	}
	exts := []string{}
	if race != "" {
		exts = append(exts, `{"url":"`+RaceURL+`","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"`+race+`"}},{"url":"text","valueString":"x"}]}`)
	}
	if birth == "" {
		exts = append(exts, `{"url":"`+AgeBandURL+`","valueString":"90+"}`)
	}
	if len(exts) > 0 {
		s += `,"extension":[` + strings.Join(exts, ",") + `]`
	}
	return s + extra + `}`
}

func conditionJSON(code, onset, status string) string {
	return fmt.Sprintf(`{"resourceType":"Condition","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":%q}]},"code":{"coding":[{"system":%q,"code":%q}]},"onsetDateTime":%q}`, status, snomed, code, onset)
}

func observationJSON(code string, value float64, unit, when string) string {
	return fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":%q,"code":%q}]},"effectiveDateTime":%q,"valueQuantity":{"value":%v,"unit":%q,"system":"http://unitsofmeasure.org","code":%q}}`, loinc, code, when, value, unit, unit)
}

// fixture builds a small de-identified population:
//
//	p1 female 1963 021 white   diabetes 2010-03-01, HbA1c 6.0% 2009-01-01, 7.0% 2010-06-01, metformin
//	p2 male   1990 100         diabetes 2012-01-01T23:30-05:00 (UTC 01-02), HbA1c 7% 2012-01-02, 8 mmol/mol
//	p3 female 90+  021         hypertension, HbA1c 9% 2015-01-01
//	p4 male   2000 deceased    encounter AMB, procedure
//	p5 (no Patient resource)   diabetes 2020-01-01
func fixture(t testing.TB) *Index {
	ix := NewIndex()
	put(t, ix, "P1", p1, patientJSON("female", "1963", "021", "2106-3", ""))
	put(t, ix, "P2", p2, patientJSON("male", "1990", "100", "", ""))
	put(t, ix, "P3", p3, patientJSON("female", "", "021", "", ""))
	put(t, ix, "P4", p4, patientJSON("male", "2000", "", "", `,"deceasedBoolean":true`))
	put(t, ix, "c1", p1, conditionJSON(diabetes, "2010-03-01", "active"))
	put(t, ix, "c2", p2, conditionJSON(diabetes, "2012-01-01T23:30:00-05:00", "resolved"))
	put(t, ix, "c3", p3, conditionJSON("38341003", "2014-01-01", "active"))
	put(t, ix, "c5", p5, conditionJSON(diabetes, "2020-01-01", "active"))
	put(t, ix, "o1a", p1, observationJSON(hba1c, 6.0, "%", "2009-01-01T10:00:00Z"))
	put(t, ix, "o1b", p1, observationJSON(hba1c, 7.0, "%", "2010-06-01"))
	put(t, ix, "o2a", p2, observationJSON(hba1c, 7, "%", "2012-01-02T08:00:00+00:00"))
	put(t, ix, "o2b", p2, observationJSON(hba1c, 8, "mmol/mol", "2013-01-02"))
	put(t, ix, "o3", p3, observationJSON(hba1c, 9, "%", "2015-01-01"))
	put(t, ix, "m1", p1, `{"resourceType":"MedicationRequest","status":"active","medicationCodeableConcept":{"coding":[{"system":"`+rxnorm+`","code":"860975"}]},"authoredOn":"2010-03-01"}`)
	put(t, ix, "e4", p4, `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"type":[{"coding":[{"system":"`+snomed+`","code":"185349003"}]}],"period":{"start":"2001-01-01T00:00:00Z"}}`)
	put(t, ix, "pr4", p4, `{"resourceType":"Procedure","status":"completed","code":{"coding":[{"system":"`+snomed+`","code":"430193006"}]},"performedPeriod":{"start":"2002-01-01T00:00:00Z"}}`)
	put(t, ix, "claim4", p4, `{"resourceType":"Claim","status":"active"}`)
	return ix
}

func allow(string) bool { return true }

func TestPutDeleteRemove(t *testing.T) {
	ix := fixture(t)
	if got, want := ix.Stats(), (Stats{Patients: 5, Resources: 17, Facts: 12}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if got, want := ix.Resources(p4), []string{"P4", "claim4", "e4", "pr4"}; !slices.Equal(got, want) {
		t.Errorf("Resources(p4) = %v, want %v", got, want)
	}
	dx := mustParse(t, `{"criteria":{"condition":{"code":[{"system":"`+snomed+`","code":"`+diabetes+`"}]}}}`)
	if got, want := ix.Match(dx, at, allow), []string{p1, p2, p5}; !slices.Equal(got, want) {
		t.Fatalf("diabetes = %v, want %v", got, want)
	}

	// Replace: c2 becomes hypertension, so p2 leaves the diabetes cohort.
	put(t, ix, "c2", p2, conditionJSON("38341003", "2012-01-01", "active"))
	if got, want := ix.Match(dx, at, allow), []string{p1, p5}; !slices.Equal(got, want) {
		t.Errorf("after replace = %v, want %v", got, want)
	}
	// Move: c2 now belongs to p4.
	put(t, ix, "c2", p4, conditionJSON(diabetes, "2012-01-01", "active"))
	if got, want := ix.Match(dx, at, allow), []string{p1, p4, p5}; !slices.Equal(got, want) {
		t.Errorf("after move = %v, want %v", got, want)
	}
	if slices.Contains(ix.Resources(p2), "c2") {
		t.Error("moved resource still listed under its old patient")
	}
	ix.Delete("c2")
	ix.Delete("c2") // twice is fine
	ix.Delete("no such key")
	if got, want := ix.Match(dx, at, allow), []string{p1, p5}; !slices.Equal(got, want) {
		t.Errorf("after delete = %v, want %v", got, want)
	}
	// Deleting the only resource of p5 drops the patient.
	ix.Delete("c5")
	if got := ix.Stats().Patients; got != 4 {
		t.Errorf("patients after deleting p5's only resource = %d, want 4", got)
	}
	// Deleting a Patient resource forgets the demographics, not the patient.
	female := mustParse(t, `{"criteria":{"gender":"female"}}`)
	ix.Delete("P1")
	if got, want := ix.Match(female, at, allow), []string{p3}; !slices.Equal(got, want) {
		t.Errorf("female after deleting P1 = %v, want %v", got, want)
	}
	if got, want := ix.Match(dx, at, allow), []string{p1}; !slices.Equal(got, want) {
		t.Errorf("diabetes after deleting P1 = %v, want %v", got, want)
	}

	ix.RemovePatient(p1)
	ix.RemovePatient("nobody")
	if got := ix.Match(dx, at, allow); len(got) != 0 {
		t.Errorf("diabetes after erasing p1 = %v", got)
	}
	if got := ix.Resources(p1); got != nil {
		t.Errorf("Resources of erased patient = %v", got)
	}
	everyone := mustParse(t, `{"criteria":{"not":{"gender":"nobody"}}}`)
	if got, want := ix.Match(everyone, at, allow), []string{p2, p3, p4}; !slices.Equal(got, want) {
		t.Errorf("everyone = %v, want %v", got, want)
	}
	// A new patient reuses p1's number without inheriting anything.
	put(t, ix, "c6", "pat-6", conditionJSON("1", "2020-01-01", "active"))
	if got := ix.Count(female, at, allow); got != 1 {
		t.Errorf("female count with reused number = %d, want 1", got)
	}
	for _, k := range []string{"P2", "c3", "o2a", "o2b", "o3", "P3", "P4", "e4", "pr4", "claim4", "c6"} {
		ix.Delete(k)
	}
	if got := ix.Stats(); got != (Stats{}) {
		t.Errorf("Stats after deleting everything = %+v", got)
	}
}

func TestPutRejects(t *testing.T) {
	ix := NewIndex()
	tr := tree(t, `{"resourceType":"Condition"}`)
	for _, tt := range []struct{ key, patient, typ string }{
		{"", "p", "Condition"}, {"k", "", "Condition"}, {"k", "p", ""}, {"k", "p", "Observation"},
	} {
		if err := ix.Put(tt.key, tt.patient, tt.typ, tr); !errors.Is(err, ErrBadResource) {
			t.Errorf("Put(%q, %q, %q) = %v, want ErrBadResource", tt.key, tt.patient, tt.typ, err)
		}
	}
	if err := ix.Put("k", "p", "Condition", nil); !errors.Is(err, ErrBadResource) {
		t.Errorf("Put(nil tree) = %v", err)
	}
	// Malformed parts are skipped, not fatal.
	put(t, ix, "k", "p", `{"resourceType":"Observation","code":"x","valueQuantity":{"value":"7"},"effectiveDateTime":"yesterday","component":[1,{"code":{"coding":[{"system":"s","code":"c"}]}}]}`)
	if got := ix.Stats(); got != (Stats{Patients: 1, Resources: 1, Facts: 2}) {
		t.Errorf("Stats = %+v", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	ix := fixture(t)
	q := mustParse(t, diabetesQuery)
	dx := mustParse(t, `{"criteria":{"condition":{"code":[{"system":"`+snomed+`","code":"`+diabetes+`"}]}},"breakdown":["gender"]}`)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("w%d-%d", w, i)
				put(t, ix, key, fmt.Sprintf("pw%d", i%7), conditionJSON(diabetes, "2020-01-01", "active"))
				if i%3 == 0 {
					ix.Delete(key)
				}
				if i%50 == 0 {
					ix.RemovePatient(fmt.Sprintf("pw%d", i%7))
				}
			}
		})
		wg.Go(func() {
			for range 200 {
				ix.Count(q, at, allow)
				if _, err := ix.Breakdown(dx, at, func(p string) bool { ix.Stats(); return true }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
