package vault

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// packCorpus returns the canonical bodies and Safe Harbor research copies
// of the resources of the last n Synthea Bundles (the files bodyDict was
// not built from are among them; the dictionary came from five others).
func packCorpus(t testing.TB, n int) (bodies, copies [][]byte) {
	t.Helper()
	k := func(c byte) []byte { return bytes.Repeat([]byte{c}, 32) }
	e, err := deid.New(deid.SafeHarbor(), deid.Keys{DateShift: k('d'), CryptoHash: k('h'), Encrypt: k('e')})
	if err != nil {
		t.Fatal(err)
	}
	files := shareddata.Files(t, "synthea")
	for _, f := range files[len(files)-min(n, len(files)):] {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := fhir.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, entry := range v.(map[string]any)["entry"].([]any) {
			tree := entry.(map[string]any)["resource"].(map[string]any)
			body, err := fhir.Canonical(tree)
			if err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, body)
			out, err := e.Apply(tree["resourceType"].(string), tree, deid.Options{Now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				continue // a resource the profile refuses has no research copy
			}
			c, err := fhir.Canonical(out.Tree)
			if err != nil {
				t.Fatal(err)
			}
			copies = append(copies, c)
		}
	}
	return bodies, copies
}

// referenceZstd returns the path of the reference Zstandard command line
// tool (Debian's zstd, libzstd), which the tests use as a decoder that is
// not the one this package uses. CI installs it; without it the tests
// that need it skip, unless FHIRANCHOR_INTEGRATION=1 (CI), where they fail.
func referenceZstd(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("zstd")
	if err != nil {
		if os.Getenv("FHIRANCHOR_INTEGRATION") == "1" {
			t.Fatalf("the reference zstd tool is not installed (apt-get install zstd): %v", err)
		}
		t.Skipf("the reference zstd tool is not installed (apt-get install zstd): %v", err)
	}
	return path
}

