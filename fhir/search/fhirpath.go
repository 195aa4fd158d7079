package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// This file is the FHIRPath subset the R4 search expressions use (doc.go
// lists it). It evaluates over decoded JSON, which carries no types, so an
// item remembers where it was found: its element path lets navigation find
// choice elements (value[x] stored as valueQuantity) and its type comes from
// the choice suffix or the element table in r4.json.

// item is one value of a FHIRPath collection.
type item struct {
	v    any    // decoded JSON: map[string]any, string, bool, json.Number, float64
	path string // element path for navigation ("Observation.component", "Timing"), "" when unknown
	typ  string // FHIR type when known ("Quantity", "dateTime", "Patient"), else ""
}

type evalCtx struct {
	root item
	x    *Extractor
	// arena holds the items of every collection evaluated for one
	// resource: a collection is a slice of it, its capacity cut to its
	// length, so that appending to the arena never writes into one and
	// appending to one copies it. A collection is never modified once
	// made; when the arena grows, the collections made before keep the
	// old array.
	arena []item
	// out is the scratch slice Extract gathers values in, compVals that
	// of a composite's components.
	out, compVals []Value
	// rootColl is the collection of the resource alone; memo holds the
	// collections of the plan's subexpressions over it (memoExpr).
	rootColl []item
	memo     []memoSlot
}

// mark starts a collection at the end of the arena.
func (c *evalCtx) mark() int { return len(c.arena) }

// since returns the collection appended to the arena since mark m.
func (c *evalCtx) since(m int) []item {
	n := len(c.arena)
	return c.arena[m:n:n]
}

// one returns the collection of it alone.
func (c *evalCtx) one(it item) []item {
	m := c.mark()
	c.arena = append(c.arena, it)
	return c.since(m)
}

type expr interface {
	eval(c *evalCtx, focus []item) ([]item, error)
}

// errUnsupported marks FHIRPath outside the subset.
var errUnsupported = errors.New("unsupported FHIRPath")

// compile parses a FHIRPath expression of the supported subset.
func compile(src string) (expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.parseExpr(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected %q", errUnsupported, p.toks[p.pos].s)
	}
	return e, nil
}

type tokKind int

const (
	tIdent tokKind = iota
	tString
	tNumber
	tOp
	tEnv // %resource
)

type tok struct {
	kind tokKind
	s    string
}

func lex(src string) ([]tok, error) {
	var toks []tok
	for i := 0; i < len(src); {
		ch := src[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n':
			i++
		case ch == '\'':
			j := i + 1
			var b strings.Builder
			for ; j < len(src) && src[j] != '\''; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("%w: unterminated string", errUnsupported)
			}
			toks = append(toks, tok{tString, b.String()})
			i = j + 1
		case ch == '!' && i+1 < len(src) && src[i+1] == '=':
			toks = append(toks, tok{tOp, "!="})
			i += 2
		case strings.IndexByte(".|()=,[]", ch) >= 0:
			toks = append(toks, tok{tOp, string(ch)})
			i++
		case ch == '%' || ch == '_' || ch == '`' || isLetter(ch) || (ch >= '0' && ch <= '9'):
			j := i + 1
			for j < len(src) && (isLetter(src[j]) || src[j] == '_' || (src[j] >= '0' && src[j] <= '9')) {
				j++
			}
			word := src[i:j]
			switch {
			case ch == '%':
				if word != "%resource" {
					return nil, fmt.Errorf("%w: environment variable %s", errUnsupported, word)
				}
				toks = append(toks, tok{tEnv, word})
			case ch >= '0' && ch <= '9':
				toks = append(toks, tok{tNumber, word})
			case ch == '`':
				return nil, fmt.Errorf("%w: delimited identifier", errUnsupported)
			default:
				toks = append(toks, tok{tIdent, word})
			}
			i = j
		default:
			return nil, fmt.Errorf("%w: character %q", errUnsupported, ch)
		}
	}
	return toks, nil
}

func isLetter(b byte) bool { return b < 0x80 && unicode.IsLetter(rune(b)) }

type parser struct {
	toks []tok
	pos  int
}

