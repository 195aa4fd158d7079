package vault

import (
	"context"
	"slices"
)

// FindEach is FindAll by one findAny per clause, intersected here: for a
// backend's conjunctions too large for one query. findAny returns a
// clause's ids ascending and distinct (Store.FindAny).
func FindEach(ctx context.Context, typ string, clauses [][][]byte,
	findAny func(ctx context.Context, typ string, tokens [][]byte) ([]string, error)) ([]string, error) {
	var ids []string
	for i, tokens := range clauses {
		got, err := findAny(ctx, typ, tokens)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			ids = got
		} else {
			ids = intersectSorted(ids, got)
		}
		if len(ids) == 0 {
			return nil, nil
		}
	}
	return ids, nil
}

// intersectSorted returns the strings in both ascending lists, ascending.
func intersectSorted(a, b []string) []string {
	out := a[:0:0]
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			a = a[1:]
		case a[0] > b[0]:
			b = b[1:]
		default:
			out = append(out, a[0])
			a, b = a[1:], b[1:]
		}
	}
	return slices.Clip(out)
}

// FindAllCap bounds how many postings a backend counts of each clause of a
// FindAll to choose the one that drives: past it a clause is simply large.
const FindAllCap = 1024

// ByFewest orders the clauses of a FindAll to drive it: their indexes,
// fewest postings first, count counting a clause's postings up to
// FindAllCap. None when a clause has no tokens or no postings: then
// nothing matches.
func ByFewest(clauses [][][]byte, count func(tokens [][]byte) (int, error)) ([]int, error) {
	sizes := make([]int, len(clauses))
	for i, c := range clauses {
		if len(c) == 0 {
			return nil, nil
		}
		n, err := count(c)
		if err != nil || n == 0 {
			return nil, err
		}
		sizes[i] = n
	}
	order := make([]int, len(clauses))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return sizes[a] - sizes[b] })
	return order, nil
}