// TestPackDecodesWithReferenceZstd packs Synthea bodies, research copies
// and adversarial inputs as bodies and as records, and decodes every
// compressed one with the reference implementation (the zstd tool) and
// the frozen dictionary its marker names, independently of unpack: what
// pack writes must be plain RFC 8878 that any decoder with the dictionary
// reads. Every one also comes back through unpack, and every one written
// in the DEFLATE forms of earlier versions does too.
func TestPackDecodesWithReferenceZstd(t *testing.T) {
	zstdTool := referenceZstd(t)
	bodies, copies := packCorpus(t, 2)
	random := make([]byte, 1<<20)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	adversarial := [][]byte{
		{}, {0}, {1}, {2}, {3}, {4}, {5}, {6}, {'{'},
		random,
		append([]byte{packedRecordDict}, random[:1000]...),
		append([]byte{packedZstdRecord}, random[:1000]...),
		bytes.Repeat([]byte{'a'}, 1<<20),
		bytes.Repeat([]byte{0}, 70000),
		bytes.Repeat([]byte{packedBodyDict}, 300),
		bytes.Repeat([]byte{packedZstdBody}, 300),
		bytes.Repeat(bodies[0], 1<<20/len(bodies[0])+1),
		bodyDict, recordDict,
		append(bytes.Clone(bodyDict), bodyDict...),
		[]byte(strings.Repeat(deidRecord, 3)),
		append([]byte{packedRaw}, deidRecord...),
		append([]byte{packedDeflate}, bodies[1]...),
		pack(bodies[2]),
	}
	inputs := append(append(append([][]byte{}, adversarial...), bodies...), copies...)
	dir := t.TempDir()
	dicts := map[byte]string{packedZstdBody: filepath.Join(dir, "body.dict"), packedZstdRecord: filepath.Join(dir, "record.dict")}
	for marker, path := range dicts {
		dict := bodyDict
		if marker == packedZstdRecord {
			dict = recordDict
		}
		if err := os.WriteFile(path, dict, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	frames := map[byte][]string{} // by marker: files to decode
	want := map[string][]byte{}   // by decoded file name
	for i, in := range inputs {
		for _, as := range []struct {
			name   string
			pack   func([]byte) []byte
			unpack func([]byte) ([]byte, error)
		}{
			{"body", pack, unpackSealed},
			{"record", PackRecord, func(p []byte) ([]byte, error) { return unpack(p, maxRecord) }},
			// What pack and PackRecord write past s2MaxValue, and wrote
			// for every value before S2.
			{"body-zstd", func(b []byte) []byte { return packWith(&packer{large: bodyCodec}, b) }, unpackSealed},
			{"record-zstd", func(b []byte) []byte { return packRecordWith(&packer{large: recordCodec}, b) },
				func(p []byte) ([]byte, error) { return unpack(p, maxRecord) }},
		} {
			p := as.pack(in)
			if len(in) == 0 {
				if len(p) != 0 {
					t.Errorf("%s: pack of nothing = %x", as.name, p)
				}
				continue
			}
			if got, err := as.unpack(p); err != nil || !bytes.Equal(got, in) {
				t.Errorf("%s %d (%d bytes): unpack = %d bytes, %v; want the input back", as.name, i, len(in), len(got), err)
			}
			if as.name == "body" || as.name == "record" && len(in) <= maxRecord {
				for _, marker := range []byte{packedDeflate, packedBodyDict, packedRecordDict} {
					if got, err := as.unpack(flatePack(t, marker, in)); err != nil || !bytes.Equal(got, in) {
						t.Errorf("%s %d (%d bytes) deflated with marker %#x: unpack = %d bytes, %v; want the input back", as.name, i, len(in), marker, len(got), err)
					}
				}
			}
			if p[0] != packedZstdBody && p[0] != packedZstdRecord {
				continue
			}
			name := fmt.Sprintf("%s-%d", as.name, i)
			if err := os.WriteFile(filepath.Join(dir, name+".zst"), p[1:], 0o600); err != nil {
				t.Fatal(err)
			}
			frames[p[0]] = append(frames[p[0]], filepath.Join(dir, name+".zst"))
			want[name] = in
		}
	}
	if len(want) < 2*(len(bodies)+len(copies)) {
		t.Errorf("only %d of %d values were compressed as Zstandard frames", len(want), 2*len(inputs))
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	for marker, files := range frames {
		args := append([]string{"-d", "-q", "-D", dicts[marker], "--output-dir-flat", out}, files...)
		if msg, err := exec.Command(zstdTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("zstd -d -D %s: %v\n%s", filepath.Base(dicts[marker]), err, msg)
		}
	}
	for name, in := range want {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(got, in) {
			t.Errorf("%s (%d bytes): the reference zstd decodes %d other bytes (%v)", name, len(in), len(got), err)
		}
	}
}

// BenchmarkPackCorpus reports per value the cost and stored size of
// packing the Synthea bodies and research copies of twelve patients and a
// deidentification record: ns/val and stored-B/val, with plain-B/val for
// the ratio.
func BenchmarkPackCorpus(b *testing.B) {
	bodies, copies := packCorpus(b, 12)
	for _, c := range []struct {
		name string
		pack func([]byte) []byte
		in   [][]byte
	}{
		{"body", pack, bodies},
		{"copy", pack, copies},
		{"record", PackRecord, [][]byte{[]byte(deidRecord)}},
		{"body-zstd", bodyCodec.pack, bodies},
		{"copy-zstd", bodyCodec.pack, copies},
		{"record-zstd", recordCodec.pack, [][]byte{[]byte(deidRecord)}},
		{"body-deflate", func(x []byte) []byte { return flatePack(b, packedBodyDict, x) }, bodies},
		{"copy-deflate", func(x []byte) []byte { return flatePack(b, packedBodyDict, x) }, copies},
		{"record-deflate", func(x []byte) []byte { return flatePack(b, packedRecordDict, x) }, [][]byte{[]byte(deidRecord)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var stored, plain int
			for b.Loop() {
				stored, plain = 0, 0
				for _, in := range c.in {
					stored += len(c.pack(in))
					plain += len(in)
				}
			}
			n := float64(len(c.in))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/val")
			b.ReportMetric(float64(stored)/n, "stored-B/val")
			b.ReportMetric(float64(plain)/n, "plain-B/val")
		})
	}
}
