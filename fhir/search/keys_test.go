package search

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// esc escapes the characters search values give a meaning to.
func esc(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ",", `\,`, "|", `\|`, "$", `\$`)
	return r.Replace(s)
}

type genQuery struct{ name, value string }

var dateLayouts = []string{"2006", "2006-01", "2006-01-02", "2006-01-02T15:04:05Z", "2006-01-02T15:04:05.000000000Z"}

// dateQueries gives t at every precision, and shifted by a second, a
// day, a year at one precision each.
func dateQueries(t time.Time) []string {
	var out []string
	for i, shift := range []time.Duration{0, -24 * time.Hour, 24 * time.Hour, -400 * 24 * time.Hour, time.Second} {
		s := t.Add(shift)
		if s.Before(MinTime.AddDate(1, 0, 0)) || !s.Before(MaxTime.AddDate(-1, 0, 0)) {
			continue
		}
		if i == 0 {
			for _, l := range dateLayouts {
				out = append(out, s.Format(l))
			}
			continue
		}
		out = append(out, s.Format(dateLayouts[(i+1)%len(dateLayouts)]))
	}
	return out
}

func numberQueries(s string) []string {
	r, ok := Rat(s)
	if !ok {
		return nil
	}
	f, _ := r.Float64()
	out := []string{s, strconv.FormatFloat(f, 'e', 2, 64)}
	for _, d := range []*big.Rat{big.NewRat(1, 1), big.NewRat(-1, 1), big.NewRat(1, 1000)} {
		out = append(out, new(big.Rat).Add(r, d).FloatString(4))
	}
	out = append(out, new(big.Rat).Mul(r, big.NewRat(21, 20)).FloatString(3))
	return out
}

// queriesOf returns queries built from one value of a resource: those the
// value should match and near misses, with every prefix.
func queriesOf(v Value) []genQuery {
	var out []genQuery
	add := func(name string, values ...string) {
		for _, s := range values {
			out = append(out, genQuery{name, s})
		}
	}
	p := v.Param
	switch v.Type {
	case TypeToken:
		t := v.Token
		if t.Code != "" {
			add(p, esc(t.Code), esc(t.System)+"|"+esc(t.Code), "|"+esc(t.Code), esc(t.Code)+"x")
			for _, c := range t.OfType {
				add(p+":of-type", esc(c.System)+"|"+esc(c.Code)+"|"+esc(t.Code))
			}
		}
		if t.System != "" {
			add(p, esc(t.System)+"|")
		}
		if w, _, _ := strings.Cut(NormalizeString(t.Display+" "+t.Text), " "); w != "" {
			add(p+":text", esc(w))
		}
		add(p+":missing", "false", "true")
	case TypeString:
		n := NormalizeString(v.String)
		add(p, esc(v.String), esc(n))
		for i, k := 0, 0; i < len(n) && k < 7; k++ {
			_, size := utf8.DecodeRuneInString(n[i:])
			i += size
			add(p, esc(n[:i]))
		}
		add(p+":exact", esc(v.String), esc(strings.ToUpper(v.String)))
		if len(n) > 2 {
			add(p+":contains", esc(n[1:len(n)-1]))
		}
	case TypeURI:
		add(p, esc(v.URI), esc(v.URI+"x"))
		if i := strings.LastIndex(strings.TrimSuffix(v.URI, "/"), "/"); i > 0 {
			add(p+":below", esc(v.URI[:i]), esc(v.URI[:i+1]))
		}
		add(p+":above", esc(v.URI+"/sub"), esc(v.URI))
	case TypeReference:
		r := v.Reference
		if r.ID != "" {
			add(p, esc(r.ID))
			if r.Type != "" {
				add(p, esc(r.Type+"/"+r.ID), esc(r.Type+"/"+r.ID+"x"))
				add(p+":"+r.Type, esc(r.ID))
			}
		}
		if r.URL != "" && strings.Contains(r.URL, ":") {
			add(p, esc(r.URL))
		}
		if r.Identifier != nil && r.Identifier.Code != "" {
			add(p+":identifier", esc(r.Identifier.System)+"|"+esc(r.Identifier.Code), esc(r.Identifier.Code))
		}
	case TypeDate:
		var ds []string
		if !v.Date.Low.Equal(MinTime) {
			ds = append(ds, dateQueries(v.Date.Low)...)
		}
		if !v.Date.High.Equal(MaxTime) {
			ds = append(ds, dateQueries(v.Date.High.Add(-time.Nanosecond))...)
		}
		for _, d := range ds {
			for _, pr := range prefixes {
				add(p, pr+d)
			}
		}
	case TypeNumber, TypeQuantity:
		q := v.Quantity
		var ns []string
		for _, s := range []string{v.Number, q.Value, q.Low, q.High} {
			if s != "" {
				ns = append(ns, numberQueries(s)...)
			}
		}
		for _, n := range ns {
			for _, pr := range prefixes {
				add(p, pr+n)
				if v.Type == TypeQuantity && q.Code != "" {
					add(p, pr+n+"|"+esc(q.System)+"|"+esc(q.Code), pr+n+"||"+esc(q.Code))
				}
			}
		}
	case TypeComposite:
		var parts [][]string
		for _, c := range v.Components {
			var alts []string
			for _, g := range queriesOf(c) {
				if g.name == c.Param {
					alts = append(alts, g.value)
				}
				if len(alts) == 3 {
					break
				}
			}
			if len(alts) == 0 {
				return nil
			}
			parts = append(parts, alts)
		}
		for i := range 3 {
			var s []string
			for _, alts := range parts {
				s = append(s, alts[i%len(alts)])
			}
			add(p, strings.Join(s, "$"))
		}
	}
	return out
}

