package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// BenchmarkRead measures reads over REST on the Synthea set: the set is
// pushed once, then each sub-benchmark GETs resources from clients
// concurrent clients (4 and 16), every resource of the set in turn. Every
// read of patient data is decided by the policy and its decision recorded
// durably before the answer; the benchmark checks that the log grew by one
// access-decision leaf per read. One op is one read. Run it as
//
//	go test ./gateway/ -run '^$' -bench BenchmarkRead -benchtime 8000x -timeout 20m
//
// cpu-µs/read is process CPU (the in-process gateway and the clients' side
// of HTTP) per read. fsync-µs is the median time, measured in the same run
// on the same file system, of writing and fsyncing 4 KiB: a read waits for
// at least one such commit, so clients/fsync is a ceiling no read rate can
// pass, reported as fsync-bound-reads/s. FHIRANCHOR_BENCH_READ_PROFILE=prefix writes a CPU
// profile of the reads alone, without the load, to prefix-clients=N.prof
// (-test.cpuprofile covers the load too, which costs more than the reads).
func BenchmarkRead(b *testing.B) {
	var files []benchFile
	pprof.Do(context.Background(), pprof.Labels("bench", "load"), func(context.Context) {
		files, _, _ = loadSynthea(b)
	})
	// The load is not what is measured: on a shared machine a large Bundle
	// must not time out.
	g := testonly.StartGateway(b, testonly.Options{Quiet: true, Anchor: serveAnchor, Limits: gateway.Limits{RequestTimeout: 10 * time.Minute}})
	token := g.Token(b)
	var (
		paths []string
		mu    sync.Mutex
		wg    sync.WaitGroup
		errs  = make(chan error, len(files))
		queue = make(chan *benchFile, len(files))
	)
	for i := range files {
		queue <- &files[i]
	}
	close(queue)
	for range 4 {
		wg.Go(func() {
			for f := range queue {
				locs, err := pushLocations(b.Context(), g, token, f)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				paths = append(paths, locs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	// Read the types whose reads are decided (those in a patient's
	// compartment): a read of one of each, the set's first, must add one
	// decision record.
	decided := map[string]bool{}
	for _, p := range paths {
		typ, _, _ := strings.Cut(p, "/")
		if _, seen := decided[typ]; seen {
			continue
		}
		before := g.Stats(b).Leaves
		if err := getResource(b.Context(), g, token, p); err != nil {
			b.Fatal(err)
		}
		decided[typ] = g.Stats(b).Leaves == before+1
	}
	paths = slices.DeleteFunc(paths, func(p string) bool {
		typ, _, _ := strings.Cut(p, "/")
		return !decided[typ]
	})
	// Interleave patients, as many clients reading many charts would.
	slices.SortFunc(paths, func(x, y string) int {
		return strings.Compare(x[strings.IndexByte(x, '/'):], y[strings.IndexByte(y, '/'):])
	})
	fsync := fsyncLatency(b)
	for _, clients := range []int{4, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			leaves0 := g.Stats(b).Leaves
			var (
				next   atomic.Int64
				failed atomic.Pointer[error]
				wg     sync.WaitGroup
			)
			_, haveCPU := processCPU()
			stopProfile := readProfile(b, fmt.Sprintf("clients=%d", clients))
			start, cpu0 := time.Now(), mustCPU()
			b.ResetTimer()
			for range clients {
				wg.Go(func() {
					pprof.Do(b.Context(), pprof.Labels("bench", "client"), func(ctx context.Context) {
						for {
							i := next.Add(1) - 1
							if i >= int64(b.N) || failed.Load() != nil {
								return
							}
							if err := getResource(ctx, g, token, paths[i%int64(len(paths))]); err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
						}
					})
				})
			}
			wg.Wait()
			b.StopTimer()
			wall, cpu := time.Since(start), mustCPU()-cpu0
			stopProfile()
			if p := failed.Load(); p != nil {
				b.Fatal(*p)
			}
			if got := g.Stats(b).Leaves - leaves0; got != int64(b.N) {
				b.Fatalf("%d reads recorded %d decisions, want one each", b.N, got)
			}
			rate := float64(b.N) / wall.Seconds()
			b.ReportMetric(rate, "reads/s")
			b.ReportMetric(float64(fsync)/float64(time.Microsecond), "fsync-µs")
			b.ReportMetric(float64(clients)/fsync.Seconds(), "fsync-bound-reads/s")
			if haveCPU {
				b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/read")
			}
			b.Logf("%d reads from %d clients in %.2fs: %.0f reads/s, CPU %.0f µs/read; %d resources of %d types; GOMAXPROCS %d",
				b.N, clients, wall.Seconds(), rate, float64(cpu)/float64(time.Microsecond)/float64(b.N), len(paths), len(decided), runtime.GOMAXPROCS(0))
		})
	}
}

// fsyncLatency is the median time to write 4 KiB to a file and fsync it,
// in a temporary directory (where the gateway's database is too).
func fsyncLatency(b *testing.B) time.Duration {
	f, err := os.Create(b.TempDir() + "/fsync")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	took := make([]time.Duration, 200)
	for i := range took {
		start := time.Now()
		if _, err := f.WriteAt(page, int64(i%16)*4096); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	return took[len(took)/2]
}

// readProfile starts the CPU profile FHIRANCHOR_BENCH_READ_PROFILE asks
// for, of the run named name, and returns what stops it.
func readProfile(b *testing.B, name string) func() {
	prefix := os.Getenv("FHIRANCHOR_BENCH_READ_PROFILE")
	if prefix == "" || b.N < 2 {
		return func() {}
	}
	f, err := os.Create(prefix + "-" + name + ".prof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatalf("FHIRANCHOR_BENCH_READ_PROFILE (not with -test.cpuprofile): %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// pushLocations posts one Bundle and returns the "Type/id" of each entry
// it created.
func pushLocations(ctx context.Context, g *testonly.Gateway, token string, f *benchFile) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, strings.NewReader(string(f.data)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := g.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", f.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: status %d, %v: %s", f.name, resp.StatusCode, err, clip(body, 500))
	}
	var out struct {
		Entry []struct {
			Response struct {
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("POST %s: decode response: %w", f.name, err)
	}
	var locs []string
	for _, e := range out.Entry {
		typ, rest, _ := strings.Cut(relLocation(e.Response.Location), "/")
		id, _, _ := strings.Cut(rest, "/")
		if typ == "" || id == "" {
			return nil, fmt.Errorf("POST %s: an entry without a location", f.name)
		}
		locs = append(locs, typ+"/"+id)
	}
	return locs, nil
}

// relLocation strips the base URL of a Location, if any.
func relLocation(loc string) string {
	if i := strings.Index(loc, "/fhir/r4/"); i >= 0 {
		return loc[i+len("/fhir/r4/"):]
	}
	return loc
}

// getResource reads path and wants 200 with a body of that type.
func getResource(ctx context.Context, g *testonly.Gateway, token, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL+"/"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := g.Client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d, %v: %s", path, resp.StatusCode, err, clip(body, 500))
	}
	typ, _, _ := strings.Cut(path, "/")
	var res struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.ResourceType != typ {
		return fmt.Errorf("GET %s: the body is not a %s (%v)", path, typ, err)
	}
	return nil
}
