package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Value is one index value of one parameter of a resource. Exactly the
// field that matches Type is set (Number also uses Quantity for a Range).
type Value struct {
	// Param is the parameter's code.
	Param string
	Type  Type

	Token     Token     // TypeToken
	String    string    // TypeString: the raw string, see NormalizeString
	Date      DateRange // TypeDate
	Reference Reference // TypeReference
	Quantity  Quantity  // TypeQuantity, and TypeNumber when the element is a Range
	Number    string    // TypeNumber: a decimal as written in the resource
	URI       string    // TypeURI
	// Components holds one value per component of a TypeComposite
	// parameter, in the order of Param.Components.
	Components []Value
}

// Token is a coded value: a Coding (system|code), each coding of a
// CodeableConcept, an Identifier (system|value), a ContactPoint
// (system|value, system being phone, email, ...), or a code, boolean, id,
// uri or string (Code only).
type Token struct {
	System string
	Code   string
	// Display is Coding.display; Text is CodeableConcept.text, repeated on
	// each of its codings. :text matches either. A CodeableConcept with text
	// and no coding gives one Token with only Text.
	Display string
	Text    string
	// OfType holds the codings of Identifier.type, for :of-type.
	OfType []Coding
}

// Coding is a system and a code.
type Coding struct {
	System, Code string
}

// DateRange is the span a date value covers at its precision: Low
// inclusive, High exclusive, both in UTC. "2020" covers [2020-01-01,
// 2021-01-01); a Period covers start's Low to end's High, an open end
// being MinTime or MaxTime. Dates without a time zone are taken as UTC.
type DateRange struct {
	Low, High time.Time
}

