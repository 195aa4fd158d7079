package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// MaxProvisions bounds the provisions (at all depths) one Consent may hold;
// CompileConsent rejects a Consent with more, as a guard against pathological input.
const MaxProvisions = 1000

// ErrInvalidConsent is wrapped by CompileConsent's errors: the Consent does
// not have the JSON shape R4 prescribes for a field the policy reads.
var ErrInvalidConsent = errors.New("invalid consent")

// CompiledConsent is one Consent resource flattened, once, into the form the
// policy reads as an element of input.consents (described in rego/consent.rego):
// codings become "system|code" keys in sets, nested provisions a flat list with
// their chain of ancestors, and period bounds Unix nanoseconds. It is immutable
// and safe to share between goroutines and decisions; the consent-state store
// can keep it beside the Consent version it was compiled from.
type CompiledConsent struct {
	// ID and VersionID are the Consent's id and meta.versionId ("" when absent).
	ID        string
	VersionID string
	// ResourceScoped says that a provision states a criterion about the
	// resource beyond its type (code, data, dataPeriod, securityLabel), so
	// that decisions under this consent can differ between two resources of
	// one type. A search decides once per patient and type, and re-decides
	// each match only when one of the patient's consents is resource-scoped.
	ResourceScoped bool
	// Timed says that a provision states a period, so that decisions
	// under this consent change with the time of the access alone.
	Timed bool
	term  *ast.Term
}

// CompileConsent flattens a decoded FHIR R4 Consent (any status) for Decide. It
// reads only what the policy compares and fails, wrapping ErrInvalidConsent,
// when one of those fields has the wrong JSON type, a period bound is not a
// FHIR date or dateTime, or the Consent holds more than MaxProvisions provisions.
// It keeps no reference to c.
func CompileConsent(c map[string]any) (CompiledConsent, error) {
	cc, err := compileConsent(c)
	if err != nil {
		return CompiledConsent{}, fmt.Errorf("%w: %w", ErrInvalidConsent, err)
	}
	return cc, nil
}

func compileConsent(c map[string]any) (CompiledConsent, error) {
	id, hasID, err := str(c, "id")
	if err != nil {
		return CompiledConsent{}, err
	}
	meta, err := object(c, "meta")
	if err != nil {
		return CompiledConsent{}, err
	}
	version, _, err := str(meta, "versionId")
	if err != nil {
		return CompiledConsent{}, fmt.Errorf("meta.%w", err)
	}
	status, _, err := str(c, "status")
	if err != nil {
		return CompiledConsent{}, err
	}
	scope, err := conceptKeys(c, "scope")
	if err != nil {
		return CompiledConsent{}, err
	}
	patient, err := reference(c, "patient")
	if err != nil {
		return CompiledConsent{}, err
	}
	rule, err := conceptKeys(c, "policyRule")
	if err != nil {
		return CompiledConsent{}, err
	}
	f := flattener{maxDepth: -1}
	if root, ok := c["provision"]; ok {
		p, ok := root.(map[string]any)
		if !ok {
			return CompiledConsent{}, errors.New("provision: not an object")
		}
		if err := f.add(p, nil, "", false, "provision"); err != nil {
			return CompiledConsent{}, err
		}
	}
	obj := ast.NewObject(
		ast.Item(ast.InternedTerm("versionId"), ast.StringTerm(version)),
		ast.Item(ast.InternedTerm("status"), ast.StringTerm(status)),
		ast.Item(ast.InternedTerm("scope"), scope),
		ast.Item(ast.InternedTerm("patient"), ast.StringTerm(patient)),
		ast.Item(ast.InternedTerm("policyRule"), rule),
		ast.Item(ast.InternedTerm("maxDepth"), ast.InternedTerm(f.maxDepth)),
		ast.Item(ast.InternedTerm("provisions"), ast.NewTerm(ast.NewArray(f.terms...))),
	)
	if hasID {
		obj.Insert(ast.InternedTerm("id"), ast.StringTerm(id))
	}
	return CompiledConsent{ID: id, VersionID: version, ResourceScoped: f.scoped, Timed: f.timed, term: ast.NewTerm(obj)}, nil
}