// TestKeysCoverMatches is the superset invariant: over every resource of
// the shared test data, for queries built from its own values (and near
// misses), whenever Match holds some key of the clause is among the
// resource's IndexKeys, or Keys says it cannot narrow.
func TestKeysCoverMatches(t *testing.T) {
	sample := 600 // resources of each folder; -short: 200
	if testing.Short() {
		sample = 200
	}
	var checked, matched, parsed, failed int
	byType := map[Type]int{}
	for _, sub := range []string{"synthea", "hl7-examples"} {
		es := resources(t, sub)
		x := &Extractor{ReferenceType: bundleTypes(es)}
		step := 1
		if len(es) > sample {
			step = len(es) / sample // a Synthea run has ~10^5 resources
		}
		for i := 0; i < len(es); i += step {
			e := es[i]
			vals, err := x.Extract(e.resourceType, e.tree)
			if err != nil {
				continue
			}
			idx := make(map[string]bool)
			for _, k := range IndexKeys(e.resourceType, vals) {
				idx[k] = true
			}
			for _, v := range vals {
				for _, g := range queriesOf(v) {
					q, err := Parse(e.resourceType, url.Values{g.name: {g.value}}, true)
					if err != nil || len(q.Clauses) != 1 {
						failed++
						if failed < 5 {
							t.Logf("%s %s: %v", e.resourceType, g.name, err)
						}
						continue
					}
					parsed++
					c := q.Clauses[0]
					if !c.Match(vals) {
						continue
					}
					matched++
					byType[v.Type]++
					keys, narrows := c.Keys()
					if !narrows {
						continue
					}
					if len(keys) > 2*maxCover {
						t.Errorf("%s %s: %d keys", e.resourceType, g.name, len(keys))
					}
					checked++
					found := false
					for _, k := range keys {
						if idx[k] {
							found = true
							break
						}
					}
					if !found {
						t.Errorf("%s/%s %s=%q matches but no key is indexed", e.file, e.resourceType, g.name, g.value)
					}
				}
			}
		}
	}
	t.Logf("parsed %d queries (%d failed), %d matched, %d checked against the index; matches by type %v", parsed, failed, matched, checked, byType)
	if failed*100 > parsed {
		t.Errorf("%d of %d generated queries did not parse", failed, parsed)
	}
	for _, typ := range []Type{TypeToken, TypeString, TypeDate, TypeReference, TypeQuantity, TypeNumber, TypeURI, TypeComposite} {
		if byType[typ] == 0 {
			t.Errorf("no generated %s query matched: the test lost its power", typ)
		}
	}
}

