package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// syntheaEntries is the entry count of the 60 Synthea Bundles
// (shared/testdata/synthea/README.md); a different count means different data.
const syntheaEntries = 10877

// benchFile is one Synthea transaction Bundle held in memory.
type benchFile struct {
	name    string
	data    []byte
	entries int
}

// loadSynthea reads the Synthea Bundles, largest first: with clients pulling
// from one queue, the 3.9 MB Bundle (a tenth of all entries) must not be
// the last one picked up, or the tail of the run measures one client alone.
func loadSynthea(b *testing.B) (files []benchFile, entries, size int) {
	b.Helper()
	for _, p := range shareddata.Files(b, "synthea") {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		var bundle struct {
			Entry []json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(data, &bundle); err != nil {
			b.Fatalf("decode %s: %v", filepath.Base(p), err)
		}
		files = append(files, benchFile{name: filepath.Base(p), data: data, entries: len(bundle.Entry)})
		entries += len(bundle.Entry)
		size += len(data)
	}
	if entries != syntheaEntries {
		b.Fatalf("synthea set has %d entries, want %d", entries, syntheaEntries)
	}
	slices.SortStableFunc(files, func(x, y benchFile) int { return len(y.data) - len(x.data) })
	return files, entries, size
}

// BenchmarkIngest pushes the whole Synthea set through the running gateway's
// REST API with FHIRANCHOR_BENCH_CLIENTS concurrent clients (default 4), then,
// in the same iteration and on the same cores, parses the same files with
// fhir.Parser on GOMAXPROCS goroutines. ns/op is the ingest alone; the rates
// come from the wall clock of each phase, summed over iterations. Run it as
//
//	go test ./gateway/ -run '^$' -bench BenchmarkIngest -benchtime 3x -timeout 20m
//
// Each iteration adds the set again to the same vault (new resources).
func BenchmarkIngest(b *testing.B) {
	clients := 4
	if s := os.Getenv("FHIRANCHOR_BENCH_CLIENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("FHIRANCHOR_BENCH_CLIENTS=%q: want a positive integer", s)
		}
		clients = n
	}
	var (
		files         []benchFile
		entries, size int
	)
	// Labels tell the benchmark's own work from the server's in a CPU
	// profile: everything unlabeled (bar GC) is the gateway.
	pprof.Do(context.Background(), pprof.Labels("bench", "load"), func(context.Context) {
		files, entries, size = loadSynthea(b)
	})
	parser, err := fhir.NewParser()
	if err != nil {
		b.Fatal(err)
	}
	g := testonly.StartGateway(b, testonly.Options{Quiet: true, Anchor: serveAnchor})
	token := g.Token(b)

	var (
		ingestTime, parseTime time.Duration
		ingestCPU, parseCPU   time.Duration // process CPU; see processCPU
		latencies             []time.Duration
		iter                  int
	)
	_, haveCPU := processCPU()
	for b.Loop() {
		iter++
		start, cpu0 := time.Now(), mustCPU()
		lat, created, errs := ingestOnce(b.Context(), g, token, files, clients)
		it, ic := time.Since(start), mustCPU()-cpu0
		b.StopTimer()
		if len(errs) > 0 {
			for _, err := range errs {
				b.Error(err)
			}
			b.FailNow()
		}
		if created != entries {
			b.Fatalf("iteration %d: %d entries answered 201 Created, want %d", iter, created, entries)
		}
		ingestTime += it
		ingestCPU += ic
		latencies = append(latencies, lat...)

		start, cpu0 = time.Now(), mustCPU()
		if err := parseAll(parser, files, runtime.GOMAXPROCS(0)); err != nil {
			b.Fatal(err)
		}
		pt, pc := time.Since(start), mustCPU()-cpu0
		parseTime += pt
		parseCPU += pc
		b.Logf("iteration %d: ingest %.2fs %.0f res/s (CPU %.0f µs/res); parse %.2fs %.0f res/s (CPU %.0f µs/res)", iter,
			it.Seconds(), float64(entries)/it.Seconds(), perRes(ic, entries), pt.Seconds(), float64(entries)/pt.Seconds(), perRes(pc, entries))
		b.StartTimer()
	}

	total := float64(entries * iter)
	ingestRate := total / ingestTime.Seconds()
	parseRate := total / parseTime.Seconds()
	slices.Sort(latencies)
	p50, p99 := percentile(latencies, 0.50), percentile(latencies, 0.99)
	b.ReportMetric(ingestRate, "ingest-res/s")
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(parseRate, "parse-res/s")
	b.ReportMetric(ingestRate/parseRate, "ratio")
	cpuNote := "process CPU not available"
	if haveCPU && ingestCPU > 0 {
		// The same ratio from CPU time instead of wall time: it hardly moves
		// when other processes share the cores. Ingest CPU includes the
		// clients' side of HTTP.
		b.ReportMetric(float64(parseCPU)/float64(ingestCPU), "cpu-ratio")
		cpuNote = fmt.Sprintf("CPU per resource: ingest %.0f µs, parse %.0f µs, cpu-ratio %.3f",
			perRes(ingestCPU, entries*iter), perRes(parseCPU, entries*iter), float64(parseCPU)/float64(ingestCPU))
	}

	st := g.Stats(b)
	if want := int64(entries * iter); st.Versions != want {
		b.Errorf("vault holds %d versions after %d iterations, want %d", st.Versions, iter, want)
	}
	// What the data dir (vault, log, chain) holds per resource, once the
	// gateway has stopped and folded its write-ahead logs in.
	g.Stop()
	var disk int64
	err = filepath.WalkDir(g.Dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			var info os.FileInfo
			if info, err = d.Info(); err == nil {
				disk += info.Size()
			}
		}
		if os.IsNotExist(err) {
			return nil // a temporary file the gateway removed meanwhile
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(disk)/total, "disk-B/res")
	logged := 0
	for line := range bytes.Lines(g.Logs.Bytes()) {
		if bytes.Contains(line, []byte("level=WARN")) || bytes.Contains(line, []byte("level=ERROR")) {
			logged++
		}
	}
	b.Logf("ingest: %d resources (%d Bundles, %.1f MB) x %d in %.2fs = %.0f res/s; Bundle p50 %.0f ms, p99 %.0f ms; "+
		"parse %.0f res/s; ratio %.3f; %s; GOMAXPROCS %d, clients %d; gateway logged %d warnings/errors",
		entries, len(files), float64(size)/1e6, iter, ingestTime.Seconds(), ingestRate, ms(p50), ms(p99),
		parseRate, ingestRate/parseRate, cpuNote, runtime.GOMAXPROCS(0), clients, logged)
}