// flattener lists provisions depth first, root first, each with its chain of
// ancestor indices (root first, itself last), its direct children, and its
// type: its own, else the one it inherits from the nearest typed ancestor.
type flattener struct {
	terms    []*ast.Term
	maxDepth int  // of the deepest provision; -1 until the root is added
	scoped   bool // a provision states a resource-level criterion
	timed    bool // a provision states a period
}

// resourceCriteria are the provision criteria that tell resources of one
// type apart (class only tells types apart).
var resourceCriteria = [...]string{"code", "data", "dataPeriod", "securityLabel"}

func (f *flattener) add(p map[string]any, chain []int, inherited string, inherits bool, path string) error {
	if len(f.terms) >= MaxProvisions {
		return fmt.Errorf("more than %d provisions", MaxProvisions)
	}
	idx := len(f.terms)
	chain = append(chain[:len(chain):len(chain)], idx)
	f.maxDepth = max(f.maxDepth, len(chain)-1)
	f.terms = append(f.terms, nil) // reserve idx; filled once the children are known
	typ, typed, err := str(p, "type")
	if err != nil {
		return fmt.Errorf("%s.%w", path, err)
	}
	if !typed {
		typ, typed = inherited, inherits
	}
	crit, err := criteria(p, path)
	if err != nil {
		return err
	}
	for _, k := range resourceCriteria {
		if crit.Get(ast.InternedTerm(k)) != nil {
			f.scoped = true
		}
	}
	if crit.Get(ast.InternedTerm("period")) != nil {
		f.timed = true
	}
	nested, err := array(p, "provision")
	if err != nil {
		return fmt.Errorf("%s.%w", path, err)
	}
	children := make([]*ast.Term, 0, len(nested))
	for j, n := range nested {
		child, ok := n.(map[string]any)
		childPath := path + ".provision[" + strconv.Itoa(j) + "]"
		if !ok {
			return fmt.Errorf("%s: not an object", childPath)
		}
		children = append(children, ast.InternedTerm(len(f.terms)))
		if err := f.add(child, chain, typ, typed, childPath); err != nil {
			return err
		}
	}
	chainTerms := make([]*ast.Term, len(chain))
	for k, a := range chain {
		chainTerms[k] = ast.InternedTerm(a)
	}
	obj := ast.NewObject(
		ast.Item(ast.InternedTerm("path"), ast.StringTerm(path)),
		ast.Item(ast.InternedTerm("depth"), ast.InternedTerm(len(chain)-1)),
		ast.Item(ast.InternedTerm("chain"), ast.NewTerm(ast.NewArray(chainTerms...))),
		ast.Item(ast.InternedTerm("children"), ast.NewTerm(ast.NewArray(children...))),
		ast.Item(ast.InternedTerm("criteria"), ast.NewTerm(crit)),
	)
	if typed {
		obj.Insert(ast.InternedTerm("type"), ast.StringTerm(typ))
	}
	f.terms[idx] = ast.NewTerm(obj)
	return nil
}

