package cohort

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
)

// Limits of ParseQuery. A query is small; anything bigger is a mistake or an
// attack on the parser.
const (
	MaxQueryBytes = 64 << 10 // whole JSON text
	MaxDepth      = 16       // nesting of all/any/not
	MaxCriteria   = 256      // criterion objects in one query
	maxString     = 256      // a code, system, unit, gender, ...
	maxWindowDays = 200 * 366
	maxJSONDepth  = 3*MaxDepth + 8 // raw JSON nesting checked before decoding
)

// ErrInvalidQuery is wrapped by every error of ParseQuery.
var ErrInvalidQuery = errors.New("invalid cohort query")

// ErrNoBreakdown is returned by Breakdown for a query without dimensions.
var ErrNoBreakdown = errors.New("query has no breakdown")

// QueryError says where a query failed and why. Path is a member path such as
// "criteria.all[2].observation.value"; neither Path nor Reason ever holds a
// value of the query, so both may go back to the client and into logs.
type QueryError struct {
	Path   string
	Reason string
}

func (e *QueryError) Error() string {
	if e.Path == "" {
		return "cohort query: " + e.Reason
	}
	return "cohort query: " + e.Path + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidQuery) hold.
func (e *QueryError) Unwrap() error { return ErrInvalidQuery }

// Query is a parsed, validated cohort query. Build it with ParseQuery.
type Query struct {
	// Criteria selects the patients.
	Criteria Criterion
	// Breakdown lists the dimensions Breakdown groups by, in the order given.
	Breakdown []string

	named map[string]*Criterion // "as" name -> criterion
	fp    string
	shape string
}

// Criterion is one node of a query: a boolean combination (all, any, not), a
// demographic test on the patient, or a test on clinical facts.
type Criterion struct {
	op       string       // "all", "any", "not", a demographic field or a fact kind
	children []*Criterion // all, any; not has exactly one
	text     string       // gender, zip3, race, ethnicity
	flag     bool         // deceased
	rng      numRange     // birthYear, age
	fact     *factSpec
	as       string
	within   *window
}

// factSpec is the filter of a fact criterion.
type factSpec struct {
	kind      kind
	codes     []string // "system|code", sorted, unique; empty = any
	value     numRange
	unit      string
	valueCode []string
	date      numRange // day numbers
	status    string
}

// window is a relative time window: a fact dated From..To days after a fact of
// the criterion named Of (negative = before).
type window struct {
	of       string
	fromDays int32
	toDays   int32
	hasFrom  bool
	hasTo    bool
}

// numRange is an interval with optional, open or closed ends.
type numRange struct {
	set          bool
	eq           bool
	lo, hi       float64
	hasLo, hasHi bool
	loOpen       bool // gt instead of ge
	hiOpen       bool // lt instead of le
}

func (r numRange) contains(v float64) bool {
	if r.hasLo && (v < r.lo || r.loOpen && v == r.lo) {
		return false
	}
	if r.hasHi && (v > r.hi || r.hiOpen && v == r.hi) {
		return false
	}
	return true
}

var demographicOps = map[string]bool{
	"gender": true, "birthYear": true, "age": true, "zip3": true,
	"race": true, "ethnicity": true, "deceased": true,
}

// Dimensions are the names Breakdown accepts.
var Dimensions = []string{"gender", "ageBand", "birthDecade", "zip3", "race", "ethnicity", "deceased"}

