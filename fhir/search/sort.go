package search

import (
	"math/big"
	"strings"
	"time"
)

// Compare orders two resources by sorts, given their Extract values: it
// returns -1 when a comes first, 1 when b does, 0 on a tie (the gateway
// then orders by type and id). Per R4, a resource with several values of
// the parameter sorts by the least for ascending and the greatest for
// descending; a date compares by its span's Low ascending and its High
// descending; a resource without a value comes last either way. Strings
// compare in NormalizeString form, tokens by code then system, references
// by Type/id or URL, numbers and quantities by value (a Range by its low
// ascending, its high descending).
func Compare(sorts []Sort, a, b []Value) int {
	for _, s := range sorts {
		ka, oka := sortKey(s, a)
		kb, okb := sortKey(s, b)
		switch {
		case !oka && !okb:
			continue
		case !oka:
			return 1
		case !okb:
			return -1
		}
		c := ka.cmp(kb)
		if s.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

type sortValue struct {
	t   time.Time
	n   *big.Rat
	s   string
	typ int // 0 time, 1 number, 2 string
}

func (x sortValue) cmp(y sortValue) int {
	switch x.typ {
	case 0:
		return x.t.Compare(y.t)
	case 1:
		return x.n.Cmp(y.n)
	}
	return strings.Compare(x.s, y.s)
}

// sortKey returns the least (ascending) or greatest (descending) sort
// value of the parameter among values.
func sortKey(s Sort, values []Value) (sortValue, bool) {
	var best sortValue
	found := false
	for _, v := range values {
		if v.Param != s.Param.Code || v.Type != s.Param.Type {
			continue
		}
		x, ok := sortValueOf(v, s.Desc)
		if !ok {
			continue
		}
		c := 0
		if found {
			c = x.cmp(best)
		}
		if !found || (!s.Desc && c < 0) || (s.Desc && c > 0) {
			best, found = x, true
		}
	}
	return best, found
}

func sortValueOf(v Value, desc bool) (sortValue, bool) {
	switch v.Type {
	case TypeDate:
		if desc {
			return sortValue{t: v.Date.High}, true
		}
		return sortValue{t: v.Date.Low}, true
	case TypeNumber, TypeQuantity:
		lo, hi, ok := numberBounds(v)
		if !ok {
			return sortValue{}, false
		}
		x := lo
		if desc || x == nil {
			x = hi
		}
		if desc && hi == nil {
			x = lo
		}
		if x == nil {
			return sortValue{}, false
		}
		return sortValue{n: x, typ: 1}, true
	case TypeString:
		return sortValue{s: NormalizeString(v.String), typ: 2}, true
	case TypeToken:
		return sortValue{s: v.Token.Code + "\x00" + v.Token.System, typ: 2}, true
	case TypeReference:
		r := v.Reference
		if r.ID != "" && r.URL == "" {
			return sortValue{s: r.Type + "/" + r.ID, typ: 2}, true
		}
		return sortValue{s: r.URL, typ: 2}, true
	case TypeURI:
		return sortValue{s: v.URI, typ: 2}, true
	}
	return sortValue{}, false
}

// SummaryElements returns the top-level elements of resourceType that the
// R4 definitions mark isSummary, for _summary=true, sorted; a choice
// element keeps its "[x]" (value[x]). It is nil for an unknown type.
func SummaryElements(resourceType string) []string {
	return append([]string(nil), load().summary[resourceType]...)
}