// criteria extracts one provision's own criteria. A criterion is present in the
// result exactly when the provision states it (a non-empty list, or a period).
func criteria(p map[string]any, path string) (ast.Object, error) {
	obj := ast.NewObject()
	wrap := func(err error) error { return fmt.Errorf("%s.%w", path, err) }
	for _, field := range [...]string{"period", "dataPeriod"} {
		per, ok, err := period(p, field)
		if err != nil {
			return nil, wrap(err)
		}
		if ok {
			obj.Insert(ast.InternedTerm(field), per)
		}
	}
	actors, err := array(p, "actor")
	if err != nil {
		return nil, wrap(err)
	}
	if len(actors) > 0 {
		refs, roles := ast.NewSet(), ast.NewSet()
		byRole := map[string]ast.Set{} // role coding key -> references
		for k, a := range actors {
			am, ok := a.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s.actor[%d]: not an object", path, k)
			}
			ref, err := object(am, "reference")
			if err != nil {
				return nil, wrap(err)
			}
			r, named, err := str(ref, "reference")
			if err != nil {
				return nil, wrap(err)
			}
			role, err := object(am, "role")
			if err != nil {
				return nil, wrap(err)
			}
			if named {
				refs.Add(ast.StringTerm(r))
			}
			err = eachCoding(role, func(system, code string) {
				if !named {
					// An unnamed actor's role matches the requester's roles (doc.go).
					roles.Add(ast.StringTerm(code))
					return
				}
				// A named actor's role says what it is to the consent (a
				// recipient of a grant, or the data's custodian or author).
				key := system + "|" + code
				if byRole[key] == nil {
					byRole[key] = ast.NewSet()
				}
				byRole[key].Add(ast.StringTerm(r))
			})
			if err != nil {
				return nil, wrap(err)
			}
		}
		byRoleObj := ast.NewObject()
		for key, set := range byRole {
			byRoleObj.Insert(ast.StringTerm(key), ast.NewTerm(set))
		}
		obj.Insert(ast.InternedTerm("actor"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("references"), ast.NewTerm(refs)),
			ast.Item(ast.InternedTerm("roles"), ast.NewTerm(roles)),
			ast.Item(ast.InternedTerm("referencesByRole"), ast.NewTerm(byRoleObj)),
		))
	}
	for _, field := range [...]string{"action", "code"} { // lists of CodeableConcept
		list, err := array(p, field)
		if err != nil {
			return nil, wrap(err)
		}
		if len(list) == 0 {
			continue
		}
		keys := ast.NewSet()
		for k, v := range list {
			cc, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s.%s[%d]: not an object", path, field, k)
			}
			if err := eachCoding(cc, func(system, code string) { keys.Add(codingKey(system, code)) }); err != nil {
				return nil, wrap(err)
			}
		}
		obj.Insert(ast.InternedTerm(field), ast.NewTerm(keys))
	}
	for _, field := range [...]string{"purpose", "class", "securityLabel"} { // lists of Coding
		list, err := array(p, field)
		if err != nil {
			return nil, wrap(err)
		}
		if len(list) == 0 {
			continue
		}
		keys, labels := ast.NewSet(), ast.NewObject()
		for k, v := range list {
			system, code, ok, err := coding(v)
			if err != nil {
				return nil, fmt.Errorf("%s.%s[%d].%w", path, field, k, err)
			}
			if !ok {
				continue
			}
			if field == "securityLabel" {
				// Labels keep their parts: a redact obligation names them.
				labels.Insert(codingKey(system, code), ast.ObjectTerm(
					ast.Item(ast.InternedTerm("system"), ast.StringTerm(system)),
					ast.Item(ast.InternedTerm("code"), ast.StringTerm(code)),
				))
				continue
			}
			keys.Add(codingKey(system, code))
		}
		if field == "securityLabel" {
			obj.Insert(ast.InternedTerm(field), ast.NewTerm(labels))
		} else {
			obj.Insert(ast.InternedTerm(field), ast.NewTerm(keys))
		}
	}
	data, err := array(p, "data")
	if err != nil {
		return nil, wrap(err)
	}
	if len(data) > 0 {
		refs := ast.NewSet()
		for k, d := range data {
			dm, ok := d.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s.data[%d]: not an object", path, k)
			}
			ref, err := object(dm, "reference")
			if err != nil {
				return nil, wrap(err)
			}
			if r, ok, err := str(ref, "reference"); err != nil {
				return nil, wrap(err)
			} else if ok {
				refs.Add(ast.StringTerm(r))
			}
		}
		obj.Insert(ast.InternedTerm("data"), ast.NewTerm(refs))
	}
	return obj, nil
}

// codingKey writes a Coding as FHIR search writes a token: "system|code", and
// "|code" for a Coding without a system.
func codingKey(system, code string) *ast.Term {
	return ast.StringTerm(system + "|" + code)
}

// period reads a Period as {"start": ns, "end": ns}, each present only when the
// bound is: start is the first instant of the start's precision, end the first
// instant after the end's precision (so the end is inclusive at its precision).
func period(m map[string]any, field string) (*ast.Term, bool, error) {
	v, ok := m[field]
	if !ok {
		return nil, false, nil
	}
	pm, ok := v.(map[string]any)
	if !ok {
		return nil, false, fmt.Errorf("%s: not an object", field)
	}
	obj := ast.NewObject()
	for _, bound := range [...]string{"start", "end"} {
		s, ok, err := str(pm, bound)
		if err != nil {
			return nil, false, fmt.Errorf("%s.%w", field, err)
		}
		if !ok {
			continue
		}
		lo, hi, err := fhirTimeBounds(s)
		if err != nil {
			return nil, false, fmt.Errorf("%s.%s: %w", field, bound, err)
		}
		ns := lo
		if bound == "end" {
			ns = hi
		}
		obj.Insert(ast.InternedTerm(bound), ast.InternedTerm(ns))
	}
	return ast.NewTerm(obj), true, nil
}

