package deid

import (
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
)

type benchInput struct {
	res     []bundleResource
	patient []string
	subject []Subject // per resource: NewSubject of its whole Bundle's Lexicon, as the gateway passes it
}

func loadAll(b *testing.B) benchInput {
	var in benchInput
	for _, f := range syntheaFiles(b) {
		res, patient := loadBundle(b, f)
		var known []string
		for _, r := range res {
			known = append(known, Lexicon(r.tree)...)
		}
		subject := NewSubject("", known)
		for _, r := range res {
			in.res = append(in.res, r)
			in.patient = append(in.patient, patient)
			in.subject = append(in.subject, subject)
		}
	}
	return in
}

// BenchmarkApply reports resources per second of Apply with the Safe Harbor
// profile over every Synthea resource; BenchmarkApply/parse measures bare
// fhir.Parser.Parse of the same resources, for the ratio.
func BenchmarkApply(b *testing.B) {
	in := loadAll(b)
	e := safeHarbor(b)
	p, err := fhir.NewParser()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("apply", func(b *testing.B) {
		n := 0
		start := time.Now()
		for b.Loop() {
			for i, r := range in.res {
				if _, err := e.Apply(r.typ, r.tree, Options{Patient: in.patient[i], Now: testNow}); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "res/s")
	})
	// As the gateway calls it: the Subject's Known is the lexicon of the
	// whole request (a Synthea Bundle: the patient, practitioners,
	// organizations), compiled once per request by NewSubject.
	b.Run("apply-with-subject", func(b *testing.B) {
		n := 0
		start := time.Now()
		for b.Loop() {
			for i, r := range in.res {
				if _, err := e.Apply(r.typ, r.tree, Options{Patient: in.patient[i], Now: testNow, Subject: in.subject[i]}); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "res/s")
	})
	b.Run("parse", func(b *testing.B) {
		n := 0
		start := time.Now()
		for b.Loop() {
			for _, r := range in.res {
				if _, err := p.Parse(r.raw); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "res/s")
	})
}
