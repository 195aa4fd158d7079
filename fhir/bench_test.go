package fhir_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// syntheaEntries returns the resources of the first n Synthea Bundles, one
// body each, as a client would POST them.
func syntheaEntries(b testing.TB, n int) [][]byte {
	var out [][]byte
	for i, f := range shareddata.Files(b, "synthea") {
		if i == n {
			break
		}
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		var bundle struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &bundle); err != nil {
			b.Fatal(err)
		}
		for _, e := range bundle.Entry {
			out = append(out, e.Resource)
		}
	}
	return out
}

// BenchmarkParse compares Parse (validateTree) with the jsonformat path it
// replaced (ParseJSONFormat) over the same Synthea resources, and both with
// the bare Decode they share; ns/resource of the sub-benchmarks of one run
// give the ratios.
func BenchmarkParse(b *testing.B) {
	res := syntheaEntries(b, 4)
	p := newParser(b)
	for _, v := range []struct {
		name  string
		parse func([]byte) error
	}{
		{"decoder", func(in []byte) error { _, err := p.Parse(in); return err }},
		{"jsonformat", func(in []byte) error { _, err := p.ParseJSONFormat(in); return err }},
		// The floor both share: the generic decode of the body.
		{"decode-only", func(in []byte) error { _, err := fhir.Decode(in); return err }},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, in := range res {
					if err := v.parse(in); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(res)), "ns/resource")
		})
	}
}
