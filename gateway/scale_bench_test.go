package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/synthea10x"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// BenchmarkScale loads FHIRANCHOR_BENCH_SCALE_N resources (default
// 1,000,000) into the embedded default (SQLite, policy, research copy,
// anchoring on a simulated chain with serve's batch policy) from Synthea ×
// N (internal/synthea10x, streamed: fresh ids and identifiers per copy,
// nothing held but the Bundles in flight), with 4 clients over REST, and
// reports:
//
//   - the ingest rate of each tenth of the load, and last/first (target
//     at least 0.9), and the latency of a Bundle's POST in each tenth
//     (p50, p99, max; p99 and max of the first and last as metrics);
//   - the same comparison paired (pairedIngest), last: a tenth more goes
//     to the restarted gateway and to an empty one in alternating chunks,
//     paired-last/first, which a shared machine's changing speed does not
//     swing as it swings the rates by tenth;
//   - disk per resource (the data dir, target at most 4 KiB) and the
//     cohort index snapshot's share of it;
//   - the process's RSS and Go heap after the load, and the gateway's
//     heap after a restart per resource (the cohort index and every cache:
//     an upper bound of the index's cost, target at most 300 bytes);
//   - restart to /readyz and to the first cohort count (target under 2 s),
//     and, up to 200,000 resources or with FHIRANCHOR_BENCH_SCALE_REBUILD=1,
//     the same without the snapshot (the index rebuilt from every copy);
//   - cohort count latency at N and at N/10 (REST, consent decided and
//     recorded; target under 50 ms at 1 M), and two searches over REST;
//   - gateway.Audit's speed in leaves per second (target 50,000).
//
// Run with make bench-scale (about 9-10 minutes at 1 M on 2 cores);
// FHIRANCHOR_BENCH_SCALE_N=100000 for a quick look.
// FHIRANCHOR_BENCH_SCALE_PROFILE=prefix writes CPU profiles of the first
// and the last tenth of the load to prefix-first.prof and prefix-last.prof:
// what grows with the store.
func BenchmarkScale(b *testing.B) {
	target := scaleTarget(b)
	rebuild := target <= 200_000 || os.Getenv("FHIRANCHOR_BENCH_SCALE_REBUILD") == "1"
	const clients = 4
	for b.Loop() {
		// The heap before any gateway: what the restarted one holds is
		// measured from here (the stopped gateway stays reachable until
		// Restart replaces it, so the heap after Stop is no baseline).
		_, heapBase := memory()
		g := testonly.StartGateway(b, labeled(scaleOptions(""), "full"))
		token := g.Token(b)
		hdr := researcher(b, g, "scale-researcher")
		ctx := b.Context()

		var (
			mu        sync.Mutex
			done      int                 // entries created
			tenths    []time.Duration     // ingest time (pauses left out) at which done passed each tenth
			tenthsCPU []time.Duration     // process CPU (pauses left out) at the same points
			posts     [10][]time.Duration // each Bundle's POST latency, by the tenth it ended in
			pausedCPU time.Duration
			errs      []error
			paused    time.Duration
			submitted int
			small     countLatency
		)
		start, cpu0 := time.Now(), mustCPU()
		tenthProfile(b, 0)
		work := make(chan []byte, clients)
		var wg sync.WaitGroup
		startClients := func(work chan []byte) {
			for range clients {
				wg.Go(func() {
					for data := range work {
						f := &benchFile{name: "copy", data: data, entries: bytes.Count(data, []byte(`"fullUrl":`))}
						posted := time.Now()
						_, n, err := postBundle(ctx, g, token, f)
						took := time.Since(posted)
						for try := 0; err != nil && strings.Contains(err.Error(), "status 503") && try < 3; try++ {
							time.Sleep(time.Second) // rolled back: the gateway asks to retry
							_, n, err = postBundle(ctx, g, token, f)
						}
						mu.Lock()
						if len(tenths) < 10 {
							posts[len(tenths)] = append(posts[len(tenths)], took)
						}
						done += n
						for len(tenths) < 10 && done >= (len(tenths)+1)*target/10 {
							tenths = append(tenths, time.Since(start)-paused)
							tenthsCPU = append(tenthsCPU, mustCPU()-cpu0-pausedCPU)
							tenthProfile(b, len(tenths))
						}
						if err != nil && len(errs) < 5 {
							errs = append(errs, err)
						}
						mu.Unlock()
					}
				})
			}
		}
		startClients(work)
		errEnough := errors.New("enough")
		measuredSmall := false
		err := synthea10x.Stream(filepath.Join(shareddata.Dir(b), "synthea"), target/syntheaEntries+2, 1, 1,
			func(_ string, _ int, data []byte) error {
				if submitted >= target {
					return errEnough
				}
				if !measuredSmall && submitted >= target/10 {
					// At a tenth: let the clients finish, measure counts, go on.
					measuredSmall = true
					close(work)
					wg.Wait()
					p, pc := time.Now(), mustCPU()
					small = measureCounts(b, g, hdr)
					mu.Lock()
					paused += time.Since(p)
					pausedCPU += mustCPU() - pc
					mu.Unlock()
					work = make(chan []byte, clients)
					startClients(work)
				}
				submitted += bytes.Count(data, []byte(`"fullUrl":`))
				select {
				case work <- data:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		close(work)
		wg.Wait()
		if err != nil && !errors.Is(err, errEnough) {
			b.Fatal(err)
		}
		for _, err := range errs {
			b.Error(err)
		}
		if len(errs) > 0 {
			b.FailNow()
		}
		ingest := time.Since(start) - paused
		b.Logf("ingested %d resources in %.0fs (%.0f/s), counts measured at %d", done, ingest.Seconds(), float64(done)/ingest.Seconds(), target/10)
		var prev time.Duration
		rates := make([]float64, len(tenths))
		for i, t := range tenths {
			rates[i] = float64(target/10) / (t - prev).Seconds()
			prev = t
		}
		b.Logf("ingest rate by tenth (resources/s): %.0f", rates)
		// CPU per resource by tenth: the growth a store pays for its size,
		// which other work on the machine disturbs less than the rates.
		var prevCPU time.Duration
		cpus := make([]float64, len(tenthsCPU))
		for i, c := range tenthsCPU {
			cpus[i] = perRes(c-prevCPU, target/10)
			prevCPU = c
		}
		b.Logf("process CPU by tenth (µs/resource): %.0f", cpus)
		if len(cpus) == 10 {
			b.ReportMetric(cpus[9]/cpus[0], "cpu-last/first")
		}
		if len(rates) == 10 {
			b.ReportMetric(rates[0], "first-tenth-res/s")
			b.ReportMetric(rates[9], "last-tenth-res/s")
			b.ReportMetric(rates[9]/rates[0], "last/first")
		}
		b.ReportMetric(float64(done)/ingest.Seconds(), "res/s")
		// A Bundle's latency in the first and the last tenth: a pause of
		// the writer (a merge, a checkpoint) shows in the tail, which the
		// rates average away.
		b.Logf("Bundle POST latency p50/p99/max by tenth (ms): %s", postLatencies(posts[:]))
		for i, name := range map[int]string{0: "first", 9: "last"} {
			b.ReportMetric(ms(percentile(posts[i], 0.99)), "post-p99-ms-"+name)
			if n := len(posts[i]); n > 0 {
				b.ReportMetric(ms(posts[i][n-1]), "post-max-ms-"+name)
			}
		}

		// Counts at N (the first one catches the index up), then searches.
		big := measureCounts(b, g, hdr)
		b.Logf("count p50 at %d: %.1f ms, at %d: %.1f ms", target/10, ms(small.p50), done, ms(big.p50))
		b.ReportMetric(ms(big.p50), "count-p50-ms")
		b.ReportMetric(ms(small.p50), "count-p50-at-N/10-ms")
		b.ReportMetric(float64(big.p50)/float64(small.p50), "count-N/count-N/10")
		measureSearches(b, g, token)

		rss, heap := memory()
		b.Logf("after the load: RSS %d MiB, Go heap %d MiB (the benchmark's own share included)", rss>>20, heap>>20)
		b.ReportMetric(float64(rss)/float64(done), "rss-bytes/res")

		// Restart on the snapshot written at shutdown.
		t := time.Now()
		g.Stop()
		stopped := time.Since(t)
		disk, snapshot := diskUse(b, g.Dir)
		b.Logf("stop (snapshot written) %.2fs; disk %d MiB, %.0f bytes/resource (snapshot %.0f)", stopped.Seconds(), disk>>20,
			float64(disk)/float64(done), float64(snapshot)/float64(done))
		b.ReportMetric(float64(disk)/float64(done), "disk-bytes/res")
		b.ReportMetric(float64(snapshot)/float64(done), "snapshot-bytes/res")
		if keep := os.Getenv("FHIRANCHOR_BENCH_SCALE_KEEP"); keep != "" {
			// For BenchmarkRestart: the data dir as the restart below finds it.
			copyDir(b, g.Dir, keep)
			b.Logf("data dir kept in %s", keep)
		}
		// Audit the vault alone, as `fhiranchor audit` does (BenchmarkAudit).
		alone := testonly.OpenVault(b, g.Dir)
		restoreGC := gateway.SetAuditGC(os.Getenv)
		t = time.Now()
		rep, err := gateway.Audit(ctx, alone, nil)
		restoreGC()
		if err != nil {
			b.Fatalf("audit: %v", err)
		}
		at := time.Since(t)
		alone.Store().Close() // before the restart, whose heap is measured
		b.Logf("audit: %d leaves, %d versions in %.1fs", rep.Leaves, rep.Versions, at.Seconds())
		b.ReportMetric(float64(rep.Leaves)/at.Seconds(), "audit-leaves/s")
		// FHIRANCHOR_BENCH_RESTART_PROFILE=file: a CPU profile of the
		// restart alone (to the first count).
		stopProfile := func() {}
		if path := os.Getenv("FHIRANCHOR_BENCH_RESTART_PROFILE"); path != "" {
			stopProfile = startProfile(b, path)
		}
		ready, first, answers := restartToCount(b, g, hdr)
		stopProfile()
		_, heapRunning := memory()
		b.Logf("restart: ready in %.2fs, first count in %.2fs; gateway heap %d MiB, %.0f bytes/resource", ready.Seconds(), first.Seconds(),
			(heapRunning-heapBase)>>20, float64(heapRunning-heapBase)/float64(done))
		b.ReportMetric(ready.Seconds(), "restart-ready-s")
		b.ReportMetric(first.Seconds(), "restart-first-count-s")
		b.ReportMetric(float64(heapRunning-heapBase)/float64(done), "heap-after-restart-bytes/res")
		if rebuild {
			g.Stop()
			if err := os.Remove(filepath.Join(g.Dir, "cohort-index")); err != nil {
				b.Fatal(err)
			}
			rReady, rFirst, rAnswers := restartToCount(b, g, hdr)
			b.Logf("restart without the snapshot (rebuilt): ready in %.2fs, first count in %.2fs", rReady.Seconds(), rFirst.Seconds())
			b.ReportMetric(rFirst.Seconds(), "rebuild-first-count-s")
			if rAnswers != answers {
				b.Errorf("answers after the restart on the snapshot %s differ from the rebuilt index's %s", answers, rAnswers)
			}
		}

		// The last tenth against the first, paired, on the restarted
		// gateway. Last: the empty gateway shares the process and stays
		// reachable (its cleanup) until the benchmark ends, which would
		// weigh on the heap and restart figures above.
		pairedIngest(b, g, token, target/10)
	}
}

// BenchmarkScalePaired repeats BenchmarkScale's paired comparison of the
// last tenth with the first (pairedIngest) on a copy of the data dir it
// kept (FHIRANCHOR_BENCH_SCALE_KEEP=dir, then
// FHIRANCHOR_BENCH_PAIRED_DIR=dir), a tenth of FHIRANCHOR_BENCH_SCALE_N
// (default 1,000,000) more to each side: a change to the write path
// measured at a million resources in two minutes rather than ten, the
// binaries alternated on the same data. FHIRANCHOR_BENCH_SCALE_PROFILE
// profiles it as in BenchmarkScale.
func BenchmarkScalePaired(b *testing.B) {
	kept := os.Getenv("FHIRANCHOR_BENCH_PAIRED_DIR")
	if kept == "" {
		b.Skip("FHIRANCHOR_BENCH_PAIRED_DIR names no data dir kept by BenchmarkScale")
	}
	target := scaleTarget(b)
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "data")
		copyDir(b, kept, dir)
		b.StartTimer()
		g := testonly.StartGateway(b, labeled(scaleOptions(dir), "full"))
		pairedIngest(b, g, g.Token(b), target/10)
		g.Stop()
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// scaleTarget is FHIRANCHOR_BENCH_SCALE_N, the resources BenchmarkScale
// loads: 1,000,000 by default.
func scaleTarget(b *testing.B) int {
	s := os.Getenv("FHIRANCHOR_BENCH_SCALE_N")
	if s == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1000 {
		b.Fatalf("FHIRANCHOR_BENCH_SCALE_N=%q: want a number of resources of at least 1000", s)
	}
	return n
}

// pairedIngest measures what the store's size costs ingest, paired: a
// tenth more of the load (Synthea copies under another seed than the
// load's) goes to full and, the same Bundles, to an empty gateway, in
// alternating chunks (full then empty, empty then full, ...), so that the
// host's speed, which moves by 20-30 % within minutes on a shared machine,
// weighs on both sides alike. The empty side repeats the load's first
// tenth (from nothing to N/10, its postings merges included); the full
// side is an eleventh tenth. The rates by tenth compare moments minutes
// apart and cannot separate the store's growth from the host's. Reported:
// paired-last/first (the full store's ingest rate over the empty one's)
// and paired-cpu-first/last (process CPU a resource, inverted so that 1
// is no growth; both gateways share the process, so each side's CPU
// includes what the idle one does meanwhile). With
// FHIRANCHOR_BENCH_SCALE_PROFILE=prefix, prefix-paired.prof profiles it;
// its samples carry gateway=full or gateway=empty (pprof -tagfocus).
func pairedIngest(b *testing.B, full *testonly.Gateway, fullToken string, n int) {
	ctx := b.Context()
	empty := testonly.StartGateway(b, labeled(scaleOptions(""), "empty"))
	defer empty.Stop()
	type side struct {
		g         *testonly.Gateway
		token     string
		wall, cpu time.Duration
		created   int
	}
	sides := [2]*side{{g: full, token: fullToken}, {g: empty, token: empty.Token(b)}}
	stopProfile := func() {}
	if prefix := os.Getenv("FHIRANCHOR_BENCH_SCALE_PROFILE"); prefix != "" {
		stopProfile = startProfile(b, prefix+"-paired.prof")
	}
	const nChunks = 16
	var (
		chunk   []benchFile
		chunks  int
		entries int
	)
	post := func() {
		// Largest first, as loadSynthea orders them: a large Bundle picked
		// up last would leave the other clients idle.
		slices.SortStableFunc(chunk, func(x, y benchFile) int { return y.entries - x.entries })
		order := sides
		if chunks%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, s := range order {
			t, cpu0 := time.Now(), mustCPU()
			_, created, errs := ingestOnce(ctx, s.g, s.token, chunk, 4)
			s.wall += time.Since(t)
			s.cpu += mustCPU() - cpu0
			s.created += created
			for _, err := range errs {
				b.Error(err)
			}
			if len(errs) > 0 {
				b.FailNow()
			}
		}
		chunks, chunk = chunks+1, nil
	}
	errEnough := errors.New("enough")
	err := synthea10x.Stream(filepath.Join(shareddata.Dir(b), "synthea"), n/syntheaEntries+1, 2, 1,
		func(name string, k int, data []byte) error {
			if entries >= n {
				return errEnough
			}
			e := bytes.Count(data, []byte(`"fullUrl":`))
			chunk = append(chunk, benchFile{name: fmt.Sprintf("%s copy %d", name, k), data: data, entries: e})
			entries += e
			if entries >= (chunks+1)*n/nChunks {
				post()
			}
			return nil
		})
	if err != nil && !errors.Is(err, errEnough) {
		b.Fatal(err)
	}
	if len(chunk) > 0 {
		post()
	}
	stopProfile()
	f, e := sides[0], sides[1]
	if f.created != e.created {
		b.Fatalf("the same Bundles created %d resources in the full gateway, %d in the empty one", f.created, e.created)
	}
	rate := func(s *side) float64 { return float64(s.created) / s.wall.Seconds() }
	b.Logf("paired ingest of %d resources in %d chunks: full store %.0f/s (%.0f µs CPU a resource), empty %.0f/s (%.0f µs)",
		f.created, chunks, rate(f), perRes(f.cpu, f.created), rate(e), perRes(e.cpu, e.created))
	b.ReportMetric(rate(f)/rate(e), "paired-last/first")
	b.ReportMetric(float64(e.cpu)/float64(f.cpu), "paired-cpu-first/last")
}

// labeled is opt with its gateway's goroutines labeled gateway=label in
// CPU profiles.
func labeled(opt testonly.Options, label string) testonly.Options {
	opt.ProfileLabel = label
	return opt
}

// BenchmarkRestart times a restart on a copy of the data dir
// BenchmarkScale kept (FHIRANCHOR_BENCH_SCALE_KEEP=dir, then
// FHIRANCHOR_BENCH_RESTART_DIR=dir): to /readyz and to the first cohort
// count, the figures BenchmarkScale reports, without loading a million
// resources again for each try. FHIRANCHOR_BENCH_RESTART_PROFILE=file
// profiles the first restart. After the first restart it also measures
// the count and search latencies (FHIRANCHOR_BENCH_COUNT_PROFILE=file and
// FHIRANCHOR_BENCH_SEARCH_PROFILE=file profile them). Each copy is made
// out of the timing; its pages are in the page cache then, as after a
// stop.
func BenchmarkRestart(b *testing.B) {
	kept := os.Getenv("FHIRANCHOR_BENCH_RESTART_DIR")
	if kept == "" {
		b.Skip("FHIRANCHOR_BENCH_RESTART_DIR names no data dir kept by BenchmarkScale")
	}
	var (
		readys, firsts []time.Duration
		counts         countLatency
	)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "data")
		copyDir(b, kept, dir)
		stopProfile := func() {}
		if path := os.Getenv("FHIRANCHOR_BENCH_RESTART_PROFILE"); path != "" && i == 0 {
			stopProfile = startProfile(b, path)
		}
		b.StartTimer()
		t := time.Now()
		g := testonly.StartGateway(b, scaleOptions(dir))
		hdr := researcher(b, g, "scale-researcher")
		ready, first, _ := untilCount(b, g, hdr, t)
		stopProfile()
		readys, firsts = append(readys, ready), append(firsts, first)
		b.StopTimer()
		if i == 0 {
			// Counts on the restarted index, as BenchmarkScale measures
			// them at N (the kept decision log holds its earlier counts,
			// which the overlap control compares with).
			if path := os.Getenv("FHIRANCHOR_BENCH_COUNT_PROFILE"); path != "" {
				stopProfile = startProfile(b, path)
			}
			counts = measureCounts(b, g, hdr)
			stopProfile()
			if path := os.Getenv("FHIRANCHOR_BENCH_SEARCH_PROFILE"); path != "" {
				stopProfile = startProfile(b, path)
			}
			measureSearches(b, g, g.Token(b))
			stopProfile()
		}
		g.Stop()
		b.StartTimer()
	}
	slices.Sort(readys)
	slices.Sort(firsts)
	b.Logf("restart: ready in %.2fs, first count in %.2fs (medians of %d)", percentile(readys, 0.5).Seconds(), percentile(firsts, 0.5).Seconds(), len(readys))
	b.ReportMetric(percentile(readys, 0.5).Seconds(), "restart-ready-s")
	b.ReportMetric(percentile(firsts, 0.5).Seconds(), "restart-first-count-s")
	b.Logf("count p50 after the first restart: %.1f ms", ms(counts.p50))
	b.ReportMetric(ms(counts.p50), "count-p50-ms")
}

// copyDir copies the data dir src to dst, which must not exist, keeping
// file modes (the gateway refuses a master key others may read).
func copyDir(b *testing.B, src, dst string) {
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("copy %s to %s: %v %s", src, dst, err, out)
	}
}