func (p *parser) peek() (tok, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return tok{}, false
}

func (p *parser) accept(kind tokKind, s string) bool {
	if t, ok := p.peek(); ok && t.kind == kind && t.s == s {
		p.pos++
		return true
	}
	return false
}

// Binary operators by FHIRPath precedence, loosest first; "is" and "as"
// take a type name and are handled in parseType.
var levels = [][]string{{"or"}, {"and"}, {"=", "!="}, {"|"}}

func (p *parser) parseExpr(level int) (expr, error) {
	if level == len(levels) {
		return p.parseType()
	}
	left, err := p.parseExpr(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		t, ok := p.peek()
		if !ok || (t.kind != tOp && t.kind != tIdent) || !slices.Contains(levels[level], t.s) {
			return left, nil
		}
		p.pos++
		right, err := p.parseExpr(level + 1)
		if err != nil {
			return nil, err
		}
		left = binary{op: t.s, l: left, r: right}
	}
}

func (p *parser) parseType() (expr, error) {
	e, err := p.parseInvocation()
	if err != nil {
		return nil, err
	}
	for {
		t, ok := p.peek()
		if !ok || t.kind != tIdent || (t.s != "is" && t.s != "as") {
			return e, nil
		}
		p.pos++
		name, err := p.typeName()
		if err != nil {
			return nil, err
		}
		e = call{on: e, name: t.s, typeArg: name}
	}
}

func (p *parser) typeName() (string, error) {
	t, ok := p.peek()
	if !ok || t.kind != tIdent {
		return "", fmt.Errorf("%w: type name expected", errUnsupported)
	}
	p.pos++
	name := t.s
	if name == "FHIR" || name == "System" { // qualified type names: FHIR.Patient
		if !p.accept(tOp, ".") {
			return "", fmt.Errorf("%w: type name expected", errUnsupported)
		}
		return p.typeName()
	}
	return name, nil
}

// parseInvocation parses a term followed by .member and .function(...) steps.
func (p *parser) parseInvocation() (expr, error) {
	e, err := p.parseTerm()
	if err != nil {
		return nil, err
	}
	for {
		if p.accept(tOp, "[") {
			t, ok := p.peek()
			n, err := strconv.Atoi(t.s)
			if !ok || t.kind != tNumber || err != nil {
				return nil, fmt.Errorf("%w: index expected", errUnsupported)
			}
			p.pos++
			if !p.accept(tOp, "]") {
				return nil, fmt.Errorf("%w: ']' expected", errUnsupported)
			}
			e = index{on: e, n: n}
			continue
		}
		if !p.accept(tOp, ".") {
			return e, nil
		}
		t, ok := p.peek()
		if !ok || t.kind != tIdent {
			return nil, fmt.Errorf("%w: name expected after '.'", errUnsupported)
		}
		p.pos++
		if e, err = p.parseStep(e, t.s); err != nil {
			return nil, err
		}
	}
}

// index is coll[n] (Bundle.entry[0].resource).
type index struct {
	on expr
	n  int
}

func (x index) eval(c *evalCtx, focus []item) ([]item, error) {
	in, err := x.on.eval(c, focus)
	if err != nil || x.n >= len(in) {
		return nil, err
	}
	return in[x.n : x.n+1 : x.n+1], nil
}

func (p *parser) parseTerm() (expr, error) {
	t, ok := p.peek()
	if !ok {
		return nil, fmt.Errorf("%w: unexpected end", errUnsupported)
	}
	p.pos++
	switch {
	case t.kind == tOp && t.s == "(":
		e, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		if !p.accept(tOp, ")") {
			return nil, fmt.Errorf("%w: ')' expected", errUnsupported)
		}
		return e, nil
	case t.kind == tString:
		return literal{t.s}, nil
	case t.kind == tNumber:
		return literal{json.Number(t.s)}, nil
	case t.kind == tEnv:
		return resourceVar{}, nil
	case t.kind == tIdent && (t.s == "true" || t.s == "false"):
		return literal{t.s == "true"}, nil
	case t.kind == tIdent:
		return p.parseStep(nil, t.s)
	}
	return nil, fmt.Errorf("%w: unexpected %q", errUnsupported, t.s)
}

