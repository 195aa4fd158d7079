package cohort

import (
	"encoding/json"
	"math/bits"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Query-set overlap control. Small-cell suppression hides a count of 1..10,
// but two released counts whose patient sets differ by a few patients give
// that small number away by subtraction ("males" minus "males not aged 90+").
// Index.Answer therefore compares the patient set S of every count about to
// be released with the sets T of the earlier releases the caller passes (its
// decision log, re-evaluated on the current index): if 0 < |S Δ T| <
// Threshold for any of them, the count is suppressed with ReasonOverlap.
//
// A release exposes more than its counts: a breakdown's cells add up to its
// total and to its rows' marginals. So for each release, earlier or new, the
// sets compared are its total, each released cell, the total minus each
// released cell, the union of its hidden cells (total minus the released
// ones), and per row (cells that differ in one dimension) the union of the
// row's hidden cells and of its released cells. The new release is also
// compared with itself and with the empty set, so none of its derived unions
// is itself small. Sets are of permitted patients: an earlier set is
// re-evaluated on the current index and filtered by the permit callback of the
// current query (lazily: only the patients that can decide the comparison are
// asked).
//
// Not covered: combinations of three or more releases beyond the unions
// above (Denning's tracker), differences that come from changes of the data
// (new patients, opt-outs) between two releases of the same query, and
// releases outside the history the caller passes (its window and bound).

// Earlier is an earlier release, as the caller's decision log recorded it.
type Earlier struct {
	Criteria  json.RawMessage // Query.CriteriaJSON of the earlier query
	Breakdown []string        // its breakdown dimensions, if its answer has cells
	Total     Released        // its count, or its breakdown's total
	Cells     []ReleasedCell  // its breakdown's cells; nil for a count
}

// Answer is a count or a breakdown as Index.Answer releases it.
type Answer struct {
	Total     Released
	Cells     []ReleasedCell // nil for a count
	Permitted int            // matching patients whose consent permits the use
	Refused   int            // matching patients whose consent does not
	Overlaps  int            // counts suppressed by the overlap control
	Compared  int            // earlier releases compared with
	Skipped   int            // earlier releases whose criteria could not be parsed
}

// Answer evaluates q at at among the patients permit allows and releases
// its count (or, with breakdown, its total and cells) under p: small-cell and
// complementary suppression, then the overlap control against earlier (the
// newest first; at most p's history bound are used), then noise and
// rounding. permit is called never with the index locked, at most once per
// patient: for the matching patients, and for the few others an overlap
// comparison needs. The matching patients' calls are concurrent, on up to
// GOMAXPROCS goroutines: permit must be safe for that.
//
// A repeat of an earlier release of the same query (same fingerprint and
// breakdown) starts from that release's suppressions, so on unchanged data
// it gets the identical answer.
func (ix *Index) Answer(q *Query, breakdown bool, at time.Time, p Privacy, permit func(patient string) bool, earlier []Earlier) (Answer, error) {
	if breakdown && len(q.Breakdown) == 0 {
		return Answer{}, ErrNoBreakdown
	}
	var dims []string
	if breakdown {
		dims = q.Breakdown
	}
	p = p.withDefaults()
	valid := p.Validate() == nil
	scope, history := p.Overlap()
	control := valid && scope != OverlapOff
	if len(earlier) > history {
		earlier = earlier[:history]
	}
	year := at.UTC().Year()

	// Evaluate everything on one state of the index.
	var ans Answer
	type past struct {
		e  Earlier
		ev *evaluated
		fp string
	}
	var pasts []past
	ix.mu.RLock()
	cur := ix.evaluate(q, dims, year)
	if control {
		for _, e := range earlier {
			eq := ix.sets.parse(e.Criteria)
			if eq == nil {
				ans.Skipped++
				continue
			}
			var edims []string
			if e.Cells != nil {
				edims = e.Breakdown
			}
			pasts = append(pasts, past{e: e, ev: ix.evaluate(eq, edims, year), fp: eq.Fingerprint()})
		}
	}
	keys := ix.keysLocked()
	ix.mu.RUnlock()
	ans.Compared = len(pasts)

	c := &consent{keys: keys, permit: permit, memo: map[uint32]bool{}}
	c.prefetch(cur.all)
	var s bitset
	cur.all.each(func(pn uint32) {
		if c.ok(pn) {
			s = s.set(pn)
			ans.Permitted++
		} else {
			ans.Refused++
		}
	})
	n := ans.Permitted
	var cells []Cell
	var sets []bitset
	if breakdown {
		cells, sets = cur.permitted(s)
	}

	hideTotal := !valid || n >= 1 && n < p.Threshold
	hide := make([]bool, len(cells))
	why := make([]bool, len(cells))
	for i, cl := range cells {
		hide[i] = hideTotal || cl.Count >= 1 && cl.Count < p.Threshold
	}
	whyTotal := false
	if control && !hideTotal {
		// A repeat starts where the newest release of the same query ended.
		for _, pe := range pasts {
			if pe.fp != q.Fingerprint() || !slices.Equal(pe.ev.dims, dims) {
				continue
			}
			if pe.e.Total.Reason == ReasonOverlap {
				hideTotal, whyTotal = true, true
			}
			was := map[string]Released{}
			for _, pc := range pe.e.Cells {
				was[CellName(pc.Values)] = pc.Released
			}
			for i, cl := range cells {
				if r, ok := was[CellName(cl.Values)]; ok && r.Suppressed && !hide[i] {
					hide[i], why[i] = true, r.Reason == ReasonOverlap
				}
			}
			break
		}
	}
	complement(cells, hide)
	if control && !hideTotal {
		targets := []bitset{nil} // the empty set: no exposed union may be small
		for _, pe := range pasts {
			targets = append(targets, pe.ev.exposed(pe.e)...)
		}
		chk := &checker{c: c, threshold: p.Threshold}
		for !hideTotal {
			cands := exposure(s, true, cells, sets, hide)
			own := make([]bitset, len(cands))
			for i, x := range cands {
				own[i] = x.set
			}
			// The first exposed set too close to an earlier one or to another
			// of this release; withdraw it by hiding the smallest released
			// cell that exposes either side, or else the total.
			var fix []int
			hit := false
			for _, x := range cands {
				if chk.near(x.set, targets) >= 0 {
					fix, hit = x.fix, true
					break
				}
				if j := chk.near(x.set, own); j >= 0 {
					fix, hit = append(slices.Clone(x.fix), cands[j].fix...), true
					break
				}
			}
			if !hit {
				break
			}
			pick := -1
			for _, i := range fix {
				if !hide[i] && cells[i].Count > 0 && (pick < 0 || cells[i].Count < cells[pick].Count) {
					pick = i
				}
			}
			if pick < 0 {
				hideTotal, whyTotal = true, true
				break
			}
			hide[pick], why[pick] = true, true
			complement(cells, hide)
		}
	}
	if hideTotal {
		for i := range hide {
			if !hide[i] {
				hide[i], why[i] = true, whyTotal
			}
		}
	}

	fp := q.Fingerprint()
	switch {
	case hideTotal:
		ans.Total = Released{Suppressed: true, Threshold: p.Threshold}
		if whyTotal {
			ans.Total.Reason = ReasonOverlap
			ans.Overlaps++
		}
	default:
		ans.Total = p.perturb(fp, "", n)
	}
	if breakdown {
		ans.Cells = p.releaseCells(fp, cells, hide, why)
		for i := range why {
			if hide[i] && why[i] {
				ans.Overlaps++
			}
		}
	}
	return ans, nil
}

// Matching returns the patients q matches at at (with breakdown, as Answer
// evaluates it then) on the current state of the index, before any consent
// is asked: those whose consent Answer asks permit about first, so that a
// caller can decide them in bulk beforehand. The evaluation is kept for the
// Answer that follows on the same state of the index.
func (ix *Index) Matching(q *Query, breakdown bool, at time.Time) []string {
	var dims []string
	if breakdown {
		dims = q.Breakdown
	}
	ix.mu.RLock()
	ev := ix.evaluate(q, dims, at.UTC().Year())
	keys := ix.keysLocked()
	ix.mu.RUnlock()
	var out []string
	ev.all.each(func(pn uint32) {
		if int(pn) < len(keys) && keys[pn] != "" {
			out = append(out, keys[pn])
		}
	})
	return out
}

// consent decides, once per patient number, whether a patient is permitted.
type consent struct {
	keys   []string // by patient number, as of the evaluation
	permit func(string) bool
	memo   map[uint32]bool
}

func (c *consent) ok(pn uint32) bool {
	if v, ok := c.memo[pn]; ok {
		return v
	}
	v := int(pn) < len(c.keys) && c.keys[pn] != "" && c.permit != nil && c.permit(c.keys[pn])
	c.memo[pn] = v
	return v
}

// prefetch decides the patients of set on every core: a decision reads
// the patient's consents and runs the policy, and a count over a large
// population asks for thousands of them.
func (c *consent) prefetch(set bitset) {
	if c.permit == nil {
		return
	}
	var pns []uint32
	set.each(func(pn uint32) {
		if _, ok := c.memo[pn]; !ok && int(pn) < len(c.keys) && c.keys[pn] != "" {
			pns = append(pns, pn)
		}
	})
	allowed := make([]bool, len(pns))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(pns)/16+1) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(pns)); i = next.Add(1) - 1 {
				allowed[i] = c.permit(c.keys[pns[i]])
			}
		})
	}
	wg.Wait()
	for i, pn := range pns {
		c.memo[pn] = allowed[i]
	}
}