// fhirTimeBounds returns the instants, in Unix nanoseconds, that a FHIR date or
// dateTime covers: [lo, hi). A dateTime with a time covers one nanosecond; a
// date, year-month or year covers its whole day, month or year in UTC. It reads
// exactly what consent.rego's time_lower and time_upper read.
func fhirTimeBounds(s string) (lo, hi int64, err error) {
	var t, end time.Time
	switch {
	case strings.Contains(s, "T"):
		t, err = time.Parse(time.RFC3339, s)
		end = t.Add(time.Nanosecond)
	case len(s) == 10:
		t, err = time.Parse("2006-01-02", s)
		end = t.AddDate(0, 0, 1)
	case len(s) == 7:
		t, err = time.Parse("2006-01", s)
		end = t.AddDate(0, 1, 0)
	case len(s) == 4:
		t, err = time.Parse("2006", s)
		end = t.AddDate(1, 0, 0)
	default:
		return 0, 0, errors.New("not a FHIR date or dateTime")
	}
	if err != nil {
		return 0, 0, errors.New("not a FHIR date or dateTime")
	}
	if t.Before(time.Unix(0, math.MinInt64)) || end.After(time.Unix(0, math.MaxInt64)) {
		return 0, 0, errors.New("time outside of valid range")
	}
	return t.UnixNano(), end.UnixNano(), nil
}

// conceptKeys reads a CodeableConcept field as a set of coding keys (empty when absent).
func conceptKeys(m map[string]any, field string) (*ast.Term, error) {
	cc, err := object(m, field)
	if err != nil {
		return nil, err
	}
	keys := ast.NewSet()
	if err := eachCoding(cc, func(system, code string) { keys.Add(codingKey(system, code)) }); err != nil {
		return nil, fmt.Errorf("%s.%w", field, err)
	}
	return ast.NewTerm(keys), nil
}

// eachCoding calls fn for each coding with a code in a CodeableConcept (nil: none).
func eachCoding(cc map[string]any, fn func(system, code string)) error {
	list, err := array(cc, "coding")
	if err != nil {
		return err
	}
	for k, v := range list {
		system, code, ok, err := coding(v)
		if err != nil {
			return fmt.Errorf("coding[%d].%w", k, err)
		}
		if ok {
			fn(system, code)
		}
	}
	return nil
}

// coding reads a Coding; ok is false when it has no code (it then matches nothing).
func coding(v any) (system, code string, ok bool, err error) {
	m, isObj := v.(map[string]any)
	if !isObj {
		return "", "", false, errors.New("coding: not an object")
	}
	if system, _, err = str(m, "system"); err != nil {
		return "", "", false, err
	}
	code, ok, err = str(m, "code")
	return system, code, ok, err
}

// reference reads Reference.reference of a field ("" when absent).
func reference(m map[string]any, field string) (string, error) {
	ref, err := object(m, field)
	if err != nil {
		return "", err
	}
	s, _, err := str(ref, "reference")
	if err != nil {
		return "", fmt.Errorf("%s.%w", field, err)
	}
	return s, nil
}

func str(m map[string]any, field string) (string, bool, error) {
	v, ok := m[field]
	if !ok {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("%s: not a string", field)
	}
	return s, true, nil
}

// object reads an optional JSON object field; absent gives nil, which reads as empty.
func object(m map[string]any, field string) (map[string]any, error) {
	v, ok := m[field]
	if !ok {
		return nil, nil
	}
	o, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not an object", field)
	}
	return o, nil
}

func array(m map[string]any, field string) ([]any, error) {
	v, ok := m[field]
	if !ok {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: not an array", field)
	}
	return a, nil
}
