package cohort

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cell is one group of a breakdown: the value of each dimension and the true
// number of permitted matching patients. Cells with no patients are absent.
type Cell struct {
	Values map[string]string `json:"values"`
	Count  int               `json:"count"`
}

// Match returns the keys of the patients matching q, sorted, among those
// permit allows. at is the reference time for age. permit is called at most
// once per matching patient, never with the index locked (it may call back
// into the index); a nil permit allows nobody. The evaluation is
// Matching's, so a Matching just before (to look the patients up in bulk)
// costs nothing more.
func (ix *Index) Match(q *Query, at time.Time, permit func(patient string) bool) []string {
	keys := ix.Matching(q, false, at)
	out := keys[:0]
	for _, k := range keys {
		if permit != nil && permit(k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return slices.Clip(out)
}

// Count returns the number of patients Match would return.
func (ix *Index) Count(q *Query, at time.Time, permit func(patient string) bool) int {
	keys, _ := ix.candidates(q, at, nil)
	n := 0
	for _, k := range keys {
		if permit != nil && permit(k) {
			n++
		}
	}
	return n
}

// Breakdown counts the permitted matching patients per combination of the
// query's breakdown dimensions. Cells come sorted by their values in the
// order of q.Breakdown. Every patient falls in exactly one cell (a patient
// with several race codes is "multiple"; a missing value is "unknown"), so
// the cells add up to Count. The counts are true counts: pass them through
// Privacy.ReleaseBreakdown before they leave the gateway.
func (ix *Index) Breakdown(q *Query, at time.Time, permit func(patient string) bool) ([]Cell, error) {
	if len(q.Breakdown) == 0 {
		return nil, ErrNoBreakdown
	}
	keys, values := ix.candidates(q, at, q.Breakdown)
	counts := map[string]int{}
	first := map[string][]string{}
	for i, k := range keys {
		if permit == nil || !permit(k) {
			continue
		}
		ck := strings.Join(values[i], "\x00")
		counts[ck]++
		if _, ok := first[ck]; !ok {
			first[ck] = values[i]
		}
	}
	cells := make([]Cell, 0, len(counts))
	order := make([][]string, 0, len(counts))
	for ck, n := range counts {
		vals := first[ck]
		m := make(map[string]string, len(vals))
		for i, d := range q.Breakdown {
			m[d] = vals[i]
		}
		cells = append(cells, Cell{Values: m, Count: n})
		order = append(order, vals)
	}
	idx := make([]int, len(cells))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return slices.Compare(order[a], order[b]) })
	sorted := make([]Cell, len(cells))
	for i, j := range idx {
		sorted[i] = cells[j]
	}
	return sorted, nil
}

// candidates evaluates q under the read lock and returns the matching
// patients' keys and, if dims are given, their dimension values.
func (ix *Index) candidates(q *Query, at time.Time, dims []string) ([]string, [][]string) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e := &evaluator{ix: ix, q: q, year: at.UTC().Year(), anchors: map[string][]dated{}}
	set := e.eval(&q.Criteria)
	var keys []string
	var values [][]string
	set.each(func(pn uint32) {
		p := ix.patients[pn]
		if p == nil {
			return
		}
		keys = append(keys, p.key)
		if dims != nil {
			v := make([]string, len(dims))
			for i, d := range dims {
				v[i] = dimension(p.demo, d, e.year)
			}
			values = append(values, v)
		}
	})
	return keys, values
}

// dimension returns the value of a breakdown dimension for a patient.
func dimension(d demographics, dim string, year int) string {
	orUnknown := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	several := func(codes []string) string {
		switch len(codes) {
		case 0:
			return "unknown"
		case 1:
			return codes[0]
		}
		return "multiple"
	}
	switch dim {
	case "gender":
		return orUnknown(d.gender)
	case "zip3":
		return orUnknown(d.zip3)
	case "race":
		return several(d.race)
	case "ethnicity":
		return several(d.ethnicity)
	case "deceased":
		return strconv.FormatBool(d.deceased)
	case "birthDecade":
		switch {
		case d.over89:
			return "90+"
		case d.birthYear == 0:
			return "unknown"
		}
		return strconv.Itoa(d.birthYear/10*10) + "s"
	case "ageBand":
		switch {
		case d.over89:
			return "90+"
		case d.birthYear == 0 || year < d.birthYear:
			return "unknown"
		}
		age := year - d.birthYear
		if age >= 90 {
			return "90+"
		}
		lo := age / 10 * 10
		return strconv.Itoa(lo) + "-" + strconv.Itoa(lo+9)
	}
	return "unknown"
}

