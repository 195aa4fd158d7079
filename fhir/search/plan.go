package search

import "fmt"

// A plan is the parameters of one resource type with their expressions
// specialised for it, as Extract evaluates them. The expressions of a
// parameter are written for any focus; over one resource type much of them
// is known before any resource is seen:
//
//   - where the focus is the resource itself (the start of every
//     parameter's expression), "Observation" selects it and
//     "Patient" selects nothing;
//   - the element path of the items a step gives is mostly that of the
//     step (no choice), so the registry's step for the next name is found
//     once, here, not per item by two map lookups;
//   - the parameters of a type share subexpressions (Observation.code,
//     Observation.subject, Observation.value, the components of the
//     composites over the whole resource): every subexpression over the
//     resource is evaluated once per resource and its collection reused.
//
// The specialised nodes fall back to the general evaluation wherever an
// item is not as foreseen, so a plan only ever changes how fast a value is
// found, never which.
type plan struct {
	params []planParam // as registry.sorted
	memos  int         // number of memoised subexpressions
}

// planParam is one parameter of a plan.
type planParam struct {
	*Param
	expr expr
	// comps are the component expressions of a composite, specialised
	// when its expression selects the resource itself (code-value-quantity
	// of Observation), else the components' own.
	comps []expr
}

// shape is what is known of a collection before evaluation.
type shape struct {
	// root: the collection is the resource alone, as Extract starts with.
	root bool
	// known: every item has element path path.
	known bool
	path  string
}

type planBuilder struct {
	reg   *registry
	rt    string
	memos map[string]int // subexpression over the resource -> memo slot
}

// newPlan specialises the parameters of resource type rt.
func (r *registry) newPlan(rt string) *plan {
	b := &planBuilder{reg: r, rt: rt, memos: make(map[string]int)}
	root := shape{root: true, known: true, path: rt}
	pl := &plan{}
	for _, p := range r.sorted[rt] {
		pp := planParam{Param: p}
		var s shape
		pp.expr, s = b.spec(p.expr, root)
		if _, whole := pp.expr.(rootExpr); whole && s.root {
			for _, comp := range p.Components {
				e, _ := b.spec(comp.expr, root)
				pp.comps = append(pp.comps, e)
			}
		} else {
			for _, comp := range p.Components {
				pp.comps = append(pp.comps, comp.expr)
			}
		}
		pl.params = append(pl.params, pp)
	}
	pl.memos = len(b.memos)
	return pl
}

// spec returns e specialised for a focus of shape in, and the shape of
// its result.
func (b *planBuilder) spec(e expr, in shape) (expr, shape) {
	unknown := shape{}
	switch e := e.(type) {
	case rootOrMember:
		if !e.typeName {
			var on expr
			if in.root {
				on = rootExpr{} // the focus: the same, and shared with Type.name
			}
			m, s := b.member(on, e.name, in)
			return b.memo(in, m, s)
		}
		if in.root {
			if e.name == b.rt || e.name == "Resource" || e.name == "DomainResource" {
				return rootExpr{}, in
			}
			return emptyExpr{}, shape{known: true}
		}
		return e, in // a subset of the focus
	case member:
		on, s := b.spec(e.on, in)
		m, s := b.member(on, e.name, s)
		return b.memo(in, m, s)
	case call:
		on, s := expr(nil), in
		if e.on != nil {
			on, s = b.spec(e.on, in)
		}
		c := e
		c.on = on
		out := s // where, ofType, as, first: a subset of their input
		switch e.name {
		case "where":
			c.arg, _ = b.spec(e.arg, shape{known: s.known, path: s.path})
			out.root = false
		case "ofType", "as", "first":
			out.root = false
		default: // booleans and resolve()'s types: no path
			out = shape{known: true}
		}
		return b.memo(in, c, out)
	case binary:
		l, ls := b.spec(e.l, in)
		r, rs := b.spec(e.r, in)
		out := shape{known: true} // a boolean
		if e.op == "|" {
			out = unknown
			if ls.known && rs.known && ls.path == rs.path {
				out = shape{known: true, path: ls.path}
			}
		}
		return b.memo(in, binary{op: e.op, l: l, r: r}, out)
	case index:
		on, s := b.spec(e.on, in)
		s.root = false
		return b.memo(in, index{on: on, n: e.n}, s)
	case resourceVar:
		return rootExpr{}, shape{root: true, known: true, path: b.rt}
	case literal:
		return e, shape{known: true}
	}
	return e, unknown
}

// member is the step to name from the items of on (nil: the focus), of
// shape in.
func (b *planBuilder) member(on expr, name string, in shape) (expr, shape) {
	m := stepExpr{on: on, name: name}
	if !in.known {
		return m, shape{}
	}
	m.static, m.path = true, in.path
	m.st = b.reg.steps[in.path][name]
	switch {
	case m.st == nil:
		return m, shape{known: true, path: unknownPath}
	case len(m.st.choices) == 0:
		return m, shape{known: true, path: m.st.childPath}
	}
	return m, shape{}
}

// memo wraps e, a specialised expression, so that it is evaluated once
// per resource when its focus is the resource. Expressions alike are one:
// the key is e's Go syntax, which names its steps by their registry
// entries and its subexpressions by their memo slots.
func (b *planBuilder) memo(in shape, e expr, out shape) (expr, shape) {
	if !in.root {
		return e, out
	}
	key := fmt.Sprintf("%#v", e)
	id, ok := b.memos[key]
	if !ok {
		id = len(b.memos)
		b.memos[key] = id
	}
	return memoExpr{id: id, e: e}, out
}

// rootExpr is the resource itself.
type rootExpr struct{}

func (rootExpr) eval(c *evalCtx, _ []item) ([]item, error) { return c.rootColl, nil }

// emptyExpr is the empty collection: a type name that is not the
// resource's.
type emptyExpr struct{}

func (emptyExpr) eval(*evalCtx, []item) ([]item, error) { return nil, nil }

// stepExpr is member (or rootOrMember of a name) with the registry's step
// found beforehand for items of path path.
type stepExpr struct {
	on     expr // nil: the focus
	name   string
	static bool // st is that of path, for name
	path   string
	st     *step
}

func (m stepExpr) eval(c *evalCtx, focus []item) ([]item, error) {
	in := focus
	if m.on != nil {
		var err error
		if in, err = m.on.eval(c, focus); err != nil {
			return nil, err
		}
	}
	var steps map[string]map[string]*step
	mark := c.mark()
	for _, it := range in {
		obj, ok := it.v.(map[string]any)
		if !ok {
			continue
		}
		st := m.st
		if !m.static || it.path != m.path {
			if steps == nil {
				steps = load().steps
			}
			st = steps[it.path][m.name]
		}
		if st != nil {
			c.arena = st.navigate(c.arena, obj, m.name)
			continue
		}
		if v, ok := obj[m.name]; ok {
			c.arena = appendValues(c.arena, v, unknownPath, "")
		}
	}
	return c.since(mark), nil
}

// memoExpr is a subexpression over the resource, evaluated once per
// resource: the same in every parameter of the type.
type memoExpr struct {
	id int
	e  expr
}

func (m memoExpr) eval(c *evalCtx, focus []item) ([]item, error) {
	if s := &c.memo[m.id]; s.done {
		return s.items, s.err
	}
	items, err := m.e.eval(c, focus)
	c.memo[m.id] = memoSlot{done: true, items: items, err: err}
	return items, err
}

// memoSlot holds the collection of one memoExpr for the current resource.
type memoSlot struct {
	done  bool
	items []item
	err   error
}
