package cohort

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func code(system, c string) string {
	return `[{"system":"` + system + `","code":"` + c + `"}]`
}

var (
	dxC    = `{"condition":{"code":` + code(snomed, diabetes) + `},"as":"dx"}`
	a1cC   = `{"observation":{"code":` + code(loinc, hba1c)
	metfor = `{"medication":{"code":` + code(rxnorm, "860975") + `}}`
)

func TestMatchSemantics(t *testing.T) {
	ix := fixture(t)
	tests := []struct {
		name, criteria string
		want           []string
	}{
		{"gender", `{"gender":"female"}`, []string{p1, p3}},
		{"zip3", `{"zip3":"021"}`, []string{p1, p3}},
		{"race", `{"race":"2106-3"}`, []string{p1}},
		{"deceased", `{"deceased":true}`, []string{p4}},
		{"not deceased", `{"deceased":false}`, []string{p1, p2, p3, p5}},
		{"birthYear", `{"birthYear":{"ge":1963,"lt":1991}}`, []string{p1, p2}},
		{"birthYear excludes 90+", `{"birthYear":{"lt":1990}}`, []string{p1}},
		{"age adult", `{"age":{"ge":18}}`, []string{p1, p2, p3, p4}},
		{"age 30s", `{"age":{"ge":30,"le":39}}`, []string{p2}},
		{"age eq", `{"age":{"eq":61}}`, []string{p1}},
		{"90+ matches age >= 90", `{"age":{"ge":90}}`, []string{p3}},
		{"90+ matches age > 89", `{"age":{"gt":89}}`, []string{p3}},
		{"90+ not age > 90", `{"age":{"gt":90}}`, nil},
		{"90+ not bounded above", `{"age":{"ge":80,"lt":100}}`, nil},
		{"and", `{"all":[{"gender":"female"},` + dxC + `]}`, []string{p1}},
		{"or", `{"any":[{"deceased":true},{"race":"2106-3"}]}`, []string{p1, p4}},
		{"not", `{"not":{"gender":"female"}}`, []string{p2, p4, p5}},
		{"not of fact", `{"all":[` + dxC + `,{"not":` + metfor + `}]}`, []string{p2, p5}},
		{"nested", `{"any":[{"all":[{"gender":"male"},{"not":{"deceased":true}}]},{"all":[{"zip3":"021"},{"not":{"age":{"lt":90}}}]}]}`, []string{p2, p3}},
		{"status", `{"condition":{"code":` + code(snomed, diabetes) + `,"status":"active"}}`, []string{p1, p5}},
		{"any condition", `{"condition":{}}`, []string{p1, p2, p3, p5}},
		{"value gt", a1cC + `,"value":{"gt":6.5}}}`, []string{p1, p2, p3}},
		{"value gt with unit", a1cC + `,"value":{"gt":7.5},"unit":"%"}}`, []string{p3}},
		{"value other unit", a1cC + `,"value":{"gt":7.5},"unit":"mmol/mol"}}`, []string{p2}},
		{"value ge boundary", a1cC + `,"value":{"ge":7,"lt":7.5},"unit":"%"}}`, []string{p1, p2}},
		{"value gt boundary", a1cC + `,"value":{"gt":7,"lt":7.5}}}`, nil},
		{"value le", a1cC + `,"value":{"le":6}}}`, []string{p1}},
		{"value eq", a1cC + `,"value":{"eq":9}}}`, []string{p3}},
		{"date window", a1cC + `,"date":{"ge":"2010-01-01","lt":"2015-01-01"}}}`, []string{p1, p2}},
		{"date with zone is UTC", `{"condition":{"date":{"ge":"2012-01-02","lt":"2012-01-03"}}}`, []string{p2}},
		{"encounter class", `{"encounter":{"code":` + code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB") + `}}`, []string{p4}},
		{"procedure", `{"procedure":{"code":` + code(snomed, "430193006") + `,"date":{"lt":"2002-01-02"}}}`, []string{p4}},
		{"after dx within a year", `{"all":[` + dxC + `,` + a1cC + `,"value":{"gt":6.5}},"within":{"of":"dx","from":{"days":0},"to":{"days":365}}}]}`, []string{p1, p2}},
		{"0-day window", `{"all":[` + dxC + `,` + a1cC + `},"within":{"of":"dx","from":{"days":0},"to":{"days":0}}}]}`, []string{p2}},
		{"after dx, days 1..365", `{"all":[` + dxC + `,` + a1cC + `},"within":{"of":"dx","from":{"days":1},"to":{"days":365}}}]}`, []string{p1}},
		{"exactly 92 days after", `{"all":[` + dxC + `,` + a1cC + `},"within":{"of":"dx","from":{"days":92},"to":{"days":92}}}]}`, []string{p1}},
		{"before dx", `{"all":[` + dxC + `,` + a1cC + `},"within":{"of":"dx","to":{"days":-1}}}]}`, []string{p1}},
		{"long before dx", `{"all":[` + dxC + `,` + a1cC + `},"within":{"of":"dx","from":{"days":-430},"to":{"days":-424}}}]}`, []string{p1}},
		{"just missed before dx", `{"all":[` + dxC + `,` + a1cC + `},"within":{"of":"dx","from":{"days":-430},"to":{"days":-425}}}]}`, nil},
		{"no dx, no window match", `{"all":[{"condition":{"code":` + code(snomed, "1") + `},"as":"dx"},` + a1cC + `},"within":{"of":"dx"}}]}`, nil},
		{"no follow-up HbA1c", `{"all":[` + dxC + `,{"not":` + a1cC + `},"within":{"of":"dx","from":{"days":0},"to":{"days":365}}}}]}`, []string{p5}},
		{"chained windows", `{"all":[` + dxC + `,` + a1cC + `,"value":{"gt":6.5}},"as":"high","within":{"of":"dx","from":{"days":0}}},` + a1cC + `},"within":{"of":"high","from":{"days":300}}}]}`, []string{p2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustParse(t, `{"criteria":`+tt.criteria+`}`)
			got := ix.Match(q, at, allow)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			if n := ix.Count(q, at, allow); n != len(tt.want) {
				t.Errorf("Count = %d, want %d", n, len(tt.want))
			}
		})
	}
}

func TestPermit(t *testing.T) {
	ix := fixture(t)
	q := mustParse(t, `{"criteria":{"not":{"deceased":true}},"breakdown":["gender"]}`)
	calls := map[string]int{}
	deny := func(p string) bool { calls[p]++; return p != p1 && p != p5 }
	if got, want := ix.Match(q, at, deny), []string{p2, p3}; !slices.Equal(got, want) {
		t.Errorf("Match = %v, want %v", got, want)
	}
	for p, n := range calls {
		if n != 1 {
			t.Errorf("permit(%s) called %d times", p, n)
		}
	}
	if calls[p4] != 0 {
		t.Error("permit called for a patient that does not match")
	}
	if n := ix.Count(q, at, deny); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
	cells, err := ix.Breakdown(q, at, deny)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		if c.Values["gender"] == "unknown" || c.Count != 1 {
			t.Errorf("denied patient counted: %+v", c)
		}
	}
	if n := ix.Count(q, at, nil); n != 0 {
		t.Errorf("Count with nil permit = %d, want 0", n)
	}
}