// checker compares a set of permitted patients with raw earlier sets.
type checker struct {
	c         *consent
	threshold int
}

// near returns the index of the first t in ts that differs from a by
// 1..threshold-1 permitted patients, or -1.
func (k *checker) near(a bitset, ts []bitset) int {
	for i, t := range ts {
		if k.small(a, t) {
			return i
		}
	}
	return -1
}

// small reports whether 0 < |(a Δ t) ∩ permitted| < threshold, where a holds
// only permitted patients. It asks about t's patients outside a only until
// the answer is known.
func (k *checker) small(a, t bitset) bool {
	d := 0
	for i, w := range a {
		if i < len(t) {
			w &^= t[i]
		}
		d += bits.OnesCount64(w)
	}
	if d >= k.threshold {
		return false
	}
	for i, w := range t {
		if i < len(a) {
			w &^= a[i]
		}
		for w != 0 {
			b := bits.TrailingZeros64(w)
			w &= w - 1
			if k.c.ok(uint32(i*64 + b)) {
				d++
				if d >= k.threshold {
					return false
				}
			}
		}
	}
	return d > 0
}

// exposed is a set of patients a release lets its reader count, and the
// cells whose suppression withdraws it (none: the total's).
type exposed struct {
	set bitset
	fix []int
}

// exposure lists the sets a release exposes: its total (if released), each
// released cell, the total minus each released cell, the union of the hidden
// cells, and per row the unions of its hidden and of its released cells.
func exposure(total bitset, totalReleased bool, cells []Cell, sets []bitset, hide []bool) []exposed {
	var out []exposed
	var released, hidden []int
	for i := range cells {
		if hide[i] {
			hidden = append(hidden, i)
		} else {
			released = append(released, i)
		}
	}
	if totalReleased {
		out = append(out, exposed{set: total})
	}
	for _, i := range released {
		out = append(out, exposed{set: sets[i], fix: []int{i}})
	}
	if totalReleased {
		if len(hidden) > 0 {
			out = append(out, exposed{set: unionOf(sets, hidden), fix: released})
		}
		if len(cells) > 1 {
			for _, i := range released {
				out = append(out, exposed{set: total.andNot(sets[i]), fix: []int{i}})
			}
		}
	}
	dims := dimsOf(cells)
	for _, d := range dims {
		for _, row := range rowsOf(cells, dims, d) {
			var hid, rel []int
			for _, i := range row {
				if hide[i] {
					hid = append(hid, i)
				} else {
					rel = append(rel, i)
				}
			}
			if len(hid) > 0 && len(rel) > 0 {
				out = append(out, exposed{set: unionOf(sets, hid), fix: rel})
			}
			if len(rel) > 1 {
				out = append(out, exposed{set: unionOf(sets, rel), fix: rel})
			}
		}
	}
	return out
}