// startProfile starts a CPU profile into path and returns what stops it.
func startProfile(b *testing.B, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// serveAnchor is the batch policy serve runs with, which the benchmarks
// measure, not the 100 ms tests use to see receipts at once: a batch is a
// checkpoint written (a commit) and an anchor sent, so the tests' cadence
// costs a read or a write work no deployment does.
var serveAnchor = anchor.Config{MaxLeaves: anchor.DefaultMaxLeaves, MaxDelay: anchor.DefaultMaxDelay, Poll: anchor.DefaultPoll}

// scaleOptions are the gateway's options in BenchmarkScale and
// BenchmarkRestart, on the data dir dir (empty: a fresh one).
func scaleOptions(dir string) testonly.Options {
	return testonly.Options{Quiet: true, Dir: dir,
		// Every batch is a block of the simulated chain, which a restart
		// replays.
		Anchor: serveAnchor,
		Research: gateway.ResearchConfig{
			// Exact released counts (no noise, no rounding), so that the
			// restarted index's answers can be compared; repeats are the
			// point of a benchmark.
			Privacy: cohort.Privacy{RepeatLimit: 1 << 30, Noise: cohort.NoiseNone, RoundTo: 1},
		},
		// A shared machine may stall a large Bundle past the default
		// minute; the benchmark measures throughput, not the deadline.
		Limits: gateway.Limits{RequestTimeout: 10 * time.Minute},
	}
}

// scaleQueries are the counts measured: a code, and a window.
var scaleQueries = []string{
	`{"criteria": ` + hypertension + `}`,
	`{"criteria": {"all": [
		{"condition": {"code": [{"system": "http://snomed.info/sct", "code": "15777000"}]}, "as": "dx"},
		{"observation": {"code": [{"system": "http://loinc.org", "code": "4548-4"}], "value": {"gt": 5.7}}, "within": {"of": "dx", "from": {"days": 0}, "to": {"days": 365}}}]}}`,
	`{"criteria": {"all": [{"gender": "female"}, {"age": {"ge": 40}}, {"not": ` + hypertension + `}]}}`,
}

// measureSearches reports the median latency of each scale search.
func measureSearches(b *testing.B, g *testonly.Gateway, token string) {
	for name, path := range map[string]string{
		"search-obs-code":       "/Observation?code=http://loinc.org|4548-4&_count=20",
		"search-patient-gender": "/Patient?gender=female&birthdate=lt1960&_count=20",
	} {
		var lat []time.Duration
		for range 15 {
			t := time.Now()
			if r := g.Do(b, http.MethodGet, path, nil, "Authorization", "Bearer "+token); r.Status != http.StatusOK {
				b.Fatalf("%s: status %d", name, r.Status)
			}
			lat = append(lat, time.Since(t))
		}
		slices.Sort(lat)
		b.Logf("%s p50: %.1f ms", name, ms(percentile(lat, 0.5)))
		b.ReportMetric(ms(percentile(lat, 0.5)), name+"-p50-ms")
	}
}

type countLatency struct{ p50 time.Duration }

// measureCounts runs each scale query a few times (the first catches the
// index up and is left out) and returns the median latency.
func measureCounts(b *testing.B, g *testonly.Gateway, hdr []string) countLatency {
	var lat []time.Duration
	for _, q := range scaleQueries {
		for i := range 6 {
			t := time.Now()
			countOnce(b, g, hdr, q)
			if i > 0 {
				lat = append(lat, time.Since(t))
			}
		}
	}
	slices.Sort(lat)
	return countLatency{p50: percentile(lat, 0.5)}
}

func countOnce(b *testing.B, g *testonly.Gateway, hdr []string, q string) string {
	r := g.DoRoot(b, http.MethodPost, "/v1/cohorts:count", []byte(q), hdr...)
	if r.Status != http.StatusOK {
		b.Fatalf("count: status %d %s", r.Status, r.Body)
	}
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		b.Fatal(err)
	}
	return string(out.Result)
}

