package deid

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Standard terminologies: a Coding.display of one of these systems, with a
// well-formed code, is the published name of a concept, not something a
// clinician typed, so the vet method keeps it when the scrubber finds
// nothing in it.
const (
	systemSNOMED = "http://snomed.info/sct"
	systemLOINC  = "http://loinc.org"
	systemRxNorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
	systemUCUM   = "http://unitsofmeasure.org"
	systemCDCREC = "urn:oid:2.16.840.1.113883.6.238" // CDC race & ethnicity
)

var (
	icd10Code = regexp.MustCompile(`^[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$`)
	icd9Code  = regexp.MustCompile(`^(?:[0-9]{3}(?:\.[0-9]{1,2})?|V[0-9]{2}(?:\.[0-9]{1,2})?|E[0-9]{3}(?:\.[0-9])?|[0-9]{2}(?:\.[0-9]{1,2})?)$`)
	ndcCode   = regexp.MustCompile(`^(?:[0-9]{4,5}-[0-9]{3,4}-[0-9]{1,2}|[0-9]{10,11})$`)
	cdcrec    = regexp.MustCompile(`^[0-9]{4}-[0-9]$`)
	bcp47     = regexp.MustCompile(`^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*$`)
	loincCode = regexp.MustCompile(`^[0-9]{1,7}-[0-9]$`)
	fhirCS    = regexp.MustCompile(`^http://hl7\.org/fhir/(?:us/core/CodeSystem/)?[a-z][a-z0-9\-]*$`)
)

// standardCode reports whether system is a standard terminology and code a
// well-formed code of it.
func standardCode(system, code string) bool {
	switch system {
	case systemSNOMED:
		return len(code) >= 6 && len(code) <= 18 && digits(code) && code[0] != '0' && verhoeff(code)
	case systemLOINC:
		return loincCode.MatchString(code) && luhn(code[:len(code)-2]+code[len(code)-1:])
	case systemRxNorm:
		return len(code) <= 12 && digits(code)
	case "http://hl7.org/fhir/sid/cvx":
		return len(code) <= 4 && digits(code)
	case "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm":
		return icd10Code.MatchString(code)
	case "http://hl7.org/fhir/sid/icd-9-cm":
		return icd9Code.MatchString(code)
	case "http://hl7.org/fhir/sid/ndc":
		return ndcCode.MatchString(code)
	case systemUCUM:
		return codeToken(code)
	case systemCDCREC:
		return cdcrec.MatchString(code)
	case "urn:ietf:bcp:47":
		return bcp47.MatchString(code)
	}
	if strings.HasPrefix(system, "http://terminology.hl7.org/CodeSystem/") && len(system) > len("http://terminology.hl7.org/CodeSystem/") ||
		fhirCS.MatchString(system) && !strings.HasPrefix(system, "http://hl7.org/fhir/sid") {
		return codeToken(code)
	}
	return false
}