// parseStep parses a member name or a function call applied to on (nil:
// the focus).
func (p *parser) parseStep(on expr, name string) (expr, error) {
	if !p.accept(tOp, "(") {
		if on == nil {
			return rootOrMember{name: name, typeName: unicode.IsUpper(rune(name[0]))}, nil
		}
		return member{on: on, name: name}, nil
	}
	c := call{on: on, name: name}
	switch name {
	case "where":
		arg, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		c.arg = arg
	case "ofType", "as", "is":
		name, err := p.typeName()
		if err != nil {
			return nil, err
		}
		c.typeArg = name
	case "resolve", "exists", "empty", "first", "not":
	default:
		return nil, fmt.Errorf("%w: function %s()", errUnsupported, name)
	}
	if !p.accept(tOp, ")") {
		return nil, fmt.Errorf("%w: ')' expected after %s(", errUnsupported, name)
	}
	return c, nil
}

type literal struct{ v any }

func (l literal) eval(c *evalCtx, _ []item) ([]item, error) { return c.one(item{v: l.v}), nil }

type resourceVar struct{}

func (resourceVar) eval(c *evalCtx, _ []item) ([]item, error) { return c.one(c.root), nil }

// rootOrMember is the first name of a path: a type name selects the focus
// when it is the resource of that type (Patient.name on a Patient;
// Resource.id on any), otherwise the name is a member of the focus.
type rootOrMember struct {
	name     string
	typeName bool // name is capitalised: a type name
}

func (f rootOrMember) eval(c *evalCtx, focus []item) ([]item, error) {
	if f.typeName {
		m := c.mark()
		for _, it := range focus {
			if it.path == c.root.path && (f.name == it.typ || f.name == "Resource" || f.name == "DomainResource") {
				c.arena = append(c.arena, it)
			}
		}
		return c.since(m), nil
	}
	return c.navigate(focus, f.name), nil
}

type member struct {
	on   expr
	name string
}

func (m member) eval(c *evalCtx, focus []item) ([]item, error) {
	in, err := m.on.eval(c, focus)
	if err != nil {
		return nil, err
	}
	return c.navigate(in, m.name), nil
}

// navigate returns the children name of each item, flattening arrays.
func (c *evalCtx) navigate(in []item, name string) []item {
	reg := load()
	m := c.mark()
	for _, it := range in {
		obj, ok := it.v.(map[string]any)
		if !ok {
			continue
		}
		if st := reg.steps[it.path][name]; st != nil {
			c.arena = st.navigate(c.arena, obj, name)
			continue
		}
		// Neither element table holds this path or any below it: it is
		// no choice, has no known type, and no step below it will find one.
		if v, ok := obj[name]; ok {
			c.arena = appendValues(c.arena, v, unknownPath, "")
		}
	}
	return c.since(m)
}

// unknownPath is the path of an element below every path the element
// tables hold. It is no resource type (see rootOrMember) and no parent
// in the registry's steps.
const unknownPath = "?"

// navigate is Extractor.navigate for one object and a child path the
// registry knows.
func (st *step) navigate(out []item, obj map[string]any, name string) []item {
	if v, ok := obj[name]; ok {
		return appendValues(out, v, st.childPath, st.childType)
	}
	for _, c := range st.choices {
		if v, ok := obj[c.member]; ok {
			out = appendValues(out, v, c.childPath, c.typ)
		}
	}
	return out
}

func appendValues(out []item, v any, path, typ string) []item {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if e != nil {
				out = append(out, item{v: e, path: path, typ: typ})
			}
		}
		return out
	}
	if v != nil {
		out = append(out, item{v: v, path: path, typ: typ})
	}
	return out
}

type call struct {
	on      expr // nil: the focus
	name    string
	arg     expr
	typeArg string
}

