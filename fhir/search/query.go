package search

import (
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Query is a parsed FHIR search query.
type Query struct {
	// Type is the resource type searched, "" for a system-level search.
	Type string
	// Types is _type: the types of a system search; for a type search
	// only Type itself, when _type was given.
	Types []string
	// Clauses must all hold (AND); the Values of each are ORed.
	Clauses []Clause
	// Include is _include (Iterate for :iterate); RevInclude _revinclude.
	Include    []Include
	RevInclude []Include
	// Sort is _sort, in order.
	Sort []Sort
	// Count is _count, -1 when absent.
	Count int
	// Total is _total: "", "none", "estimate" or "accurate".
	Total string
	// Summary is _summary: "", "true", "false", "count", "text" or "data".
	Summary string
	// Elements is _elements.
	Elements []string
	// Ignored lists, in a lenient parse, the names of the parameters
	// skipped. The gateway reports their count, never quotes them.
	Ignored []string
}

// Clause is one parameter of a query; a repeated parameter gives several
// Clauses (AND).
type Clause struct {
	// Param is the parameter of Query.Type; for a chain the reference
	// parameter; for _has the zero Param.
	Param Param
	// Modifier is "", "exact", "contains", "missing", "not", "text",
	// "identifier", "of-type", "above", "below", or a resource type for a
	// reference parameter (subject:Patient).
	Modifier string
	// Values are ORed (comma-separated in the query, "\," escapes).
	Values []Predicate
	// Chain is set for subject:Patient.name=x (or subject.name=x when
	// the parameter has one target type).
	Chain *Chain
	// Has is set for _has:Observation:patient:code=x.
	Has *Has
	// Targets is set by the caller after resolving Chain or Has by
	// running the inner clause as its own search: for Chain, the "Type/id"
	// of every matching target; for Has, the ids of resources of
	// Query.Type that the matching resources point to. Keys and Match of a
	// Chain or Has clause use Targets only.
	Targets []string
}

// Chain is the inner part of a chained parameter: Clause is on Type.
type Chain struct {
	Type   string
	Clause Clause
}

// Has is a reverse chain: resources of Type whose reference parameter Ref
// points back to Query.Type and for which Clause (on Type, maybe itself a
// _has) holds.
type Has struct {
	Type   string
	Ref    Param
	Clause Clause
}

// Predicate is one value of a clause, parsed by the parameter's type.
// Only the fields of that type are set.
type Predicate struct {
	// Prefix is eq, ne, gt, lt, ge, le, sa, eb or ap for ordered types
	// (date, number, quantity; "eq" when the query gives none), "" for
	// the others.
	Prefix string

	// Token: System and Code; HasSystem is true when the value had a "|"
	// ("|code": no system; "sys|": any code of sys, Code ""). For a
	// quantity, System and Code are the unit's (Code the unit when
	// System is "").
	System, Code string
	HasSystem    bool
	// TypeSystem and TypeCode are the identifier type of :of-type.
	TypeSystem, TypeCode string

	// Text is the NormalizeString form for string (raw for :exact), token
	// :text.
	Text string

	// Date is the query date's span at its precision; for ap, the span
	// widened as doc.go says.
	Date DateRange

	// Number and quantity: Value as written, and its precision range
	// [Low, High) (100 gives [99.5, 100.5)); for ap the widened range.
	Value     *big.Rat
	Low, High *big.Rat

	// Reference: Type and ID of "Type/id", or ID alone, or URL (absolute,
	// urn:, canonical) with Version of "url|version". A reference
	// :identifier predicate uses the token fields.
	Type, ID, URL, Version string

	// URI is a uri value.
	URI string

	// Missing is the value of :missing.
	Missing bool

	// Components are the parts of a composite value, in order.
	Components []Predicate
}

// Include is one _include or _revinclude: resources of TargetType (any
// when "") that SourceType's reference parameter Param points to. Param
// is "*" for _include=*.
type Include struct {
	SourceType, Param, TargetType string
	Iterate                       bool
}

// Sort is one key of _sort.
type Sort struct {
	Param Param
	Desc  bool
}

// QueryError is a bad query. Param is set only to a known R4 parameter
// code; Reason never quotes what the client wrote, so the gateway may
// return Error() to the client.
type QueryError struct {
	Param, Reason string
}

func (e *QueryError) Error() string {
	if e.Param == "" {
		return "search: " + e.Reason
	}
	return "search: parameter " + e.Param + ": " + e.Reason
}

// MaxCount is the largest _count accepted.
const MaxCount = 1000

// resultParams are R4's search result parameters and the others Parse
// knows by name.
var resultParams = []string{"_count", "_sort", "_include", "_revinclude", "_total", "_summary", "_elements", "_contained", "_containedType", "_type", "_has"}

// now is the clock ap uses; tests set it.
var now = time.Now

// commonParams are the only parameters of a system search without _type.
var commonParams = []string{"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"}

// Parse parses a FHIR search query (already split by url.ParseQuery, whose
// url.Values it takes as is; _format and _pretty removed) for resourceType, or for a system search
// when resourceType is "" (then _type gives the types, and only the common
// parameters or parameters that all those types share are allowed). With
// strict (Prefer: handling=strict) an unknown or unsupported parameter or
// modifier is an error; otherwise it is skipped and listed in
// Query.Ignored. Errors are *QueryError.
//
// params is a map[string][]string rather than url.Values because package
// search imports nothing of net/ (see internal/testonly/layout_test.go);
// a url.Values is passed unchanged.
func Parse(resourceType string, params map[string][]string, strict bool) (*Query, error) {
	if resourceType != "" && !isResourceType(resourceType) {
		return nil, &QueryError{Reason: "unknown resource type"}
	}
	q := &Query{Type: resourceType, Count: -1}
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	slices.Sort(names)
	// _type first: it decides which parameters a system search has.
	if vs, ok := params["_type"]; ok {
		for _, v := range vs {
			for _, t := range splitList(v) {
				if !isResourceType(t) {
					return nil, &QueryError{Param: "_type", Reason: "unknown resource type"}
				}
				if resourceType != "" && t != resourceType {
					return nil, &QueryError{Param: "_type", Reason: "differs from the searched type"}
				}
				if !slices.Contains(q.Types, t) {
					q.Types = append(q.Types, t)
				}
			}
		}
	}
	p := queryParser{q: q, strict: strict}
	for _, name := range names {
		if name == "_type" {
			continue
		}
		for _, v := range params[name] {
			if err := p.param(name, v); err != nil {
				return nil, err
			}
		}
	}
	return q, nil
}

type queryParser struct {
	q      *Query
	strict bool
}

// errUnknown marks a parameter or modifier Parse does not know or support.
type errUnknown struct{ qe *QueryError }

func (e errUnknown) Error() string { return e.qe.Error() }

func unknown(param, reason string) error {
	return errUnknown{&QueryError{Param: param, Reason: reason}}
}

func (p *queryParser) skip(name string, err error) error {
	if u, ok := err.(errUnknown); ok {
		if p.strict {
			return u.qe
		}
		if !slices.Contains(p.q.Ignored, name) {
			p.q.Ignored = append(p.q.Ignored, name)
		}
		return nil
	}
	return err
}

func (p *queryParser) param(name, value string) error {
	q := p.q
	base, mod, _ := strings.Cut(name, ":")
	switch base {
	case "_count":
		if mod != "" {
			return p.skip(name, unknown(base, "modifier not supported"))
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > MaxCount {
			return &QueryError{Param: base, Reason: fmt.Sprintf("must be an integer from 0 to %d", MaxCount)}
		}
		q.Count = n
		return nil
	case "_total":
		if !slices.Contains([]string{"none", "estimate", "accurate"}, value) || mod != "" {
			return &QueryError{Param: base, Reason: "must be none, estimate or accurate"}
		}
		q.Total = value
		return nil
	case "_summary":
		if !slices.Contains([]string{"true", "false", "count", "text", "data"}, value) || mod != "" {
			return &QueryError{Param: base, Reason: "must be true, false, count, text or data"}
		}
		q.Summary = value
		return nil
	case "_elements":
		if mod != "" {
			return p.skip(name, unknown(base, "modifier not supported"))
		}
		for _, e := range splitList(value) {
			if !isName(e) {
				return &QueryError{Param: base, Reason: "invalid element name"}
			}
			q.Elements = append(q.Elements, e)
		}
		return nil
	case "_sort":
		if mod != "" {
			return p.skip(name, unknown(base, "modifier not supported"))
		}
		for _, s := range splitList(value) {
			desc := strings.HasPrefix(s, "-")
			prm, err := p.lookup(strings.TrimPrefix(s, "-"))
			if err != nil {
				return &QueryError{Param: base, Reason: "unknown sort parameter"}
			}
			q.Sort = append(q.Sort, Sort{Param: prm, Desc: desc})
		}
		return nil
	case "_include", "_revinclude":
		if mod != "" && mod != "iterate" {
			return p.skip(name, unknown(base, "modifier not supported"))
		}
		inc, err := p.include(base, value, mod == "iterate")
		if err != nil {
			return p.skip(name, err)
		}
		if base == "_include" {
			q.Include = append(q.Include, inc)
		} else {
			q.RevInclude = append(q.RevInclude, inc)
		}
		return nil
	case "_contained", "_containedType":
		if value == "false" && base == "_contained" {
			return nil
		}
		return p.skip(name, unknown(base, "not supported"))
	}
	if base == "_has" {
		c, err := p.has(q.Type, name, value)
		if err != nil {
			return p.skip(name, err)
		}
		if c != nil {
			q.Clauses = append(q.Clauses, *c)
		}
		return nil
	}
	var c *Clause
	var err error
	if q.Type == "" {
		if strings.Contains(name, ".") {
			return p.skip(name, unknown("", "chain in a system search not supported"))
		}
		var prm Param
		if prm, err = p.lookup(base); err != nil {
			return p.skip(name, err)
		}
		c, err = clauseOf(prm, mod, value)
	} else {
		c, err = parseClause(q.Type, name, value, 0)
	}
	if err != nil {
		return p.skip(name, err)
	}
	if c != nil {
		q.Clauses = append(q.Clauses, *c)
	}
	return nil
}

// lookup finds a parameter of the query's type, or of every type of a
// system search.
func (p *queryParser) lookup(code string) (Param, error) {
	if p.q.Type != "" {
		prm, ok := Lookup(p.q.Type, code)
		if !ok {
			return Param{}, unknown(knownCode(code), "unknown parameter")
		}
		return prm, nil
	}
	if len(p.q.Types) == 0 {
		if !slices.Contains(commonParams, code) {
			return Param{}, unknown(knownCode(code), "only common parameters without _type")
		}
		prm, ok := load().common[code]
		if !ok || prm.expr == nil {
			return Param{}, unknown(code, "not supported")
		}
		return *prm, nil
	}
	var first Param
	for i, t := range p.q.Types {
		prm, ok := Lookup(t, code)
		if !ok || (i > 0 && prm.Type != first.Type) {
			return Param{}, unknown(knownCode(code), "not a parameter of every _type")
		}
		if i == 0 {
			first = prm
		}
	}
	first.keysFrom = keySources(p.q.Types, code)
	return first, nil
}

// keySources are the parameters whose keys a clause on code looks up when
// it applies to every one of types: each type's own parameter, or those
// that index its values there (shareKeys). Nil when that is code's own
// keys in every type, as for a single type.
func keySources(types []string, code string) []*Param {
	r := load()
	var out []*Param
	shared := false
	for _, t := range types {
		p := r.byType[t][code]
		if p == nil {
			p = r.common[code]
		}
		from := []*Param{p}
		if len(p.keysFrom) > 0 {
			from, shared = p.keysFrom, true
		}
		if p.Type == TypeComposite {
			shared = true // each type's components resolve to its own parameters
		}
		for _, q := range from {
			// Parameters with keys of their own and one code make the same keys.
			if !slices.ContainsFunc(out, func(o *Param) bool { return o == q || (o.Code == q.Code && q.Type != TypeComposite) }) {
				out = append(out, q)
			}
		}
	}
	if !shared {
		return nil
	}
	return out
}

// knownCode returns code when some R4 parameter has it, else "": an error
// may name an R4 code, never a name the client made up.
func knownCode(code string) string {
	if slices.Contains(resultParams, code) {
		return code
	}
	if _, ok := load().common[code]; ok {
		return code
	}
	for _, m := range load().byType {
		if _, ok := m[code]; ok {
			return code
		}
	}
	return ""
}

func (p *queryParser) include(base, value string, iterate bool) (Include, error) {
	if value == "*" {
		return Include{Param: "*", Iterate: iterate}, nil
	}
	parts := strings.Split(value, ":")
	if len(parts) < 2 || len(parts) > 3 || !isResourceType(parts[0]) {
		return Include{}, unknown(base, "invalid value")
	}
	inc := Include{SourceType: parts[0], Param: parts[1], Iterate: iterate}
	if len(parts) == 3 {
		if !isResourceType(parts[2]) {
			return Include{}, unknown(base, "invalid target type")
		}
		inc.TargetType = parts[2]
	}
	if inc.Param == "*" {
		return inc, nil
	}
	prm, ok := Lookup(inc.SourceType, inc.Param)
	if !ok || prm.Type != TypeReference {
		return Include{}, unknown(base, "not a reference parameter")
	}
	if inc.TargetType != "" && len(prm.Targets) > 0 && !slices.Contains(prm.Targets, inc.TargetType) {
		return Include{}, unknown(base, "target type not allowed")
	}
	return inc, nil
}

// maxDepth bounds chains and _has nesting.
const maxDepth = 2

// has parses "_has:Type:ref:rest" for resources of target.
func (p *queryParser) has(target, name, value string) (*Clause, error) {
	return parseHas(target, name, value, 0)
}

func parseHas(target, name, value string, depth int) (*Clause, error) {
	if depth >= maxDepth {
		return nil, unknown("", "_has nested too deep")
	}
	rest, ok := strings.CutPrefix(name, "_has:")
	if !ok {
		return nil, unknown("", "invalid _has")
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 || !isResourceType(parts[0]) {
		return nil, unknown("", "invalid _has")
	}
	typ, refCode, inner := parts[0], parts[1], parts[2]
	ref, ok := Lookup(typ, refCode)
	if !ok || ref.Type != TypeReference {
		return nil, unknown("", "_has parameter is not a reference")
	}
	if target != "" && len(ref.Targets) > 0 && !slices.Contains(ref.Targets, target) {
		return nil, unknown(ref.Code, "_has reference does not point to the searched type")
	}
	var c *Clause
	var err error
	if strings.HasPrefix(inner, "_has:") {
		c, err = parseHas(typ, inner, value, depth+1)
	} else {
		c, err = parseClause(typ, inner, value, depth+1)
	}
	if err != nil || c == nil {
		return nil, err
	}
	return &Clause{Has: &Has{Type: typ, Ref: ref, Clause: *c}}, nil
}

// parseClause parses "code[:modifier][.chain]" of resourceType. It returns
// nil for an empty value (R4: ignored).
func parseClause(resourceType, name, value string, depth int) (*Clause, error) {
	head, chain, chained := strings.Cut(name, ".")
	code, mod, _ := strings.Cut(head, ":")
	prm, ok := Lookup(resourceType, code)
	if !ok {
		return nil, unknown(knownCode(code), "unknown parameter")
	}
	if !chained {
		return clauseOf(prm, mod, value)
	}
	if prm.Type != TypeReference {
		return nil, &QueryError{Param: prm.Code, Reason: "chain on a parameter that is not a reference"}
	}
	if depth >= maxDepth {
		return nil, unknown(prm.Code, "chain too long")
	}
	typ := mod
	switch {
	case typ == "" && len(prm.Targets) == 1:
		typ = prm.Targets[0]
	case typ == "":
		return nil, &QueryError{Param: prm.Code, Reason: "chain needs a target type modifier"}
	case !isResourceType(typ) || (len(prm.Targets) > 0 && !slices.Contains(prm.Targets, typ)):
		return nil, unknown(prm.Code, "target type not allowed")
	}
	inner, err := parseClause(typ, chain, value, depth+1)
	if err != nil || inner == nil {
		return nil, err
	}
	return &Clause{Param: prm, Modifier: mod, Chain: &Chain{Type: typ, Clause: *inner}}, nil
}

// supportedModifiers are the modifiers Match implements, by type; a
// reference parameter also takes a resource type.
var supportedModifiers = map[Type][]string{
	TypeString:    {"missing", "exact", "contains"},
	TypeToken:     {"missing", "text", "not", "of-type"},
	TypeReference: {"missing", "identifier"},
	TypeDate:      {"missing"},
	TypeNumber:    {"missing"},
	TypeQuantity:  {"missing"},
	TypeURI:       {"missing", "above", "below"},
	TypeComposite: {"missing"},
}

func clauseOf(prm Param, mod, value string) (*Clause, error) {
	c := &Clause{Param: prm, Modifier: mod}
	if mod != "" {
		isType := prm.Type == TypeReference && isResourceType(mod)
		switch {
		case isType && len(prm.Targets) > 0 && !slices.Contains(prm.Targets, mod):
			return nil, unknown(prm.Code, "target type not allowed")
		case isType:
		case !slices.Contains(supportedModifiers[prm.Type], mod):
			return nil, unknown(prm.Code, "modifier not supported")
		}
	}
	if mod == "missing" {
		switch value {
		case "true", "false":
			c.Values = []Predicate{{Missing: value == "true"}}
			return c, nil
		}
		return nil, &QueryError{Param: prm.Code, Reason: "missing must be true or false"}
	}
	for _, raw := range splitEscaped(value, ',') {
		if raw == "" {
			continue
		}
		pr, err := predicate(prm, mod, raw)
		if err != nil {
			return nil, err
		}
		c.Values = append(c.Values, pr)
	}
	if len(c.Values) == 0 {
		return nil, nil // R4: a parameter with an empty value is ignored
	}
	return c, nil
}

// prefixes are the comparison prefixes of ordered types.
var prefixes = []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func cutPrefix(s string) (string, string) {
	if len(s) > 2 && slices.Contains(prefixes, s[:2]) {
		return s[:2], s[2:]
	}
	return "eq", s
}

func predicate(prm Param, mod, raw string) (Predicate, error) {
	bad := func(reason string) (Predicate, error) {
		return Predicate{}, &QueryError{Param: prm.Code, Reason: reason}
	}
	switch prm.Type {
	case TypeToken:
		return tokenPredicate(prm, mod, raw)
	case TypeString:
		s := unescape(raw)
		if mod == "exact" {
			return Predicate{Text: s}, nil
		}
		return Predicate{Text: NormalizeString(s)}, nil
	case TypeURI:
		return Predicate{URI: unescape(raw)}, nil
	case TypeReference:
		if mod == "identifier" {
			pr, err := tokenPredicate(prm, "", raw)
			return pr, err
		}
		s := unescape(raw)
		pr := Predicate{}
		if u, v, ok := strings.Cut(s, "|"); ok && !strings.Contains(s, "?") {
			pr.Version = v
			s = u
		}
		parts := strings.Split(s, "/")
		n := len(parts)
		if n >= 4 && parts[n-2] == "_history" {
			pr.Version, parts, n = parts[n-1], parts[:n-2], n-2
		}
		switch {
		case strings.Contains(s, ":"):
			pr.URL = s // absolute URL, urn:uuid:, urn:oid:, canonical
		case n == 1:
			pr.ID = parts[0]
		case n == 2 && isResourceType(parts[0]) && parts[1] != "":
			pr.Type, pr.ID = parts[0], parts[1]
		default:
			return bad("invalid reference")
		}
		if isResourceType(mod) {
			if pr.Type != "" && pr.Type != mod {
				return bad("reference type differs from the modifier")
			}
			if pr.ID != "" {
				pr.Type = mod
			}
		}
		return pr, nil
	case TypeDate:
		prefix, s := cutPrefix(raw)
		// A "+" of a time zone sent unencoded arrives as a space.
		r, err := ParseDate(strings.Replace(s, " ", "+", 1))
		if err != nil {
			return bad("invalid date")
		}
		pr := Predicate{Prefix: prefix, Date: r}
		if prefix == "ap" {
			pr.Date = approxDate(r, now())
		}
		return pr, nil
	case TypeNumber, TypeQuantity:
		prefix, s := cutPrefix(raw)
		num, unit, hasUnit := strings.Cut(s, "|")
		if prm.Type == TypeNumber && hasUnit {
			return bad("a number has no unit")
		}
		pr, ok := numberPredicate(prefix, num)
		if !ok {
			return bad("invalid number")
		}
		if hasUnit {
			parts := splitEscaped(unit, '|')
			switch len(parts) {
			case 1:
				pr.Code = unescape(parts[0]) // value|code: not R4, taken as the code
			case 2:
				pr.System, pr.Code, pr.HasSystem = unescape(parts[0]), unescape(parts[1]), parts[0] != ""
			default:
				return bad("invalid quantity")
			}
		}
		return pr, nil
	case TypeComposite:
		parts := splitEscaped(raw, '$')
		if len(parts) != len(prm.Components) {
			return bad("composite needs one value per component")
		}
		pr := Predicate{}
		for i, comp := range prm.Components {
			cp := Param{Code: comp.Code, Type: comp.Type}
			sub, err := predicate(cp, "", parts[i])
			if err != nil {
				return bad("invalid composite component")
			}
			pr.Components = append(pr.Components, sub)
		}
		return pr, nil
	}
	return bad("unsupported parameter type")
}

func tokenPredicate(prm Param, mod, raw string) (Predicate, error) {
	parts := splitEscaped(raw, '|')
	for i := range parts {
		parts[i] = unescape(parts[i])
	}
	switch mod {
	case "text":
		return Predicate{Text: NormalizeString(unescape(raw))}, nil
	case "of-type":
		if len(parts) != 3 || parts[2] == "" {
			return Predicate{}, &QueryError{Param: prm.Code, Reason: "of-type needs system|code|value"}
		}
		return Predicate{TypeSystem: parts[0], TypeCode: parts[1], Code: parts[2]}, nil
	}
	switch len(parts) {
	case 1:
		return Predicate{Code: parts[0]}, nil
	case 2:
		if parts[0] == "" && parts[1] == "" {
			return Predicate{}, &QueryError{Param: prm.Code, Reason: "invalid token"}
		}
		return Predicate{System: parts[0], Code: parts[1], HasSystem: true}, nil
	}
	return Predicate{}, &QueryError{Param: prm.Code, Reason: "invalid token"}
}

// numberPredicate parses a decimal and its implicit precision range: half
// a unit of its last written digit either side ("100" [99.5, 100.5),
// "1.50" [1.495, 1.505), "1e2" [50, 150)).
func numberPredicate(prefix, s string) (Predicate, bool) {
	v, ok := Rat(s)
	if !ok {
		return Predicate{}, false
	}
	half := halfUnit(s)
	pr := Predicate{Prefix: prefix, Value: v}
	pr.Low = new(big.Rat).Sub(v, half)
	pr.High = new(big.Rat).Add(v, half)
	if prefix == "ap" {
		// ap: 10% of the value either side, at least the precision.
		w := new(big.Rat).Abs(v)
		w.Mul(w, big.NewRat(1, 10))
		if w.Cmp(half) < 0 {
			w = half
		}
		pr.Low = new(big.Rat).Sub(v, w)
		pr.High = new(big.Rat).Add(v, w)
	}
	return pr, true
}

// halfUnit is half a unit of the last written digit of a valid decimal.
func halfUnit(s string) *big.Rat {
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		exp, _ = strconv.Atoi(s[i+1:])
	}
	if _, frac, ok := strings.Cut(mant, "."); ok {
		exp -= len(frac)
	}
	h := big.NewRat(1, 2)
	ten := big.NewRat(10, 1)
	for ; exp > 0; exp-- {
		h.Mul(h, ten)
	}
	for ; exp < 0; exp++ {
		h.Quo(h, ten)
	}
	return h
}

// approxDate widens r by 10% of the time between now and r (at least one
// day) on each side: ap2020 searched in 2025 matches from mid-2019 to
// mid-2021.
func approxDate(r DateRange, now time.Time) DateRange {
	gap := now.Sub(r.Low)
	if d := r.High.Sub(now); d > gap {
		gap = d
	}
	if gap < 0 {
		gap = -gap
	}
	w := gap / 10
	if w < 24*time.Hour {
		w = 24 * time.Hour
	}
	out := DateRange{Low: r.Low.Add(-w), High: r.High.Add(w)}
	if out.Low.Before(MinTime) {
		out.Low = MinTime
	}
	if out.High.After(MaxTime) {
		out.High = MaxTime
	}
	return out
}

// splitEscaped splits s on sep where it is not escaped by a backslash;
// the parts keep their escapes.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes the backslash escapes of \, \| \$ and \\.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// splitList splits a comma list of names, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
