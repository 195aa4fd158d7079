package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/synthea10x"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// BenchmarkSearch measures FHIR search over REST, one client with a real
// token, on the Synthea set ("scale=1x") and, when FHIRANCHOR_BENCH_SCALE
// is 10 (or "1,10" for both), on ten copies of it with fresh ids
// (internal/synthea10x, "scale=10x"). Per query kind it reports the p50
// and p99 latency of the whole request (response body read):
//
//   - obs: Observation?patient=X&code=Y over real (patient, code) pairs
//   - name: Patient?name=<a real family name>, varied
//   - birthdate: Patient?birthdate=lt1960 (the first page)
//   - cond-include: Condition?code=<the most common code>&_include=Condition:subject (first page)
//   - everything: Patient/<busiest>/$everything?_count=1000 and every next page
//
// It also measures what the search index costs ingest: after a warm-up
// ingest that is not counted, the set is pushed through a gateway writing
// the index and one without it (the test-only gateway.SetSearchIndex),
// alternating which goes first, FHIRANCHOR_BENCH_ROUNDS rounds (default
// 8); index-cost is 1 - rate(with)/rate(without) over all rounds,
// index-cost-median the median of the rounds' own, which one ingest
// disturbed by another process moves least. At 10x only with
// FHIRANCHOR_BENCH_INDEX_COST=1 (the unindexed ingest adds minutes).
// Each query kind runs up to its request count or a minute, at least 5. Targets: p50 under 10 ms for the
// single-patient queries and under 200 ms for $everything, at 10x as at
// 1x; index cost under 15 %. Run with: make bench-search
func BenchmarkSearch(b *testing.B) {
	scales := []string{"1"}
	if s := os.Getenv("FHIRANCHOR_BENCH_SCALE"); s != "" {
		scales = strings.Split(s, ",")
	}
	for _, sc := range scales {
		switch sc {
		case "1":
			b.Run("scale=1x", func(b *testing.B) {
				files, _, _ := loadSynthea(b)
				// Eight rounds a side, not four: one ingest of 10,877
				// resources moves by several points when another process
				// wakes (four 8-round runs on the 2-core machine gave
				// totals of 8.5 to 16.4 %; their 32 rounds' median was
				// 11.7 %).
				rounds := 8
				if s := os.Getenv("FHIRANCHOR_BENCH_ROUNDS"); s != "" {
					if n, err := strconv.Atoi(s); err == nil && n > 0 {
						rounds = n
					} else {
						b.Fatalf("FHIRANCHOR_BENCH_ROUNDS=%q: want a positive integer", s)
					}
				}
				benchSearch(b, files, rounds)
			})
		case "10":
			b.Run("scale=10x", func(b *testing.B) {
				// The unindexed ingest of 10x adds minutes for a ratio
				// the 1x run already measures: on request only.
				rounds := 0
				if os.Getenv("FHIRANCHOR_BENCH_INDEX_COST") == "1" {
					rounds = 1
				}
				benchSearch(b, synthea10xFiles(b, 10), rounds)
			})
		default:
			b.Fatalf("FHIRANCHOR_BENCH_SCALE=%q: want 1, 10 or 1,10", sc)
		}
	}
}

// synthea10xFiles writes n copies of the Synthea set to a temporary
// directory and loads them, largest first.
func synthea10xFiles(b *testing.B, n int) []benchFile {
	start := time.Now()
	paths, err := synthea10x.Generate(filepath.Join(shareddata.Dir(b), "synthea"), b.TempDir(), n, 1)
	if err != nil {
		b.Fatal(err)
	}
	var files []benchFile
	entries := 0
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		var bundle struct {
			Entry []json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(data, &bundle); err != nil {
			b.Fatal(err)
		}
		files = append(files, benchFile{name: filepath.Base(p), data: data, entries: len(bundle.Entry)})
		entries += len(bundle.Entry)
	}
	if entries != n*syntheaEntries {
		b.Fatalf("%d copies hold %d entries, want %d", n, entries, n*syntheaEntries)
	}
	slices.SortStableFunc(files, func(x, y benchFile) int { return len(y.data) - len(x.data) })
	progress(b, "generated %d Bundles (%d entries) in %.1fs", len(files), entries, time.Since(start).Seconds())
	return files
}

