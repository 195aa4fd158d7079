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
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("synthea10x: no *.json in %s", src)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	type job struct {
		src  string
		data []byte
	}
	var (
		out   []string
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		jobs  = make(chan job)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range jobs {
				base := strings.TrimSuffix(filepath.Base(j.src), ".json")
				for k := range n {
					c, err := Copy(j.data, seed, k)
					p := filepath.Join(dst, fmt.Sprintf("%s.c%d.json", base, k))
					if err == nil {
						err = os.WriteFile(p, c, 0o644)
					} else {
						err = fmt.Errorf("%s: %w", filepath.Base(j.src), err)
					}
					mu.Lock()
					if err != nil && first == nil {
						first = err
					}
					out = append(out, p)
					mu.Unlock()
				}
			}
		})
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			close(jobs)
			wg.Wait()
			return nil, err
		}
		jobs <- job{f, data}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	slices.Sort(out)
	return out, nil
}