// TestMatchRejectsNearMisses checks, for each value of the test data on
// its own, that deliberately different queries do not match.
func TestMatchRejectsNearMisses(t *testing.T) {
	es := resources(t, "hl7-examples")
	x := &Extractor{ReferenceType: bundleTypes(es)}
	checked := 0
	for _, e := range es {
		vals, err := x.Extract(e.resourceType, e.tree)
		if err != nil {
			continue
		}
		for _, v := range vals {
			var misses []genQuery
			ns := "2006-01-02T15:04:05.000000000Z"
			switch v.Type {
			case TypeToken:
				if v.Token.Code != "" {
					misses = append(misses, genQuery{v.Param, esc(v.Token.Code + "\u2603")},
						genQuery{v.Param, esc(v.Token.System) + "|" + esc(v.Token.Code+"x")})
				}
			case TypeString:
				if n := NormalizeString(v.String); n != "" {
					misses = append(misses, genQuery{v.Param, esc(n + "\u2603")}, genQuery{v.Param + ":exact", esc(v.String + " x")})
				}
			case TypeDate:
				if !v.Date.Low.Equal(MinTime) && v.Date.Low.Year() > 1 {
					misses = append(misses, genQuery{v.Param, "lt" + v.Date.Low.Format(ns)}, genQuery{v.Param, "sa" + v.Date.Low.Format(ns)})
				}
				if !v.Date.High.Equal(MaxTime) {
					h := v.Date.High.Add(-time.Nanosecond).Format(ns)
					misses = append(misses, genQuery{v.Param, "gt" + h}, genQuery{v.Param, "eb" + h})
				}
			case TypeNumber:
				if v.Number != "" {
					misses = append(misses, genQuery{v.Param, "gt" + v.Number}, genQuery{v.Param, "lt" + v.Number}, genQuery{v.Param, "ne" + v.Number})
				}
			case TypeReference:
				if v.Reference.Type != "" && v.Reference.ID != "" {
					misses = append(misses, genQuery{v.Param, esc(v.Reference.Type + "/" + v.Reference.ID + "x")})
				}
			case TypeURI:
				misses = append(misses, genQuery{v.Param, esc(v.URI + "x")})
			}
			for _, g := range misses {
				q, err := Parse(e.resourceType, url.Values{g.name: {g.value}}, true)
				if err != nil {
					t.Errorf("%s %s: %v", e.resourceType, g.name, err)
					continue
				}
				checked++
				if q.Clauses[0].Match([]Value{v}) {
					t.Errorf("%s %s=%q matches value %+v", e.resourceType, g.name, g.value, v)
				}
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d near misses checked", checked)
	}
}

// TestKeyCounts bounds the keys of one value and of one query.
func TestKeyCounts(t *testing.T) {
	valueKeys := func(param string, v Value) []string { return IndexKeys("", []Value{v}) }
	d := dateValue(t, "birthdate", "1970-05-02")
	if n := len(valueKeys("birthdate", d)); n > 16 {
		t.Errorf("date value: %d keys", n)
	}
	n := Value{Param: "probability", Type: TypeNumber, Number: "0.25"}
	if k := len(valueKeys("probability", n)); k > 12 {
		t.Errorf("number value: %d keys", k)
	}
	r := Value{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Low: "1", High: "2"}}
	if k := len(valueKeys("value-quantity", r)); k > 12 {
		t.Errorf("range value: %d keys", k)
	}
	// A bounded range narrows within the budget; an open-ended one may
	// not narrow (no level is coarse enough), but never takes more keys.
	for _, q := range []struct {
		typ, name, value string
		narrows          bool
	}{
		{"Patient", "birthdate", "1970", true}, {"Patient", "birthdate", "lt1970-05-02T10:11:12.123Z", true},
		{"Patient", "birthdate", "ap1970-05-02", true}, {"Patient", "birthdate", "1970-05-02T10:11:12.123Z", true},
		{"Patient", "birthdate", "gt1970-05-02T10:11:12Z", false}, {"Patient", "birthdate", "ge1970-05", false},
		{"Patient", "birthdate", "eb1970", false},
		{"RiskAssessment", "probability", "100", true}, {"RiskAssessment", "probability", "ap3", true},
		{"RiskAssessment", "probability", "gt0.001", false}, {"RiskAssessment", "probability", "lt-5e10", false},
		{"RiskAssessment", "probability", "ge1e-300", false}, {"RiskAssessment", "probability", "sa7", false},
		{"RiskAssessment", "probability", "eb7", false},
	} {
		c := clause(t, q.typ, q.name, q.value)
		keys, narrows := c.Keys()
		if len(keys) > maxCover || (q.narrows && (!narrows || len(keys) == 0)) {
			t.Errorf("%s=%s: %d keys, narrows %v", q.name, q.value, len(keys), narrows)
		}
	}
	// Many ORed values share the budget.
	var vs []string
	for i := range 20 {
		vs = append(vs, fmt.Sprintf("19%02d", 50+i))
	}
	c := clause(t, "Patient", "birthdate", strings.Join(vs, ","))
	if keys, _ := c.Keys(); len(keys) > 2*maxCover {
		t.Errorf("20 years: %d keys", len(keys))
	}
}

// TestKeysStable pins the key strings: they are persisted as HMACs, and a
// change needs a reindex (and a deliberate update of this test).
func TestKeysStable(t *testing.T) {
	vals := []Value{
		{Param: "code", Type: TypeToken, Token: Token{System: "http://loinc.org", Code: "8867-4"}},
		{Param: "status", Type: TypeToken, Token: Token{Code: "final"}},
		{Param: "category", Type: TypeToken, Token: Token{System: "http://example.org/no-code"}},
		{Param: "name", Type: TypeString, String: "Zoë Du"},
		{Param: "subject", Type: TypeReference, Reference: Reference{Type: "Patient", ID: "p1"}},
		{Param: "patient", Type: TypeReference, Reference: Reference{Type: "Patient", ID: "p1"}},
		{Param: "combo-code", Type: TypeToken, Token: Token{System: "http://loinc.org", Code: "8867-4"}},
		{Param: "date", Type: TypeDate, Date: DateRange{Low: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), High: time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)}},
	}
	got := strings.Join(IndexKeys("Observation", vals), "\n")
	want := strings.Join([]string{
		// A code is keyed without its system; combo-code has no keys of its
		// own (code and component-code index its values).
		"code|c|8867-4",
		// 2020-01-01 is day 737790 (0xb41fe) since 0000-01-01, shifted
		// right by 14, 7 and 0 bits; a one-day span has low keys only.
		"date|dl|1|2d", "date|dl|2|1683", "date|dl|3|b41fe",
		"name|e|zoe du", "name|x|z", "name|x|zo", "name|x|zoe", "name|x|zoe ",
		// A system without a code is not narrowed: no key.
		"status|c|final",
		// A reference is keyed by its id; patient has no keys of its own
		// (subject indexes its values).
		"subject|i|p1",
	}, "\n")
	if got != want {
		t.Errorf("IndexKeys =\n%s\nwant\n%s", got, want)
	}
}

