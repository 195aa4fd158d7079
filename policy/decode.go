package policy

import (
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// decoded is what the decision query's result becomes: rego.EvalGenerateJSON
// hands decodeResult the result term, so the decision is read straight from
// the AST, without first converting it to JSON-like Go values.
type decoded struct {
	d  Decision
	ok bool
}

func decodeResult(t *ast.Term, _ *rego.EvalContext) (any, error) {
	d, ok := decodeDecision(t.Value)
	return decoded{d: d, ok: ok}, nil
}

// decodeDecision reads the decision object strictly: allow must be a boolean,
// breakGlass a boolean when present, reasons a list of strings, obligations a
// list of {type, securityLabels: [{system, code}]} and basedOn a list of {id,
// versionId}, each absent or null meaning empty (a set counts as a list, in
// sorted order; keys other than these are ignored). An allow must give a reason.
func decodeDecision(v ast.Value) (Decision, bool) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, false
	}
	var d Decision
	allow := obj.Get(ast.InternedTerm("allow"))
	if allow == nil {
		return Decision{}, false
	}
	b, isBool := allow.Value.(ast.Boolean)
	if !isBool {
		return Decision{}, false
	}
	d.Allow = bool(b)
	if bg := obj.Get(ast.InternedTerm("breakGlass")); bg != nil {
		b, isBool := bg.Value.(ast.Boolean)
		if !isBool {
			return Decision{}, false
		}
		d.BreakGlass = bool(b)
	}
	ok = eachElem(obj.Get(ast.InternedTerm("reasons")), func(t *ast.Term) bool {
		s, isStr := t.Value.(ast.String)
		d.Reasons = append(d.Reasons, string(s))
		return isStr
	}) && eachElem(obj.Get(ast.InternedTerm("obligations")), func(t *ast.Term) bool {
		var o Obligation
		okType := stringField(t, "type", &o.Type)
		okLabels := eachElem(field(t, "securityLabels"), func(l *ast.Term) bool {
			var c Coding
			ok := stringField(l, "system", &c.System) && stringField(l, "code", &c.Code)
			o.SecurityLabels = append(o.SecurityLabels, c)
			return ok
		})
		d.Obligations = append(d.Obligations, o)
		return okType && okLabels
	}) && eachElem(obj.Get(ast.InternedTerm("basedOn")), func(t *ast.Term) bool {
		var r ConsentRef
		ok := stringField(t, "id", &r.ID) && stringField(t, "versionId", &r.VersionID)
		d.BasedOn = append(d.BasedOn, r)
		return ok
	})
	if !ok || d.Allow && len(d.Reasons) == 0 { // an allow must say why
		return Decision{}, false
	}
	return d, true
}

// eachElem calls fn for each element of a list (an array, or a set in sorted
// order) until fn returns false; absent (nil) or null is an empty list.
func eachElem(t *ast.Term, fn func(*ast.Term) bool) bool {
	if t == nil {
		return true
	}
	var arr *ast.Array
	switch v := t.Value.(type) {
	case ast.Null:
		return true
	case *ast.Array:
		arr = v
	case ast.Set:
		arr = v.Sorted()
	default:
		return false
	}
	for i := range arr.Len() {
		if !fn(arr.Elem(i)) {
			return false
		}
	}
	return true
}

// field returns key of an object term, or nil when t is not an object or lacks it.
func field(t *ast.Term, key string) *ast.Term {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil
	}
	return obj.Get(ast.StringTerm(key))
}

// stringField reads an optional string field of an object term into dst; it
// fails when t is not an object or the field holds something else.
func stringField(t *ast.Term, key string, dst *string) bool {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return false
	}
	f := obj.Get(ast.StringTerm(key))
	if f == nil {
		return true
	}
	switch s := f.Value.(type) {
	case ast.String:
		*dst = string(s)
		return true
	case ast.Null:
		return true
	}
	return false
}
