package search

import (
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Key layout (doc.go, "Index keys", is the reference; these strings are
// persisted as HMACs, so changing them forces a reindex). Every key is
// "<param code>|<kind>|<parts>"; a variable part that may contain "|" is
// the last.
const (
	kindCode    = "c"  // token code, any system: <code>
	kindExact   = "e"  // string NormalizeString form: <text>
	kindPrefix  = "x"  // string NormalizeString prefix of 1..maxPrefix runes: <text>
	kindURI     = "u"  // uri as written: <uri>
	kindPath    = "b"  // uri without final "/" and its "/" ancestors: <uri>
	kindRefID   = "i"  // reference id: <id>
	kindRefURL  = "l"  // reference URL: <url>
	kindRefIdnt = "ri" // reference identifier, a token key after it
	kindDateLo  = "dl" // date span's low, bucketed: <level>|<hex bucket>
	kindDateHi  = "dh" // date span's last instant, bucketed
	kindNumVal  = "nv" // number or quantity value, bucketed
	kindNumLo   = "nl" // Range low, bucketed (open: the lowest bucket)
	kindNumHi   = "nh" // Range high, bucketed (open: the highest bucket)
)

// maxPrefix is the longest string prefix indexed, in runes.
const maxPrefix = 4

// maxPathKeys bounds the "/" ancestors of a uri indexed for :below.
const maxPathKeys = 12

// maxCover bounds the keys of one ordered-type predicate.
const maxCover = 64

func ikey(param, kind, rest string) string {
	return param + "|" + kind + "|" + rest
}

// IndexKeys returns the index keys of one resource of resourceType given
// all its Extract values. Each key starts with a parameter code; the gateway HMACs it
// with the resource type. A parameter whose values other parameters
// already index (shareKeys: combo-code by code and component-code,
// patient by subject) gets no keys of its own. The result is sorted and
// without duplicates. The keys share one backing string: keeping one
// keeps the bytes of all.
func IndexKeys(resourceType string, values []Value) []string {
	return indexKeys(resourceType, values, nil)
}

// indexKeys is IndexKeys less the values of the parameters omit names.
func indexKeys(resourceType string, values []Value, omit []string) []string {
	own := load().byType[resourceType]
	k := keyPool.Get().(*keyBuf)
	defer k.release()
	for i := range values {
		v := &values[i]
		if slices.Contains(omit, v.Param) {
			continue
		}
		if p := own[v.Param]; p != nil && len(p.keysFrom) > 0 {
			continue
		}
		k.value(v.Param, v)
	}
	return k.strings()
}

// keyBuf gathers the keys of one resource: each key's bytes appended to
// b, ends[i] where key i ends. A key made a string of its own costs an
// allocation (and a concatenation) each, and a resource has tens of them;
// made strings at once (strings), they cost two.
type keyBuf struct {
	b    []byte
	ends []int
}

// keyPool keeps key buffers for the next resource.
var keyPool = sync.Pool{New: func() any { return new(keyBuf) }}

// release returns k to keyPool, unless a huge resource grew it.
func (k *keyBuf) release() {
	if cap(k.b) > 1<<16 || cap(k.ends) > 1<<12 {
		return
	}
	k.b, k.ends = k.b[:0], k.ends[:0]
	keyPool.Put(k)
}

// strings returns the keys gathered, sorted and without duplicates: nil
// when there are none.
func (k *keyBuf) strings() []string {
	if len(k.ends) == 0 {
		return nil
	}
	all := string(k.b)
	out := make([]string, len(k.ends))
	start := 0
	for i, end := range k.ends {
		out[i] = all[start:end]
		start = end
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// open starts the key "<param>|<kind>|"; close ends it.
func (k *keyBuf) open(param, kind string) {
	k.b = append(k.b, param...)
	k.b = append(k.b, '|')
	k.b = append(k.b, kind...)
	k.b = append(k.b, '|')
}

func (k *keyBuf) close() { k.ends = append(k.ends, len(k.b)) }

// key adds ikey(param, kind, rest).
func (k *keyBuf) key(param, kind, rest string) {
	k.open(param, kind)
	k.b = append(k.b, rest...)
	k.close()
}

// value adds the keys of v, a value of param.
func (k *keyBuf) value(param string, v *Value) {
	switch v.Type {
	case TypeToken:
		k.token(param, "", v.Token)
	case TypeString:
		n := NormalizeString(v.String)
		if n == "" {
			return
		}
		k.key(param, kindExact, n)
		i := 0
		for range maxPrefix {
			if i >= len(n) {
				break
			}
			_, size := utf8.DecodeRuneInString(n[i:])
			i += size
			k.key(param, kindPrefix, n[:i])
		}
	case TypeURI:
		if v.URI == "" {
			return
		}
		k.key(param, kindURI, v.URI)
		eachPathKey(v.URI, func(a string) { k.key(param, kindPath, a) })
	case TypeReference:
		r := &v.Reference
		// The id alone: a Type/id query looks for it too (ids rarely
		// repeat across types; Match checks the type).
		if r.ID != "" {
			k.key(param, kindRefID, r.ID)
		}
		if r.URL != "" {
			k.key(param, kindRefURL, r.URL)
		}
		if r.Identifier != nil {
			k.token(param, kindRefIdnt, *r.Identifier)
		}
	case TypeDate:
		// A span within one day (most dates and dateTimes) has its last
		// instant on its low's day: its dl keys stand for dh too, and
		// queries on dh look for dl keys as well.
		lo, hi := dayOf(v.Date.Low), dayOf(v.Date.High.Add(-time.Nanosecond))
		k.buckets(param, kindDateLo, lo, dateScale)
		if lo != hi {
			k.buckets(param, kindDateHi, hi, dateScale)
		}
	case TypeNumber, TypeQuantity:
		s := v.Number
		if v.Type == TypeQuantity || s == "" {
			s = v.Quantity.Value
		}
		if s != "" { // numberBounds: a value, lo and hi alike
			if b, ok := decimalBucket(s); ok {
				k.buckets(param, kindNumVal, b, numScale)
			}
			return
		}
		lo, okLo := decimalBucket(v.Quantity.Low)
		hi, okHi := decimalBucket(v.Quantity.High)
		if !okLo && !okHi {
			return
		}
		if !okLo {
			lo = 0 // open
		}
		if !okHi {
			hi = numScale.max() // open
		}
		// Level 0 is one bucket of all Ranges (numberKeys).
		k.bucket(param, kindNumLo, 0, 0)
		k.bucket(param, kindNumHi, 0, 0)
		k.buckets(param, kindNumLo, lo, numScale)
		k.buckets(param, kindNumHi, hi, numScale)
	}
	// A composite has no keys of its own: a clause on it narrows by the
	// keys of its first component's parameter (predicateKeys).
}

// token adds the keys predicateKeys looks up: the code alone, whatever
// the system. A system|code query looks for it too (a code rarely means
// two things in one parameter; Match checks the system); a system without
// a code (system|) is not narrowed. A reference's identifier (kind
// kindRefIdnt) is a token key of the parameter "<param>|ri".
func (k *keyBuf) token(param, kind string, t Token) {
	if t.Code == "" {
		return
	}
	if kind != "" {
		k.open(param, kind)
		k.b = append(k.b, kindCode...)
		k.b = append(k.b, '|')
		k.b = append(k.b, t.Code...)
		k.close()
		return
	}
	k.key(param, kindCode, t.Code)
}

// buckets adds the keys of x at every level of s.
func (k *keyBuf) buckets(param, kind string, x uint64, s scale) {
	for level := 1; level <= s.levels(); level++ {
		k.bucket(param, kind, level, x/s.size(level))
	}
}

// bucket adds bucketKey(param, kind, level, bucket).
func (k *keyBuf) bucket(param, kind string, level int, bucket uint64) {
	k.open(param, kind)
	k.b = strconv.AppendInt(k.b, int64(level), 10)
	k.b = append(k.b, '|')
	k.b = strconv.AppendUint(k.b, bucket, 16)
	k.close()
}

// pathKeys returns u without a final "/" and its first maxPathKeys
// ancestors at "/" boundaries.
func pathKeys(u string) []string {
	var out []string
	eachPathKey(u, func(a string) { out = append(out, a) })
	return out
}

// eachPathKey calls yield with each of pathKeys(u), in order, without
// making the slice (IndexKeys makes them for every URI value).
func eachPathKey(u string, yield func(string)) {
	u = strings.TrimSuffix(u, "/")
	if u == "" {
		return
	}
	yield(u)
	for i, n := 0, 1; i < len(u) && n <= maxPathKeys; i++ {
		if u[i] == '/' && i > 0 {
			yield(u[:i])
			n++
		}
	}
}

// shareKeys finds, among the parameters of one resource type (own; common
// are those every type has), those whose values other parameters of the
// type already index, and points their keysFrom at them: a parameter
// whose expression is a union of other parameters' expressions
// (combo-code is code | component-code), or one of them narrowed by
// where(resolve() is T) (patient is subject restricted to Patient). Its
// values then make no keys (every key is a row each write inserts), and
// its clauses look up the other parameters' keys: a superset of its own,
// which Match narrows. It also resolves each composite's components to
// their own parameters.
func shareKeys(own, common map[string]*Param) {
	type entry struct {
		p          *Param
		set        []string
		restricted bool
	}
	var es []entry
	for _, p := range own {
		if p.expr == nil {
			continue
		}
		for i := range p.Components {
			if q := own[p.Components[i].Code]; q != nil && q.expr != nil {
				p.Components[i].param = q
			} else if q := common[p.Components[i].Code]; q != nil && q.expr != nil {
				p.Components[i].param = q
			}
		}
		if p.Type == TypeComposite {
			continue
		}
		set, restricted := branches(p.Expression)
		es = append(es, entry{p, set, restricted})
	}
	// Smaller and unrestricted expressions first: a parameter only takes
	// keys from one ranked before it that has keys of its own.
	slices.SortFunc(es, func(a, b entry) int {
		if c := len(a.set) - len(b.set); c != 0 {
			return c
		}
		if a.restricted != b.restricted {
			if a.restricted {
				return 1
			}
			return -1
		}
		return strings.Compare(a.p.Code, b.p.Code)
	})
	for i, e := range es {
		var from []*Param
		covered := map[string]bool{}
		for _, q := range es[:i] {
			if q.restricted || len(q.p.keysFrom) > 0 || q.p.Type != e.p.Type {
				continue
			}
			// Extract drops references to types outside a parameter's
			// targets: q keeps all of e's only if it targets as much.
			if len(q.p.Targets) > 0 && (len(e.p.Targets) == 0 || !subset(e.p.Targets, q.p.Targets)) {
				continue
			}
			if !subset(q.set, e.set) || subset(q.set, slices.Collect(maps.Keys(covered))) {
				continue
			}
			from = append(from, q.p)
			for _, b := range q.set {
				covered[b] = true
			}
		}
		if len(from) > 0 && len(covered) == len(e.set) {
			e.p.keysFrom = from
		}
	}
}

// branches returns the union branches of a FHIRPath expression, without
// enclosing parentheses, sorted; restricted when one ends in
// .where(resolve() is T), which is then cut off.
func branches(expr string) (set []string, restricted bool) {
	depth, start := 0, 0
	add := func(b string) {
		b = strings.TrimSpace(b)
		for strings.HasPrefix(b, "(") && strings.HasSuffix(b, ")") && balanced(b[1:len(b)-1]) {
			b = strings.TrimSpace(b[1 : len(b)-1])
		}
		if i := strings.LastIndex(b, ".where(resolve() is "); i > 0 && strings.HasSuffix(b, ")") &&
			!strings.ContainsAny(b[i+len(".where(resolve() is "):len(b)-1], "(). ") {
			b, restricted = b[:i], true
		}
		set = append(set, b)
	}
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '(':
			depth++
		case ')':
			depth--
		case '|':
			if depth == 0 {
				add(expr[start:i])
				start = i + 1
			}
		}
	}
	add(expr[start:])
	slices.Sort(set)
	return slices.Compact(set), restricted
}

// balanced reports whether the parentheses of s pair up in order.
func balanced(s string) bool {
	depth := 0
	for _, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// ReferenceKeys returns the keys a resource of resourceType carries when
// its reference parameter param points to typeAndID ("Patient/1"): the
// gateway looks them up for _revinclude.
func ReferenceKeys(resourceType, param, typeAndID string) []string {
	prm, ok := Lookup(resourceType, param)
	if !ok {
		prm = Param{Code: param, Type: TypeReference}
	}
	return referenceKeys(prm, typeAndID)
}

// referenceKeys are the keys of a reference to typeAndID by prm, or by
// the parameters that index its values.
func referenceKeys(prm Param, typeAndID string) []string {
	if len(prm.keysFrom) > 0 {
		var out []string
		for _, q := range prm.keysFrom {
			out = append(out, referenceKeys(*q, typeAndID)...)
		}
		return out
	}
	_, id, _ := strings.Cut(typeAndID, "/")
	return []string{ikey(prm.Code, kindRefID, id)}
}

// Keys returns index keys such that any resource for which c.Match holds
// carries at least one of them in IndexKeys: a superset, which Match then
// narrows. narrows is false when the index cannot narrow c (:not,
// :contains, :text, :missing=true, ne, an empty string, a date or number
// range too wide for the budget at every level); the caller then
// scans every resource of the type. A Chain or Has clause gives
// the keys of its Targets: none when Targets is empty (nothing matches).
func (c Clause) Keys() (keys []string, narrows bool) {
	switch {
	case c.Has != nil:
		for _, id := range c.Targets {
			keys = append(keys, ikey("_id", kindCode, id))
		}
		return dedupe(keys), true
	case c.Chain != nil:
		for _, t := range c.Targets {
			keys = append(keys, referenceKeys(c.Param, t)...)
		}
		return dedupe(keys), true
	}
	switch c.Modifier {
	case "missing", "not", "text", "contains":
		return nil, false
	}
	budget := maxCover / max(1, len(c.Values))
	for _, p := range c.Values {
		ks, ok := predicateKeys(c.Param, c.Modifier, p, budget)
		if !ok {
			return nil, false
		}
		keys = append(keys, ks...)
	}
	return dedupe(keys), true
}

func dedupe(keys []string) []string {
	slices.Sort(keys)
	return slices.Compact(keys)
}

func predicateKeys(prm Param, mod string, p Predicate, budget int) ([]string, bool) {
	param, t := prm.Code, prm.Type
	if p.Prefix == "ne" {
		return nil, false
	}
	if len(prm.keysFrom) > 0 {
		// Another parameter's keys index these values: look up theirs.
		var out []string
		for _, q := range prm.keysFrom {
			ks, ok := predicateKeys(*q, mod, p, max(1, budget/len(prm.keysFrom)))
			if !ok {
				return nil, false
			}
			out = append(out, ks...)
		}
		return out, true
	}
	switch t {
	case TypeToken:
		if p.HasSystem && mod != "of-type" && p.System != "" && p.Code == "" {
			return nil, false // system|: rare, and not worth a key on every coding
		}
		return []string{ikey(param, kindCode, p.Code)}, true
	case TypeString:
		if p.Text == "" {
			return nil, false
		}
		if mod == "exact" {
			return []string{ikey(param, kindExact, NormalizeString(p.Text))}, true
		}
		n := p.Text
		i, k := 0, 0
		for ; k < maxPrefix && i < len(n); k++ {
			_, size := utf8.DecodeRuneInString(n[i:])
			i += size
		}
		return []string{ikey(param, kindPrefix, n[:i])}, true
	case TypeURI:
		switch mod {
		case "below":
			q := strings.TrimSuffix(p.URI, "/")
			if q == "" || strings.Count(q[1:], "/") >= maxPathKeys {
				return nil, false
			}
			return []string{ikey(param, kindPath, q)}, true
		case "above":
			var out []string
			for _, a := range pathKeys(p.URI) {
				out = append(out, ikey(param, kindPath, a))
			}
			if strings.Count(p.URI, "/") > maxPathKeys {
				return nil, false
			}
			return out, true
		}
		return []string{ikey(param, kindURI, p.URI)}, true
	case TypeReference:
		switch {
		case mod == "identifier":
			return predicateKeys(Param{Code: param + "|" + kindRefIdnt, Type: TypeToken}, "", p, budget)
		case p.URL != "":
			return []string{ikey(param, kindRefURL, p.URL)}, true
		}
		return []string{ikey(param, kindRefID, p.ID)}, true
	case TypeDate:
		return dateKeys(param, p, budget)
	case TypeNumber, TypeQuantity:
		return numberKeys(param, p, budget)
	case TypeComposite:
		if len(p.Components) == 0 || len(prm.Components) == 0 {
			return nil, false
		}
		// The first component's own parameter indexes the same values.
		first := Param{Code: prm.Components[0].Code, Type: prm.Components[0].Type}
		if c0 := prm.Components[0].param; c0 != nil {
			first = *c0
		}
		if first.Code == "" {
			return nil, false
		}
		return predicateKeys(first, "", p.Components[0], budget)
	}
	return nil, false
}

// scale is a hierarchical bucket scheme over unsigned integers of bits
// bits: level k (1..levels) keeps the top top[k-1] bits. Every level is a
// key each value carries, so there are few; level 1 is narrow so that a
// cover always fits in a few keys.
type scale struct {
	bits int
	top  []int
}

func (s scale) levels() int       { return len(s.top) }
func (s scale) max() uint64       { return 1<<s.bits - 1 }
func (s scale) size(k int) uint64 { return 1 << (s.bits - s.top[k-1]) }

// dateScale buckets days since 0000-01-01 (up to 10000-01-01, under
// 2^22) in 3 levels: 2^14 days (about 45 years), 128 days and one day. A
// coarser level would hold every real date in one bucket: a key on every
// value that narrows nothing.
var dateScale = scale{bits: 24, top: []int{10, 17, 24}}

// numScale buckets the top 24 bits of an order-preserving encoding of the
// float64 nearest a decimal (sign and exponent, then the mantissa's top 12
// bits) in 3 levels: the top 10, 17 and 24 bits (4 binary octaves, 1/32
// and 1/4096 of one). A coarser level would tell little more than the
// sign and whether the magnitude is under 2.
var numScale = scale{bits: 24, top: []int{10, 17, 24}}

func bucketKey(param, kind string, level int, bucket uint64) string {
	return ikey(param, kind, strconv.Itoa(level)+"|"+strconv.FormatUint(bucket, 16))
}

// cover returns bucket keys whose buckets together contain [lo, hi], at
// most limit of them: the finest level whose greedy cover fits. It
// reports false when not even the coarsest level fits (an open-ended
// range, mostly): the clause then cannot narrow.
func cover(param, kind string, lo, hi uint64, s scale, limit int) ([]string, bool) {
	if lo > hi {
		return nil, true
	}
	for m := s.levels(); m >= 1; m-- {
		sz := s.size(m)
		a, b := lo/sz*sz, hi/sz*sz+sz-1
		var out []string
		for cur := a; cur <= b && len(out) <= limit; {
			k := 1
			for ; k < m; k++ {
				if cur%s.size(k) == 0 && cur+s.size(k)-1 <= b {
					break
				}
			}
			out = append(out, bucketKey(param, kind, k, cur/s.size(k)))
			next := cur + s.size(k)
			if next < cur { // cannot happen below 2^64
				break
			}
			cur = next
		}
		if len(out) <= limit {
			return out, true
		}
	}
	return nil, false
}

// dayOf is the day of t since MinTime, clamped to the date scale.
func dayOf(t time.Time) uint64 {
	if t.Before(MinTime) {
		return 0
	}
	d := uint64((t.Unix() - MinTime.Unix()) / 86400)
	return min(d, dateScale.max())
}

// dateKeys covers, for one date predicate, the values Match may accept
// (conditions on the span's low and its last instant; see doc.go). It
// reports false when a condition does not fit the budget at any level.
func dateKeys(param string, p Predicate, budget int) ([]string, bool) {
	fits := true
	cv := func(kind string, lo, hi uint64, limit int) []string {
		keys, ok := cover(param, kind, lo, hi, dateScale, limit)
		fits = fits && ok
		return keys
	}
	top := dateScale.max()
	ql, qh := dayOf(p.Date.Low), dayOf(p.Date.High.Add(-time.Nanosecond))
	before := func(t time.Time) uint64 { // last day strictly before t
		if !t.After(MinTime) {
			return 0 // values clamped to day 0 may still be before t
		}
		return dayOf(t.Add(-time.Nanosecond))
	}
	half := max(1, budget/2)
	// hiCover covers last instants in [a, b]: dh keys of spans, dl keys
	// of one-day values.
	hiCover := func(a, b uint64, budget int) []string {
		h := max(1, budget/2)
		return append(cv(kindDateHi, a, b, h), cv(kindDateLo, a, b, h)...)
	}
	var keys []string
	switch p.Prefix {
	case "eq":
		keys = cv(kindDateLo, ql, qh, budget)
	case "gt":
		keys = hiCover(dayOf(p.Date.High), top, budget)
	case "lt":
		keys = cv(kindDateLo, 0, before(p.Date.Low), budget)
	case "ge":
		keys = append(cv(kindDateHi, dayOf(p.Date.High), top, half), cv(kindDateLo, ql, top, half)...)
	case "le", "ap":
		keys = cv(kindDateLo, 0, qh, budget)
	case "sa":
		keys = cv(kindDateLo, dayOf(p.Date.High), top, budget)
	case "eb":
		keys = hiCover(0, before(p.Date.Low), budget)
	default:
		return nil, true
	}
	return keys, fits
}

// numBucket maps a decimal to the number scale, preserving order.
func numBucket(r *big.Rat) uint64 {
	f, _ := r.Float64()
	return floatBucket(f)
}

// decimalBucket is numBucket of Rat(decimal), reporting false where Rat
// does. Without a big.Rat mostly: strconv.ParseFloat rounds a decimal to
// the nearest float64 as Rat.Float64 does (ties to even), and differs
// only where the float64 is a zero (its sign), an infinity or subnormal
// (overflow, underflow), which are left to big.Rat.
func decimalBucket(decimal string) (uint64, bool) {
	if !validDecimal(decimal) {
		return 0, false
	}
	if f, err := strconv.ParseFloat(decimal, 64); err == nil {
		if a := math.Abs(f); a >= 0x1p-1022 && a <= math.MaxFloat64 {
			return floatBucket(f), true
		}
	}
	r, ok := new(big.Rat).SetString(decimal)
	if !ok {
		return 0, false
	}
	return numBucket(r), true
}

// floatBucket maps a float64 to the number scale, preserving order.
func floatBucket(f float64) uint64 {
	u := math.Float64bits(f)
	if u>>63 == 1 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return u >> (64 - numScale.bits)
}

// numberKeys covers, for one number or quantity predicate, the point
// values (nv) and Range lows or highs (nl, nh) Match may accept.
func numberKeys(param string, p Predicate, budget int) ([]string, bool) {
	top := numScale.max()
	half := max(1, budget/2)
	v, lo, hi := numBucket(p.Value), numBucket(p.Low), numBucket(p.High)
	// The second condition is on a Range's low or high, which also
	// carries a key of all Ranges (level 0): the cover when none fits.
	two := func(k1 string, a1, b1 uint64, k2 string, a2, b2 uint64) ([]string, bool) {
		keys1, ok := cover(param, k1, a1, b1, numScale, half)
		if !ok {
			return nil, false
		}
		keys2, ok := cover(param, k2, a2, b2, numScale, half)
		if !ok {
			keys2 = []string{bucketKey(param, k2, 0, 0)}
		}
		return append(keys1, keys2...), true
	}
	switch p.Prefix {
	case "eq":
		return two(kindNumVal, lo, hi, kindNumLo, lo, hi)
	case "gt", "ge":
		return two(kindNumVal, v, top, kindNumHi, v, top)
	case "lt", "le":
		return two(kindNumVal, 0, v, kindNumLo, 0, v)
	case "sa":
		return two(kindNumVal, v, top, kindNumLo, v, top)
	case "eb":
		return two(kindNumVal, 0, v, kindNumHi, 0, v)
	case "ap":
		return two(kindNumVal, lo, hi, kindNumLo, 0, hi)
	}
	return nil, true
}
