package deid

import (
	"encoding/json"
	"math"
	"strconv"
)

// personResources are the resource types that are about the person
// themselves: a birth date removed from one of them is replaced by the
// AgeBandURL "90+" extension.
var personResources = map[string]bool{"Patient": true, "RelatedPerson": true, "Person": true, "Practitioner": true}

// ageCodes are the Observation codes whose value is a person's age.
var ageCodes = map[string]map[string]bool{
	systemLOINC: {
		"30525-0": true, // Age
		"21612-7": true, // Age - Reported
		"29553-5": true, // Age calculated
		"21611-9": true, // Age - estimated
		"63900-5": true, // Current age or age at death
		"39016-1": true, // Age at death
		"35659-2": true, // Age at specimen collection
	},
	systemSNOMED: {
		"424144002": true, // Current chronological age
		"397659008": true, // Age
	},
}

// birthCodes are the Observation codes whose value is a birth date.
var birthCodes = map[string]map[string]bool{
	systemLOINC:  {"21112-8": true},   // Birth date
	systemSNOMED: {"184099003": true}, // Date of birth
}

// hasCode reports whether a CodeableConcept has a coding of codes.
func hasCode(concept any, codes map[string]map[string]bool) bool {
	c, _ := concept.(map[string]any)
	found := false
	forEachObject(c["coding"], func(coding map[string]any) {
		system, _ := coding["system"].(string)
		code, _ := coding["code"].(string)
		found = found || codes[system][code]
	})
	return found
}

// quantityYears returns the years a Quantity (or Age) states; a unit that
// is not a UCUM unit of time counts as more than 89 years (fail closed),
// no unit as years.
func quantityYears(q map[string]any) (float64, bool) {
	n, ok := q["value"].(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, false
	}
	code, _ := q["code"].(string)
	if code == "" {
		return f, true
	}
	factor, known := ageUnits[code]
	if !known {
		return math.Inf(1), true
	}
	return f / factor, true
}

// age90Quantity is the Age ">= 90 years".
func age90Quantity() map[string]any {
	return map[string]any{"value": json.Number("90"), "comparator": ">=", "unit": "years", "system": systemUCUM, "code": "a"}
}

// ageIntegerOver89 reports whether an integer age (in years) is over 89.
func (w *walker) ageIntegerOver89(n json.Number) bool {
	f, err := strconv.ParseFloat(string(n), 64)
	return err == nil && f > 89
}

// ageRange90 generalizes a Range of ages with a bound over 89 years to
// "90 years or more" (low 90 a, no high), then walks what is left.
func (w *walker) ageRange90(cst *state, r *compiledRule, in map[string]any) map[string]any {
	over := false
	for _, k := range []string{"low", "high"} {
		if q, ok := in[k].(map[string]any); ok {
			if y, ok := quantityYears(q); ok && y > 89 {
				over = true
			}
		}
	}
	if over {
		m := make(map[string]any, len(in))
		for k, v := range in {
			if k != "high" && k != "low" {
				m[k] = v
			}
		}
		m["low"] = map[string]any{"value": json.Number("90"), "unit": "years", "system": systemUCUM, "code": "a"}
		w.record(r.ID, MethodGeneralize)
		in = m
	}
	return w.object(cst, in, nil)
}

// relativeOver89 reports whether the relative of the FamilyMemberHistory
// being walked may be over 89 by their age or age at death.
func (w *walker) relativeOver89() bool {
	for _, k := range []string{"ageAge", "deceasedAge"} {
		if q, ok := w.rootIn[k].(map[string]any); ok {
			if y, ok := quantityYears(q); ok && y > 89 {
				return true
			}
		}
	}
	for _, k := range []string{"ageRange", "deceasedRange"} {
		if rg, ok := w.rootIn[k].(map[string]any); ok {
			for _, b := range []string{"low", "high"} {
				if q, ok := rg[b].(map[string]any); ok {
					if y, ok := quantityYears(q); ok && y > 89 {
						return true
					}
				}
			}
		}
	}
	return false
}
