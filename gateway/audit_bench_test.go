package gateway_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// BenchmarkAudit measures gateway.Audit (what `fhiranchor audit` runs)
// over a vault holding the Synthea set ("scale=1x") and, with
// FHIRANCHOR_BENCH_SCALE=10, ten copies of it with fresh ids
// (internal/synthea10x), pushed through a gateway with everything on and
// then audited as the command audits: the vault opened alone, the gateway
// stopped, the garbage collector's target the command's. It
// reports leaves hashed per second of audit (every leaf is a resource
// version, a de-identification record or another record, each checked
// against its row) and fails on any finding. Target: 50,000 leaves/s.
// cpu-s/audit is the process's CPU time per audit (the gateway is idle
// meanwhile): on a machine other work loads, it moves far less than the
// wall time does.
// FHIRANCHOR_BENCH_AUDIT_DIR=dir audits a copy of a data dir
// BenchmarkScale kept (FHIRANCHOR_BENCH_SCALE_KEEP) instead: the 1 M figure
// without loading a million resources for each try.
// Run with: make bench-audit
func BenchmarkAudit(b *testing.B) {
	scale := os.Getenv("FHIRANCHOR_BENCH_SCALE")
	kept := os.Getenv("FHIRANCHOR_BENCH_AUDIT_DIR")
	var files []benchFile
	switch {
	case kept != "":
		scale = "kept"
	case scale == "" || scale == "1":
		scale = "1x"
		files, _, _ = loadSynthea(b)
	case scale == "10":
		scale = "10x"
		files = synthea10xFiles(b, 10)
	default:
		b.Fatalf("FHIRANCHOR_BENCH_SCALE=%q: want 1 or 10", scale)
	}
	b.Run("scale="+scale, func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "data")
		if kept != "" {
			copyDir(b, kept, dir)
		} else {
			// Ingest is only the setup here: a loaded machine must not time
			// it out.
			g := testonly.StartGateway(b, testonly.Options{Quiet: true, Dir: dir, Limits: gateway.Limits{RequestTimeout: 10 * time.Minute}})
			start := time.Now()
			_, created, errs := ingestOnce(b.Context(), g, g.Token(b), files, 4)
			if len(errs) > 0 {
				b.Fatal(errs[0])
			}
			progress(b, "ingested %d resources in %.1fs", created, time.Since(start).Seconds())
			g.Stop()
		}
		// The vault alone, as `fhiranchor audit` opens it: a gateway
		// beside it would hold its research index and caches, a heap the
		// audit's garbage collections would mark over and over.
		v := testonly.OpenVault(b, dir)
		defer gateway.SetAuditGC(os.Getenv)()
		if path := os.Getenv("FHIRANCHOR_BENCH_AUDIT_PROFILE"); path != "" {
			defer startProfile(b, path)()
		}
		// One worker, the way audit checked before it used every core (not
		// on a kept data dir, where one audit of a million resources takes
		// minutes).
		var serial time.Duration
		if kept == "" {
			restore := gateway.SetAuditWorkers(1)
			start := time.Now()
			if _, err := gateway.Audit(b.Context(), v, nil); err != nil {
				b.Fatal(err)
			}
			serial = time.Since(start)
			restore()
		}
		var rep gateway.AuditReport
		cpu0 := cpuTime(b)
		for b.Loop() {
			var err error
			if rep, err = gateway.Audit(b.Context(), v, nil); err != nil {
				b.Fatal(err)
			}
		}
		if len(rep.Findings) > 0 {
			b.Fatalf("audit found %d problems, first %+v", len(rep.Findings), rep.Findings[0])
		}
		per := b.Elapsed().Seconds() / float64(b.N)
		cpu := (cpuTime(b) - cpu0).Seconds() / float64(b.N)
		b.ReportMetric(cpu, "cpu-s/audit")
		b.ReportMetric(float64(rep.Leaves)/per, "leaves/s")
		b.ReportMetric(float64(rep.Versions)/per, "versions/s")
		if serial > 0 {
			b.ReportMetric(serial.Seconds()/per, "speedup-vs-1-worker")
		}
		progress(b, "audit of %d leaves (%d versions, %d records, %d copies, %d tokens): %.2fs = %.0f leaves/s, %.2f CPU-s; one worker %.2fs",
			rep.Leaves, rep.Versions, rep.Records, rep.Copies, rep.Tokens, per, float64(rep.Leaves)/per, cpu, serial.Seconds())
	})
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