// ParseQuery parses and validates a query. It is strict: unknown members,
// wrong types, repeated members, out-of-scope "within" references and inputs
// over the limits are errors. Errors are *QueryError (wrapping
// ErrInvalidQuery) and never quote values of the input.
func ParseQuery(data []byte) (*Query, error) {
	if len(data) > MaxQueryBytes {
		return nil, &QueryError{Reason: fmt.Sprintf("larger than %d bytes", MaxQueryBytes)}
	}
	if jsonDepth(data) > maxJSONDepth {
		return nil, &QueryError{Reason: "nested too deeply"}
	}
	v, err := fhir.Decode(data)
	if err != nil {
		return nil, &QueryError{Reason: err.Error()} // fhir.Decode reports positions, never input
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &QueryError{Reason: "not a JSON object"}
	}
	p := &parser{named: map[string]*Criterion{}}
	q := &Query{named: p.named}
	if err := p.members(obj, "", "criteria", "breakdown"); err != nil {
		return nil, err
	}
	raw, ok := obj["criteria"]
	if !ok {
		return nil, &QueryError{Path: "criteria", Reason: "required"}
	}
	c, err := p.criterion(raw, "criteria", 0)
	if err != nil {
		return nil, err
	}
	q.Criteria = *c
	if b, ok := obj["breakdown"]; ok {
		list, ok := b.([]any)
		if !ok {
			return nil, &QueryError{Path: "breakdown", Reason: "must be an array of dimension names"}
		}
		for i, d := range list {
			path := fmt.Sprintf("breakdown[%d]", i)
			s, ok := d.(string)
			if !ok || !slices.Contains(Dimensions, s) {
				return nil, &QueryError{Path: path, Reason: "unknown dimension; want one of " + strings.Join(Dimensions, ", ")}
			}
			if slices.Contains(q.Breakdown, s) {
				return nil, &QueryError{Path: path, Reason: "dimension repeated"}
			}
			q.Breakdown = append(q.Breakdown, s)
		}
	}
	if err := resolve(&q.Criteria, "criteria", nil); err != nil {
		return nil, err
	}
	if err := checkCycles(q.named); err != nil {
		return nil, err
	}
	q.fp = digest("fhiranchor cohort query v1\n", canonical(&q.Criteria, q.named, false, map[string]string{}))
	q.shape = digest("fhiranchor cohort shape v1\n", canonical(&q.Criteria, q.named, true, map[string]string{}))
	return q, nil
}

// Fingerprint is the hex SHA-256 of the query's canonical form: member order,
// the order of all/any children and of code lists, "as" names and number
// spelling (6.5 vs 6.50) do not change it. It covers the criteria only, not
// the breakdown: released cells are named by their dimension values, so the
// noise of a cell (Privacy.Release) is the same whichever breakdown asked for
// it, and a repeated total cannot be re-drawn by varying the breakdown.
func (q *Query) Fingerprint() string { return q.fp }

// Shape is like Fingerprint with every number, date and window bound removed:
// queries that differ only in thresholds, age or date limits or window sizes
// share a Shape. The gateway counts queries per Shape to stop differencing
// attacks (Privacy.RepeatLimit).
func (q *Query) Shape() string { return q.shape }

// jsonDepth returns the maximum nesting of arrays and objects in JSON text,
// skipping strings. It runs before decoding so that a depth bomb costs one
// pass and no allocation.
func jsonDepth(data []byte) int {
	depth, maxd := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			maxd = max(maxd, depth)
		case '}', ']':
			depth--
		}
	}
	return maxd
}

type parser struct {
	named map[string]*Criterion
	count int
}

// members fails on a member of obj not in allowed. The error never names
// the member: it is the client's, and may be a name or an SSN.
func (p *parser) members(obj map[string]any, path string, allowed ...string) error {
	for k := range obj {
		if !slices.Contains(allowed, k) {
			return &QueryError{Path: path, Reason: "unknown member; allowed: " + strings.Join(allowed, ", ")}
		}
	}
	return nil
}

func join(path, member string) string {
	if path == "" {
		return member
	}
	return path + "." + member
}

var factKinds = map[string]kind{
	"condition": kindCondition, "observation": kindObservation, "medication": kindMedication,
	"encounter": kindEncounter, "procedure": kindProcedure, "immunization": kindImmunization,
	"report": kindReport,
}

