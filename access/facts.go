package access

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// ResourceOf describes a stored version to the policy: type, id, security
// labels, codes and its clinically relevant date. No values beyond codes.
// It decodes only the elements it reads.
func ResourceOf(v vault.Version) (policy.ResourceRef, error) {
	var doc factsDoc
	// Every read decides on these facts of a version it has not seen
	// before, and json.Unmarshal into factsDoc spends most of its time
	// walking members it discards by reflection. scan cuts the same
	// elements from a well-formed body; what it does not vouch for goes
	// to json.Unmarshal, so errors and edge cases are its.
	if !validJSON(v.Body) || !doc.scan(v.Body) {
		doc = factsDoc{}
		if err := json.Unmarshal(v.Body, &doc); err != nil {
			return policy.ResourceRef{}, fmt.Errorf("decode stored version: %w", err)
		}
	}
	return doc.facts(v.Type, v.ID), nil
}

// validJSON is json.Valid (encoding/json) at a fraction of its cost: the
// syntax check of encoding/json/v2, told to accept what encoding/json
// accepts (repeated member names, invalid UTF-8 in strings). Every read
// checks its body with it. FuzzValidJSON holds it to json.Valid.
func validJSON(b []byte) bool {
	return jsontext.Value(b).IsValid(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
}

// factsDoc holds, undecoded, the top-level elements Facts reads; the rest
// of a body is only scanned.
type factsDoc struct {
	Meta                      json.RawMessage `json:"meta"`
	Code                      json.RawMessage `json:"code"`
	MedicationCodeableConcept json.RawMessage `json:"medicationCodeableConcept"`
	VaccineCode               json.RawMessage `json:"vaccineCode"`
	Type                      json.RawMessage `json:"type"`
	EffectiveDateTime         json.RawMessage `json:"effectiveDateTime"`
	EffectivePeriod           json.RawMessage `json:"effectivePeriod"`
	EffectiveInstant          json.RawMessage `json:"effectiveInstant"`
	OnsetDateTime             json.RawMessage `json:"onsetDateTime"`
	OnsetPeriod               json.RawMessage `json:"onsetPeriod"`
	PerformedDateTime         json.RawMessage `json:"performedDateTime"`
	PerformedPeriod           json.RawMessage `json:"performedPeriod"`
	OccurrenceDateTime        json.RawMessage `json:"occurrenceDateTime"`
	OccurrencePeriod          json.RawMessage `json:"occurrencePeriod"`
	AuthoredOn                json.RawMessage `json:"authoredOn"`
	RecordedDate              json.RawMessage `json:"recordedDate"`
	Issued                    json.RawMessage `json:"issued"`
	Period                    json.RawMessage `json:"period"`
	BillablePeriod            json.RawMessage `json:"billablePeriod"`
	Date                      json.RawMessage `json:"date"`
	Created                   json.RawMessage `json:"created"`
}

// factsFields are factsDoc's members by JSON name.
var factsFields = map[string]func(*factsDoc) *json.RawMessage{
	"meta":                      func(d *factsDoc) *json.RawMessage { return &d.Meta },
	"code":                      func(d *factsDoc) *json.RawMessage { return &d.Code },
	"medicationCodeableConcept": func(d *factsDoc) *json.RawMessage { return &d.MedicationCodeableConcept },
	"vaccineCode":               func(d *factsDoc) *json.RawMessage { return &d.VaccineCode },
	"type":                      func(d *factsDoc) *json.RawMessage { return &d.Type },
	"effectiveDateTime":         func(d *factsDoc) *json.RawMessage { return &d.EffectiveDateTime },
	"effectivePeriod":           func(d *factsDoc) *json.RawMessage { return &d.EffectivePeriod },
	"effectiveInstant":          func(d *factsDoc) *json.RawMessage { return &d.EffectiveInstant },
	"onsetDateTime":             func(d *factsDoc) *json.RawMessage { return &d.OnsetDateTime },
	"onsetPeriod":               func(d *factsDoc) *json.RawMessage { return &d.OnsetPeriod },
	"performedDateTime":         func(d *factsDoc) *json.RawMessage { return &d.PerformedDateTime },
	"performedPeriod":           func(d *factsDoc) *json.RawMessage { return &d.PerformedPeriod },
	"occurrenceDateTime":        func(d *factsDoc) *json.RawMessage { return &d.OccurrenceDateTime },
	"occurrencePeriod":          func(d *factsDoc) *json.RawMessage { return &d.OccurrencePeriod },
	"authoredOn":                func(d *factsDoc) *json.RawMessage { return &d.AuthoredOn },
	"recordedDate":              func(d *factsDoc) *json.RawMessage { return &d.RecordedDate },
	"issued":                    func(d *factsDoc) *json.RawMessage { return &d.Issued },
	"period":                    func(d *factsDoc) *json.RawMessage { return &d.Period },
	"billablePeriod":            func(d *factsDoc) *json.RawMessage { return &d.BillablePeriod },
	"date":                      func(d *factsDoc) *json.RawMessage { return &d.Date },
	"created":                   func(d *factsDoc) *json.RawMessage { return &d.Created },
}

// scan fills d from body, which json.Valid accepted, as json.Unmarshal
// would: each member named exactly as a field of d sets it to the raw
// value (the last one wins, as there). It reports false, leaving d
// partly filled, for what it does not handle as json.Unmarshal does: a
// body that is not an object, and a member name with an escape, a
// non-ASCII byte or a case-insensitive match of a field's name (which
// json.Unmarshal would also fill the field from).
func (d *factsDoc) scan(body []byte) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return true
	}
	for i < len(body) && body[i] == '"' {
		start := i + 1
		end := start
		for end < len(body) && body[end] != '"' {
			if c := body[end]; c == '\\' || c >= 0x80 {
				return false
			}
			end++
		}
		name := body[start:end]
		i = skipSpace(body, end+1) // at ':'
		i = skipSpace(body, i+1)
		vstart := i
		i = skipValue(body, i)
		if f, ok := factsFields[string(name)]; ok {
			*f(d) = body[vstart:i:i]
		} else if foldsToField(name) {
			return false
		}
		i = skipSpace(body, i)
		if i < len(body) && body[i] == ',' {
			i = skipSpace(body, i+1)
			continue
		}
		return i < len(body) && body[i] == '}'
	}
	return false
}