// ingestOnce POSTs every file once to the FHIR base with clients
// goroutines pulling from one queue. It returns each Bundle's latency
// (request sent to response body read) and how many entries the gateway
// answered 201 Created.
func ingestOnce(ctx context.Context, g *testonly.Gateway, token string, files []benchFile, clients int) ([]time.Duration, int, []error) {
	queue := make(chan *benchFile, len(files))
	for i := range files {
		queue <- &files[i]
	}
	close(queue)
	var (
		mu      sync.Mutex
		lat     = make([]time.Duration, 0, len(files))
		created int
		errs    []error
		wg      sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			pprof.Do(ctx, pprof.Labels("bench", "client"), func(ctx context.Context) {
				for f := range queue {
					d, n, err := postBundle(ctx, g, token, f)
					mu.Lock()
					lat = append(lat, d)
					created += n
					if err != nil && len(errs) < 5 {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		})
	}
	wg.Wait()
	return lat, created, errs
}

// postBundle sends one transaction Bundle and checks the answer: 200 and a
// transaction-response with one entry per request entry.
func postBundle(ctx context.Context, g *testonly.Gateway, token string, f *benchFile) (time.Duration, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, bytes.NewReader(f.data))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := g.Client.Do(req)
	if err != nil {
		return time.Since(start), 0, fmt.Errorf("POST %s: %w", f.name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return d, 0, fmt.Errorf("POST %s: read response: %w", f.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return d, 0, fmt.Errorf("POST %s (%d entries, %d bytes): status %d, Content-Type %q, body %s",
			f.name, f.entries, len(f.data), resp.StatusCode, resp.Header.Get("Content-Type"), clip(body, 2000))
	}
	var out struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Response struct {
				Status string `json:"status"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return d, 0, fmt.Errorf("POST %s: decode response: %w; body %s", f.name, err, clip(body, 2000))
	}
	if out.ResourceType != "Bundle" || out.Type != "transaction-response" || len(out.Entry) != f.entries {
		return d, 0, fmt.Errorf("POST %s: got %s/%s with %d entries, want Bundle/transaction-response with %d; body %s",
			f.name, out.ResourceType, out.Type, len(out.Entry), f.entries, clip(body, 2000))
	}
	created := 0
	other := map[string]int{}
	for _, e := range out.Entry {
		if e.Response.Status == "201 Created" {
			created++
		} else {
			other[e.Response.Status]++
		}
	}
	if len(other) > 0 {
		return d, created, fmt.Errorf("POST %s: entry statuses other than 201 Created: %v", f.name, other)
	}
	return d, created, nil
}

// parseAll parses every file with workers goroutines pulling from one queue,
// the way jsonformat validates (ParseJSONFormat): the baseline stays the
// bare jsonformat parse now that Parse no longer runs jsonformat.
func parseAll(p *fhir.Parser, files []benchFile, workers int) error {
	queue := make(chan *benchFile, len(files))
	for i := range files {
		queue <- &files[i]
	}
	close(queue)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			pprof.Do(context.Background(), pprof.Labels("bench", "parse"), func(context.Context) {
				for f := range queue {
					if _, err := p.ParseJSONFormat(f.data); err != nil {
						mu.Lock()
						if first == nil {
							first = fmt.Errorf("parse %s: %w", f.name, err)
						}
						mu.Unlock()
					}
				}
			})
		})
	}
	wg.Wait()
	return first
}

// BenchmarkParse is the bare fhir.Parser rate on one goroutine, for
// profiling the parse alone. One op is the whole Synthea set.
func BenchmarkParse(b *testing.B) {
	files, entries, size := loadSynthea(b)
	p, err := fhir.NewParser()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	for b.Loop() {
		for i := range files {
			if _, err := p.Parse(files[i].data); err != nil {
				b.Fatalf("parse %s: %v", files[i].name, err)
			}
		}
	}
	b.ReportMetric(float64(entries*b.N)/b.Elapsed().Seconds(), "res/s")
}

// percentile returns the nearest-rank p-quantile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perRes(d time.Duration, n int) float64 {
	return float64(d) / float64(time.Microsecond) / float64(n)
}

// processCPU returns the user plus system CPU time of this process, all
// threads, from /proc/self/stat; ok is false where there is none (not Linux).
// On a shared machine it measures the work done, where the wall clock also
// measures the neighbours.
func processCPU() (d time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is parenthesised and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const userHZ = 100 // clock ticks per second in the Linux ABI (getconf CLK_TCK)
	return time.Duration(utime+stime) * time.Second / userHZ, true
}

// mustCPU is processCPU, zero when unavailable.
func mustCPU() time.Duration {
	d, _ := processCPU()
	return d
}

// clip shortens a response body for an error message.
func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

// BenchmarkIngestPolicy measures what consent enforcement costs ingest: each
// iteration pushes the Synthea set through two gateways, one deciding and
// recording every write per patient (the default) and one without policy,
// alternating which goes first, so both see the same machine. It reports
// both rates and the cost of policy as a fraction of the rate without it.
//
//	go test ./gateway/ -run '^$' -bench BenchmarkIngestPolicy -benchtime 3x -timeout 30m
func BenchmarkIngestPolicy(b *testing.B) {
	files, entries, _ := loadSynthea(b)
	on := testonly.StartGateway(b, testonly.Options{Quiet: true, Anchor: serveAnchor})
	off := testonly.StartGateway(b, testonly.Options{Quiet: true, Anchor: serveAnchor, WithoutPolicy: true})
	onTok, offTok := on.Token(b), off.Token(b)
	var onTime, offTime, onCPU, offCPU time.Duration
	iter := 0
	run := func(g *testonly.Gateway, tok string, wall, cpu *time.Duration) {
		start, cpu0 := time.Now(), mustCPU()
		_, created, errs := ingestOnce(b.Context(), g, tok, files, 4)
		*wall += time.Since(start)
		*cpu += mustCPU() - cpu0
		if len(errs) > 0 {
			b.Fatal(errs[0])
		}
		if created != entries {
			b.Fatalf("%d entries created, want %d", created, entries)
		}
	}
	for b.Loop() {
		iter++
		if iter%2 == 1 {
			run(on, onTok, &onTime, &onCPU)
			run(off, offTok, &offTime, &offCPU)
		} else {
			run(off, offTok, &offTime, &offCPU)
			run(on, onTok, &onTime, &onCPU)
		}
	}
	total := float64(entries * iter)
	onRate, offRate := total/onTime.Seconds(), total/offTime.Seconds()
	b.ReportMetric(onRate, "policy-on-res/s")
	b.ReportMetric(offRate, "policy-off-res/s")
	b.ReportMetric(1-onRate/offRate, "policy-cost")
	// CPU time is steadier than wall time on a shared machine: what the
	// process spent per resource with and without policy.
	b.ReportMetric(1-float64(offCPU)/float64(onCPU), "policy-cpu-cost")
	b.Logf("CPU per resource: policy on %.0f µs, off %.0f µs", perRes(onCPU, entries*iter), perRes(offCPU, entries*iter))
	b.Logf("policy on %.0f res/s, off %.0f res/s: policy costs %.1f%% of ingest throughput", onRate, offRate, 100*(1-onRate/offRate))
}

// BenchmarkIngestBackends pushes the Synthea set through two gateways, one
// on the SQLite default and one on PostgreSQL (a throwaway cluster with
// production durability: fsync and synchronous commit on), alternating
// which goes first each iteration, and prints both rates. It needs
// FHIRANCHOR_INTEGRATION=1 (for the cluster):
//
//	FHIRANCHOR_INTEGRATION=1 go test ./gateway/ -run '^$' -bench BenchmarkIngestBackends -benchtime 3x -timeout 30m
//
// Besides wall time it reports the CPU each resource costs (cpu-us/res):
// the test process's during that backend's turns, plus, for PostgreSQL,
// the cluster's processes' (pgtest.Cluster.CPU), so the server's work is
// not left out. On a machine others load, that is the steadier figure: wall
// time then mostly measures waiting for a core.
func BenchmarkIngestBackends(b *testing.B) {
	files, entries, _ := loadSynthea(b)
	cluster := pgtest.Start(b, pgtest.Options{Durable: true})
	backends := []struct {
		name string
		g    *testonly.Gateway
		tok  string
		wall time.Duration
		cpu  time.Duration
		lat  []time.Duration
	}{
		{name: "sqlite", g: testonly.StartGateway(b, testonly.Options{Quiet: true, Anchor: serveAnchor})},
		{name: "postgres", g: testonly.StartGateway(b, testonly.Options{Quiet: true, Anchor: serveAnchor, PostgresDSN: cluster.NewDatabase(b)})},
	}
	for i := range backends {
		backends[i].tok = backends[i].g.Token(b)
	}
	iter := 0
	for b.Loop() {
		iter++
		for k := range backends {
			be := &backends[(k+iter)%2]
			cpu0 := backendCPU(b, cluster, be.name)
			start := time.Now()
			lat, created, errs := ingestOnce(b.Context(), be.g, be.tok, files, 4)
			be.wall += time.Since(start)
			be.cpu += backendCPU(b, cluster, be.name) - cpu0
			be.lat = append(be.lat, lat...)
			if len(errs) > 0 {
				b.Fatalf("%s: %v", be.name, errs[0])
			}
			if created != entries {
				b.Fatalf("%s: %d entries created, want %d", be.name, created, entries)
			}
		}
	}
	total := float64(entries * iter)
	rates, cpus := map[string]float64{}, map[string]float64{}
	for i := range backends {
		be := &backends[i]
		rate := total / be.wall.Seconds()
		rates[be.name] = rate
		cpus[be.name] = float64(be.cpu.Microseconds()) / total
		slices.Sort(be.lat)
		b.ReportMetric(rate, be.name+"-res/s")
		b.ReportMetric(cpus[be.name], be.name+"-cpu-us/res")
		b.Logf("%s: %.0f res/s, %.0f us CPU/res; Bundle p50 %.0f ms, p99 %.0f ms", be.name, rate, cpus[be.name],
			ms(percentile(be.lat, 0.50)), ms(percentile(be.lat, 0.99)))
		if st := be.g.Stats(b); st.Versions != int64(entries*iter) {
			b.Errorf("%s: vault holds %d versions, want %d", be.name, st.Versions, entries*iter)
		}
	}
	b.ReportMetric(rates["postgres"]/rates["sqlite"], "pg/sqlite")
	b.ReportMetric(cpus["postgres"]/cpus["sqlite"], "pg/sqlite-cpu")
	b.Logf("PostgreSQL %.0f res/s, SQLite %.0f res/s in the same run: ratio %.2f; CPU per resource (PostgreSQL's server included) ratio %.2f",
		rates["postgres"], rates["sqlite"], rates["postgres"]/rates["sqlite"], cpus["postgres"]/cpus["sqlite"])
}

// backendCPU is the CPU time used so far by this process and, for the
// postgres backend, by the cluster.
func backendCPU(b *testing.B, cluster *pgtest.Cluster, backend string) time.Duration {
	cpu := cpuTime(b)
	if backend == "postgres" {
		server, err := cluster.CPU()
		if err != nil {
			b.Fatal(err)
		}
		cpu += server
	}
	return cpu
}