func TestBreakdown(t *testing.T) {
	ix := fixture(t)
	all := `{"criteria":{"not":{"gender":"none"}},"breakdown":`
	tests := []struct {
		dims string
		want string
	}{
		{`["gender"]`, "female:2 male:2 unknown:1"},
		{`["ageBand"]`, "20-29:1 30-39:1 60-69:1 90+:1 unknown:1"},
		{`["birthDecade"]`, "1960s:1 1990s:1 2000s:1 90+:1 unknown:1"},
		{`["zip3"]`, "021:2 100:1 unknown:2"},
		{`["race"]`, "2106-3:1 unknown:4"},
		{`["ethnicity"]`, "unknown:5"},
		{`["deceased"]`, "false:4 true:1"},
		{`["gender","zip3"]`, "female/021:2 male/100:1 male/unknown:1 unknown/unknown:1"},
		{`["zip3","gender"]`, "021/female:2 100/male:1 unknown/male:1 unknown/unknown:1"},
	}
	for _, tt := range tests {
		t.Run(tt.dims, func(t *testing.T) {
			q := mustParse(t, all+tt.dims+`}`)
			cells, err := ix.Breakdown(q, at, allow)
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			total := 0
			for _, c := range cells {
				var vs []string
				for _, d := range q.Breakdown {
					vs = append(vs, c.Values[d])
				}
				parts = append(parts, strings.Join(vs, "/")+":"+strconv.Itoa(c.Count))
				total += c.Count
			}
			if got := strings.Join(parts, " "); got != tt.want {
				t.Errorf("cells = %s, want %s", got, tt.want)
			}
			if total != ix.Count(q, at, allow) {
				t.Errorf("cells add up to %d, Count is %d", total, ix.Count(q, at, allow))
			}
		})
	}
	if _, err := ix.Breakdown(mustParse(t, `{"criteria":{"gender":"male"}}`), at, allow); !errors.Is(err, ErrNoBreakdown) {
		t.Errorf("Breakdown without dimensions: %v", err)
	}
	// Age bands move with the reference time.
	q := mustParse(t, all+`["ageBand"]}`)
	cells, _ := ix.Breakdown(q, time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), allow)
	if cells[0].Values["ageBand"] != "50-59" {
		t.Errorf("first band in 2050 = %v", cells[0].Values)
	}
}