func (p *parser) criterion(v any, path string, depth int) (*Criterion, error) {
	if depth > MaxDepth {
		return nil, &QueryError{Path: path, Reason: fmt.Sprintf("nested deeper than %d", MaxDepth)}
	}
	p.count++
	if p.count > MaxCriteria {
		return nil, &QueryError{Path: path, Reason: fmt.Sprintf("more than %d criteria", MaxCriteria)}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &QueryError{Path: path, Reason: "criterion must be an object"}
	}
	var op string
	for k := range obj {
		if k == "as" || k == "within" {
			continue
		}
		if op != "" {
			return nil, &QueryError{Path: path, Reason: "criterion has more than one test; combine tests with all/any"}
		}
		op = k
	}
	if op == "" {
		return nil, &QueryError{Path: path, Reason: "criterion has no test"}
	}
	_, isFact := factKinds[op]
	if !isFact {
		if _, ok := obj["as"]; ok {
			return nil, &QueryError{Path: join(path, "as"), Reason: "only a fact criterion (condition, observation, ...) can be named"}
		}
		if _, ok := obj["within"]; ok {
			return nil, &QueryError{Path: join(path, "within"), Reason: "only a fact criterion (condition, observation, ...) can have a window"}
		}
	}
	c := &Criterion{op: op}
	arg := obj[op]
	apath := join(path, op)
	switch {
	case op == "all" || op == "any":
		list, ok := arg.([]any)
		if !ok || len(list) == 0 {
			return nil, &QueryError{Path: apath, Reason: "must be a non-empty array of criteria"}
		}
		for i, e := range list {
			child, err := p.criterion(e, fmt.Sprintf("%s[%d]", apath, i), depth+1)
			if err != nil {
				return nil, err
			}
			c.children = append(c.children, child)
		}
	case op == "not":
		child, err := p.criterion(arg, apath, depth+1)
		if err != nil {
			return nil, err
		}
		c.children = []*Criterion{child}
	case op == "gender" || op == "zip3" || op == "race" || op == "ethnicity":
		s, err := str(arg, apath)
		if err != nil {
			return nil, err
		}
		c.text = s
	case op == "deceased":
		b, ok := arg.(bool)
		if !ok {
			return nil, &QueryError{Path: apath, Reason: "must be true or false"}
		}
		c.flag = b
	case op == "birthYear" || op == "age":
		r, err := parseRange(arg, apath, true)
		if err != nil {
			return nil, err
		}
		c.rng = r
	case isFact:
		spec, err := p.fact(arg, apath, factKinds[op])
		if err != nil {
			return nil, err
		}
		c.fact = spec
		if a, ok := obj["as"]; ok {
			name, ok := a.(string)
			if !ok || !validName(name) {
				return nil, &QueryError{Path: join(path, "as"), Reason: "must be a name of 1-64 letters, digits, _ or -, starting with a letter"}
			}
			if _, dup := p.named[name]; dup {
				return nil, &QueryError{Path: join(path, "as"), Reason: "name already used in this query"}
			}
			p.named[name] = c
			c.as = name
		}
		if w, ok := obj["within"]; ok {
			win, err := p.window(w, join(path, "within"))
			if err != nil {
				return nil, err
			}
			c.within = win
		}
	default:
		return nil, &QueryError{Path: path, Reason: "unknown test; want all, any, not, gender, birthYear, age, zip3, race, ethnicity, deceased, condition, observation, medication, encounter, procedure, immunization or report"}
	}
	return c, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(r >= '0' && r <= '9') && r != '_' && r != '-' {
			return false
		}
	}
	return true
}

func str(v any, path string) (string, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return "", &QueryError{Path: path, Reason: "must be a non-empty string"}
	}
	if len(s) > maxString {
		return "", &QueryError{Path: path, Reason: fmt.Sprintf("longer than %d bytes", maxString)}
	}
	return s, nil
}