func unionOf(sets []bitset, idx []int) bitset {
	n := 0
	for _, i := range idx {
		n = max(n, len(sets[i]))
	}
	out := make(bitset, n)
	for _, i := range idx {
		out.orInto(sets[i])
	}
	return out
}

// evaluated is a query evaluated on one state of the index, before consent:
// its patients and, for a breakdown, their cells. Cached; never modified.
type evaluated struct {
	all   bitset
	dims  []string
	cells []evalCell // sorted by values in the order of dims
	words int
}

type evalCell struct {
	vals   []string
	values map[string]string
	set    bitset
}

// permitted returns the cells of s, a subset of e.all, as Breakdown would:
// non-empty ones only, with their sets.
func (e *evaluated) permitted(s bitset) ([]Cell, []bitset) {
	var cells []Cell
	var sets []bitset
	for _, c := range e.cells {
		in := c.set.and(s)
		if n := in.count(); n > 0 {
			cells = append(cells, Cell{Values: c.values, Count: n})
			sets = append(sets, in)
		}
	}
	return cells, sets
}

// exposed returns the sets the earlier release e exposed, evaluated now.
// A cell absent from its answer had no patients then and counts as released
// (as 0).
func (ev *evaluated) exposed(e Earlier) []bitset {
	total := e.Total.released()
	if e.Cells == nil {
		if total {
			return []bitset{ev.all}
		}
		return nil
	}
	was := map[string]bool{}
	for _, c := range e.Cells {
		was[CellName(c.Values)] = c.released()
	}
	cells := make([]Cell, len(ev.cells))
	sets := make([]bitset, len(ev.cells))
	hide := make([]bool, len(ev.cells))
	for i, c := range ev.cells {
		cells[i] = Cell{Values: c.values, Count: c.set.count()}
		sets[i] = c.set
		if r, ok := was[CellName(c.values)]; ok && !r {
			hide[i] = true
		}
	}
	var out []bitset
	for _, x := range exposure(ev.all, total, cells, sets, hide) {
		out = append(out, x.set)
	}
	return out
}

