package vault

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"io"
	"os"
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

// stdInflate inflates a packed value with the standard library's reader
// and the dictionary its marker names, independently of unpack: what
// pack writes must be plain RFC 1951 that any inflater with the frozen
// dictionary reads.
func stdInflate(t *testing.T, p []byte) []byte {
	t.Helper()
	var dict []byte
	switch p[0] {
	case packedBodyDict:
		dict = bodyDict
	case packedRecordDict:
		dict = recordDict
	case packedDeflate:
	default:
		t.Fatalf("stdInflate of marker %#x", p[0])
	}
	out, err := io.ReadAll(flate.NewReaderDict(bytes.NewReader(p[1:]), dict))
	if err != nil {
		t.Fatalf("compress/flate does not inflate the packed form: %v", err)
	}
	return out
}

// TestPackInflatesWithStdlib packs Synthea bodies, research copies and
// adversarial inputs as bodies and as records, and reads every deflated
// one back with compress/flate and the frozen dictionary, and every one
// through unpack.
func TestPackInflatesWithStdlib(t *testing.T) {
	bodies, copies := packCorpus(t, 2)
	random := make([]byte, 1<<20)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	adversarial := [][]byte{
		{}, {0}, {1}, {2}, {3}, {4}, {'{'},
		random,
		append([]byte{packedRecordDict}, random[:1000]...),
		bytes.Repeat([]byte{'a'}, 1<<20),
		bytes.Repeat([]byte{0}, 70000),
		bytes.Repeat([]byte{packedBodyDict}, 300),
		bytes.Repeat(bodies[0], 1<<20/len(bodies[0])+1),
		bodyDict, recordDict,
		append(bytes.Clone(bodyDict), bodyDict...),
		[]byte(strings.Repeat(deidRecord, 3)),
		append([]byte{packedRaw}, deidRecord...),
		append([]byte{packedDeflate}, bodies[1]...),
	}
	inputs := append(append(append([][]byte{}, adversarial...), bodies...), copies...)
	deflated := 0
	for i, in := range inputs {
		for _, as := range []struct {
			name   string
			pack   func([]byte) []byte
			unpack func([]byte) ([]byte, error)
		}{
			{"body", pack, unpackSealed},
			{"record", PackRecord, func(p []byte) ([]byte, error) { return unpack(p, maxRecord) }},
		} {
			p := as.pack(in)
			if len(in) == 0 {
				if len(p) != 0 {
					t.Errorf("%s: pack of nothing = %x", as.name, p)
				}
				continue
			}
			if p[0] <= packedRecordDict && p[0] != packedRaw {
				deflated++
				if got := stdInflate(t, p); !bytes.Equal(got, in) {
					t.Errorf("%s %d (%d bytes): compress/flate inflates %d other bytes", as.name, i, len(in), len(got))
				}
			}
			if got, err := as.unpack(p); err != nil || !bytes.Equal(got, in) {
				t.Errorf("%s %d (%d bytes): unpack = %d bytes, %v; want the input back", as.name, i, len(in), len(got), err)
			}
		}
	}
	if deflated < len(bodies)+len(copies) {
		t.Errorf("only %d of %d values were deflated", deflated, 2*len(inputs))
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