func (p *parser) fact(v any, path string, k kind) (*factSpec, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &QueryError{Path: path, Reason: "must be an object"}
	}
	allowed := []string{"code", "date", "status"}
	if k == kindObservation {
		allowed = append(allowed, "value", "unit", "valueCode")
	}
	if err := p.members(obj, path, allowed...); err != nil {
		return nil, err
	}
	spec := &factSpec{kind: k}
	var err error
	if c, ok := obj["code"]; ok {
		if spec.codes, err = codings(c, join(path, "code")); err != nil {
			return nil, err
		}
	}
	if c, ok := obj["valueCode"]; ok {
		if spec.valueCode, err = codings(c, join(path, "valueCode")); err != nil {
			return nil, err
		}
	}
	if r, ok := obj["value"]; ok {
		if spec.value, err = parseRange(r, join(path, "value"), false); err != nil {
			return nil, err
		}
	}
	if u, ok := obj["unit"]; ok {
		if spec.unit, err = str(u, join(path, "unit")); err != nil {
			return nil, err
		}
	}
	if s, ok := obj["status"]; ok {
		if spec.status, err = str(s, join(path, "status")); err != nil {
			return nil, err
		}
	}
	if d, ok := obj["date"]; ok {
		if spec.date, err = parseDateRange(d, join(path, "date")); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// codings parses [{"system": s, "code": c}, ...] into sorted unique "s|c".
func codings(v any, path string) ([]string, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, &QueryError{Path: path, Reason: "must be a non-empty array of {system, code}"}
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		obj, ok := e.(map[string]any)
		if !ok {
			return nil, &QueryError{Path: ipath, Reason: "must be an object {system, code}"}
		}
		for k := range obj {
			if k != "system" && k != "code" {
				return nil, &QueryError{Path: ipath, Reason: "unknown member" + "; allowed: system, code"}
			}
		}
		sys, err := str(obj["system"], join(ipath, "system"))
		if err != nil {
			return nil, err
		}
		code, err := str(obj["code"], join(ipath, "code"))
		if err != nil {
			return nil, err
		}
		if strings.Contains(sys, "|") {
			return nil, &QueryError{Path: join(ipath, "system"), Reason: "must not contain |"}
		}
		out = append(out, sys+"|"+code)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

var rangeOps = []string{"gt", "ge", "lt", "le", "eq"}

// parseRange parses {"gt": n, "ge": n, "lt": n, "le": n, "eq": n}.
func parseRange(v any, path string, integer bool) (numRange, error) {
	return rangeOf(v, path, func(e any, p string) (float64, error) {
		n, ok := e.(json.Number)
		if !ok {
			return 0, &QueryError{Path: p, Reason: "must be a number"}
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, &QueryError{Path: p, Reason: "number out of range"}
		}
		if integer && (f != math.Trunc(f) || math.Abs(f) > 1e6) {
			return 0, &QueryError{Path: p, Reason: "must be a whole number of at most 6 digits"}
		}
		return f, nil
	})
}

// parseDateRange parses {"ge": "2010-01-01", ...} into day numbers.
func parseDateRange(v any, path string) (numRange, error) {
	return rangeOf(v, path, func(e any, p string) (float64, error) {
		s, ok := e.(string)
		if !ok {
			return 0, &QueryError{Path: p, Reason: "must be a date YYYY-MM-DD"}
		}
		t, err := time.Parse(time.DateOnly, s)
		if err != nil || t.Year() < 1 {
			return 0, &QueryError{Path: p, Reason: "must be a date YYYY-MM-DD"}
		}
		return float64(dayOf(t)), nil
	})
}

func rangeOf(v any, path string, num func(any, string) (float64, error)) (numRange, error) {
	obj, ok := v.(map[string]any)
	if !ok || len(obj) == 0 {
		return numRange{}, &QueryError{Path: path, Reason: "must be an object with gt, ge, lt, le or eq"}
	}
	var r numRange
	r.set = true
	for k := range obj {
		if !slices.Contains(rangeOps, k) {
			return numRange{}, &QueryError{Path: path, Reason: "unknown member" + "; allowed: gt, ge, lt, le, eq"}
		}
	}
	if _, ok := obj["eq"]; ok && len(obj) > 1 {
		return numRange{}, &QueryError{Path: path, Reason: "eq cannot be combined with other bounds"}
	}
	if _, gt := obj["gt"]; gt {
		if _, ge := obj["ge"]; ge {
			return numRange{}, &QueryError{Path: path, Reason: "gt and ge cannot both be given"}
		}
	}
	if _, lt := obj["lt"]; lt {
		if _, le := obj["le"]; le {
			return numRange{}, &QueryError{Path: path, Reason: "lt and le cannot both be given"}
		}
	}
	for _, k := range rangeOps {
		e, ok := obj[k]
		if !ok {
			continue
		}
		f, err := num(e, join(path, k))
		if err != nil {
			return numRange{}, err
		}
		switch k {
		case "gt", "ge":
			r.lo, r.hasLo, r.loOpen = f, true, k == "gt"
		case "lt", "le":
			r.hi, r.hasHi, r.hiOpen = f, true, k == "lt"
		case "eq":
			r.lo, r.hi, r.hasLo, r.hasHi, r.eq = f, f, true, true, true
		}
	}
	return r, nil
}

func (p *parser) window(v any, path string) (*window, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &QueryError{Path: path, Reason: "must be an object {of, from, to}"}
	}
	if err := p.members(obj, path, "of", "from", "to"); err != nil {
		return nil, err
	}
	of, ok := obj["of"].(string)
	if !ok || !validName(of) {
		return nil, &QueryError{Path: join(path, "of"), Reason: "must name a criterion (its \"as\")"}
	}
	w := &window{of: of}
	for _, end := range []string{"from", "to"} {
		e, ok := obj[end]
		if !ok {
			continue
		}
		epath := join(path, end)
		eo, ok := e.(map[string]any)
		if !ok {
			return nil, &QueryError{Path: epath, Reason: "must be an object {days}"}
		}
		if err := p.members(eo, epath, "days"); err != nil {
			return nil, err
		}
		n, ok := eo["days"].(json.Number)
		if !ok {
			return nil, &QueryError{Path: join(epath, "days"), Reason: "must be a whole number"}
		}
		d, err := strconv.ParseInt(string(n), 10, 32)
		if err != nil || d < -maxWindowDays || d > maxWindowDays {
			return nil, &QueryError{Path: join(epath, "days"), Reason: fmt.Sprintf("must be a whole number within ±%d", maxWindowDays)}
		}
		if end == "from" {
			w.fromDays, w.hasFrom = int32(d), true
		} else {
			w.toDays, w.hasTo = int32(d), true
		}
	}
	if w.hasFrom && w.hasTo && w.fromDays > w.toDays {
		return nil, &QueryError{Path: path, Reason: "from is after to"}
	}
	return w, nil
}

// resolve checks that every "within" names a criterion in scope: one named in
// the same all/any list or in the list of an enclosing criterion.
func resolve(c *Criterion, path string, scope []string) error {
	switch c.op {
	case "all", "any":
		inner := slices.Clone(scope)
		for _, ch := range c.children {
			if ch.as != "" {
				inner = append(inner, ch.as)
			}
		}
		for i, ch := range c.children {
			if err := resolve(ch, fmt.Sprintf("%s.%s[%d]", path, c.op, i), inner); err != nil {
				return err
			}
		}
	case "not":
		return resolve(c.children[0], path+".not", scope)
	default:
		if c.within != nil && !slices.Contains(scope, c.within.of) {
			return &QueryError{Path: path + ".within.of", Reason: "names no criterion in scope (an \"as\" in the same all/any list or an enclosing one)"}
		}
	}
	return nil
}

// checkCycles rejects named criteria whose windows refer to each other in a
// loop (a within b, b within a) or to themselves.
func checkCycles(named map[string]*Criterion) error {
	for name := range named {
		seen := map[string]bool{}
		for n := name; ; {
			c := named[n]
			if c == nil || c.within == nil {
				break
			}
			n = c.within.of
			if n == name || seen[n] {
				return &QueryError{Path: "criteria", Reason: "windows refer to each other in a loop"}
			}
			seen[n] = true
		}
	}
	return nil
}

// canonical renders a criterion as canonical JSON text. "as" names are
// replaced by labels derived from the named criterion's content, so renaming
// does not change the form. With shape set, numbers, dates and window bounds
// are replaced by "*".
func canonical(c *Criterion, named map[string]*Criterion, shape bool, labels map[string]string) []byte {
	var v any
	switch c.op {
	case "all", "any":
		parts := make([]string, len(c.children))
		for i, ch := range c.children {
			parts[i] = string(canonical(ch, named, shape, labels))
		}
		slices.Sort(parts)
		raw := make([]json.RawMessage, len(parts))
		for i, p := range parts {
			raw[i] = json.RawMessage(p)
		}
		v = map[string]any{c.op: raw}
	case "not":
		v = map[string]any{"not": json.RawMessage(canonical(c.children[0], named, shape, labels))}
	case "gender", "zip3", "race", "ethnicity":
		v = map[string]any{c.op: c.text}
	case "deceased":
		v = map[string]any{c.op: c.flag}
	case "birthYear", "age":
		v = map[string]any{c.op: rangeJSON(c.rng, shape, false)}
	default:
		m := map[string]any{c.op: factJSON(c.fact, shape)}
		if c.as != "" {
			m["as"] = label(c.as, named, shape, labels)
		}
		if w := c.within; w != nil {
			wm := map[string]any{"of": label(w.of, named, shape, labels)}
			if shape {
				if w.hasFrom || w.hasTo {
					wm["bounds"] = "*"
				}
			} else {
				if w.hasFrom {
					wm["from"] = map[string]any{"days": w.fromDays}
				}
				if w.hasTo {
					wm["to"] = map[string]any{"days": w.toDays}
				}
			}
			m["within"] = wm
		}
		v = m
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic("cohort: canonical form: " + err.Error()) // only strings, numbers and maps: cannot fail
	}
	return b
}

// label names a criterion by its content, not by the name the client chose.
func label(name string, named map[string]*Criterion, shape bool, labels map[string]string) string {
	if l, ok := labels[name]; ok {
		return l
	}
	c := *named[name]
	c.as = ""
	sum := sha256.Sum256(canonical(&c, named, shape, labels))
	l := "n" + hex.EncodeToString(sum[:10])
	labels[name] = l
	return l
}

func factJSON(f *factSpec, shape bool) map[string]any {
	m := map[string]any{}
	if len(f.codes) > 0 {
		m["code"] = f.codes
	}
	if len(f.valueCode) > 0 {
		m["valueCode"] = f.valueCode
	}
	if f.value.set {
		m["value"] = rangeJSON(f.value, shape, false)
	}
	if f.unit != "" {
		m["unit"] = f.unit
	}
	if f.status != "" {
		m["status"] = f.status
	}
	if f.date.set {
		m["date"] = rangeJSON(f.date, shape, true)
	}
	return m
}

func rangeJSON(r numRange, shape, date bool) any {
	if shape {
		return "*"
	}
	num := func(f float64) any {
		if date {
			return time.Unix(int64(f)*86400, 0).UTC().Format(time.DateOnly)
		}
		return json.RawMessage(strconv.FormatFloat(f, 'g', -1, 64))
	}
	m := map[string]any{}
	switch {
	case r.eq:
		m["eq"] = num(r.lo)
	default:
		if r.hasLo {
			m[map[bool]string{true: "gt", false: "ge"}[r.loOpen]] = num(r.lo)
		}
		if r.hasHi {
			m[map[bool]string{true: "lt", false: "le"}[r.hiOpen]] = num(r.hi)
		}
	}
	return m
}

func digest(prefix string, b []byte) string {
	h := sha256.New()
	h.Write([]byte(prefix))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// CriteriaJSON renders the query's criteria as JSON that ParseQuery accepts
// again (as the "criteria" member) with the same Fingerprint: members and
// all/any children in a canonical order, "as" names replaced by labels
// derived from the named criterion's content. It holds only what the client
// chose (codes, ranges, dates), so it may go into decision records; the
// overlap control re-evaluates earlier queries from it.
func (q *Query) CriteriaJSON() json.RawMessage {
	r := &renderer{named: q.named, labels: map[string]string{}, names: map[string]string{}, used: map[string]bool{}}
	return r.render(&q.Criteria)
}

// renderer renders criteria; names maps each "as" name to its label, made
// unique when two named criteria have the same content (and so the same
// label).
type renderer struct {
	named  map[string]*Criterion
	labels map[string]string
	names  map[string]string
	used   map[string]bool
}

func (r *renderer) name(as string) string {
	if n, ok := r.names[as]; ok {
		return n
	}
	base := label(as, r.named, false, r.labels)
	n := base
	for i := 2; r.used[n]; i++ {
		n = base + "-" + strconv.Itoa(i)
	}
	r.used[n] = true
	r.names[as] = n
	return n
}

// render is canonical's re-parseable twin: codings are {system, code}
// objects and dates YYYY-MM-DD strings.
func (r *renderer) render(c *Criterion) json.RawMessage {
	var v any
	switch c.op {
	case "all", "any":
		parts := make([]string, len(c.children))
		for i, ch := range c.children {
			parts[i] = string(r.render(ch))
		}
		slices.Sort(parts)
		raw := make([]json.RawMessage, len(parts))
		for i, p := range parts {
			raw[i] = json.RawMessage(p)
		}
		v = map[string]any{c.op: raw}
	case "not":
		v = map[string]any{"not": r.render(c.children[0])}
	case "gender", "zip3", "race", "ethnicity":
		v = map[string]any{c.op: c.text}
	case "deceased":
		v = map[string]any{c.op: c.flag}
	case "birthYear", "age":
		v = map[string]any{c.op: rangeJSON(c.rng, false, false)}
	default:
		f := c.fact
		spec := map[string]any{}
		if len(f.codes) > 0 {
			spec["code"] = codingJSON(f.codes)
		}
		if len(f.valueCode) > 0 {
			spec["valueCode"] = codingJSON(f.valueCode)
		}
		if f.value.set {
			spec["value"] = rangeJSON(f.value, false, false)
		}
		if f.unit != "" {
			spec["unit"] = f.unit
		}
		if f.status != "" {
			spec["status"] = f.status
		}
		if f.date.set {
			spec["date"] = rangeJSON(f.date, false, true)
		}
		m := map[string]any{c.op: spec}
		if c.as != "" {
			m["as"] = r.name(c.as)
		}
		if w := c.within; w != nil {
			wm := map[string]any{"of": r.name(w.of)}
			if w.hasFrom {
				wm["from"] = map[string]any{"days": w.fromDays}
			}
			if w.hasTo {
				wm["to"] = map[string]any{"days": w.toDays}
			}
			m["within"] = wm
		}
		v = m
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic("cohort: render criteria: " + err.Error()) // only strings, numbers and maps: cannot fail
	}
	return b
}

// codingJSON turns sorted "system|code" strings back into codings.
func codingJSON(codes []string) []map[string]string {
	out := make([]map[string]string, len(codes))
	for i, c := range codes {
		sys, code, _ := strings.Cut(c, "|") // a system never holds "|"
		out[i] = map[string]string{"system": sys, "code": code}
	}
	return out
}

// canonicalText is the canonical form of the whole query, for tests.
func (q *Query) canonicalText() string {
	return string(canonical(&q.Criteria, q.named, false, map[string]string{}))
}