func benchSearch(b *testing.B, files []benchFile, rounds int) {
	entries := 0
	for _, f := range files {
		entries += f.entries
	}
	// Ingest with and without the index. The last ingest is one with the
	// index, and its gateway is the one searched; every other gateway is
	// stopped once written, so that its background work (anchoring, the
	// research index catching up) does not run into the next ingest.
	var (
		searched        *testonly.Gateway
		onTime, offTime time.Duration
		onCPU, offCPU   time.Duration // process CPU: what a loaded machine disturbs least
	)
	ingest := func(on, counted, last bool) time.Duration {
		files, entries := files, entries
		if !counted {
			// Some 10,000 entries warm up as well as the 10x set would.
			n, sum := 0, 0
			for n < len(files) && sum < syntheaEntries {
				sum += files[n].entries
				n++
			}
			files, entries = files[:n], sum
		}
		g := testonly.StartGateway(b, testonly.Options{Quiet: true})
		restore := gateway.SetSearchIndex(on)
		defer restore()
		start, cpu0 := time.Now(), mustCPU()
		_, created, errs := ingestOnce(b.Context(), g, g.Token(b), files, 4)
		d, cpu := time.Since(start), mustCPU()-cpu0
		if counted && on {
			onCPU += cpu
		} else if counted {
			offCPU += cpu
		}
		if len(errs) > 0 {
			b.Fatal(errs[0])
		}
		if created != entries {
			b.Fatalf("%d entries created, want %d", created, entries)
		}
		if last {
			searched = g
		} else {
			g.Stop()
		}
		what := ""
		if !counted {
			what = " (warm-up, not counted)"
		}
		progress(b, "ingest with index=%v%s: %d resources in %.1fs = %.0f res/s (CPU %.0f µs/res)", on, what, entries, d.Seconds(),
			float64(entries)/d.Seconds(), perRes(cpu, entries))
		return d
	}
	if rounds == 0 {
		onTime = ingest(true, true, true)
	} else {
		// Not counted: the first ingest of the process pays what it pays
		// once (rules compiled, the heap grown, the files read into the page
		// cache), which would otherwise fall on the first round's indexed
		// ingest alone.
		ingest(true, false, false)
	}
	// Each round's own cost too: on a shared machine one disturbed ingest
	// moves the totals' ratio, not the median of the rounds'.
	var costs []float64
	for r := range rounds {
		// ABBA (BA first when rounds is odd, so that the last ingest is
		// indexed): a drift in the machine's speed falls on both alike.
		var on, off time.Duration
		if (rounds-r)%2 == 0 {
			on = ingest(true, true, false)
			off = ingest(false, true, false)
		} else {
			off = ingest(false, true, false)
			on = ingest(true, true, r == rounds-1)
		}
		onTime, offTime = onTime+on, offTime+off
		costs = append(costs, 1-off.Seconds()/on.Seconds())
	}
	onRate := float64(entries*max(rounds, 1)) / onTime.Seconds()
	offRate := float64(entries*rounds) / offTime.Seconds()

	g := searched
	c := &searchClient{b: b, g: g, auth: "Bearer " + g.Token(b)}
	q := pickQueries(b, c, files)
	progress(b, "%d patients; %d (patient, code) pairs; %d family names; condition code %s; busiest patient %s",
		q.patients, len(q.obs), len(q.names), q.condCode, q.busiest)

	kinds := []struct {
		name string
		n    int
		run  func(i int) int // returns the entries it got
	}{
		{"obs", 300, func(i int) int {
			p := q.obs[i%len(q.obs)]
			return c.get("Observation?patient=" + url.QueryEscape(p[0]) + "&code=" + url.QueryEscape(p[1]))
		}},
		{"name", 200, func(i int) int { return c.get("Patient?name=" + url.QueryEscape(q.names[i%len(q.names)])) }},
		{"birthdate", 100, func(int) int { return c.get("Patient?birthdate=lt1960") }},
		{"cond-include", 100, func(int) int {
			return c.get("Condition?code=" + url.QueryEscape(q.condCode) + "&_include=Condition:subject")
		}},
		{"everything", 20, func(int) int { return c.getAll("Patient/" + q.busiest + "/$everything?_count=1000") }},
	}
	for b.Loop() {
		for _, k := range kinds {
			k.run(0) // warm
			lat := make([]time.Duration, 0, k.n)
			got := 0
			// At most k.n requests and a minute, at least 5.
			budget := time.Now().Add(time.Minute)
			for i := 0; i < k.n && (i < 5 || time.Now().Before(budget)); i++ {
				start := time.Now()
				got += k.run(i)
				lat = append(lat, time.Since(start))
			}
			if got == 0 {
				b.Fatalf("%s: no query found anything", k.name)
			}
			slices.Sort(lat)
			b.ReportMetric(ms(percentile(lat, 0.50)), k.name+"-p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), k.name+"-p99-ms")
			progress(b, "%s: %d requests, %.1f entries each; p50 %.2f ms, p99 %.2f ms", k.name, len(lat),
				float64(got)/float64(len(lat)), ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)))
		}
	}
	b.ReportMetric(onRate, "ingest-indexed-res/s")
	if rounds == 0 {
		progress(b, "ingest %d resources with the index: %.0f res/s (index cost not measured; FHIRANCHOR_BENCH_INDEX_COST=1)", entries, onRate)
		return
	}
	b.ReportMetric(offRate, "ingest-unindexed-res/s")
	b.ReportMetric(1-onRate/offRate, "index-cost")
	// The share of the indexed ingest's CPU the index takes: steadier than
	// the rates when other processes share the cores.
	if _, ok := processCPU(); ok {
		b.ReportMetric(1-offCPU.Seconds()/onCPU.Seconds(), "index-cost-cpu")
	}
	slices.Sort(costs)
	median := (costs[(len(costs)-1)/2] + costs[len(costs)/2]) / 2
	b.ReportMetric(median, "index-cost-median")
	progress(b, "ingest %d resources x %d rounds: with index %.0f res/s, without %.0f res/s; index cost %.1f %% (CPU %.1f %%); rounds' median %.1f %% (%s)",
		entries, rounds, onRate, offRate, 100*(1-onRate/offRate), 100*(1-offCPU.Seconds()/onCPU.Seconds()), 100*median, percents(costs))
}

