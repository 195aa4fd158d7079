package cohort

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func setOf(members ...int) bitset {
	var b bitset
	for _, m := range members {
		b = b.set(uint32(m))
	}
	return b
}

func span(lo, hi int) []int {
	var out []int
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

// TestOverlapRule: two sets are too close when 0 < |S Δ T| < threshold,
// counting only permitted patients, and the check asks about as few
// patients as it needs.
func TestOverlapRule(t *testing.T) {
	refused := map[int]bool{}
	for _, i := range span(46, 58) {
		refused[i] = true
	}
	asked := 0
	c := &consent{keys: make([]string, 20000), memo: map[uint32]bool{}}
	for i := range c.keys {
		c.keys[i] = fmt.Sprint("pat-", i)
	}
	c.permit = func(key string) bool {
		asked++
		var i int
		fmt.Sscanf(key, "pat-%d", &i)
		return !refused[i]
	}
	k := &checker{c: c, threshold: 11}
	males := setOf(span(0, 46)...) // permitted, as S always is
	for _, tt := range []struct {
		name string
		t    bitset
		want bool
	}{
		{"identical", setOf(span(0, 46)...), false},
		{"three fewer (males not 90+)", setOf(span(0, 43)...), true},
		{"ten fewer", setOf(span(0, 36)...), true},
		{"eleven fewer", setOf(span(0, 35)...), false},
		{"three more", setOf(span(0, 49)...), false}, // 46..48 refused: no permitted difference
		{"refused and three permitted more", setOf(span(0, 61)...), true},
		{"disjoint", setOf(span(100, 150)...), false},
		{"empty (the size of S)", nil, false},
		{"two swapped", setOf(append(span(2, 46), 58, 59)...), true},
	} {
		if got := k.small(males, tt.t); got != tt.want {
			t.Errorf("%s: small = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !k.small(setOf(1, 2, 3), nil) {
		t.Error("a set of 3 is not close to the empty set")
	}
	// A large earlier set far from S is settled after about a threshold's
	// worth of consent decisions, not one per patient.
	asked = 0
	if k.small(setOf(), setOf(span(100, 20000)...)) {
		t.Error("20,000 patients are close to none")
	}
	if asked > 11 {
		t.Errorf("asked %d consent decisions to tell 20,000 from none", asked)
	}
}

// population puts 46 men (3 of them in the 90+ band) and 50 women into an
// index; each woman over 60 and each man 60+ has hypertension.
func population(t testing.TB) *Index {
	ix := NewIndex()
	for i := range 96 {
		gender, birth := "male", fmt.Sprint(1940+i%60)
		if i >= 46 {
			gender = "female"
		}
		if i < 3 {
			birth = "" // the 90+ band
		}
		pk := fmt.Sprintf("pt-%02d", i)
		put(t, ix, "P"+pk, pk, patientJSON(gender, birth, "021", "", ""))
		if birth == "" || birth < "1964" {
			put(t, ix, "C"+pk, pk, conditionJSON("38341003", "2010-01-01", "active"))
		}
	}
	return ix
}

// log records answers as a decision log would, newest first.
type log []Earlier

func (l *log) add(q *Query, breakdown bool, a Answer) {
	e := Earlier{Criteria: q.CriteriaJSON(), Total: a.Total, Cells: a.Cells}
	if breakdown {
		e.Breakdown = q.Breakdown
		if e.Cells == nil {
			e.Cells = []ReleasedCell{}
		}
	}
	*l = append([]Earlier{e}, *l...)
}

func ask(t *testing.T, ix *Index, p Privacy, l *log, query string, permit func(string) bool) Answer {
	t.Helper()
	q := mustParse(t, query)
	a, err := ix.Answer(q, len(q.Breakdown) > 0, at, p, permit, *l)
	if err != nil {
		t.Fatal(err)
	}
	l.add(q, len(q.Breakdown) > 0, a)
	return a
}

const (
	qByAge       = `{"criteria":{"gender":"male"},"breakdown":["gender","ageBand"]}`
	qMales       = `{"criteria":{"gender":"male"}}`
	qMalesUnder  = `{"criteria":{"all":[{"gender":"male"},{"not":{"age":{"ge":90}}}]}}`
	qEveryone    = `{"criteria":{"any":[{"gender":"male"},{"gender":"female"}]}}`
	qNotOldMales = `{"criteria":{"not":{"all":[{"gender":"male"},{"age":{"ge":90}}]}}}`
)

// TestOverlapAttack is the reviewer's attack: the 3 men aged 90+ are a
// suppressed cell, and "men" minus "men not aged 90+" would give them
// away. With the control, whichever of the two comes second is suppressed
// for overlap; without it, the subtraction works.
func TestOverlapAttack(t *testing.T) {
	ix := population(t)
	for _, order := range [][]string{{qMales, qMalesUnder}, {qMalesUnder, qMales}, {qEveryone, qNotOldMales}} {
		t.Run(order[0]+" then "+order[1], func(t *testing.T) {
			var l log
			bd := ask(t, ix, exact, &l, qByAge, allow)
			old := bd.Cells[len(bd.Cells)-1]
			if old.Values["ageBand"] != "90+" || !old.Suppressed {
				t.Fatalf("cell %v: want the 90+ cell suppressed", old)
			}
			first := ask(t, ix, exact, &l, order[0], allow)
			second := ask(t, ix, exact, &l, order[1], allow)
			if first.Total.Reason != ReasonOverlap && second.Total.Reason != ReasonOverlap {
				t.Fatalf("counts %+v and %+v: want one suppressed for overlap", first.Total, second.Total)
			}
			// No two released counts differ by 1..10.
			var got []int
			for _, r := range []Released{bd.Total, first.Total, second.Total} {
				if r.released() {
					got = append(got, *r.Count)
				}
			}
			for _, a := range got {
				for _, b := range got {
					if d := a - b; d > 0 && d < 11 {
						t.Errorf("released counts %v differ by %d", got, d)
					}
				}
			}

			// Without the control the difference is the hidden cell.
			off := exact
			off.OverlapScope = OverlapOff
			var l2 log
			a := ask(t, ix, off, &l2, order[0], allow)
			b := ask(t, ix, off, &l2, order[1], allow)
			if d := *a.Total.Count - *b.Total.Count; d != 3 && d != -3 {
				t.Errorf("without the control the counts differ by %d, want 3", d)
			}
		})
	}
}

// TestOverlapBreakdown: a breakdown cell close to an earlier count is
// suppressed for overlap, and so is a complementary cell, so the row's
// total cannot give it back; the derived unions of the release are not
// small either.
func TestOverlapBreakdown(t *testing.T) {
	ix := population(t)
	var l log
	p := exact
	// Men with hypertension: the 3 men 90+ and those born before 1964.
	ask(t, ix, p, &l, `{"criteria":{"all":[{"gender":"male"},{"not":{"age":{"ge":90}}},{"condition":{"code":[{"system":"`+snomed+`","code":"38341003"}]}}]}}`, allow)
	a := ask(t, ix, p, &l, `{"criteria":{"condition":{"code":[{"system":"`+snomed+`","code":"38341003"}]}},"breakdown":["gender"]}`, allow)
	var male ReleasedCell
	hidden := 0
	for _, c := range a.Cells {
		if c.Values["gender"] == "male" {
			male = c
		}
		if c.Suppressed {
			hidden++
		}
	}
	if !male.Suppressed || male.Reason != ReasonOverlap {
		t.Fatalf("male cell %+v: want suppressed for overlap", male)
	}
	if hidden < 2 && a.Total.released() {
		t.Errorf("only the male cell is hidden and the total is released: %+v", a)
	}
	checkNoLoneSuppressed(t, a.Cells)
}

// TestOverlapHiddenUnion: cells 18, 20, 7 and 3 with a released total would
// give away the 10 patients of the two hidden cells (48 - 18 - 20) even
// with no earlier release; Answer hides the 18 as well.
func TestOverlapHiddenUnion(t *testing.T) {
	ix := population(t)
	var l log
	a := ask(t, ix, exact, &l, `{"criteria":{"condition":{}},"breakdown":["ageBand"]}`, allow)
	var got []string
	for _, c := range a.Cells {
		got = append(got, c.Values["ageBand"]+"="+count(c.Released)+c.Reason)
	}
	if g := strings.Join(got, " "); count(a.Total) != "48" || g != "60-69=Soverlap 70-79=20 80-89=S 90+=S" {
		t.Errorf("released total %s, cells %s; want 48 and 60-69=Soverlap 70-79=20 80-89=S 90+=S", count(a.Total), g)
	}
}

// TestOverlapRepeat: a repeated query gets the identical answer, with the
// default noise and rounding, whether or not the control suppressed
// something the first time.
func TestOverlapRepeat(t *testing.T) {
	ix := population(t)
	p := Privacy{Key: testKey}
	var l log
	for _, q := range []string{qByAge, qMales, qMalesUnder, qEveryone, qNotOldMales,
		`{"criteria":{"condition":{}},"breakdown":["gender","ageBand"]}`} {
		first := ask(t, ix, p, &l, q, allow)
		for range 3 {
			again := ask(t, ix, p, &l, q, allow)
			a, _ := json.Marshal([]any{first.Total, first.Cells})
			b, _ := json.Marshal([]any{again.Total, again.Cells})
			if string(a) != string(b) {
				t.Errorf("%s: first answer %s, repeat %s", q, a, b)
			}
		}
		if first.Total.released() && (first.Total.Noise != NoiseGaussian || first.Total.RoundedTo != 5) {
			t.Errorf("%s: total %+v without the default noise and rounding", q, first.Total)
		}
	}
}

// TestOverlapConsent: sets are of permitted patients, so a difference made
// only of patients who refused does not count, and one that remains after
// their removal does.
func TestOverlapConsent(t *testing.T) {
	ix := population(t)
	old := func(patient string) bool { return patient >= "pt-03" } // the 90+ men refuse
	var l log
	ask(t, ix, exact, &l, qMales, old)
	if a := ask(t, ix, exact, &l, qMalesUnder, old); !a.Total.released() || *a.Total.Count != 43 || a.Permitted != 43 || a.Refused != 0 {
		t.Errorf("men under 90 after men, the 90+ refusing: %+v; want 43 released", a)
	}
	l = nil
	few := func(patient string) bool { return patient != "pt-00" } // one of the three refuses
	ask(t, ix, exact, &l, qMales, few)
	if a := ask(t, ix, exact, &l, qMalesUnder, few); a.Total.Reason != ReasonOverlap {
		t.Errorf("two permitted men 90+ between the counts: %+v; want suppressed for overlap", a.Total)
	}
}

// TestAnswerWithoutHistory: with no earlier release, Answer releases what
// Count, Breakdown, Release and ReleaseBreakdown do.
func TestAnswerWithoutHistory(t *testing.T) {
	ix := population(t)
	p := Privacy{Key: testKey}
	for _, query := range []string{qByAge, qMales, `{"criteria":{"condition":{}},"breakdown":["ageBand"]}`} {
		q := mustParse(t, query)
		bd := len(q.Breakdown) > 0
		a, err := ix.Answer(q, bd, at, p, allow, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := p.Release(q.Fingerprint(), "", ix.Count(q, at, allow))
		if fmt.Sprint(count(a.Total), a.Total.Noise) != fmt.Sprint(count(want), want.Noise) {
			t.Errorf("%s: total %s, want %s", query, count(a.Total), count(want))
		}
		if !bd {
			continue
		}
		// The same cells; what ReleaseBreakdown hides stays hidden, and
		// what Answer releases is released alike. Answer may hide more: no
		// union its cells expose may be small.
		cells, _ := ix.Breakdown(q, at, allow)
		w := p.ReleaseBreakdown(q.Fingerprint(), cells)
		if len(w) != len(a.Cells) {
			t.Fatalf("%s: %d cells, want %d", query, len(a.Cells), len(w))
		}
		for i := range w {
			if CellName(w[i].Values) != CellName(a.Cells[i].Values) ||
				w[i].Suppressed && !a.Cells[i].Suppressed ||
				a.Cells[i].released() && count(a.Cells[i].Released) != count(w[i].Released) {
				t.Errorf("%s: cell %d is %+v, ReleaseBreakdown gives %+v", query, i, a.Cells[i], w[i])
			}
		}
	}
}

func TestCriteriaJSONRoundTrip(t *testing.T) {
	for _, s := range []string{
		diabetesQuery,
		qMalesUnder, qNotOldMales,
		`{"criteria":{"all":[{"condition":{},"as":"a"},{"any":[{"not":{"procedure":{},"within":{"of":"a","to":{"days":-1}}}}]}]}}`,
		`{"criteria":{"all":[{"condition":{"code":[{"system":"s","code":"a|b"}]},"as":"x"},{"condition":{"code":[{"system":"s","code":"a|b"}]},"as":"y"},{"procedure":{},"within":{"of":"y","from":{"days":3}}}]}}`,
		`{"criteria":{"observation":{"value":{"gt":1e308,"lt":-0},"unit":"%","valueCode":[{"system":"s","code":"c"}],"status":"final","date":{"ge":"0001-01-01","le":"9999-12-31"}}}}`,
		`{"criteria":{"all":[{"age":{"eq":90}},{"birthYear":{"gt":1950,"le":1990}},{"zip3":"021"},{"race":"2106-3"},{"ethnicity":"2186-5"},{"deceased":false}]}}`,
	} {
		q := mustParse(t, s)
		c := q.CriteriaJSON()
		q2, err := ParseQuery([]byte(`{"criteria":` + string(c) + `}`))
		if err != nil {
			t.Errorf("%s: CriteriaJSON %s does not parse: %v", s, c, err)
			continue
		}
		if q2.Fingerprint() != q.Fingerprint() {
			t.Errorf("%s: CriteriaJSON %s has another fingerprint", s, c)
		}
		if string(q2.CriteriaJSON()) != string(c) {
			t.Errorf("CriteriaJSON not stable: %s then %s", c, q2.CriteriaJSON())
		}
		if strings.Contains(string(c), `"as":"a"`) {
			t.Errorf("CriteriaJSON keeps the client's names: %s", c)
		}
	}
}