// restartToCount starts the stopped gateway and times /readyz turning
// green and the first count answering, both from the start; it returns
// the released answers of the scale queries.
func restartToCount(b *testing.B, g *testonly.Gateway, hdr []string) (ready, first time.Duration, answers string) {
	t := time.Now()
	g.Restart(b)
	return untilCount(b, g, hdr, t)
}

// untilCount waits for the started g's /readyz to turn green and counts
// scaleQueries; the times are since t.
func untilCount(b *testing.B, g *testonly.Gateway, hdr []string, t time.Time) (ready, first time.Duration, answers string) {
	for {
		resp, err := g.Client.Get(g.Root + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(t) > 30*time.Minute {
			b.Fatal("not ready within 30 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready = time.Since(t)
	var sb strings.Builder
	for i, q := range scaleQueries {
		sb.WriteString(countOnce(b, g, hdr, q))
		if i == 0 {
			first = time.Since(t)
		}
	}
	return ready, first, sb.String()
}

// memory returns the process's resident set and the Go heap in use after
// a collection.
func memory() (rss, heap uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				rss = kb << 10
			}
		}
	}
	return rss, m.HeapAlloc
}

// diskUse sums the sizes of the files under dir (exports left out), and
// returns the cohort index snapshot's size apart.
func diskUse(b *testing.B, dir string) (total, snapshot int64) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "exports" {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		if d.Name() == "cohort-index" {
			snapshot = info.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(fmt.Errorf("disk use: %w", err))
	}
	return total, snapshot
}

// tenthProfile starts or stops the CPU profile of a tenth of BenchmarkScale's
// load (FHIRANCHOR_BENCH_SCALE_PROFILE) when the load has passed tenths
// tenths: the first tenth's from 0 to 1, the last's from 9 to 10.
func tenthProfile(b *testing.B, tenths int) {
	prefix := os.Getenv("FHIRANCHOR_BENCH_SCALE_PROFILE")
	if prefix == "" {
		return
	}
	switch tenths {
	case 0, 9:
		name := map[int]string{0: "-first.prof", 9: "-last.prof"}[tenths]
		f, err := os.Create(prefix + name)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatalf("FHIRANCHOR_BENCH_SCALE_PROFILE (not with -test.cpuprofile): %v", err)
		}
		scaleProfile = f
	case 1, 10:
		pprof.StopCPUProfile()
		if err := scaleProfile.Close(); err != nil {
			b.Error(err)
		}
	}
}

// scaleProfile is the file tenthProfile is writing.
var scaleProfile *os.File

// postLatencies formats the p50, p99 and maximum of each tenth's POST
// latencies, sorting them in place (the metrics read them sorted).
func postLatencies(tenths [][]time.Duration) string {
	var out []string
	for _, t := range tenths {
		slices.Sort(t)
		if len(t) == 0 {
			out = append(out, "-")
			continue
		}
		out = append(out, fmt.Sprintf("%.0f/%.0f/%.0f", ms(percentile(t, 0.5)), ms(percentile(t, 0.99)), ms(t[len(t)-1])))
	}
	return strings.Join(out, " ")
}
