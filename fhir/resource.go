package fhir

import (
	"strconv"
	"strings"
	"time"
)

// InstantLayout formats meta.lastUpdated: a FHIR instant in UTC with
// microseconds, the precision the vault stores.
const InstantLayout = "2006-01-02T15:04:05.000000Z07:00"

// ID returns the resource's id element, or "".
func (r *Resource) ID() string {
	id, _ := r.Tree["id"].(string)
	return id
}

// SetVersion sets the server-owned parts of a stored version: id,
// meta.versionId and meta.lastUpdated. Other meta elements (profile,
// security, tag) are the client's and stay as sent.
func (r *Resource) SetVersion(id string, version int64, lastUpdated time.Time) {
	r.Tree["id"] = id
	meta, _ := r.Tree["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		r.Tree["meta"] = meta
	}
	meta["versionId"] = strconv.FormatInt(version, 10)
	meta["lastUpdated"] = lastUpdated.UTC().Format(InstantLayout)
	// An extension on the replaced primitives would describe the client's
	// values, not ours.
	delete(meta, "_versionId")
	delete(meta, "_lastUpdated")
}

// Tombstone is the tree committed for a deletion: it says which resource
// version was deleted and when, and nothing else.
func Tombstone(typ, id string, version int64, at time.Time) map[string]any {
	return map[string]any{
		"resourceType": typ,
		"id":           id,
		"deleted":      true,
		"meta": map[string]any{
			"versionId":   strconv.FormatInt(version, 10),
			"lastUpdated": at.UTC().Format(InstantLayout),
		},
	}
}

// RewriteReferences calls fn for every Reference.reference string in the
// tree, at any depth (contained resources and extensions included), with a
// FHIRPath-like path of the element, and stores what fn returns. The walk
// stops at the first error.
func RewriteReferences(tree map[string]any, path string, fn func(path, ref string) (string, error)) error {
	return rewrite(tree, path, fn)
}

func rewrite(v any, path string, fn func(path, ref string) (string, error)) error {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			p := path + "." + k
			if k == "reference" {
				if s, ok := child.(string); ok {
					ns, err := fn(p, s)
					if err != nil {
						return err
					}
					x[k] = ns
					continue
				}
			}
			if err := rewrite(child, p, fn); err != nil {
				return err
			}
		}
	case []any:
		for i, child := range x {
			if err := rewrite(child, path+"["+strconv.Itoa(i)+"]", fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// compartmentFields are the elements, in order of preference, whose
// reference names the patient a resource is about (the R4 Patient
// compartment definition, reduced to the elements that hold a single
// patient).
var compartmentFields = []string{"patient", "subject", "beneficiary", "individual", "who"}

// PatientCompartment returns "Patient/<id>" for the patient a resource
// belongs to, or "" when it belongs to none (Organization, Practitioner...).
// Call it after references are resolved to server ids.
func PatientCompartment(typ string, tree map[string]any) string {
	if typ == "Patient" {
		if id, _ := tree["id"].(string); id != "" {
			return "Patient/" + id
		}
		return ""
	}
	for _, f := range compartmentFields {
		ref, ok := tree[f].(map[string]any)
		if !ok {
			continue
		}
		s, _ := ref["reference"].(string)
		if id, ok := strings.CutPrefix(s, "Patient/"); ok && id != "" && !strings.Contains(id, "/") {
			return "Patient/" + id
		}
	}
	return ""
}

// Identifier is one Identifier element's system and value.
type Identifier struct {
	System, Value string
}

// Identifiers returns the resource's top-level identifiers that have a value.
func Identifiers(tree map[string]any) []Identifier {
	var out []Identifier
	switch x := tree["identifier"].(type) {
	case []any:
		for _, e := range x {
			if id, ok := identifier(e); ok {
				out = append(out, id)
			}
		}
	case map[string]any: // a few resources have a single identifier
		if id, ok := identifier(x); ok {
			out = append(out, id)
		}
	}
	return out
}

func identifier(v any) (Identifier, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return Identifier{}, false
	}
	val, _ := m["value"].(string)
	sys, _ := m["system"].(string)
	return Identifier{System: sys, Value: val}, val != ""
}
