package gateway_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestCohortDifferencingAttack is the outside review's attack, run against
// the default research configuration: a suppressed breakdown cell (men of
// one age band, 1..10 of them), then "men" and "men not in that band". The
// difference of the two released counts would be the hidden cell. With the
// defaults the second count is suppressed for overlap, so the small number
// never leaves the gateway; released counts carry the default noise and
// rounding, and a repeat gets the identical answer. After a restart, a
// second (colluding) client cannot finish the attack either: the default
// scope compares every client's releases, read from the decision log.
func TestCohortDifferencingAttack(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true}) // default research configuration
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, f := range shareddata.Files(t, "synthea") {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if r := g.Do(t, http.MethodPost, "", readFile(t, f), ehr...); r.Status != http.StatusOK {
				t.Errorf("%s: status %d", filepath.Base(f), r.Status)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	attacker := researcher(t, g, "attacker")
	const men = `{"gender": "male"}`

	// 1. The breakdown: small cells are suppressed; the total is released
	// with the default noise and rounding.
	bd, r := askCohort(t, g, "breakdown", `{"criteria": `+men+`, "breakdown": ["ageBand"]}`, attacker)
	if r.Status != http.StatusOK {
		t.Fatalf("breakdown = %d %s", r.Status, r.Body)
	}
	if tot := bd.Result.Total; tot.Count == nil || tot.Noise != cohort.NoiseGaussian || tot.RoundedTo != 5 {
		t.Fatalf("breakdown total %+v: want a count with Gaussian noise rounded to 5 (the defaults)", tot)
	}

	// 2. "Men", released like the breakdown's total.
	all, r := askCohort(t, g, "count", `{"criteria": `+men+`}`, attacker)
	if r.Status != http.StatusOK || all.Result.Count == nil || all.Result.Noise != cohort.NoiseGaussian || all.Result.RoundedTo != 5 || *all.Result.Count%5 != 0 {
		t.Fatalf("count of men = %d %s; want a noisy count rounded to 5", r.Status, r.Body)
	}
	menRec, _ := decisionRecordAt(t, g, all.Decision)

	// 3. "Men not in band B" for a suppressed band B. The decision records
	// (for auditors) hold the true counts: the difference is the hidden
	// cell, and wherever it is 1..10 the count is suppressed for overlap.
	attacked := false
	for _, c := range bd.Result.Cells {
		band := c.Values["ageBand"]
		rng := ageRange(band)
		if !c.Suppressed || rng == "" {
			continue
		}
		q := `{"criteria": {"all": [` + men + `, {"not": {"age": ` + rng + `}}]}}`
		res, r := askCohort(t, g, "count", q, attacker)
		if r.Status != http.StatusOK {
			t.Fatalf("men not %s = %d %s", band, r.Status, r.Body)
		}
		rec, _ := decisionRecordAt(t, g, res.Decision)
		hidden := int(menRec["permitted"].(float64) - rec["permitted"].(float64))
		t.Logf("band %s: %d men hidden; men released as %d, men not in it: %s", band, hidden, *all.Result.Count, r.Body)
		if hidden < 1 || hidden > 10 {
			continue
		}
		attacked = true
		if !res.Result.Suppressed || res.Result.Count != nil || res.Result.Reason != cohort.ReasonOverlap {
			t.Errorf("men not aged %s released %s: with men released as %d, the %d hidden men are one subtraction away",
				band, r.Body, *all.Result.Count, hidden)
		}
		// A repeat gets the identical answer: the same suppression, and
		// the same noisy count for the men.
		again, _ := askCohort(t, g, "count", q, attacker)
		if string(mustJSON(t, again.Result)) != string(mustJSON(t, res.Result)) {
			t.Errorf("repeat of men not %s: %s, first %s", band, mustJSON(t, again.Result), mustJSON(t, res.Result))
		}
		allAgain, _ := askCohort(t, g, "count", `{"criteria": `+men+`}`, attacker)
		if allAgain.Result.Count == nil || *allAgain.Result.Count != *all.Result.Count {
			t.Errorf("repeat of the count of men = %v, first %d", allAgain.Result.Count, *all.Result.Count)
		}

		// 4. After a restart, still on the defaults (every client's releases
		// are compared), a colluding client cannot ask the other half.
		g.Restart(t)
		colluder := researcher(t, g, "colluder")
		res, r = askCohort(t, g, "count", q, colluder)
		if r.Status != http.StatusOK || !res.Result.Suppressed || res.Result.Reason != cohort.ReasonOverlap {
			t.Errorf("a second client's men not %s = %d %s; want suppressed for overlap with the attacker's releases", band, r.Status, r.Body)
		}
		break
	}
	if !attacked {
		t.Fatalf("no suppressed age band of men holds 1..10 men: %s", mustJSON(t, bd.Result))
	}
}

// ageRange turns an ageBand value into an age range, or "".
func ageRange(band string) string {
	if band == "90+" {
		return `{"ge": 90}`
	}
	lo, hi, ok := strings.Cut(band, "-")
	if !ok {
		return ""
	}
	return `{"ge": ` + lo + `, "le": ` + hi + `}`
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
