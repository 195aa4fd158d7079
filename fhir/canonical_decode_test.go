package fhir_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// canonicalDecodeSeeds are near misses of canonical form, each one step
// from a canonical text, and canonical texts that look suspicious.
var canonicalDecodeSeeds = []string{
	`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
	`{"a":1, "b":2}`,               // white space
	`{"b":1,"a":2}`,                // members out of order
	`{"a":1,"a":1}`,                // a repeated member
	`{"a":"\/"}`,                   // an escape Canonical never writes
	`{"a":"\u0041"}`,               // ditto
	`{"a":"\u000a"}`,               // \n has a short form
	`{"a":"\u001F"}`,               // upper-case hex
	`{"a":"\u001f\u0000\n\t\"\\"}`, // canonical escapes
	"{\"a\":\"\x01\"}",             // a control character unescaped
	`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":.5}`, `{"a":+1}`,
	`{"a":-0.0E+00}`, `{"a":1.50}`, `{"a":1E400}`, // numbers as written
	`{"a":"é","e\u0301":1}`,
	`{"\"":1,"\\":2}`, `{"\\":1,"\"":2}`,
	`{"a":[]}`, `{"a":{}}`, `[]`, `{}`, `""`, `0`, `null`, `true`,
	`{"a":1} `, ` {"a":1}`, `{"a":1}{}`, `{"a":tru}`, `{"a":nulll}`, `[1,]`, `{"a":1,}`, `[`, `{"a"`, `{"a":`, `"\`, `"\u00`,
	"{\"a\":\"\xff\"}",
	`{"a":"\u2028"}`, "{\"a\":\"\u2028\x7f\"}",
}

// checkDecodeCanonical is the oracle: Decode, Canonical and a byte
// comparison.
func checkDecodeCanonical(t *testing.T, in []byte) {
	t.Helper()
	got, err := fhir.DecodeCanonical(in)
	want, werr := fhir.Decode(in)
	canonical := werr == nil
	if canonical {
		c, cerr := fhir.Canonical(want)
		canonical = cerr == nil && bytes.Equal(c, in)
	}
	switch {
	case canonical && err != nil:
		t.Fatalf("DecodeCanonical(%q) refused canonical bytes: %v", in, err)
	case !canonical && err == nil:
		t.Fatalf("DecodeCanonical(%q) accepted bytes that are not canonical", in)
	case !canonical && !errors.Is(err, fhir.ErrNotCanonical):
		t.Fatalf("DecodeCanonical(%q): error %v does not wrap ErrNotCanonical", in, err)
	case canonical && !reflect.DeepEqual(got, want):
		t.Fatalf("DecodeCanonical(%q) = %#v, Decode gives %#v", in, got, want)
	}
}

func TestDecodeCanonicalSeeds(t *testing.T) {
	for _, s := range append(canonicalDecodeSeeds, fuzzSeeds...) {
		checkDecodeCanonical(t, []byte(s))
	}
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	checkDecodeCanonical(t, []byte(deep))
	checkDecodeCanonical(t, []byte(deep[1:len(deep)-1]))
}

// TestDecodeCanonicalSynthea: every resource of the Synthea set in
// canonical form decodes to Decode's tree, and the same bytes with one
// member moved out of place, or one space added, are refused.
func TestDecodeCanonicalSynthea(t *testing.T) {
	files := shareddata.Files(t, "synthea")
	if len(files) > 5 {
		files = files[:5]
	}
	n := 0
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := fhir.DecodeObject(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range bundle["entry"].([]any) {
			c, err := fhir.Canonical(e.(map[string]any)["resource"])
			if err != nil {
				t.Fatal(err)
			}
			checkDecodeCanonical(t, c)
			spaced := bytes.Replace(c, []byte(`":`), []byte(`": `), 1)
			if _, err := fhir.DecodeCanonical(spaced); !errors.Is(err, fhir.ErrNotCanonical) {
				t.Fatalf("a space after a member name was accepted: %v", err)
			}
			n++
		}
	}
	t.Logf("%d resources", n)
}

// BenchmarkDecodeCanonical: what an audit pays to read one stored body
// (DecodeCanonical) against Decode then Canonical, over one Synthea Bundle.
func BenchmarkDecodeCanonical(b *testing.B) {
	var bodies [][]byte
	for _, r := range firstSyntheaResources(b) {
		c, err := fhir.Canonical(r)
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, c)
	}
	b.Run("DecodeCanonical", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range bodies {
				if _, err := fhir.DecodeCanonical(c); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("Decode+Canonical", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range bodies {
				v, err := fhir.Decode(c)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := fhir.Canonical(v); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