// codeToken reports whether code is a FHIR code without whitespace.
func codeToken(code string) bool {
	if code == "" || len(code) > 64 || !utf8.ValidString(code) {
		return false
	}
	for _, r := range code {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// Verhoeff's dihedral-group check digit, which SNOMED CT identifiers end
// with.
var (
	verhoeffD = [10][10]byte{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5}, {2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
		{3, 4, 0, 1, 2, 8, 9, 5, 6, 7}, {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
		{6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3}, {8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
	}
	verhoeffP = [8][10]byte{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4}, {5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
		{8, 9, 1, 6, 0, 4, 3, 5, 2, 7}, {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
		{2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
	}
)

// verhoeff reports whether a digit string ends with its Verhoeff check
// digit.
func verhoeff(s string) bool {
	c := byte(0)
	for i := 0; i < len(s); i++ {
		c = verhoeffD[c][verhoeffP[i%8][s[len(s)-1-i]-'0']]
	}
	return c == 0
}

// luhn reports whether a digit string ends with its mod-10 (Luhn) check
// digit, which is what LOINC's check digit is.
func luhn(s string) bool {
	sum := 0
	for i := 0; i < len(s); i++ {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// hl7Canonical reports whether a canonical or uri value points at a
// definition HL7 publishes (a profile, a value set, a code system), which
// says nothing about the patient.
func hl7Canonical(s string) bool {
	if strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for _, p := range []string{"http://hl7.org/fhir/", "http://terminology.hl7.org/"} {
		if strings.HasPrefix(s, p) && len(s) > len(p) {
			return true
		}
	}
	return false
}

// hl7Extension reports whether an extension url is an HL7-published
// definition: the core extensions, US Core and the other US
// implementation guides, and terminology.hl7.org.
func hl7Extension(url string) bool {
	if strings.ContainsAny(url, " \t\r\n") {
		return false
	}
	for _, p := range []string{"http://hl7.org/fhir/StructureDefinition/", "http://hl7.org/fhir/us/", "http://terminology.hl7.org/"} {
		if strings.HasPrefix(url, p) && len(url) > len(p) {
			return true
		}
	}
	return false
}

// fold is s in lower case with runs of white space made one space, for
// comparing a CodeableConcept.text with its codings' displays.
func fold(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// maxDisplay bounds the displays the vet method keeps; published displays
// are far shorter.
const maxDisplay = 512

// displayKept reports whether the vet method keeps the display of coding:
// a standard terminology, a well-formed code, and a display the scrubber
// leaves as it is.
func (w *walker) displayKept(coding map[string]any) bool {
	system, _ := coding["system"].(string)
	code, _ := coding["code"].(string)
	display, _ := coding["display"].(string)
	if strings.TrimSpace(display) == "" || len(display) > maxDisplay || !standardCode(system, code) || hasPersonTitle(display) {
		return false
	}
	return w.scrub(display) == display
}

// personTitle finds a title before a name ("Dr. Okafor"), which no
// published display has.
var personTitle = regexp.MustCompile(`(?:^|[^\pL\pN])(?:Dr|Mr|Mrs|Ms|Mx|Prof|Sr|Fr)\.?\s+\p{Lu}`)

// titleWords are the titles personTitle looks for ("Mrs" begins with
// "Mr"): a text that holds none of them cannot match it, and nearly no
// display does, so the expression (a sixth of vetting displays) is
// skipped.
var titleWords = [...]string{"Dr", "Mr", "Ms", "Mx", "Prof", "Sr", "Fr"}

// hasPersonTitle reports whether personTitle matches s.
func hasPersonTitle(s string) bool {
	for _, w := range titleWords {
		if strings.Contains(s, w) {
			return personTitle.MatchString(s)
		}
	}
	return false
}

// textKept reports whether the vet method keeps the text of concept: it
// repeats the display of one of its codings that is kept.
func (w *walker) textKept(concept map[string]any, text string) bool {
	ft := fold(text)
	if ft == "" {
		return false
	}
	kept := false
	forEachObject(concept["coding"], func(c map[string]any) {
		if d, _ := c["display"].(string); !kept && fold(d) == ft && w.displayKept(c) {
			kept = true
		}
	})
	return kept
}

// unitKept reports whether the vet method keeps a Quantity.unit: it is the
// quantity's UCUM code itself or a unit of time, and the scrubber finds
// nothing in it.
func (w *walker) unitKept(q map[string]any, unit string) bool {
	code, _ := q["code"].(string)
	system, _ := q["system"].(string)
	switch {
	case system == systemUCUM && unit == code && codeToken(code):
	case timeUnits[strings.ToLower(unit)]:
	default:
		return false
	}
	return w.scrub(unit) == unit
}

var timeUnits = map[string]bool{
	"year": true, "years": true, "yr": true, "yrs": true, "month": true, "months": true, "week": true, "weeks": true,
	"day": true, "days": true, "hour": true, "hours": true, "minute": true, "minutes": true, "second": true, "seconds": true,
	"min": true, "h": true, "d": true, "wk": true, "mo": true, "a": true, "s": true,
}