// BenchmarkCountScale counts over a generated population of 100,000
// patients (Patient, 2 conditions, 4 observations each).
func BenchmarkCountScale(b *testing.B) {
	const patients = 100_000
	ix := NewIndex()
	genders := []string{"female", "male"}
	for i := range patients {
		pk := "p" + strconv.Itoa(i)
		put(b, ix, pk+"/P", pk, patientJSON(genders[i%2], strconv.Itoa(1930+i%80), strconv.Itoa(100+i%900), "2106-3", ""))
		for j := range 2 {
			c := strconv.Itoa(1000 + (i*7+j*13)%200)
			if i%9 == 0 && j == 0 {
				c = diabetes
			}
			put(b, ix, pk+"/c"+strconv.Itoa(j), pk, conditionJSON(c, fmt.Sprintf("20%02d-0%d-15", 10+i%10, 1+j), "active"))
		}
		for j := range 4 {
			put(b, ix, pk+"/o"+strconv.Itoa(j), pk, observationJSON(hba1c, 5+float64((i+j)%40)/10, "%", fmt.Sprintf("20%02d-0%d-15", 10+i%10, 2+j)))
		}
	}
	b.Logf("%+v", ix.Stats())
	for _, bm := range []struct{ name, query string }{
		{"diabetes female", `{"criteria":{"all":[{"condition":{"code":` + code(snomed, diabetes) + `}},{"gender":"female"}]}}`},
		{"temporal", `{"criteria":{"all":[` + dxC + `,` + a1cC + `,"value":{"gt":6.5},"unit":"%"},"within":{"of":"dx","from":{"days":0},"to":{"days":365}}}]}}`},
		{"age and zip3 and not diabetes", `{"criteria":{"all":[{"age":{"ge":40,"lt":65}},{"zip3":"321"},{"not":` + dxC + `}]}}`},
	} {
		q := mustParse(b, bm.query)
		b.Run(bm.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				n = ix.Count(q, at, allow)
			}
			b.ReportMetric(float64(n), "patients")
		})
	}
}

// TestAnswerAsksConcurrentlyOnce: Answer decides its matching patients on
// several goroutines, each once, and counts exactly the ones permit
// allows, as Count does asking one at a time.
func TestAnswerAsksConcurrentlyOnce(t *testing.T) {
	ix := NewIndex()
	genders := []string{"female", "male", "other"}
	for i := range 600 {
		pk := "p" + strconv.Itoa(i)
		put(t, ix, pk+"/P", pk, patientJSON(genders[i%3], strconv.Itoa(1940+i%60), "321", "2106-3", ""))
	}
	q := mustParse(t, `{"criteria":{"gender":"female"}}`)
	var mu sync.Mutex
	calls := map[string]int{}
	permit := func(p string) bool {
		mu.Lock()
		calls[p]++
		mu.Unlock()
		n, _ := strconv.Atoi(strings.TrimPrefix(p, "p"))
		return n%7 != 0
	}
	a, err := ix.Answer(q, false, at, Privacy{Noise: NoiseNone, RoundTo: 1}, permit, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ix.Count(q, at, func(p string) bool { n, _ := strconv.Atoi(strings.TrimPrefix(p, "p")); return n%7 != 0 })
	if a.Permitted != want || a.Permitted+a.Refused != 200 {
		t.Errorf("Answer permitted %d, refused %d; Count says %d of 200", a.Permitted, a.Refused, want)
	}
	for p, n := range calls {
		if n != 1 {
			t.Errorf("permit(%s) called %d times", p, n)
		}
		if i, _ := strconv.Atoi(strings.TrimPrefix(p, "p")); genders[i%3] != "female" {
			t.Errorf("permit asked about %s, who does not match", p)
		}
	}
	if len(calls) != 200 {
		t.Errorf("permit asked about %d patients, want the 200 who match", len(calls))
	}
	// Matching names beforehand the patients Answer asks about.
	got := ix.Matching(q, false, at)
	if len(got) != len(calls) {
		t.Errorf("Matching returns %d patients, Answer asked about %d", len(got), len(calls))
	}
	for _, p := range got {
		if calls[p] != 1 {
			t.Errorf("Matching returns %s, whom Answer did not ask about", p)
		}
	}
}