// searchClient GETs searches and checks the answers.
type searchClient struct {
	b    *testing.B
	g    *testonly.Gateway
	auth string
}

type searchBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func (c *searchClient) fetch(u string) searchBundle {
	if !strings.HasPrefix(u, "http") {
		u = c.g.URL + "/" + u
	}
	req, err := http.NewRequestWithContext(c.b.Context(), http.MethodGet, u, nil)
	if err != nil {
		c.b.Fatal(err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.g.Client.Do(req)
	if err != nil {
		c.b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.b.Fatal(err)
	}
	var sb searchBundle
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &sb) != nil || sb.ResourceType != "Bundle" || sb.Type != "searchset" {
		c.b.Fatalf("GET %s = %d %s, want a searchset Bundle", u, resp.StatusCode, clip(body, 1000))
	}
	return sb
}

// get fetches one page and returns its entry count.
func (c *searchClient) get(u string) int { return len(c.fetch(u).Entry) }

// pages fetches u and every next page.
func (c *searchClient) pages(u string, each func(searchBundle)) {
	for u != "" {
		sb := c.fetch(u)
		each(sb)
		u = ""
		for _, l := range sb.Link {
			if l.Relation == "next" {
				u = l.URL
			}
		}
	}
}

// getAll fetches every page and returns the entry count.
func (c *searchClient) getAll(u string) int {
	n := 0
	c.pages(u, func(sb searchBundle) { n += len(sb.Entry) })
	return n
}

type searchQueries struct {
	patients int
	obs      [][2]string // patient id, system|code
	names    []string
	condCode string
	busiest  string
}

// pickQueries finds real parameters: patients and their family names
// from a search, (patient, code) pairs from some patients' Observations,
// the most common Condition code and the Patient of the largest Bundle.
func pickQueries(b *testing.B, c *searchClient, files []benchFile) searchQueries {
	var q searchQueries
	var ids []string
	names := map[string]bool{}
	c.pages("Patient?_count=1000", func(sb searchBundle) {
		for _, e := range sb.Entry {
			var p struct {
				ID   string `json:"id"`
				Name []struct {
					Family string `json:"family"`
				} `json:"name"`
			}
			if err := json.Unmarshal(e.Resource, &p); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, p.ID)
			if len(p.Name) > 0 && p.Name[0].Family != "" {
				names[p.Name[0].Family] = true
			}
		}
	})
	q.patients = len(ids)
	if len(ids) < 50 {
		b.Fatalf("Patient search found %d patients", len(ids))
	}
	slices.Sort(ids)
	for k := range names {
		q.names = append(q.names, k)
	}
	slices.Sort(q.names)
	q.names = q.names[:min(len(q.names), 30)]
	for i := 0; i < len(ids) && len(q.obs) < 100; i += max(1, len(ids)/20) {
		codes := map[string]bool{}
		c.pages("Observation?patient="+ids[i]+"&_count=1000", func(sb searchBundle) {
			for _, e := range sb.Entry {
				var o struct {
					Code struct {
						Coding []struct{ System, Code string } `json:"coding"`
					} `json:"code"`
				}
				if json.Unmarshal(e.Resource, &o) == nil && len(o.Code.Coding) > 0 {
					codes[o.Code.Coding[0].System+"|"+o.Code.Coding[0].Code] = true
				}
			}
		})
		var cs []string
		for k := range codes {
			cs = append(cs, k)
		}
		slices.Sort(cs)
		for _, code := range cs[:min(len(cs), 5)] {
			q.obs = append(q.obs, [2]string{ids[i], code})
		}
	}
	if len(q.obs) == 0 {
		b.Fatal("no (patient, code) pairs")
	}

	// The most common Condition code and the largest Bundle's Patient,
	// from the input.
	count := map[string]int{}
	var ident string
	for i, f := range files {
		var bundle struct {
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					Code         struct {
						Coding []struct{ System, Code string } `json:"coding"`
					} `json:"code"`
					Identifier []struct{ System, Value string } `json:"identifier"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(f.data, &bundle); err != nil {
			b.Fatal(err)
		}
		for _, e := range bundle.Entry {
			r := e.Resource
			switch {
			case r.ResourceType == "Condition" && len(r.Code.Coding) > 0:
				count[r.Code.Coding[0].System+"|"+r.Code.Coding[0].Code]++
			case r.ResourceType == "Patient" && i == 0 && len(r.Identifier) > 0:
				ident = r.Identifier[0].System + "|" + r.Identifier[0].Value
			}
		}
	}
	for k, n := range count {
		if n > count[q.condCode] || n == count[q.condCode] && k < q.condCode {
			q.condCode = k
		}
	}
	sb := c.fetch("Patient?identifier=" + url.QueryEscape(ident))
	if len(sb.Entry) != 1 {
		b.Fatalf("Patient?identifier=%s found %d", ident, len(sb.Entry))
	}
	var p struct{ ID string }
	if err := json.Unmarshal(sb.Entry[0].Resource, &p); err != nil {
		b.Fatal(err)
	}
	q.busiest = p.ID
	return q
}

// progress logs a line and writes it to stderr at once, so that a long run
// shows where it is (b.Logf prints when the benchmark ends).
func progress(b *testing.B, format string, args ...any) {
	b.Helper()
	b.Logf(format, args...)
	fmt.Fprintf(os.Stderr, "%s %s: %s\n", time.Now().Format(time.TimeOnly), b.Name(), fmt.Sprintf(format, args...))
}

// percents formats fractions as percentages, "12.3 14.0 ...".
func percents(fs []float64) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = strconv.FormatFloat(100*f, 'f', 1, 64)
	}
	return strings.Join(parts, " ")
}