// evaluator evaluates one query against the index; the caller holds the read
// lock.
type evaluator struct {
	ix      *Index
	q       *Query
	year    int
	anchors map[string][]dated // "as" name -> its dated facts
}

func (e *evaluator) words() int { return len(e.ix.universe) }

func (e *evaluator) eval(c *Criterion) bitset {
	ix := e.ix
	switch c.op {
	case "all":
		var acc bitset
		for i, ch := range c.children {
			s := e.eval(ch)
			if i == 0 {
				acc = s
			} else {
				acc = acc.and(s)
			}
			if acc.empty() {
				return nil
			}
		}
		return acc
	case "any":
		acc := make(bitset, e.words())
		for _, ch := range c.children {
			acc.orInto(e.eval(ch))
		}
		return acc
	case "not":
		return ix.universe.andNot(e.eval(c.children[0]))
	case "gender", "zip3", "race", "ethnicity":
		return ix.universe.and(ix.demo[c.op+"\x00"+c.text])
	case "deceased":
		dead := ix.demo["deceased\x00true"]
		if c.flag {
			return ix.universe.and(dead)
		}
		return ix.universe.andNot(dead)
	case "birthYear", "age":
		acc := make(bitset, e.words())
		for k, set := range ix.demo {
			ys, ok := strings.CutPrefix(k, "year\x00")
			if !ok {
				continue
			}
			if e.yearMatches(c, ys) {
				acc.orInto(set)
			}
		}
		return acc
	}
	set, _ := e.facts(c, false)
	return set
}

// yearMatches tests a birthYear or age range against a year posting: a
// birth year, or "90+" for patients whose year is withheld. Age is the
// reference year minus the birth year. A "90+" patient matches an age range
// only if every age from 90 up is in it (age >= 90 does, age < 100 does not):
// the index claims a match only when it is sure.
func (e *evaluator) yearMatches(c *Criterion, ys string) bool {
	if ys == "90+" {
		return c.op == "age" && !c.rng.hasHi && c.rng.contains(90)
	}
	y, err := strconv.Atoi(ys)
	if err != nil {
		return false
	}
	if c.op == "birthYear" {
		return c.rng.contains(float64(y))
	}
	return c.rng.contains(float64(e.year - y))
}

// dated is one dated fact of a patient; anchors are sorted lists of them.
type dated struct {
	patient uint32
	day     int32
}

func compareDated(a, b dated) int {
	if c := cmp.Compare(a.patient, b.patient); c != 0 {
		return c
	}
	return cmp.Compare(a.day, b.day)
}

// facts evaluates a fact criterion: the patients with a matching fact and,
// if days is set, the matching dated facts sorted by patient and day.
func (e *evaluator) facts(c *Criterion, days bool) (bitset, []dated) {
	ix := e.ix
	set := make(bitset, e.words())
	spec, ok := e.resolve(c.fact)
	if !ok {
		return set, nil // a code, unit or status the index has never seen
	}
	var out []dated
	var anchor []dated
	if c.within != nil {
		anchor = e.anchor(c.within.of)
		if len(anchor) == 0 {
			return set, nil
		}
	}
	visit := func(fn uint32) {
		f := &ix.facts[fn]
		if !f.live() || !spec.matches(ix, f) {
			return
		}
		if c.within != nil && !(f.hasDay() && inWindow(anchor, f.patient, f.day, c.within)) {
			return
		}
		set = set.set(f.patient)
		if days && f.hasDay() {
			out = append(out, dated{f.patient, f.day})
		}
	}
	// A window limits the patients to those with an anchor fact. When their
	// facts are fewer than the postings hold, read their facts instead.
	kind := c.fact.kind
	posted := len(ix.byKind[kind])
	if spec.codes != nil {
		posted = 0
		for _, code := range spec.codes {
			posted += len(ix.byCode[postingKey(kind, code)])
		}
	}
	owned := 0
	eachAnchorPatient := func(fn func(*patient)) {
		for i, a := range anchor {
			if i == 0 || anchor[i-1].patient != a.patient {
				fn(ix.patients[a.patient])
			}
		}
	}
	eachAnchorPatient(func(p *patient) {
		for _, rn := range p.resources {
			owned += int(ix.res[rn].n)
		}
	})
	switch {
	case anchor != nil && owned < posted:
		eachAnchorPatient(func(p *patient) {
			for _, rn := range p.resources {
				r := ix.res[rn]
				for fn := r.first; fn < r.first+r.n; fn++ {
					f := &ix.facts[fn]
					if f.kind == kind && (spec.codes == nil || intersects(spec.codes, ix.codesOf(f))) {
						visit(fn)
					}
				}
			}
		})
	case spec.codes == nil:
		for _, fn := range ix.byKind[kind] {
			visit(fn)
		}
	default:
		// A fact with two of the codes asked for is in two postings; the
		// set and the sorted anchor list do not mind a repeat.
		for _, code := range spec.codes {
			for _, fn := range ix.byCode[postingKey(kind, code)] {
				visit(fn)
			}
		}
	}
	slices.SortFunc(out, compareDated)
	return set, out
}

