package search

import (
	"math/big"
	"slices"
	"strings"
)

// Match reports whether a resource whose Extract values are values
// satisfies c, with R4's semantics (search.html; see doc.go for the
// choices made where R4 leaves room). A Chain or Has clause holds when
// the resource's reference (Chain) or its _id (Has) is in c.Targets.
func (c Clause) Match(values []Value) bool {
	switch {
	case c.Has != nil:
		for _, v := range values {
			if v.Param == "_id" && v.Type == TypeToken && slices.Contains(c.Targets, v.Token.Code) {
				return true
			}
		}
		return false
	case c.Chain != nil:
		for _, v := range values {
			if v.Param == c.Param.Code && v.Type == TypeReference && v.Reference.ID != "" &&
				slices.Contains(c.Targets, v.Reference.Type+"/"+v.Reference.ID) {
				return true
			}
		}
		return false
	}
	var own []Value
	for _, v := range values {
		if v.Param == c.Param.Code && v.Type == c.Param.Type {
			own = append(own, v)
		}
	}
	if c.Modifier == "missing" {
		if len(c.Values) == 0 {
			return false
		}
		return (len(own) == 0) == c.Values[0].Missing
	}
	if c.Modifier == "not" {
		// :not holds for resources with no value matching any of the
		// predicates, those without the parameter included.
		for _, p := range c.Values {
			for _, v := range own {
				if matchToken(p, "", v.Token) {
					return false
				}
			}
		}
		return true
	}
	for _, p := range c.Values {
		if p.Prefix == "ne" {
			// ne: no value equal (R4 reads ne as the negation of eq over
			// the resource: a resource with a value equal does not match),
			// and at least one value present.
			eq := p
			eq.Prefix = "eq"
			if len(own) > 0 && !slices.ContainsFunc(own, func(v Value) bool { return matchValue(c.Param.Type, c.Modifier, eq, v) }) {
				return true
			}
			continue
		}
		for _, v := range own {
			if matchValue(c.Param.Type, c.Modifier, p, v) {
				return true
			}
		}
	}
	return false
}

func matchValue(t Type, mod string, p Predicate, v Value) bool {
	switch t {
	case TypeToken:
		return matchToken(p, mod, v.Token)
	case TypeString:
		switch mod {
		case "exact":
			return v.String == p.Text
		case "contains":
			return strings.Contains(NormalizeString(v.String), p.Text)
		}
		return strings.HasPrefix(NormalizeString(v.String), p.Text)
	case TypeURI:
		return matchURI(p.URI, mod, v.URI)
	case TypeReference:
		return matchReference(p, mod, v.Reference)
	case TypeDate:
		return matchDate(p.Prefix, p.Date, v.Date)
	case TypeNumber, TypeQuantity:
		return matchNumber(t, p, v)
	case TypeComposite:
		if len(p.Components) != len(v.Components) {
			return false
		}
		for i, cp := range p.Components {
			cv := v.Components[i]
			if cp.Prefix == "ne" {
				eq := cp
				eq.Prefix = "eq"
				if matchValue(cv.Type, "", eq, cv) {
					return false
				}
				continue
			}
			if !matchValue(cv.Type, "", cp, cv) {
				return false
			}
		}
		return true
	}
	return false
}

func matchToken(p Predicate, mod string, t Token) bool {
	switch mod {
	case "text":
		for _, s := range []string{t.Display, t.Text} {
			if n := NormalizeString(s); n != "" && (strings.HasPrefix(n, p.Text) || strings.Contains(n, " "+p.Text)) {
				return true
			}
		}
		return false
	case "of-type":
		return t.Code == p.Code && slices.Contains(t.OfType, Coding{System: p.TypeSystem, Code: p.TypeCode})
	}
	if !p.HasSystem {
		return t.Code == p.Code
	}
	if p.System == "" {
		return t.System == "" && t.Code == p.Code
	}
	return t.System == p.System && (p.Code == "" || t.Code == p.Code)
}

