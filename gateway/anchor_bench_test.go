package gateway_test

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// BenchmarkAnchoring pushes the whole Synthea set (4 REST clients) with the
// default batch policy and reports the gas per anchored leaf and the median
// and p99 time from each Bundle's acknowledgement to its last entry's receipt
// being confirmed. On the simulated chain (Osaka gas rules) by default; with
// FHIRANCHOR_BENCH_GETH=1 (and FHIRANCHOR_INTEGRATION=1) on a geth --dev
// node, whose dev rules charge about 2.7x the gas. FHIRANCHOR_BENCH_MAX_DELAY
// overrides the policy's delay (default 10s).
func BenchmarkAnchoring(b *testing.B) {
	opt := testonly.Options{Quiet: true, Anchor: anchor.Config{MaxDelay: 10 * time.Second}}
	if d, err := time.ParseDuration(os.Getenv("FHIRANCHOR_BENCH_MAX_DELAY")); err == nil {
		opt.Anchor.MaxDelay = d
	}
	chainName := "simulated (Osaka rules)"
	if os.Getenv("FHIRANCHOR_BENCH_GETH") == "1" {
		geth := testonly.StartGeth(b)
		opt.RPCURL, opt.ChainKey = geth.RPCURL, geth.FundedKey(b)
		chainName = "geth --dev"
	}
	files := shareddata.Files(b, "synthea")
	bodies := make([][]byte, len(files))
	for i, f := range files {
		var err error
		if bodies[i], err = os.ReadFile(f); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		g := testonly.StartGateway(b, opt)
		tok := g.Token(b)
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		queue := make(chan []byte, len(bodies))
		for _, body := range bodies {
			queue <- body
		}
		close(queue)
		for range 4 {
			wg.Go(func() {
				for body := range queue {
					r := g.Do(b, http.MethodPost, "", body, "Authorization", "Bearer "+tok)
					acked := time.Now()
					var resp struct {
						Entry []struct {
							Response struct{ Extension []struct{ ValueURL string } }
						}
					}
					if r.Status != http.StatusOK || json.Unmarshal(r.Body, &resp) != nil || len(resp.Entry) == 0 {
						b.Errorf("push: %d", r.Status)
						return
					}
					last := resp.Entry[len(resp.Entry)-1].Response.Extension[0].ValueURL
					wg.Go(func() {
						for {
							var rc anchor.Receipt
							req, _ := http.NewRequest(http.MethodGet, last, nil)
							req.Header.Set("Authorization", "Bearer "+tok)
							if resp, err := g.Client.Do(req); err == nil {
								_ = json.NewDecoder(resp.Body).Decode(&rc)
								resp.Body.Close()
							}
							if rc.Status == anchor.StatusConfirmed {
								mu.Lock()
								lat = append(lat, time.Since(acked))
								mu.Unlock()
								return
							}
							time.Sleep(100 * time.Millisecond)
						}
					})
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			return
		}
		// Gas over every anchor the set needed.
		var gas, leaves uint64
		cps, err := g.Log.Checkpoints(b.Context(), 0, 1000)
		if err != nil {
			b.Fatal(err)
		}
		for _, cp := range cps {
			if cp.Anchor == nil {
				continue
			}
			used, err := g.Chain.GasUsed(b.Context(), [32]byte(cp.Anchor.TxHash))
			if err != nil {
				b.Fatal(err)
			}
			gas += used
			leaves = cp.Size
		}
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		b.ReportMetric(float64(gas)/float64(leaves), "gas/leaf")
		b.ReportMetric(float64(len(cps)), "anchors")
		b.ReportMetric(float64(p50.Milliseconds()), "ack-to-confirmed-p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), "ack-to-confirmed-p99-ms")
		b.Logf("%s, max delay %s: %d leaves in %d anchors, %d gas (%.2f gas/leaf); ack to confirmed receipt p50 %s, p99 %s",
			chainName, opt.Anchor.MaxDelay, leaves, len(cps), gas, float64(gas)/float64(leaves), p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	}
}