func (f call) eval(c *evalCtx, focus []item) ([]item, error) {
	in := focus
	if f.on != nil {
		var err error
		if in, err = f.on.eval(c, focus); err != nil {
			return nil, err
		}
	}
	switch f.name {
	case "where":
		// The criterion of each item is evaluated first, its collection
		// made in the arena, then the items kept are copied after them.
		var small [64]bool
		keep := small[:0]
		if len(in) > len(small) {
			keep = make([]bool, 0, len(in))
		}
		for _, it := range in {
			r, err := f.arg.eval(c, c.one(it))
			if err != nil {
				return nil, err
			}
			b, ok := single(r)
			keep = append(keep, ok && b.v == true)
		}
		m := c.mark()
		for i, it := range in {
			if keep[i] {
				c.arena = append(c.arena, it)
			}
		}
		return c.since(m), nil
	case "ofType", "as":
		m := c.mark()
		for _, it := range in {
			if isType(it, f.typeArg) {
				c.arena = append(c.arena, it)
			}
		}
		return c.since(m), nil
	case "is":
		it, ok := single(in)
		if !ok {
			return nil, nil
		}
		return c.one(item{v: isType(it, f.typeArg)}), nil
	case "resolve":
		m := c.mark()
		for _, it := range in {
			if t := c.x.targetType(c.root, it.v); t != "" {
				c.arena = append(c.arena, item{typ: t})
			}
		}
		return c.since(m), nil
	case "exists":
		return c.one(item{v: len(in) > 0}), nil
	case "empty":
		return c.one(item{v: len(in) == 0}), nil
	case "first":
		if len(in) == 0 {
			return nil, nil
		}
		return in[:1:1], nil
	case "not":
		it, ok := single(in)
		if b, isBool := it.v.(bool); ok && isBool {
			return c.one(item{v: !b}), nil
		}
		return nil, nil
	}
	return nil, fmt.Errorf("%w: function %s()", errUnsupported, f.name)
}

// isType reports whether it is known to be of FHIR type name. Primitive
// names compare without case because definitions write both dateTime and
// DateTime.
func isType(it item, name string) bool {
	return it.typ != "" && strings.EqualFold(it.typ, name)
}

func single(in []item) (item, bool) {
	if len(in) != 1 {
		return item{}, false
	}
	return in[0], true
}

type binary struct {
	op   string
	l, r expr
}

func (b binary) eval(c *evalCtx, focus []item) ([]item, error) {
	l, err := b.l.eval(c, focus)
	if err != nil {
		return nil, err
	}
	r, err := b.r.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "|":
		switch {
		case len(l) == 0:
			return r, nil
		case len(r) == 0:
			return l, nil
		}
		m := c.mark()
		c.arena = append(append(c.arena, l...), r...) // duplicates are harmless to an index
		return c.since(m), nil
	case "=", "!=":
		li, lok := single(l)
		ri, rok := single(r)
		if !lok || !rok {
			return nil, nil // empty (or a collection: not in the R4 expressions)
		}
		return c.one(item{v: equal(li.v, ri.v) == (b.op == "=")}), nil
	case "and", "or":
		lb, lok := boolOf(l)
		rb, rok := boolOf(r)
		stop := b.op == "or" // or: true wins; and: false wins
		switch {
		case lok && lb == stop, rok && rb == stop:
			return c.one(item{v: stop}), nil
		case lok && rok:
			return c.one(item{v: !stop}), nil
		}
		return nil, nil
	}
	return nil, fmt.Errorf("%w: operator %s", errUnsupported, b.op)
}

func boolOf(in []item) (bool, bool) {
	it, ok := single(in)
	if !ok {
		return false, false
	}
	b, ok := it.v.(bool)
	return b, ok
}

// equal compares two primitive values; values of different kinds are not
// equal (so Patient.deceased != false holds for a deceasedDateTime).
func equal(a, b any) bool {
	switch a := a.(type) {
	case string:
		b, ok := b.(string)
		return ok && a == b
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case json.Number, float64:
		ar, aok := decimalOf(a)
		br, bok := decimalOf(b)
		return aok && bok && ar == br
	}
	return false
}

// decimalOf renders a JSON number in plain decimal notation.
func decimalOf(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case float64:
		return strconv.FormatFloat(n, 'f', -1, 64), true
	case int:
		return strconv.Itoa(n), true
	case int64:
		return strconv.FormatInt(n, 10), true
	}
	return "", false
}
