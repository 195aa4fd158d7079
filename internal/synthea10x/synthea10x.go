// Package synthea10x multiplies a set of Synthea transaction Bundles: each
// copy of a Bundle gets fresh resource ids, fullUrls and references
// (rewritten consistently, so every urn:uuid reference still resolves
// within its Bundle) and perturbed identifier values (so conditional
// creates and identifier searches do not find another copy's resources).
// The output is a function of the input, the copy number and the seed.
// It is a test and benchmark tool (tools/synthea10x, make bench-search).
package synthea10x

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// uuidRE matches a UUID anywhere in a string.
var uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// newID derives the id of copy k of old under seed: a version-4-shaped UUID.
func newID(seed int64, k int, old string) string {
	h := sha256.New()
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(seed))
	binary.BigEndian.PutUint64(buf[8:], uint64(k))
	h.Write(buf[:])
	h.Write([]byte(strings.ToLower(old)))
	s := h.Sum(nil)[:16]
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	x := hex.EncodeToString(s)
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// Copy returns copy k (0-based) of a transaction Bundle under seed. Every
// UUID that is a fullUrl (urn:uuid:X) or a top-level resource id in the
// Bundle is replaced wherever it occurs in a string (ids, fullUrls,
// references, and identifier values that repeat the id); other UUIDs are
// replaced too, by the same derivation, so no copy shares one with
// another. Every identifier's value gets the suffix "-c<k>-<seed>".
func Copy(bundle []byte, seed int64, k int) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(bundle))
	dec.UseNumber() // keep decimals exactly as written
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("synthea10x: decode: %w", err)
	}
	if tree["resourceType"] != "Bundle" {
		return nil, fmt.Errorf("synthea10x: not a Bundle")
	}
	suffix := fmt.Sprintf("-c%d-%d", k, seed)
	ids := map[string]string{}
	rewrite := func(s string) string {
		return uuidRE.ReplaceAllStringFunc(s, func(u string) string {
			n, ok := ids[u]
			if !ok {
				n = newID(seed, k, u)
				ids[u] = n
			}
			return n
		})
	}
	var walk func(v any, key string) any
	walk = func(v any, key string) any {
		switch x := v.(type) {
		case map[string]any:
			for kk, vv := range x {
				x[kk] = walk(vv, kk)
			}
			return x
		case []any:
			for i, vv := range x {
				x[i] = walk(vv, key)
			}
			if key == "identifier" {
				for _, e := range x {
					if m, ok := e.(map[string]any); ok {
						if s, ok := m["value"].(string); ok {
							m["value"] = s + suffix
						}
					}
				}
			}
			return x
		case string:
			return rewrite(x)
		default:
			return v
		}
	}
	walk(tree, "")
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return nil, fmt.Errorf("synthea10x: encode: %w", err)
	}
	return out.Bytes(), nil
}

// Generate writes n copies of every *.json Bundle in src to dst (created if
// need be) as <name>.c<k>.json and returns the paths written, sorted.
func Generate(src, dst string, n int, seed int64) ([]string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	var out []string
	err := Stream(src, n, seed, runtime.GOMAXPROCS(0), func(name string, k int, bundle []byte) error {
		p := filepath.Join(dst, fmt.Sprintf("%s.c%d.json", strings.TrimSuffix(name, ".json"), k))
		out = append(out, p)
		return os.WriteFile(p, bundle, 0o644)
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// Stream makes n copies of every *.json Bundle in src, copy by copy (all of
// copy 0, then copy 1, ...; within a copy the Bundles that hold no patient,
// the shared organizations and practitioners, first, so that the patients'
// references to them resolve), and hands each to fn in that order as it is
// made, on one goroutine. workers goroutines make the copies ahead of fn,
// a few at a time: only the source Bundles and the copies in flight are
// held in memory, whatever n is. fn's error stops the stream and is
// returned. name is the source file's base name, k the copy number.
func Stream(src string, n int, seed int64, workers int, fn func(name string, k int, bundle []byte) error) error {
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("synthea10x: no *.json in %s", src)
	}
	type source struct {
		name string
		data []byte
	}
	var srcs []source
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		srcs = append(srcs, source{filepath.Base(f), data})
	}
	shared := func(s source) bool {
		return !bytes.Contains(s.data, []byte(`"resourceType": "Patient"`)) && !bytes.Contains(s.data, []byte(`"resourceType":"Patient"`))
	}
	slices.SortStableFunc(srcs, func(a, b source) int {
		switch sa, sb := shared(a), shared(b); {
		case sa && !sb:
			return -1
		case sb && !sa:
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	workers = max(workers, 1)
	type result struct {
		data []byte
		err  error
	}
	// Jobs in stream order; each carries the channel its result comes
	// back on, and the channels are read in the same order.
	type job struct {
		src source
		k   int
		out chan result
	}
	jobs := make(chan job)
	order := make(chan chan result, 2*workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				c, err := Copy(j.src.data, seed, j.k)
				if err != nil {
					err = fmt.Errorf("%s: %w", j.src.name, err)
				}
				j.out <- result{c, err}
			}
		})
	}
	go func() {
		defer close(order)
		defer close(jobs)
		for k := range n {
			for _, s := range srcs {
				out := make(chan result, 1)
				select {
				case order <- out:
				case <-stop:
					return
				}
				select {
				case jobs <- job{s, k, out}:
				case <-stop:
					return
				}
			}
		}
	}()
	var first error
	i := 0
	for out := range order {
		if first != nil {
			continue // stopping: the job may never have been sent
		}
		r := <-out
		first = r.err
		if first == nil {
			s := srcs[i%len(srcs)]
			first = fn(s.name, i/len(srcs), r.data)
		}
		if first != nil {
			close(stop)
		}
		i++
	}
	wg.Wait()
	return first
}