// setCache holds evaluated queries for one generation of the index (a
// query's sets are recomputed after the index changes) and parsed earlier
// criteria. Its bitsets are bounded by maxCacheWords (64 MiB); past it, the
// cache starts over.
type setCache struct {
	mu      sync.Mutex
	gen     uint64
	sets    map[string]*evaluated
	words   int
	keys    []string
	queries map[string]*Query
}

const (
	maxCacheWords   = 8 << 20
	maxCacheQueries = 4096
)

// evaluate returns q evaluated with dims at year; the caller holds the read
// lock.
func (ix *Index) evaluate(q *Query, dims []string, year int) *evaluated {
	key := q.Fingerprint() + "\x00" + strings.Join(dims, "\x00") + "\x00" + strconv.Itoa(year)
	c := &ix.sets
	c.mu.Lock()
	c.syncLocked(ix.gen)
	ev, ok := c.sets[key]
	c.mu.Unlock()
	if ok {
		return ev
	}
	e := &evaluator{ix: ix, q: q, year: year, anchors: map[string][]dated{}}
	ev = &evaluated{all: e.eval(&q.Criteria).and(ix.universe), dims: slices.Clone(dims)}
	ev.words = len(ev.all)
	if len(dims) > 0 {
		at := map[string]int{}
		ev.all.each(func(pn uint32) {
			vals := make([]string, len(dims))
			for i, d := range dims {
				vals[i] = dimension(ix.patients[pn].demo, d, year)
			}
			k := strings.Join(vals, "\x00")
			j, ok := at[k]
			if !ok {
				j = len(ev.cells)
				at[k] = j
				m := make(map[string]string, len(dims))
				for i, d := range dims {
					m[d] = vals[i]
				}
				ev.cells = append(ev.cells, evalCell{vals: vals, values: m})
			}
			ev.cells[j].set = ev.cells[j].set.set(pn)
		})
		slices.SortFunc(ev.cells, func(a, b evalCell) int { return slices.Compare(a.vals, b.vals) })
		for _, c := range ev.cells {
			ev.words += len(c.set)
		}
	}
	c.mu.Lock()
	c.syncLocked(ix.gen)
	if c.words+ev.words > maxCacheWords {
		c.sets, c.words = map[string]*evaluated{}, 0
	}
	c.sets[key] = ev
	c.words += ev.words
	c.mu.Unlock()
	return ev
}

// keysLocked returns the patient keys by number (free numbers ""), a
// snapshot shared by the queries of one generation; the caller holds the
// read lock.
func (ix *Index) keysLocked() []string {
	c := &ix.sets
	c.mu.Lock()
	defer c.mu.Unlock()
	c.syncLocked(ix.gen)
	if c.keys == nil {
		c.keys = make([]string, len(ix.patients))
		for i, p := range ix.patients {
			if p != nil {
				c.keys[i] = p.key
			}
		}
	}
	return c.keys
}

// syncLocked starts the cache over when the index has changed.
func (c *setCache) syncLocked(gen uint64) {
	if c.gen != gen || c.sets == nil {
		c.gen, c.sets, c.words, c.keys = gen, map[string]*evaluated{}, 0, nil
	}
}

// parse parses recorded criteria, or returns nil.
func (c *setCache) parse(criteria json.RawMessage) *Query {
	if len(criteria) == 0 {
		return nil
	}
	key := string(criteria)
	c.mu.Lock()
	q, ok := c.queries[key]
	c.mu.Unlock()
	if ok {
		return q
	}
	q, err := ParseQuery(append(append([]byte(`{"criteria":`), criteria...), '}'))
	if err != nil {
		return nil
	}
	c.mu.Lock()
	if c.queries == nil || len(c.queries) >= maxCacheQueries {
		c.queries = map[string]*Query{}
	}
	c.queries[key] = q
	c.mu.Unlock()
	return q
}
