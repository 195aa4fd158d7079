package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// BenchmarkCohortCount measures a cohort count over the whole Synthea set
// as a researcher sees it: POST /v1/cohorts:count over REST, which decides
// each candidate patient's research consent with the policy engine,
// releases the count and records the decision (a vault transaction) before
// answering. With the default privacy settings each count is also compared
// with the client's last 256 releases (the overlap control reads them from
// the decision log and re-evaluates them); "overlap=off" measures the same
// without. Target: under 50 ms. Run with: make bench-cohort
func BenchmarkCohortCount(b *testing.B) {
	files, _, _ := loadSynthea(b)
	for _, scope := range []string{cohort.DefaultOverlapScope, cohort.OverlapOff} {
		b.Run("overlap="+scope, func(b *testing.B) {
			g := testonly.StartGateway(b, testonly.Options{Quiet: true, Research: gateway.ResearchConfig{
				// Repeats are the point of a benchmark.
				Privacy: cohort.Privacy{RepeatLimit: 1 << 30, OverlapScope: scope},
			}})
			if _, created, errs := ingestOnce(context.Background(), g, g.Token(b), files, 4); len(errs) > 0 || created != syntheaEntries {
				b.Fatalf("ingest: %d created, %v", created, errs)
			}
			benchCohortCount(b, g)
		})
	}
}

func benchCohortCount(b *testing.B, g *testonly.Gateway) {
	hdr := researcher(b, g, "bench-researcher")
	queries := []struct{ name, body string }{
		{"hypertension", `{"criteria": ` + hypertension + `}`},
		{"female-over-40-not-hypertensive", `{"criteria": {"all": [{"gender": "female"}, {"age": {"ge": 40}}, {"not": ` + hypertension + `}]}}`},
		{"a1c-within-a-year-of-prediabetes", `{"criteria": {"all": [
			{"condition": {"code": [{"system": "http://snomed.info/sct", "code": "15777000"}]}, "as": "dx"},
			{"observation": {"code": [{"system": "http://loinc.org", "code": "4548-4"}], "value": {"gt": 5.7}}, "within": {"of": "dx", "from": {"days": 0}, "to": {"days": 365}}}]}}`},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				req, err := http.NewRequest(http.MethodPost, g.Root+"/v1/cohorts:count", bytes.NewReader([]byte(q.body)))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(hdr[0], hdr[1])
				resp, err := g.Client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("count = %d %s", resp.StatusCode, body)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
		})
	}
}
