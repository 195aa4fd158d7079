package fhir

import (
	"errors"
	"fmt"
	"strings"
)

// Bundle is a transaction or batch Bundle split into its entries.
type Bundle struct {
	Type    string // "transaction" or "batch"
	Entries []Entry
}

// Entry is one Bundle.entry of a transaction or batch.
type Entry struct {
	Index    int
	FullURL  string
	Resource *Resource // nil when the entry carries none (DELETE, GET)
	Request  Request
	// Invalid holds what is wrong with this entry of a batch (paths from
	// "Bundle.entry[n]"): a batch entry fails alone. Transaction Bundles
	// fail as a whole instead, so their entries never carry errors.
	Invalid ValidationErrors
}

// Request is Bundle.entry.request.
type Request struct {
	Method          string // GET, HEAD, POST, PUT, PATCH or DELETE
	URL             string
	IfNoneExist     string
	IfMatch         string
	IfNoneMatch     string
	IfModifiedSince string
}

// Path returns the FHIRPath-like path of an element of this entry, as
// "Bundle.entry[3]" + suffix.
func (e Entry) Path(suffix string) string {
	return fmt.Sprintf("Bundle.entry[%d]%s", e.Index, suffix)
}

// SplitBundle checks the transaction/batch rules jsonformat leaves to the
// server and splits the Bundle into entries. r must be a parsed Bundle.
func SplitBundle(r *Resource) (*Bundle, error) {
	if r.Type != "Bundle" {
		return nil, ValidationErrors{{Path: "resourceType", Reason: "expected a Bundle", Err: ErrInvalid}}
	}
	b := &Bundle{}
	b.Type, _ = r.Tree["type"].(string)
	if b.Type != "transaction" && b.Type != "batch" {
		return nil, ValidationErrors{{Path: "Bundle.type", Reason: "only transaction and batch Bundles can be submitted", Err: ErrInvalid}}
	}
	raw, _ := r.Tree["entry"].([]any)
	var errs ValidationErrors
	for i, v := range raw {
		n := len(errs)
		m, _ := v.(map[string]any)
		e := Entry{Index: i}
		e.FullURL, _ = m["fullUrl"].(string)
		if res, ok := m["resource"].(map[string]any); ok {
			typ, _ := res["resourceType"].(string)
			e.Resource = &Resource{Type: typ, Tree: res}
		}
		req, ok := m["request"].(map[string]any)
		if !ok {
			errs = append(errs, &ValidationError{Path: e.Path(".request"), Reason: "every entry of a transaction or batch needs a request", Err: ErrInvalid})
		}
		e.Request.Method, _ = req["method"].(string)
		e.Request.URL, _ = req["url"].(string)
		e.Request.IfNoneExist, _ = req["ifNoneExist"].(string)
		e.Request.IfMatch, _ = req["ifMatch"].(string)
		e.Request.IfNoneMatch, _ = req["ifNoneMatch"].(string)
		e.Request.IfModifiedSince, _ = req["ifModifiedSince"].(string)
		// Relative URLs are the norm; a leading slash is common and harmless.
		e.Request.URL = strings.TrimPrefix(e.Request.URL, "/")
		switch e.Request.Method {
		case "POST", "PUT":
			if e.Resource == nil && !strings.Contains(e.Request.URL, "$") && r.invalid[i] == nil {
				errs = append(errs, &ValidationError{Path: e.Path(".resource"), Reason: "a " + e.Request.Method + " entry needs a resource", Err: ErrInvalid})
			}
		case "GET", "HEAD", "DELETE", "PATCH":
		default:
			errs = append(errs, &ValidationError{Path: e.Path(".request.method"), Reason: "unknown method", Err: ErrInvalid})
		}
		if b.Type == "batch" && len(errs) > n {
			e.Invalid, errs = errs[n:], errs[:n]
		}
		if inv, ok := r.invalid[i]; ok {
			e.Invalid = append(inv, e.Invalid...)
			e.Resource = nil
		}
		b.Entries = append(b.Entries, e)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return b, nil
}

// ParseBundle parses and validates a transaction or batch Bundle and splits
// it into entries. A transaction is valid as a whole or rejected as a whole.
// In a batch an invalid resource fails only its entry (Entry.Invalid) and the
// other entries go on, as FHIR's batch rules ask; only a broken Bundle
// structure rejects a batch as a whole.
func (p *Parser) ParseBundle(data []byte) (*Bundle, error) {
	r, err := p.Parse(data)
	if err != nil {
		r, err = p.parseBatchLeniently(data, err)
		if err != nil {
			return nil, err
		}
	}
	return SplitBundle(r)
}

// parseBatchLeniently runs only when a Bundle failed validation. If it is a
// batch, each entry's resource is validated alone; the invalid ones are
// recorded and removed, and the rest of the Bundle must then validate.
func (p *Parser) parseBatchLeniently(data []byte, whole error) (*Resource, error) {
	v, err := Decode(data)
	if err != nil {
		return nil, whole
	}
	tree, _ := v.(map[string]any)
	if tree["resourceType"] != "Bundle" || tree["type"] != "batch" {
		return nil, whole
	}
	entries, _ := tree["entry"].([]any)
	invalid := map[int]ValidationErrors{}
	for i, ev := range entries {
		m, _ := ev.(map[string]any)
		res, ok := m["resource"]
		if !ok {
			continue
		}
		b, err := Canonical(res)
		if err != nil {
			return nil, whole
		}
		if _, err := p.Parse(b); err != nil {
			var ves ValidationErrors
			if !errors.As(err, &ves) {
				return nil, whole
			}
			prefix := fmt.Sprintf("Bundle.entry[%d].resource", i)
			for _, ve := range ves {
				c := *ve
				c.Path = underEntry(prefix, ve.Path)
				invalid[i] = append(invalid[i], &c)
			}
			delete(m, "resource")
		}
	}
	if len(invalid) == 0 {
		return nil, whole // the problem is in the Bundle itself
	}
	shell, err := Canonical(tree)
	if err != nil {
		return nil, whole
	}
	r, err := p.Parse(shell)
	if err != nil {
		return nil, err
	}
	r.invalid = invalid
	return r, nil
}

// underEntry re-roots a path found in a resource parsed alone
// ("Patient.birthDate") under its entry ("Bundle.entry[3].resource").
func underEntry(prefix, path string) string {
	if i := strings.IndexByte(path, '.'); i >= 0 {
		return prefix + path[i:]
	}
	return prefix
}