// resolvedSpec is a factSpec with its strings turned into the index's
// dictionary ids.
type resolvedSpec struct {
	*factSpec
	codes  []uint32 // sorted; nil = any
	vcodes []uint32 // sorted; nil = any
	unit   uint32
	status uint32
}

// resolve looks up the strings of a spec in the dictionary; ok is false when
// no fact can match (a required string the index does not hold).
func (e *evaluator) resolve(s *factSpec) (resolvedSpec, bool) {
	ix := e.ix
	r := resolvedSpec{factSpec: s}
	ids := func(ss []string) ([]uint32, bool) {
		if len(ss) == 0 {
			return nil, true
		}
		out := []uint32{}
		for _, c := range ss {
			if id, ok := ix.lookup(c); ok {
				out = append(out, id)
			}
		}
		slices.Sort(out)
		return out, len(out) > 0
	}
	var ok bool
	if r.codes, ok = ids(s.codes); !ok {
		return r, false
	}
	if r.vcodes, ok = ids(s.valueCode); !ok {
		return r, false
	}
	if s.unit != "" {
		if r.unit, ok = ix.lookup(s.unit); !ok {
			return r, false
		}
	}
	if s.status != "" {
		if r.status, ok = ix.lookup(s.status); !ok {
			return r, false
		}
	}
	return r, true
}

// anchor returns the dated facts matching the criterion named name.
func (e *evaluator) anchor(name string) []dated {
	if a, ok := e.anchors[name]; ok {
		return a
	}
	_, days := e.facts(e.q.named[name], true)
	e.anchors[name] = days
	return days
}

// inWindow reports whether the patient has an anchor day a with
// a+from <= day <= a+to, that is day-to <= a <= day-from.
func inWindow(anchors []dated, patient uint32, day int32, w *window) bool {
	lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
	if w.hasTo {
		lo = max(lo, int64(day)-int64(w.toDays))
	}
	if w.hasFrom {
		hi = min(hi, int64(day)-int64(w.fromDays))
	}
	i, _ := slices.BinarySearchFunc(anchors, dated{patient, int32(lo)}, compareDated)
	return i < len(anchors) && anchors[i].patient == patient && int64(anchors[i].day) <= hi
}

// matches tests a fact against everything of a spec except its codes (the
// postings already chose by code) and its window.
func (s *resolvedSpec) matches(ix *Index, f *fact) bool {
	if s.value.set && !(f.hasValue() && s.value.contains(f.value)) {
		return false
	}
	if s.unit != 0 && s.unit != f.unitCode && s.unit != f.unit {
		return false
	}
	if s.vcodes != nil && !intersects(s.vcodes, ix.vcodesOf(f)) {
		return false
	}
	if s.status != 0 && s.status != f.status {
		return false
	}
	if s.date.set && !(f.hasDay() && s.date.contains(float64(f.day))) {
		return false
	}
	return true
}

// intersects reports whether two sorted lists share an element.
func intersects(a, b []uint32) bool {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] == b[j]:
			return true
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return false
}