// MinTime and MaxTime stand for the open ends of a Period.
var (
	MinTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Reference is what a resolver needs of a Reference, canonical or uri.
type Reference struct {
	// Type is the target's resource type when known: from the literal
	// ("Patient/1", ".../Patient/1"), Reference.type, the contained
	// resource, or Extractor.ReferenceType; else "".
	Type string
	// ID is the target's logical id when the literal names one.
	ID string
	// Version is the _history version, or a canonical's |version.
	Version string
	// URL is the reference as written when it is not a relative Type/id:
	// an absolute URL, urn:uuid:/urn:oid:, "#id" of a contained resource,
	// a canonical without its version.
	URL string
	// Identifier is Reference.identifier (for :identifier), or nil.
	Identifier *Token
}

// Quantity is a Quantity (Age, Duration, Count, Distance, SimpleQuantity),
// a Money (Code the currency, System urn:iso:std:iso:4217) or a Range (Low
// and High, either empty when open; Value empty). Decimals are kept as
// written; Rat parses them.
type Quantity struct {
	Value      string
	Comparator string
	Low, High  string
	Unit       string
	System     string
	Code       string
}

// Rat parses a decimal of a Value (Value.Number, Quantity.Value, Low,
// High); it reports false for "" or an invalid decimal. FHIR decimals may
// have an exponent (1E-22); one beyond ±400, past any float64, is refused
// so that a hostile resource cannot make a huge number.
func Rat(decimal string) (*big.Rat, bool) {
	if !validDecimal(decimal) {
		return nil, false
	}
	return new(big.Rat).SetString(decimal)
}

// validDecimal reports whether Rat can parse decimal: FHIR's decimal
// (datatypes.html#decimal) as JSON writes it,
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, with an exponent within
// ±400. Extraction checks every decimal of every resource, and needs no
// big.Rat to do so.
func validDecimal(decimal string) bool {
	s := strings.TrimPrefix(decimal, "-")
	digits := func() int {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		s = s[n:]
		return n
	}
	switch {
	case strings.HasPrefix(s, "0"):
		s = s[1:]
	case digits() == 0:
		return false
	}
	if rest, ok := strings.CutPrefix(s, "."); ok {
		if s = rest; digits() == 0 {
			return false
		}
	}
	if s == "" {
		return true
	}
	if s[0] != 'e' && s[0] != 'E' {
		return false
	}
	exp := s[1:]
	s = strings.TrimLeft(exp, "+-")
	if len(exp)-len(s) > 1 || digits() == 0 || s != "" {
		return false
	}
	n, err := strconv.Atoi(exp)
	return err == nil && n <= 400 && n >= -400
}

// ExtractError reports a value that cannot be indexed. It names the
// parameter and the FHIR type, never the value.
type ExtractError struct {
	ResourceType, Param, Reason string
}

func (e *ExtractError) Error() string {
	return fmt.Sprintf("search: %s %s: %s", e.ResourceType, e.Param, e.Reason)
}

// ErrUnknownResourceType is returned for a type R4 does not define.
var ErrUnknownResourceType = errors.New("search: unknown resource type")

// Extractor extracts index values. The zero value is ready to use.
type Extractor struct {
	// ReferenceType, if set, returns the resource type a reference points
	// to when the reference itself does not say (urn:uuid: inside a
	// Bundle, an absolute URL not ending in Type/id), or "". It decides
	// where(resolve() is Patient) and Reference.Type.
	ReferenceType func(reference string) string
	// Indexed, if set, extracts only the parameters that have index keys
	// of their own: the values IndexKeys turns into keys. A parameter whose
	// keys another's stand for (see IndexKeys), or a composite (whose
	// clauses narrow by its first component's parameter), is skipped, and so
	// cannot fail the resource either.
	Indexed bool
}

// Extract is Extractor{}.Extract.
func Extract(resourceType string, tree map[string]any) ([]Value, error) {
	var x Extractor
	return x.Extract(resourceType, tree)
}

// Extract returns the values of every parameter of resourceType (Params)
// found in tree, a resource decoded from JSON. Decode with UseNumber to
// keep decimals as written (1.50 keeps its precision, which search's
// implicit ranges use); float64 numbers are accepted and rendered in
// shortest form (1.5). Values come by parameter code, then in document
// order; a value may repeat. A malformed date or decimal fails the whole resource
// with an *ExtractError.
func (x *Extractor) Extract(resourceType string, tree map[string]any) ([]Value, error) {
	pl, ok := load().plans[resourceType]
	if !ok {
		return nil, ErrUnknownResourceType
	}
	return x.extract(pl, resourceType, tree)
}

// IndexKeys returns IndexKeys(resourceType, values) of the values
// Extract returns for tree, less those of the parameters omit names, or
// Extract's error. The values are not kept: the keys are made from the
// scratch they are gathered in, which a resource's values would otherwise
// be copied out of, and then not used again.
func (x *Extractor) IndexKeys(resourceType string, tree map[string]any, omit ...string) ([]string, error) {
	pl, ok := load().plans[resourceType]
	if !ok {
		return nil, ErrUnknownResourceType
	}
	c := ctxPool.Get().(*evalCtx)
	defer c.release()
	values, err := x.values(c, pl, resourceType, tree)
	if err != nil {
		return nil, err
	}
	return indexKeys(resourceType, values, omit), nil
}

// extract is Extract by plan pl of resourceType.
func (x *Extractor) extract(pl *plan, resourceType string, tree map[string]any) ([]Value, error) {
	c := ctxPool.Get().(*evalCtx)
	defer c.release()
	out, err := x.values(c, pl, resourceType, tree)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return slices.Clone(out), nil
}

// values is Extract by plan pl of resourceType in context c: the values
// are in c's scratch, valid until c is released.
func (x *Extractor) values(c *evalCtx, pl *plan, resourceType string, tree map[string]any) ([]Value, error) {
	if rt, ok := tree["resourceType"]; ok && rt != resourceType {
		return nil, &ExtractError{ResourceType: resourceType, Reason: "resourceType element differs"}
	}
	c.root, c.x = item{v: tree, path: resourceType, typ: resourceType}, x
	c.rootColl = c.one(c.root)
	if cap(c.memo) < pl.memos {
		c.memo = make([]memoSlot, pl.memos)
	}
	c.memo = c.memo[:pl.memos]
	// Values are gathered in the pooled scratch slice, for Extract to copy
	// out at their exact number: a Value is large, and a slice grown to
	// hold them would mostly be capacity.
	// hi is how many of its values were written, for release to clear;
	// a conversion that fails may have written past it.
	out, hi := c.out[:0], 0
	defer func() { c.out = out[:hi] }()
	for i := range pl.params {
		p := &pl.params[i]
		if x.Indexed && (len(p.keysFrom) > 0 || p.Type == TypeComposite) {
			continue
		}
		items, err := p.expr.eval(c, c.rootColl)
		if err != nil {
			return nil, &ExtractError{ResourceType: resourceType, Param: p.Code, Reason: err.Error()}
		}
		for _, it := range items {
			n := len(out)
			next, err := c.convert(out, p.Code, p.Type, p.Components, p.comps, it)
			if err != nil {
				hi = cap(out)
				return nil, &ExtractError{ResourceType: resourceType, Param: p.Code, Reason: err.Error()}
			}
			out, hi = next, max(hi, len(next))
			if p.Type != TypeReference || len(p.Targets) == 0 {
				continue // only a reference parameter's values are filtered
			}
			kept := n
			for i := n; i < len(out); i++ {
				// A reference known to point outside the parameter's targets
				// is not one of its values (Bundle message is entry[0] only
				// when that is a MessageHeader).
				if v := &out[i]; v.Type == TypeReference && v.Reference.Type != "" && !slices.Contains(p.Targets, v.Reference.Type) {
					continue
				}
				if kept != i { // a Value is large: moved only when one before was dropped
					out[kept] = out[i]
				}
				kept++
			}
			out = out[:kept]
		}
	}
	return out, nil
}

// ctxPool keeps evaluation contexts, their arena and scratch values, for
// the next Extract.
var ctxPool = sync.Pool{New: func() any { return new(evalCtx) }}

// maxPooled bounds the arena and scratch kept in a pooled context, so that
// one huge resource does not keep its memory.
const maxPooled = 1 << 14

// release returns c to ctxPool, dropping every reference into the
// resource it evaluated.
func (c *evalCtx) release() {
	clear(c.arena)
	clear(c.out)
	clear(c.memo)
	if cap(c.arena) > maxPooled {
		c.arena = nil
	}
	if cap(c.out) > maxPooled/16 {
		c.out = nil
	}
	*c = evalCtx{arena: c.arena[:0], out: c.out[:0], compVals: c.compVals, memo: c.memo[:0]}
	ctxPool.Put(c)
}

// mayFail reports whether converting a value of type t may fail the
// resource: a malformed date or decimal.
func mayFail(t Type) bool {
	return t == TypeDate || t == TypeQuantity || t == TypeNumber
}

// maxTuples bounds the combinations one composite value may produce.
const maxTuples = 64

// convert appends the values of one item of parameter code to out; exprs
// are the expressions of comps, the components of a composite.
func (c *evalCtx) convert(out []Value, code string, typ Type, comps []Component, exprs []expr, it item) ([]Value, error) {
	switch typ {
	case TypeToken:
		return tokens(out, code, it), nil
	case TypeString:
		return stringsOf(out, code, it), nil
	case TypeDate:
		return dates(out, code, it)
	case TypeReference:
		if r, ok := c.reference(it.v); ok {
			return append(out, Value{Param: code, Type: typ, Reference: r}), nil
		}
	case TypeQuantity:
		return quantityValue(out, code, typ, it)
	case TypeNumber:
		if d, ok := decimalOf(it.v); ok {
			if !validDecimal(d) {
				return nil, fmt.Errorf("invalid decimal")
			}
			return append(out, Value{Param: code, Type: typ, Number: d}), nil
		}
		return quantityValue(out, code, typ, it)
	case TypeURI:
		if s, ok := it.v.(string); ok {
			return append(out, Value{Param: code, Type: typ, URI: s}), nil
		}
	case TypeComposite:
		return c.composite(out, code, comps, exprs, it)
	}
	return out, nil
}

// composite appends the values of composite parameter code for one item:
// a value for each combination of its components' values, the first
// component varying slowest, at most maxTuples of them. Every component is
// evaluated and converted, even after one has no value, for its errors:
// the first error, component by component, fails the item.
func (c *evalCtx) composite(out []Value, code string, comps []Component, exprs []expr, it item) ([]Value, error) {
	// The components' values are gathered one after the other in the
	// context's scratch (components are never composite themselves);
	// ends[i] is where those of component i end.
	var small [8]int
	ends := small[:0]
	vals := c.compVals[:0]
	defer func() {
		clear(vals) // no reference into the resource stays in the pool
		c.compVals = vals[:0]
	}()
	// convert converts the items of comps[:n]; when the item has no
	// combination (a component without items), only those whose
	// conversion may fail, for their errors.
	var smallItems [8][]item
	items := smallItems[:0]
	none := false
	convert := func(n int) error {
		for i, comp := range comps[:n] {
			if !none || mayFail(comp.Type) {
				for _, ci := range items[i] {
					var err error
					if vals, err = c.convert(vals, comp.Code, comp.Type, nil, nil, ci); err != nil {
						return err
					}
				}
			}
			ends = append(ends, len(vals))
		}
		return nil
	}
	for i := range comps {
		its, err := exprs[i].eval(c, c.one(it))
		if err != nil {
			// The components before would have been converted first.
			none = true
			if err := convert(i); err != nil {
				return nil, err
			}
			return nil, err
		}
		items = append(items, its)
		none = none || len(its) == 0
	}
	if err := convert(len(comps)); err != nil {
		return nil, err
	}
	if none {
		return out, nil
	}
	if len(comps) == 0 {
		return append(out, Value{Param: code, Type: TypeComposite}), nil
	}
	// idx counts through the combinations in order, component by
	// component from the last, like the digits of a number.
	var smallIdx [8]int
	idx := smallIdx[:0]
	start := 0
	for _, end := range ends {
		if end == start {
			return out, nil // a component without value: no combination
		}
		idx = append(idx, start)
		start = end
	}
	for range maxTuples {
		t := make([]Value, len(idx))
		for i, j := range idx {
			t[i] = vals[j]
		}
		out = append(out, Value{Param: code, Type: TypeComposite, Components: t})
		i := len(idx) - 1
		for ; i >= 0; i-- {
			if idx[i]++; idx[i] < ends[i] {
				break
			}
			idx[i] = 0
			if i > 0 {
				idx[i] = ends[i-1]
			}
		}
		if i < 0 {
			break
		}
	}
	return out, nil
}

func quantityValue(out []Value, code string, typ Type, it item) ([]Value, error) {
	q, ok, err := quantity(it)
	if err != nil {
		return nil, err
	}
	if ok {
		out = append(out, Value{Param: code, Type: typ, Quantity: q})
	}
	return out, nil
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// tokens appends the token values of one item to out.
func tokens(out []Value, code string, it item) []Value {
	tok := func(t Token) Value { return Value{Param: code, Type: TypeToken, Token: t} }
	switch v := it.v.(type) {
	case string:
		return append(out, tok(Token{Code: v}))
	case bool:
		return append(out, tok(Token{Code: strconv.FormatBool(v)}))
	case json.Number, float64:
		d, _ := decimalOf(v)
		return append(out, tok(Token{Code: d}))
	case map[string]any:
		// The members are looked up only as far as the cases need.
		has := func(k string) bool { _, ok := v[k]; return ok }
		switch {
		case it.typ == "CodeableConcept" || has("coding") || (!has("value") && !has("code") && str(v, "text") != ""):
			text := str(v, "text")
			n := len(out)
			for _, cd := range asList(v["coding"]) {
				if m, ok := cd.(map[string]any); ok {
					out = append(out, tok(Token{System: str(m, "system"), Code: str(m, "code"), Display: str(m, "display"), Text: text}))
				}
			}
			if len(out) == n && text != "" {
				out = append(out, tok(Token{Text: text}))
			}
			return out
		case has("value"):
			// Identifier or ContactPoint: both are system|value.
			t := Token{System: str(v, "system"), Code: str(v, "value")}
			if typ, ok := v["type"].(map[string]any); ok {
				for _, cd := range asList(typ["coding"]) {
					if m, ok := cd.(map[string]any); ok {
						t.OfType = append(t.OfType, Coding{System: str(m, "system"), Code: str(m, "code")})
					}
				}
			}
			if t.Code == "" && t.System == "" {
				return out
			}
			return append(out, tok(t))
		case has("code"):
			return append(out, tok(Token{System: str(v, "system"), Code: str(v, "code"), Display: str(v, "display")}))
		}
	}
	return out
}

func asList(v any) []any {
	if arr, ok := v.([]any); ok {
		return arr
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// stringParts are the parts of HumanName and Address a string parameter
// matches (R4 search.html, "string").
var stringParts = []string{"family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country", "text"}

// stringsOf appends the string values of one item to out.
func stringsOf(out []Value, code string, it item) []Value {
	add := func(s string) {
		if s != "" {
			out = append(out, Value{Param: code, Type: TypeString, String: s})
		}
	}
	switch v := it.v.(type) {
	case string:
		add(v)
	case map[string]any:
		for _, k := range stringParts {
			for _, e := range asList(v[k]) {
				if s, ok := e.(string); ok {
					add(s)
				}
			}
		}
	}
	return out
}

// dates appends the date values of one item to out.
func dates(out []Value, code string, it item) ([]Value, error) {
	val := func(r DateRange) Value { return Value{Param: code, Type: TypeDate, Date: r} }
	switch v := it.v.(type) {
	case string:
		switch it.typ {
		case "", "date", "dateTime", "instant":
		default:
			return out, nil // scheduledString and the like: free text, no date
		}
		r, err := ParseDate(v)
		if err != nil {
			return nil, err
		}
		return append(out, val(r)), nil
	case map[string]any:
		if it.typ == "Timing" || v["event"] != nil || v["repeat"] != nil {
			for _, e := range asList(v["event"]) {
				if s, ok := e.(string); ok {
					r, err := ParseDate(s)
					if err != nil {
						return nil, err
					}
					out = append(out, val(r))
				}
			}
			if rep, ok := v["repeat"].(map[string]any); ok {
				if bp, ok := rep["boundsPeriod"].(map[string]any); ok {
					r, ok, err := period(bp)
					if err != nil || !ok {
						return out, err
					}
					out = append(out, val(r))
				}
			}
			return out, nil
		}
		r, ok, err := period(v)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, val(r))
		}
	}
	return out, nil
}

// period converts a Period; ok is false when it has neither start nor end.
func period(m map[string]any) (DateRange, bool, error) {
	start, hasStart := m["start"].(string)
	end, hasEnd := m["end"].(string)
	if !hasStart && !hasEnd {
		return DateRange{}, false, nil
	}
	r := DateRange{Low: MinTime, High: MaxTime}
	if hasStart {
		s, err := ParseDate(start)
		if err != nil {
			return DateRange{}, false, err
		}
		r.Low = s.Low
	}
	if hasEnd {
		e, err := ParseDate(end)
		if err != nil {
			return DateRange{}, false, err
		}
		r.High = e.High
	}
	return r, true, nil
}

func quantity(it item) (Quantity, bool, error) {
	m, ok := it.v.(map[string]any)
	if !ok || it.typ == "SampledData" {
		return Quantity{}, false, nil // SampledData is not indexed: no single value
	}
	num := func(v any) (string, error) {
		if v == nil {
			return "", nil
		}
		d, ok := decimalOf(v)
		if ok {
			ok = validDecimal(d)
		}
		if !ok {
			return "", fmt.Errorf("invalid decimal")
		}
		return d, nil
	}
	low, lok := m["low"].(map[string]any)
	high, hok := m["high"].(map[string]any)
	if lok || hok || it.typ == "Range" {
		var q Quantity
		var err error
		for _, b := range []map[string]any{low, high} {
			if b != nil {
				q.Unit, q.System, q.Code = str(b, "unit"), str(b, "system"), str(b, "code")
			}
		}
		if q.Low, err = num(low["value"]); err != nil {
			return Quantity{}, false, err
		}
		if q.High, err = num(high["value"]); err != nil {
			return Quantity{}, false, err
		}
		return q, q.Low != "" || q.High != "", nil
	}
	value, err := num(m["value"])
	if err != nil || value == "" {
		return Quantity{}, false, err
	}
	q := Quantity{Value: value, Comparator: str(m, "comparator"), Unit: str(m, "unit"), System: str(m, "system"), Code: str(m, "code")}
	if cur := str(m, "currency"); cur != "" {
		q.System, q.Code = "urn:iso:std:iso:4217", cur
	}
	return q, true, nil
}

// reference converts a Reference, or a canonical or uri string.
func (c *evalCtx) reference(v any) (Reference, bool) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return Reference{}, false
		}
		return c.x.literal(c.root, v), true
	case map[string]any:
		if rt := str(v, "resourceType"); rt != "" {
			// A resource in place (Bundle.entry[0].resource): refer to it.
			return Reference{Type: rt, ID: str(v, "id")}, true
		}
		var r Reference
		lit := str(v, "reference")
		if lit != "" {
			r = c.x.literal(c.root, lit)
		}
		if r.Type == "" {
			r.Type = str(v, "type")
		}
		if id, ok := v["identifier"].(map[string]any); ok {
			if t := tokens(nil, "", item{v: id}); len(t) == 1 {
				tok := t[0].Token
				r.Identifier = &tok
			}
		}
		return r, lit != "" || r.Identifier != nil
	}
	return Reference{}, false
}