// foldsToField reports whether name matches a field of factsDoc but for
// case (name is ASCII).
func foldsToField(name []byte) bool {
	for f := range factsFields {
		if len(f) == len(name) && strings.EqualFold(f, string(name)) {
			return true
		}
	}
	return false
}

// skipSpace returns the index of the first byte of b at or after i that
// is not JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the index just past the JSON value that starts at
// b[i], in a document json.Valid accepted.
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			depth--
			i++
		default:
			// A number or literal: up to the next delimiter.
			for i < len(b) {
				switch b[i] {
				case ',', '}', ']', ' ', '\t', '\n', '\r':
				default:
					i++
					continue
				}
				break
			}
		}
		if depth == 0 {
			return i
		}
		// Inside an array or object: skip to the next token.
		for i < len(b) {
			switch b[i] {
			case ' ', '\t', '\n', '\r', ',', ':':
				i++
				continue
			}
			break
		}
	}
	return i
}

// facts is Facts over the elements of d: the same result as Facts of the
// whole decoded tree (TestResourceOfMatchesFacts).
func (d *factsDoc) facts(typ, id string) policy.ResourceRef {
	tree := map[string]any{}
	for name, raw := range map[string]json.RawMessage{
		"meta": d.Meta, "code": d.Code, "medicationCodeableConcept": d.MedicationCodeableConcept, "vaccineCode": d.VaccineCode, "type": d.Type,
	} {
		if len(raw) > 0 && raw[0] == '{' {
			tree[name] = decodeAny(raw)
		}
	}
	dates := [...]struct {
		name string
		raw  json.RawMessage
	}{
		{"effectiveDateTime", d.EffectiveDateTime}, {"effectivePeriod", d.EffectivePeriod}, {"effectiveInstant", d.EffectiveInstant},
		{"onsetDateTime", d.OnsetDateTime}, {"onsetPeriod", d.OnsetPeriod}, {"performedDateTime", d.PerformedDateTime},
		{"performedPeriod", d.PerformedPeriod}, {"occurrenceDateTime", d.OccurrenceDateTime}, {"occurrencePeriod", d.OccurrencePeriod},
		{"authoredOn", d.AuthoredOn}, {"recordedDate", d.RecordedDate}, {"issued", d.Issued}, {"period", d.Period},
		{"billablePeriod", d.BillablePeriod}, {"date", d.Date}, {"created", d.Created},
	}
	for _, e := range dates {
		if len(e.raw) > 0 {
			tree[e.name] = decodeAny(e.raw)
		}
	}
	return Facts(typ, id, tree)
}

// decodeAny decodes one JSON value already known to be well formed.
func decodeAny(raw json.RawMessage) any {
	var v any
	_ = json.Unmarshal(raw, &v) // raw was scanned by the decoder that cut it
	return v
}

// factsCacheSize bounds the facts of stored versions held in memory.
const factsCacheSize = 16384

// factsCache keeps the facts of stored versions by commitment: a version's
// body never changes, and its commitment (salted, over the body) names it
// and nothing else.
type factsCache struct {
	mu sync.Mutex
	m  map[string]policy.ResourceRef
}

// of returns ResourceOf(v), from the cache when v was described before.
func (c *factsCache) of(v vault.Version) (policy.ResourceRef, error) {
	if len(v.Commitment) == 0 {
		return ResourceOf(v)
	}
	key := v.Type + "/" + v.ID + "/" + string(v.Commitment)
	c.mu.Lock()
	r, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err := ResourceOf(v)
	if err != nil {
		return r, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= factsCacheSize {
		c.m = make(map[string]policy.ResourceRef)
	}
	c.m[key] = r
	c.mu.Unlock()
	return r, nil
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
