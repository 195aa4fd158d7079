package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// BenchmarkIngestReplay pushes the Synthea set twice with the same
// Idempotency-Keys, as `fhiranchor push` retrying a whole run would (the
// key is the SHA-256 of the Bundle, with the iteration): the second push
// must be answered from the remembered responses, identical to the first,
// writing nothing. replay-speedup is the first push's wall time over the
// second's, in the same iteration. `make bench` runs it (its name matches
// BenchmarkIngest).
func BenchmarkIngestReplay(b *testing.B) {
	files, entries, _ := loadSynthea(b)
	g := testonly.StartGateway(b, testonly.Options{Quiet: true, Limits: gateway.Limits{RequestTimeout: 10 * time.Minute}})
	token := g.Token(b)
	var first, again time.Duration
	iter := 0
	for b.Loop() {
		iter++
		push := func() (time.Duration, map[string][]byte) {
			start := time.Now()
			answers, err := pushKeyed(b.Context(), g, token, files, strconv.Itoa(iter))
			if err != nil {
				b.Fatal(err)
			}
			return time.Since(start), answers
		}
		t1, a1 := push()
		before := g.Stats(b)
		t2, a2 := push()
		b.StopTimer()
		if after := g.Stats(b); after.Versions != before.Versions || after.Leaves != before.Leaves {
			b.Fatalf("the replayed push wrote: %+v -> %+v", before, after)
		}
		for name, body := range a1 {
			if !bytes.Equal(a2[name], body) {
				b.Fatalf("%s: the replay answered differently", name)
			}
		}
		first += t1
		again += t2
		b.Logf("iteration %d: first push %.2fs (%.0f res/s), replay %.3fs (%.0f res/s), speedup %.1f", iter,
			t1.Seconds(), float64(entries)/t1.Seconds(), t2.Seconds(), float64(entries)/t2.Seconds(), t1.Seconds()/t2.Seconds())
		b.StartTimer()
	}
	b.ReportMetric(float64(entries*iter)/first.Seconds(), "first-res/s")
	b.ReportMetric(float64(entries*iter)/again.Seconds(), "replay-res/s")
	b.ReportMetric(first.Seconds()/again.Seconds(), "replay-speedup")
}

// pushKeyed POSTs every file from 4 clients with the Idempotency-Key
// SHA-256(iteration, body) and returns each answer's body by file name.
func pushKeyed(ctx context.Context, g *testonly.Gateway, token string, files []benchFile, iteration string) (map[string][]byte, error) {
	queue := make(chan *benchFile, len(files))
	for i := range files {
		queue <- &files[i]
	}
	close(queue)
	var (
		mu      sync.Mutex
		answers = map[string][]byte{}
		first   error
		wg      sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for f := range queue {
				body, err := postKeyed(ctx, g, token, f, iteration)
				mu.Lock()
				answers[f.name] = body
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return answers, first
}

func postKeyed(ctx context.Context, g *testonly.Gateway, token string, f *benchFile, iteration string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, bytes.NewReader(f.data))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte(iteration+"\x00"), f.data...))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", hex.EncodeToString(sum[:]))
	resp, err := g.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", f.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: status %d, %v: %s", f.name, resp.StatusCode, err, clip(body, 500))
	}
	return body, nil
}
