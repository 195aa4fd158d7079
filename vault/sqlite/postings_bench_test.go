package sqlite

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/vault"
)

// BenchmarkPutPostings stores b.N resource versions in groups of 200 (a
// Synthea Bundle's worth, one commit each) with 16 blind-index tokens each
// (8 of 20,000 shared values, as codes and dates are, and 8 of their own,
// as ids and identifiers are; 8 bytes, as search tokens are), into a vault
// that already holds FHIRANCHOR_BENCH_PREFILL versions (default 0; 100000
// for a 10x Synthea-sized index). It reports the cost per version of the
// store alone (postings, token sets, versions, the commit's fsync) and the
// WAL bytes written per version: what a write pays for the index growing.
func BenchmarkPutPostings(b *testing.B) {
	prefill := 0
	if s := os.Getenv("FHIRANCHOR_BENCH_PREFILL"); s != "" {
		fmt.Sscan(s, &prefill)
	}
	path := filepath.Join(b.TempDir(), "vault.db")
	s, err := New(b.Context(), Config{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	n := 0
	group := func(k int) {
		err := s.Update(b.Context(), func(tx vault.Tx) error {
			for range k {
				n++
				rec := benchRecord(n, 1200)
				for i := range 16 {
					if i < 8 {
						rec.Tokens = append(rec.Tokens, benchToken(uint64(i*2500+r.IntN(2500))))
					} else {
						rec.Tokens = append(rec.Tokens, benchToken(1<<40+uint64(n*16+i)))
					}
				}
				if err := tx.Put(b.Context(), rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for n < prefill {
		group(min(1000, prefill-n))
	}
	start, w0 := n, writtenBytes(b)
	b.ResetTimer()
	for b.Loop() {
		group(200)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n-start), "µs/version")
	b.ReportMetric(float64(writtenBytes(b)-w0)/float64(n-start), "written-B/version")
}

// writtenBytes is what the process has passed to write(2) and its kin
// (/proc/self/io wchar): the WAL's frames and the checkpoints' pages.
func writtenBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no wchar in /proc/self/io")
	return 0
}

// BenchmarkWalkPostings reads every posting of a vault of 10,000 versions
// with 16 tokens each (in every level: the merge threshold is small) the
// way an audit digests them, WalkPostings, and the way it did before,
// IndexEntries page by page: ns per posting of each.
func BenchmarkWalkPostings(b *testing.B) {
	ctx := b.Context()
	s, err := New(ctx, Config{Path: filepath.Join(b.TempDir(), "vault.db"), MergeRows: 20_000})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const versions, perVersion = 10_000, 16
	for g := range versions / 500 {
		err := s.Update(ctx, func(tx vault.Tx) error {
			for i := range 500 {
				n := g*500 + i + 1
				rec := benchRecord(n, 100)
				for j := range perVersion {
					rec.Tokens = append(rec.Tokens, benchToken(uint64(n*perVersion+j)))
				}
				if err := tx.Put(ctx, rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var sum int64
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			n := 0
			err := s.WalkPostings(ctx, func(token []byte, seq int64) { sum += int64(token[0]) + seq; n++ })
			if err != nil || n != versions*perVersion {
				b.Fatalf("walked %d postings, %v; want %d", n, err, versions*perVersion)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*versions*perVersion), "ns/posting")
	})
	b.Run("pages", func(b *testing.B) {
		for b.Loop() {
			n := 0
			for after := (vault.IndexEntry{}); ; {
				es, err := s.IndexEntries(ctx, after, 1000)
				if err != nil {
					b.Fatal(err)
				}
				for _, e := range es {
					sum += int64(e.Token[0]) + e.Seq
				}
				n += len(es)
				if len(es) < 1000 {
					break
				}
				after = es[len(es)-1]
			}
			if n != versions*perVersion {
				b.Fatalf("listed %d postings; want %d", n, versions*perVersion)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*versions*perVersion), "ns/posting")
	})
}

// benchToken is a search-sized (8-byte) token, distinct for each x.
func benchToken(x uint64) []byte {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, x))
	return h[:8]
}

// benchRecord is the n-th Observation version of a benchmark, with a
// ciphertext of the given size and no tokens yet.
func benchRecord(n, ciphertext int) vault.Record {
	name := fmt.Sprint("r", n)
	return vault.Record{Type: "Observation", ID: name, Version: 1, LastUpdated: time.Unix(int64(n), 0),
		KeyID: "k", Ciphertext: make([]byte, ciphertext), Salt: make([]byte, 32), Commitment: benchToken(uint64(n)),
		Leaf: vault.Leaf{Type: 1, Data: make([]byte, 32), Ref: "Observation/" + name}}
}
