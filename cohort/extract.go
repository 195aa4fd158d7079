package cohort

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Extension URLs read from Patient.
const (
	RaceURL      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	EthnicityURL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
	AgeBandURL   = "https://fhiranchor.org/fhir/StructureDefinition/age-band"
)

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func arr(v any) []any          { a, _ := v.([]any); return a }
func text(v any) string        { s, _ := v.(string); return s }

// extractDemographics reads a de-identified Patient.
func extractDemographics(tree map[string]any) demographics {
	var d demographics
	d.gender = text(tree["gender"])
	if bd := text(tree["birthDate"]); len(bd) >= 4 {
		if y, err := strconv.Atoi(bd[:4]); err == nil && y > 0 {
			d.birthYear = y
		}
	}
	for _, e := range arr(tree["extension"]) {
		ext := obj(e)
		switch text(ext["url"]) {
		case AgeBandURL:
			if text(ext["valueString"]) == "90+" {
				d.over89, d.birthYear = true, 0
			}
		case RaceURL:
			d.race = ombCodes(ext)
		case EthnicityURL:
			d.ethnicity = ombCodes(ext)
		}
	}
	if addr := arr(tree["address"]); len(addr) > 0 {
		// De-identified data carries 3 digits; a longer ZIP (test data) is
		// cut to its first 3, which is what Safe Harbor keeps.
		if pc := text(obj(addr[0])["postalCode"]); len(pc) >= 3 && digits(pc[:3]) {
			d.zip3 = pc[:3]
		}
	}
	if b, ok := tree["deceasedBoolean"].(bool); ok {
		d.deceased = b
	} else if _, ok := tree["deceasedDateTime"]; ok {
		d.deceased = true
	}
	return d
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func ombCodes(ext map[string]any) []string {
	var out []string
	for _, e := range arr(ext["extension"]) {
		sub := obj(e)
		if text(sub["url"]) != "ombCategory" {
			continue
		}
		if c := text(obj(sub["valueCoding"])["code"]); c != "" {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// extractFacts reads the clinical facts of a resource of type typ.
func extractFacts(typ string, t map[string]any) []rawFact {
	var f rawFact
	switch typ {
	case "Condition":
		f.kind = kindCondition
		f.codes = concept(t["code"])
		f.day, f.hasDay = firstDay(t["onsetDateTime"], obj(t["onsetPeriod"])["start"], t["recordedDate"])
		if cs := arr(obj(t["clinicalStatus"])["coding"]); len(cs) > 0 {
			f.status = text(obj(cs[0])["code"])
		}
		return []rawFact{f}
	case "Observation":
		f.kind = kindObservation
		f.codes = concept(t["code"])
		f.day, f.hasDay = firstDay(t["effectiveDateTime"], obj(t["effectivePeriod"])["start"], t["effectiveInstant"], t["issued"])
		f.status = text(t["status"])
		quantity(&f, t)
		out := []rawFact{f}
		for _, c := range arr(t["component"]) {
			comp := obj(c)
			cf := rawFact{kind: kindObservation, day: f.day, hasDay: f.hasDay, status: f.status, codes: concept(comp["code"])}
			quantity(&cf, comp)
			if len(cf.codes) > 0 {
				out = append(out, cf)
			}
		}
		return out
	case "MedicationRequest":
		f.kind = kindMedication
		f.codes = concept(t["medicationCodeableConcept"])
		f.day, f.hasDay = firstDay(t["authoredOn"])
		f.status = text(t["status"])
		return []rawFact{f}
	case "Encounter":
		f.kind = kindEncounter
		for _, ty := range arr(t["type"]) {
			f.codes = append(f.codes, concept(ty)...)
		}
		if c := coding(t["class"]); c != "" {
			f.codes = append(f.codes, c)
		}
		slices.Sort(f.codes)
		f.codes = slices.Compact(f.codes)
		f.day, f.hasDay = firstDay(obj(t["period"])["start"])
		f.status = text(t["status"])
		return []rawFact{f}
	case "Procedure":
		f.kind = kindProcedure
		f.codes = concept(t["code"])
		f.day, f.hasDay = firstDay(t["performedDateTime"], obj(t["performedPeriod"])["start"])
		f.status = text(t["status"])
		return []rawFact{f}
	case "Immunization":
		f.kind = kindImmunization
		f.codes = concept(t["vaccineCode"])
		f.day, f.hasDay = firstDay(t["occurrenceDateTime"])
		f.status = text(t["status"])
		return []rawFact{f}
	case "DiagnosticReport":
		f.kind = kindReport
		f.codes = concept(t["code"])
		f.day, f.hasDay = firstDay(t["effectiveDateTime"], obj(t["effectivePeriod"])["start"], t["issued"])
		f.status = text(t["status"])
		return []rawFact{f}
	}
	return nil
}

// quantity reads value[x] of an Observation or one of its components.
func quantity(f *rawFact, t map[string]any) {
	if q := obj(t["valueQuantity"]); q != nil {
		if n, ok := q["value"].(json.Number); ok {
			if v, err := strconv.ParseFloat(string(n), 64); err == nil && !math.IsInf(v, 0) {
				f.value, f.hasValue = v, true
			}
		}
		f.unit, f.unitCode = text(q["unit"]), text(q["code"])
	}
	if cc := t["valueCodeableConcept"]; cc != nil {
		f.valueCode = concept(cc)
	}
}

// concept returns the codings of a CodeableConcept as sorted "system|code".
func concept(v any) []string {
	var out []string
	for _, c := range arr(obj(v)["coding"]) {
		if s := coding(c); s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func coding(v any) string {
	c := obj(v)
	code := text(c["code"])
	if code == "" {
		return ""
	}
	return text(c["system"]) + "|" + code
}

// firstDay returns the day of the first of vs that is a FHIR date, dateTime
// or instant.
func firstDay(vs ...any) (int32, bool) {
	for _, v := range vs {
		if d, ok := parseDay(text(v)); ok {
			return d, true
		}
	}
	return 0, false
}

// parseDay turns a FHIR date ("2019", "2019-05", "2019-05-31") or dateTime
// with zone into a day number (days since 1970-01-01) of its UTC instant. A
// partial date stands for its first day.
func parseDay(s string) (int32, bool) {
	var t time.Time
	var err error
	switch {
	case len(s) == 4:
		t, err = time.Parse("2006", s)
	case len(s) == 7:
		t, err = time.Parse("2006-01", s)
	case len(s) == 10:
		t, err = time.Parse(time.DateOnly, s)
	case strings.Contains(s, "T"):
		t, err = time.Parse(time.RFC3339Nano, s)
	default:
		return 0, false
	}
	if err != nil {
		return 0, false
	}
	return dayOf(t), true
}

// dayOf returns the number of the UTC day of t since 1970-01-01.
func dayOf(t time.Time) int32 {
	sec := t.Unix()
	d := sec / 86400
	if sec%86400 < 0 {
		d--
	}
	return int32(d)
}