// matchURI: exact; :below the value is the query or under it in the path
// ("http://a/b" is below "http://a" and "http://a/"); :above the query is
// the value or under it.
func matchURI(q, mod, v string) bool {
	switch mod {
	case "below":
		return under(v, q)
	case "above":
		return under(q, v)
	}
	return v == q
}

// under reports whether a, without a final "/", is b (same) or below b's
// path.
func under(a, b string) bool {
	a, b = strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/")
	return b != "" && (a == b || strings.HasPrefix(a, b+"/"))
}

func matchReference(p Predicate, mod string, r Reference) bool {
	if mod == "identifier" {
		return r.Identifier != nil && matchToken(p, "", *r.Identifier)
	}
	if isResourceType(mod) && r.Type != mod {
		return false
	}
	switch {
	case p.URL != "":
		return r.URL == p.URL && (p.Version == "" || r.Version == p.Version)
	case p.Type != "":
		return r.Type == p.Type && r.ID == p.ID && r.URL == "" && (p.Version == "" || r.Version == p.Version)
	}
	return r.ID == p.ID && r.URL == "" && (p.Version == "" || r.Version == p.Version)
}

// matchDate compares the value's span v with the query's span q (R4
// search.html, "prefix"; ap's span is already widened).
func matchDate(prefix string, q, v DateRange) bool {
	switch prefix {
	case "eq":
		return !v.Low.Before(q.Low) && !v.High.After(q.High)
	case "gt":
		return v.High.After(q.High)
	case "lt":
		return v.Low.Before(q.Low)
	case "ge":
		return v.High.After(q.High) || (!v.Low.Before(q.Low) && !v.High.After(q.High))
	case "le":
		return v.Low.Before(q.Low) || (!v.Low.Before(q.Low) && !v.High.After(q.High))
	case "sa":
		return !v.Low.Before(q.High)
	case "eb":
		return !v.High.After(q.Low)
	case "ap":
		return v.Low.Before(q.High) && v.High.After(q.Low)
	}
	return false
}

// numberBounds is the closed interval a number or quantity value covers:
// the value itself, or a Range's low and high (nil when open).
func numberBounds(v Value) (lo, hi *big.Rat, ok bool) {
	s := v.Number
	if v.Type == TypeQuantity || s == "" {
		s = v.Quantity.Value
	}
	if s != "" {
		r, ok := Rat(s)
		return r, r, ok
	}
	var okLo, okHi bool
	lo, okLo = Rat(v.Quantity.Low)
	hi, okHi = Rat(v.Quantity.High)
	if !okLo {
		lo = nil
	}
	if !okHi {
		hi = nil
	}
	return lo, hi, okLo || okHi
}

func matchNumber(t Type, p Predicate, v Value) bool {
	if t == TypeQuantity && (p.Code != "" || p.System != "") {
		q := v.Quantity
		switch {
		case p.System != "":
			if q.System != p.System || q.Code != p.Code {
				return false
			}
		case q.Code != p.Code && q.Unit != p.Code:
			return false
		}
	}
	lo, hi, ok := numberBounds(v)
	if !ok {
		return false
	}
	// An open end compares as beyond any value.
	gtq := func(x *big.Rat, q *big.Rat) bool { return x == nil || x.Cmp(q) > 0 }
	ltq := func(x *big.Rat, q *big.Rat) bool { return x == nil || x.Cmp(q) < 0 }
	switch p.Prefix {
	case "eq":
		return lo != nil && hi != nil && lo.Cmp(p.Low) >= 0 && hi.Cmp(p.High) < 0
	case "gt":
		return gtq(hi, p.Value)
	case "lt":
		return ltq(lo, p.Value)
	case "ge":
		return hi == nil || hi.Cmp(p.Value) >= 0
	case "le":
		return lo == nil || lo.Cmp(p.Value) <= 0
	case "sa":
		return lo != nil && lo.Cmp(p.Value) > 0
	case "eb":
		return hi != nil && hi.Cmp(p.Value) < 0
	case "ap":
		return (lo == nil || lo.Cmp(p.High) <= 0) && (hi == nil || hi.Cmp(p.Low) >= 0)
	}
	return false
}