// targetType is resolve() for one item: the resource type the reference
// points to, or "".
func (x *Extractor) targetType(root item, v any) string {
	switch v := v.(type) {
	case string:
		return x.literal(root, v).Type
	case map[string]any:
		if lit := str(v, "reference"); lit != "" {
			if t := x.literal(root, lit).Type; t != "" {
				return t
			}
		}
		return str(v, "type")
	}
	return ""
}

// literal parses a reference literal: "Type/id[/_history/v]", an absolute
// URL ending so, "#id" (resolved against root's contained resources),
// urn:uuid:/urn:oid:, or a canonical "url|version".
func (x *Extractor) literal(root item, s string) Reference {
	r := Reference{URL: s}
	if id, ok := strings.CutPrefix(s, "#"); ok {
		if m, ok := root.v.(map[string]any); ok {
			for _, e := range asList(m["contained"]) {
				if cm, ok := e.(map[string]any); ok && str(cm, "id") == id {
					r.Type = str(cm, "resourceType")
				}
			}
		}
		return r
	}
	if u, ver, ok := strings.Cut(s, "|"); ok && !strings.Contains(s, "?") { // canonical|version, not a search URL
		r.URL, r.Version = u, ver
		s = u
	}
	// The segments of s split at '/', read from the end without splitting
	// it: p is s less a _history suffix, n its number of segments.
	p := s
	n := strings.Count(p, "/") + 1
	lastTwo := func() (prev, last string, prevStart int) {
		i := strings.LastIndexByte(p, '/')
		j := strings.LastIndexByte(p[:i], '/')
		return p[j+1 : i], p[i+1:], j
	}
	if n >= 4 {
		if prev, last, j := lastTwo(); prev == "_history" {
			r.Version = last
			p, n = p[:j], n-2
		}
	}
	if n >= 2 {
		if typ, id, _ := lastTwo(); isResourceType(typ) && id != "" {
			r.Type, r.ID = typ, id
			if n == 2 {
				r.URL = "" // relative: Type and ID say it all
			}
		}
	}
	if r.Type == "" && x.ReferenceType != nil {
		r.Type = x.ReferenceType(s)
	}
	return r
}

func isResourceType(s string) bool {
	_, ok := load().byType[s]
	return ok
}
