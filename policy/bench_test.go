package policy

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkDecide measures one prepared decision for one patient with three
// HL7 consents (Emergency: OPTOUT with a nested deny; Out: OPTOUT; basic: OPTIN
// with a period), passed as decoded JSON (compiled on every call) and, in
// "compiled", compiled once as the consent-state store will keep them. Run it
// on one core, as the target is stated per core:
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
	compiled := in
	compiled.Consents = nil
	for _, c := range consents {
		cc, err := CompileConsent(c)
		if err != nil {
			b.Fatal(err)
		}
		compiled.Compiled = append(compiled.Compiled, cc)
	}
	b.Run("json", func(b *testing.B) { benchDecide(b, e, in) })
	b.Run("compiled", func(b *testing.B) { benchDecide(b, e, compiled) })
	// Most patients have no consent on file (implied consent decides), or one.
	none := compiled
	none.Compiled = nil
	b.Run("no-consent", func(b *testing.B) { benchDecide(b, e, none) })
	one := compiled
	one.Compiled = compiled.Compiled[1:2] // Out: OPTOUT, withholding from another organization
	b.Run("one-consent", func(b *testing.B) { benchDecide(b, e, one) })
}

func benchDecide(b *testing.B, e *Engine, in Input) {
	d, err := e.Decide(b.Context(), in)
	if err != nil || !d.Allow {
		b.Fatalf("decision = %+v, %v", d, err)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := e.Decide(b.Context(), in); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkCompileConsent measures what Decide spends per Consent passed as JSON.
func BenchmarkCompileConsent(b *testing.B) {
	c := loadConsent(b, "pkb")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CompileConsent(c); err != nil {
			b.Fatal(err)
		}
	}
}