// TestSharedKeys checks which parameters take their keys from others, and
// that a clause on one looks up theirs, in one type and across _type.
func TestSharedKeys(t *testing.T) {
	from := func(typ, code string) []string {
		p, ok := Lookup(typ, code)
		if !ok {
			t.Fatalf("%s.%s unknown", typ, code)
		}
		var out []string
		for _, q := range p.keysFrom {
			out = append(out, q.Code)
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		typ, code string
		want      []string
	}{
		{"Observation", "combo-code", []string{"code", "component-code"}},
		{"Observation", "combo-value-quantity", []string{"component-value-quantity", "value-quantity"}},
		{"Observation", "patient", []string{"subject"}},
		{"Encounter", "practitioner", []string{"participant"}},
		{"Observation", "code", nil},
		{"Observation", "subject", nil},
		// Same expression, other targets: Extract keeps other values.
		{"Bundle", "message", nil},
		{"Bundle", "composition", nil},
		// where(system='phone') is not a restriction shareKeys knows.
		{"Patient", "phone", nil},
		{"AllergyIntolerance", "patient", nil},
	} {
		if got := from(tc.typ, tc.code); !slices.Equal(got, tc.want) {
			t.Errorf("%s.%s takes keys from %v, want %v", tc.typ, tc.code, got, tc.want)
		}
	}
	keys := func(typ, name, value string) []string {
		q, err := Parse(typ, url.Values{name: {value}}, true)
		if err != nil {
			t.Fatal(err)
		}
		ks, narrows := q.Clauses[0].Keys()
		if !narrows {
			t.Fatalf("%s %s=%s does not narrow", typ, name, value)
		}
		return ks
	}
	for _, tc := range []struct {
		typ, name, value string
		want             []string
	}{
		{"Observation", "patient", "Patient/p1", []string{"subject|i|p1"}},
		{"Observation", "combo-code", "http://loinc.org|8867-4", []string{"code|c|8867-4", "component-code|c|8867-4"}},
		{"Observation", "combo-code-value-quantity", "8867-4$gt5", nil}, // checked below
		{"", "patient", "p1", []string{"patient|i|p1", "subject|i|p1"}},
	} {
		typ, vals := tc.typ, url.Values{tc.name: {tc.value}}
		if typ == "" {
			vals.Set("_type", "Condition,AllergyIntolerance")
		}
		q, err := Parse(typ, vals, true)
		if err != nil {
			t.Fatal(err)
		}
		got, narrows := q.Clauses[0].Keys()
		if tc.want == nil {
			want := keys("Observation", "combo-code", "8867-4")
			if !narrows || !slices.Equal(got, want) {
				t.Errorf("%s=%s: keys %v, want those of combo-code %v", tc.name, tc.value, got, want)
			}
			continue
		}
		if !narrows || !slices.Equal(got, tc.want) {
			t.Errorf("%s %s=%s: keys %v (narrows %v), want %v", tc.typ, tc.name, tc.value, got, narrows, tc.want)
		}
	}
	if got := ReferenceKeys("Observation", "patient", "Patient/p1"); !slices.Equal(got, []string{"subject|i|p1"}) {
		t.Errorf("ReferenceKeys(Observation, patient) = %v", got)
	}
}

func BenchmarkIndexKeys(b *testing.B) {
	es := resources(b, "synthea")
	x := &Extractor{ReferenceType: bundleTypes(es)}
	type resource struct {
		typ  string
		vals []Value
	}
	var all []resource
	for _, e := range es {
		if e.resourceType == "Bundle" {
			continue
		}
		if vals, err := x.Extract(e.resourceType, e.tree); err == nil {
			all = append(all, resource{e.resourceType, vals})
		}
	}
	keys := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := all[i%len(all)]
		keys += len(IndexKeys(r.typ, r.vals))
	}
	b.ReportMetric(float64(keys)/float64(b.N), "keys/resource")
}

