package access

import (
	"encoding/json"
	"fmt"

	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// ResourceOf describes a stored version to the policy: type, id, security
// labels, codes and its clinically relevant date. No values beyond codes.
func ResourceOf(v vault.Version) (policy.ResourceRef, error) {
	var tree map[string]any
	if err := json.Unmarshal(v.Body, &tree); err != nil {
		return policy.ResourceRef{}, fmt.Errorf("decode stored version: %w", err)
	}
	return Facts(v.Type, v.ID, tree), nil
}

// codeElements are the elements whose codings Consent.provision.code
// matches: what the resource is about.
var codeElements = []string{"code", "medicationCodeableConcept", "vaccineCode", "type"}

// dateElements are tried in order for the date provision.dataPeriod is
// compared with: when the clinical fact happened, not when it was stored.
var dateElements = []struct{ name, sub string }{
	{"effectiveDateTime", ""}, {"effectivePeriod", "start"}, {"effectiveInstant", ""},
	{"onsetDateTime", ""}, {"onsetPeriod", "start"}, {"performedDateTime", ""}, {"performedPeriod", "start"},
	{"occurrenceDateTime", ""}, {"occurrencePeriod", "start"}, {"authoredOn", ""}, {"recordedDate", ""},
	{"issued", ""}, {"period", "start"}, {"billablePeriod", "start"}, {"date", ""}, {"created", ""},
}

// Facts describes a resource tree to the policy.
func Facts(typ, id string, tree map[string]any) policy.ResourceRef {
	r := policy.ResourceRef{Type: typ, ID: id, Reference: typ + "/" + id}
	if meta, ok := tree["meta"].(map[string]any); ok {
		r.SecurityLabels = codings(meta["security"])
	}
	for _, name := range codeElements {
		if cc, ok := tree[name].(map[string]any); ok {
			r.Codes = append(r.Codes, codings(cc["coding"])...)
		}
	}
	for _, de := range dateElements {
		var s string
		if de.sub == "" {
			s, _ = tree[de.name].(string)
		} else if m, ok := tree[de.name].(map[string]any); ok {
			s, _ = m[de.sub].(string)
		}
		if s != "" {
			r.Date = s
			break
		}
	}
	return r
}

func codings(v any) []policy.Coding {
	list, _ := v.([]any)
	var out []policy.Coding
	for _, e := range list {
		m, _ := e.(map[string]any)
		code, _ := m["code"].(string)
		if code == "" {
			continue
		}
		system, _ := m["system"].(string)
		out = append(out, policy.Coding{System: system, Code: code})
	}
	return out
}
