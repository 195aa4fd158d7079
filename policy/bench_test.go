package policy

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkDecide measures one prepared decision for one patient with three
// HL7 consents (Emergency: OPTOUT with a nested deny; Out: OPTOUT; basic: OPTIN
// with a period), input passed as an ast.Value. Run it on one core, as the target is stated per core:
//
//	go test ./policy -run '^$' -bench Decide -cpu 1 -benchtime 3s
func BenchmarkDecide(b *testing.B) {
	e, err := New(b.Context(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	consents := []map[string]any{loadConsent(b, "Emergency"), loadConsent(b, "Out"), loadConsent(b, "basic")}
	for _, c := range consents {
		c["meta"] = map[string]any{"versionId": "3"}
	}
	in := Input{
		Time: at("2015-06-01T09:00:00Z"), Action: "read", Purpose: "TREAT",
		Actor:   Actor{ClientID: "ehr-1", Reference: "Practitioner/p7", Roles: []string{"physician"}},
		Patient: "Patient/f001",
		Resource: ResourceRef{Type: "Observation", ID: "o1", Reference: "Observation/o1",
			SecurityLabels: []Coding{nLabel}, Date: "2015-05-30"},
		Consents: consents,
	}
	d, err := e.Decide(b.Context(), in)
	if err != nil || !d.Allow {
		b.Fatalf("decision = %+v, %v", d, err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := e.Decide(b.Context(), in); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