// keysGoldenFile holds, per group of goldenGroups and extraction mode, a
// digest of the IndexKeys of every resource. The keys are persisted as
// HMACs, so a change to any of them, or to their order, breaks every
// stored index; the digests were written by IndexKeys and Extract before
// they were made faster.
const keysGoldenFile = "testdata/keys-golden.txt"

// TestIndexKeysGolden derives the index keys of every resource the
// Extract golden test extracts, as the gateway does (Indexed, without
// ReferenceType, _id and _lastUpdated left out) and in the other modes,
// and compares a digest of them, in order, with keysGoldenFile. It also
// holds Extractor.IndexKeys to Extract then IndexKeys.
func TestIndexKeysGolden(t *testing.T) {
	got := keysDigests(t)
	if *update {
		if err := os.WriteFile(keysGoldenFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(keysGoldenFile)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(want) != len(got) {
		t.Fatalf("%d digests, %s has %d: did the shared test data change? If so, and only then, rewrite it with -update", len(got), keysGoldenFile, len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("index keys changed (or the shared test data did; then rewrite with -update):\n got  %s\n want %s", got[i], want[i])
		}
	}
}

// gatewayValues drops the values the gateway makes no keys of
// (gateway/search.go searchTokens).
func gatewayValues(vals []Value) []Value {
	return slices.DeleteFunc(vals, func(v Value) bool { return v.Param == "_id" || v.Param == "_lastUpdated" })
}

func keysDigests(t *testing.T) []string {
	var lines []string
	for _, g := range goldenGroups(t) {
		for _, mode := range []struct {
			name           string
			indexed, types bool
			gateway        bool
		}{{"gateway", true, false, true}, {"indexed", true, true, false}, {"full", false, true, false}, {"full-notypes", false, false, false}} {
			x := &Extractor{Indexed: mode.indexed}
			if mode.types {
				x.ReferenceType = g.types
			}
			h := sha256.New()
			n := 0
			for _, e := range g.es {
				vals, err := x.Extract(e.resourceType, e.tree)
				var omit []string
				if mode.gateway {
					vals, omit = gatewayValues(vals), []string{"_id", "_lastUpdated"}
				}
				keys := IndexKeys(e.resourceType, vals)
				// Extractor.IndexKeys is the same, without the values.
				direct, derr := x.IndexKeys(e.resourceType, e.tree, omit...)
				if (derr != nil) != (err != nil) || !slices.Equal(direct, keys) {
					t.Errorf("%s %s %s: Extractor.IndexKeys = %q, %v; Extract then IndexKeys: %q, %v", g.name, mode.name, e.resourceType, direct, derr, keys, err)
				}
				fmt.Fprintf(h, "%s %s err=%v keys=%d\n", e.resourceType, e.fullURL, err != nil, len(keys))
				for _, k := range keys {
					fmt.Fprintf(h, "%q\n", k)
				}
				n += len(keys)
			}
			lines = append(lines, fmt.Sprintf("%s %s resources=%d keys=%d %s", g.name, mode.name, len(g.es), n, hex.EncodeToString(h.Sum(nil))))
		}
	}
	return lines
}

// BenchmarkSearchKeys measures what the gateway does for the blind index
// of each resource it writes or audits (gateway/search.go searchTokens,
// less the HMACs): Extract, Indexed and without ReferenceType, then
// IndexKeys, less _id and _lastUpdated. An op is one resource of the Synthea Bundles (decoded once,
// before the timer), taken in turn.
func BenchmarkSearchKeys(b *testing.B) {
	var es []entry
	for _, e := range resources(b, "synthea") {
		if e.resourceType != "Bundle" {
			es = append(es, e)
		}
	}
	x := &Extractor{Indexed: true}
	keys := 0
	for i := 0; b.Loop(); i++ {
		e := es[i%len(es)]
		k, _ := x.IndexKeys(e.resourceType, e.tree, "_id", "_lastUpdated")
		keys += len(k)
	}
	b.ReportMetric(float64(keys)/float64(b.N), "keys/resource")
}

// refIndexKeys is IndexKeys as it was before keys were gathered in one
// buffer and decimals bucketed without big.Rat: the reference the fast
// path is held to (TestIndexKeysReference, FuzzExtract).
func refIndexKeys(resourceType string, values []Value) []string {
	own := load().byType[resourceType]
	var out []string
	for _, v := range values {
		if p := own[v.Param]; p != nil && len(p.keysFrom) > 0 {
			continue
		}
		out = append(out, refValueKeys(v.Param, v)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func refValueKeys(param string, v Value) []string {
	switch v.Type {
	case TypeToken:
		return refTokenKeys(param, v.Token)
	case TypeString:
		n := NormalizeString(v.String)
		if n == "" {
			return nil
		}
		out := []string{ikey(param, kindExact, n)}
		i := 0
		for k := 1; k <= maxPrefix && i < len(n); k++ {
			_, size := utf8.DecodeRuneInString(n[i:])
			i += size
			out = append(out, ikey(param, kindPrefix, n[:i]))
		}
		return out
	case TypeURI:
		if v.URI == "" {
			return nil
		}
		out := []string{ikey(param, kindURI, v.URI)}
		for _, a := range refPathKeys(v.URI) {
			out = append(out, ikey(param, kindPath, a))
		}
		return out
	case TypeReference:
		r := v.Reference
		// The id alone: a Type/id query looks for it too (ids rarely
		// repeat across types; Match checks the type).
		var out []string
		if r.ID != "" {
			out = append(out, ikey(param, kindRefID, r.ID))
		}
		if r.URL != "" {
			out = append(out, ikey(param, kindRefURL, r.URL))
		}
		if r.Identifier != nil {
			out = append(out, refTokenKeys(param+"|"+kindRefIdnt, *r.Identifier)...)
		}
		return out
	case TypeDate:
		// A span within one day (most dates and dateTimes) has its last
		// instant on its low's day: its dl keys stand for dh too, and
		// queries on dh look for dl keys as well.
		lo, hi := dayOf(v.Date.Low), dayOf(v.Date.High.Add(-time.Nanosecond))
		if lo == hi {
			return refBucketKeys(param, kindDateLo, lo, dateScale)
		}
		return append(refBucketKeys(param, kindDateLo, lo, dateScale), refBucketKeys(param, kindDateHi, hi, dateScale)...)
	case TypeNumber, TypeQuantity:
		lo, hi, ok := numberBounds(v)
		if !ok {
			return nil
		}
		if lo != nil && hi != nil && lo == hi {
			return refBucketKeys(param, kindNumVal, refNumBucket(lo), numScale)
		}
		// Level 0 is one bucket of all Ranges (numberKeys).
		out := []string{bucketKey(param, kindNumLo, 0, 0), bucketKey(param, kindNumHi, 0, 0)}
		out = append(out, refBucketKeys(param, kindNumLo, refNumBucketOr(lo, 0), numScale)...)
		return append(out, refBucketKeys(param, kindNumHi, refNumBucketOr(hi, numScale.max()), numScale)...)
	}
	// A composite has no keys of its own: a clause on it narrows by the
	// keys of its first component's parameter (predicateKeys).
	return nil
}

// tokenKeys are the keys predicateKeys looks up: the code alone, whatever
// the system. A system|code query looks for it too (a code rarely means
// two things in one parameter; Match checks the system); a system without
// a code (system|) is not narrowed.
func refTokenKeys(param string, t Token) []string {
	if t.Code == "" {
		return nil
	}
	return []string{ikey(param, kindCode, t.Code)}
}

// pathKeys returns u without a final "/" and its first maxPathKeys
// ancestors at "/" boundaries.
func refPathKeys(u string) []string {
	u = strings.TrimSuffix(u, "/")
	if u == "" {
		return nil
	}
	out := []string{u}
	for i := 0; i < len(u) && len(out) <= maxPathKeys; i++ {
		if u[i] == '/' && i > 0 {
			out = append(out, u[:i])
		}
	}
	return out
}

func refBucketKeys(param, kind string, x uint64, s scale) []string {
	out := make([]string, 0, s.levels())
	for k := 1; k <= s.levels(); k++ {
		out = append(out, bucketKey(param, kind, k, x/s.size(k)))
	}
	return out
}

func refNumBucketOr(r *big.Rat, open uint64) uint64 {
	if r == nil {
		return open
	}
	return refNumBucket(r)
}

func refNumBucket(r *big.Rat) uint64 {
	f, _ := r.Float64()
	u := math.Float64bits(f)
	if u>>63 == 1 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return u >> (64 - numScale.bits)
}

// TestIndexKeysReference holds IndexKeys to refIndexKeys, key for key,
// over the values of every resource the golden tests extract (in every
// mode) and over values made to reach the corners: decimals at the ends
// of float64, ranges open at either end, long and non-ASCII strings, deep
// URIs, dates at the ends of the scale.
func TestIndexKeysReference(t *testing.T) {
	check := func(name, rt string, vals []Value) {
		t.Helper()
		if got, want := IndexKeys(rt, vals), refIndexKeys(rt, vals); !slices.Equal(got, want) {
			t.Errorf("%s %s: IndexKeys =\n%q\nwant\n%q", name, rt, got, want)
		}
	}
	n := 0
	for _, g := range goldenGroups(t) {
		for _, x := range []*Extractor{{ReferenceType: g.types}, {Indexed: true}} {
			for _, e := range g.es {
				vals, _ := x.Extract(e.resourceType, e.tree)
				check(g.name, e.resourceType, vals)
				check(g.name+" gateway", e.resourceType, gatewayValues(vals))
				n += len(vals)
			}
		}
	}
	var vals []Value
	for _, d := range cornerDecimals() {
		vals = append(vals,
			Value{Param: "probability", Type: TypeNumber, Number: d},
			Value{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Value: d, Low: "1"}},
			Value{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Low: d}},
			Value{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{High: d}},
			Value{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Low: d, High: d}},
			Value{Param: "value-quantity", Type: TypeQuantity, Quantity: Quantity{Low: "-" + d, High: "x"}},
			Value{Param: "value-quantity", Type: TypeNumber, Number: "", Quantity: Quantity{Value: d}},
		)
	}
	for _, s := range []string{"", " ", "a", "Zoë", "  Ab\tC  d ", "ÅNGSTRÖM", "ß", "İstanbul", "日本語テキスト", "a\u0301bc", "x\u00a0y", strings.Repeat("é", 9)} {
		vals = append(vals, Value{Param: "name", Type: TypeString, String: s})
	}
	for _, u := range []string{"", "/", "//", "a", "http://x/", "http://x/a/b/c", "/" + strings.Repeat("a/", 20), strings.Repeat("/", 30), "urn:oid:1.2"} {
		vals = append(vals, Value{Param: "url", Type: TypeURI, URI: u})
	}
	for _, r := range []Reference{{}, {Type: "Patient", ID: "1"}, {URL: "http://x/Patient/1", ID: "1", Version: "2"}, {Identifier: &Token{System: "s", Code: "c"}}, {Identifier: &Token{System: "s"}}} {
		vals = append(vals, Value{Param: "subject", Type: TypeReference, Reference: r})
	}
	for _, d := range []DateRange{{Low: MinTime, High: MaxTime}, {Low: MinTime.Add(-time.Hour), High: MinTime}, {Low: MaxTime, High: MaxTime.Add(48 * time.Hour)}, {}} {
		vals = append(vals, Value{Param: "date", Type: TypeDate, Date: d})
	}
	vals = append(vals, Value{Param: "code", Type: TypeToken, Token: Token{System: "s|x", Code: "a|b"}}, Value{Param: "code", Type: TypeToken}, Value{Param: "combo-code", Type: TypeToken, Token: Token{Code: "c"}})
	for _, v := range vals {
		check("corner", "Observation", []Value{v})
		check("corner", "", []Value{v})
	}
	check("corners", "Observation", vals)
	t.Logf("%d values of the test data, %d corner values", n, len(vals))
}

// cornerDecimals are decimals Rat accepts or refuses at the edges of
// float64 and of validDecimal, and every string of up to four characters
// of the characters a decimal is made of.
func cornerDecimals() []string {
	out := []string{
		"0", "-0", "0.0", "-0.0", "0e5", "-0e-5", "1", "-1", "1.50", "0.1", "0.30000000000000004",
		"1e-22", "1E-22", "1e22", "123456789012345678901234567890", "9007199254740993", "-9007199254740993",
		"1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "-1.7976931348623159e308", "1e308", "1e309", "-1e309",
		"2.2250738585072014e-308", "2.2250738585072011e-308", "2.2250738585072012e-308", "-2.2250738585072014e-308",
		"4.9e-324", "5e-324", "2.4703282292062328e-324", "2.4703282292062327e-324", "-4.9e-324", "1e-323", "1e-400", "-1e-400",
		"1e400", "-1e400", "1e401", "1e+0400", "0.000000000000000000000000000000000000000000000001",
		"1" + strings.Repeat("0", 350), "0." + strings.Repeat("0", 330) + "1", "1.5e", "1..2", "", "x", "+1", "01", ".5", "5.", "0x10", "1_000", "inf", "NaN",
	}
	const alphabet = "-0.e19"
	var walk func(s string)
	walk = func(s string) {
		out = append(out, s)
		if len(s) < 4 {
			for i := range len(alphabet) {
				walk(s + alphabet[i:i+1])
			}
		}
	}
	walk("")
	return out
}

// TestDecimalBucket holds decimalBucket to numBucket of big.Rat, over
// corner decimals and random ones of every magnitude float64 has.
func TestDecimalBucket(t *testing.T) {
	ds := cornerDecimals()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.Itoa(rng.IntN(10)))
		if rng.IntN(2) == 0 {
			b.WriteByte('.')
			for range 1 + rng.IntN(25) {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		fmt.Fprintf(&b, "e%d", rng.IntN(801)-400)
		ds = append(ds, b.String())
	}
	for _, d := range ds {
		r, rok := Rat(d)
		got, ok := decimalBucket(d)
		if ok != rok || (ok && got != refNumBucket(r)) {
			t.Errorf("decimalBucket(%q) = %x, %v; big.Rat gives %v", d, got, ok, rok)
		}
	}
}
