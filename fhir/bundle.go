package fhir

import (
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
			continue
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
			if e.Resource == nil && !strings.Contains(e.Request.URL, "$") {
				errs = append(errs, &ValidationError{Path: e.Path(".resource"), Reason: "a " + e.Request.Method + " entry needs a resource", Err: ErrInvalid})
			}
		case "GET", "HEAD", "DELETE", "PATCH":
		default:
			errs = append(errs, &ValidationError{Path: e.Path(".request.method"), Reason: "unknown method", Err: ErrInvalid})
		}
		b.Entries = append(b.Entries, e)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return b, nil
}
