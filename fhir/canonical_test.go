package fhir_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

var update = flag.Bool("update", false, "rewrite testdata/canonical/*.golden")

// TestCanonicalGolden pins the canonical bytes of every
// testdata/canonical/*.json. The goldens are what commitments were computed
// over: if one changes, every receipt issued for such content stops
// verifying. Run with -update only for a new input, never to "fix" a diff.
func TestCanonicalGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "canonical", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata/canonical")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fhir.CanonicalJSON(data)
			if err != nil {
				t.Fatalf("CanonicalJSON: %v", err)
			}
			golden := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("canonical form changed; anchored hashes would break (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCanonicalRules states each rule of docs/canonical-form.md on a small
// input, so a failing golden has a readable explanation next to it.
func TestCanonicalRules(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"whitespace dropped", " {\n\t\"b\" : [ 1 , 2 ] ,\r\n \"a\" : { } } ", `{"a":{},"b":[1,2]}`},
		{"members sorted bytewise", `{"b":1,"a":2,"B":3,"aa":4,"":5}`, `{"":5,"B":3,"a":2,"aa":4,"b":1}`},
		{"prefix sorts first", `{"ab":1,"a":2}`, `{"a":2,"ab":1}`},
		// U+FF21 is EF BC A1 in UTF-8, U+1F642 is F0 9F 99 82: UTF-8 order
		// puts U+FF21 first, UTF-16 order (RFC 8785) would not.
		{"UTF-8 byte order, not UTF-16", `{"🙂":1,"Ａ":2}`, `{"Ａ":2,"🙂":1}`},
		{"escaped names sort by value", `{"\u0062":1,"a":2}`, `{"a":2,"b":1}`},
		{"arrays keep order", `[3,1,2,[],{}]`, `[3,1,2,[],{}]`},
		{"nested objects sorted", `{"z":{"y":1,"x":[{"b":1,"a":2}]}}`, `{"z":{"x":[{"a":2,"b":1}],"y":1}}`},
		{"trailing zeros kept", `[1.50,0.0,72.5000]`, `[1.50,0.0,72.5000]`},
		{"exponents kept", `[1e5,1E+05,2.5e-3,-0]`, `[1e5,1E+05,2.5e-3,-0]`},
		{"precision beyond float64 kept", `3.14159265358979323846264338327950288`, `3.14159265358979323846264338327950288`},
		{"out of float64 range kept", `[1e400,-1E-400]`, `[1e400,-1E-400]`},
		{"quote and backslash escaped", `"a\"b\\c"`, `"a\"b\\c"`},
		{"short escapes", `"\b\f\n\r\t"`, `"\b\f\n\r\t"`},
		{"other controls as lower-case \\u00XX", `"\u0000\u0001\u001F\u001f\u000B"`, `"\u0000\u0001\u001f\u001f\u000b"`},
		{"DEL is literal", `"\u007F"`, "\"\x7f\""},
		{"solidus not escaped", `"a\/b"`, `"a/b"`},
		{"U+2028 and U+2029 literal", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"HTML characters literal", `"<&>"`, `"<&>"`},
		{"escaped non-ASCII becomes literal", `"\u00e9\u65e5"`, `"é日"`},
		{"surrogate pair becomes literal", `"\ud83d\ude42"`, `"🙂"`},
		{"lone surrogate becomes U+FFFD", `"\ud800"`, "\"\uFFFD\""},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"empty containers", `{"a":{},"b":[],"c":""}`, `{"a":{},"b":[],"c":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fhir.CanonicalJSON([]byte(tt.in))
			if err != nil {
				t.Fatalf("CanonicalJSON(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("CanonicalJSON(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// canonicalInputs are JSON texts for the property tests below.
var canonicalInputs = []string{
	`{}`,
	`[]`,
	`"s"`,
	`0`,
	`{"resourceType":"Patient","id":"p1","active":true}`,
	`{"b":[1.50,{"d":null,"c":"\u001f\u2028"}],"a":"\"\\/"}`,
	`{"resourceType":"Observation","valueQuantity":{"value":1.000000000000000000E-245,"unit":"g"}}`,
	`{"name":[{"given":["A",null],"_given":[null,{"id":"x"}]}]}`,
	"{\"é\":1,\"e\":2,\"🙂\":3,\"\uff21\":4}",
}

func TestCanonicalIdempotent(t *testing.T) {
	for _, in := range canonicalInputs {
		once, err := fhir.CanonicalJSON([]byte(in))
		if err != nil {
			t.Fatalf("CanonicalJSON(%q): %v", in, err)
		}
		v, err := fhir.Decode(once)
		if err != nil {
			t.Fatalf("Decode(canonical of %q): %v", in, err)
		}
		twice, err := fhir.Canonical(v)
		if err != nil {
			t.Fatalf("Canonical(Decode(canonical of %q)): %v", in, err)
		}
		if string(twice) != string(once) {
			t.Errorf("canonical form of %q not a fixed point:\nonce  %q\ntwice %q", in, once, twice)
		}
	}
}

func TestCanonicalJSONEqualsCanonicalOfDecode(t *testing.T) {
	for _, in := range canonicalInputs {
		v, err := fhir.Decode([]byte(in))
		if err != nil {
			t.Fatalf("Decode(%q): %v", in, err)
		}
		want, err := fhir.Canonical(v)
		if err != nil {
			t.Fatalf("Canonical(%q): %v", in, err)
		}
		got, err := fhir.CanonicalJSON([]byte(in))
		if err != nil {
			t.Fatalf("CanonicalJSON(%q): %v", in, err)
		}
		if string(got) != string(want) {
			t.Errorf("CanonicalJSON(%q) = %q, Canonical(Decode) = %q", in, got, want)
		}
	}
}

func TestCanonicalIgnoresLayout(t *testing.T) {
	tests := []struct {
		name string
		a, b string
	}{
		{
			"member order and whitespace",
			`{"resourceType":"Patient","id":"p1","name":[{"family":"F","given":["G"]}]}`,
			"{\n  \"name\" : [ { \"given\" : [ \"G\" ] , \"family\" : \"F\" } ],\n  \"id\" : \"p1\",\n  \"resourceType\" : \"Patient\"\n}\n",
		},
		{
			"escape spelling",
			`{"a":"é/\u2028","\u0062":"\u0041"}`,
			`{"b":"A","a":"\u00e9\/` + "\u2028" + `"}`,
		},
		{
			"control character spelling",
			`{"a":"\u000a\u001F"}`,
			`{"a":"\n\u001f"}`,
		},
		{
			"nested order",
			`{"x":{"b":[{"d":1,"c":2}],"a":true}}`,
			`{"x":{"a":true,"b":[{"c":2,"d":1}]}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := fhir.CanonicalJSON([]byte(tt.a))
			if err != nil {
				t.Fatal(err)
			}
			cb, err := fhir.CanonicalJSON([]byte(tt.b))
			if err != nil {
				t.Fatal(err)
			}
			if string(ca) != string(cb) {
				t.Errorf("same JSON, different canonical bytes:\n%q\n%q", ca, cb)
			}
		})
	}
}

// TestCanonicalKeepsNumberSpelling: numbers are not values but lexemes.
// 1.5 and 1.50 differ in FHIR (precision), so they must commit differently.
func TestCanonicalKeepsNumberSpelling(t *testing.T) {
	a, err := fhir.CanonicalJSON([]byte(`{"value":1.5}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := fhir.CanonicalJSON([]byte(`{"value":1.50}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) == string(b) {
		t.Errorf("1.5 and 1.50 have the same canonical bytes %q", a)
	}
}

const marker = "ZZSECRETZZ"

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ``},
		{"only whitespace", " \n\t"},
		{"syntax error", `{"name":"ZZSECRETZZ",}`},
		{"unterminated", `{"name":"ZZSECRETZZ`},
		{"bad literal", `{"name":ZZSECRETZZ}`},
		{"invalid UTF-8 in string", "{\"name\":\"ZZSECRETZZ\xff\"}"},
		{"invalid UTF-8 in name", "{\"ZZSECRETZZ\xc3\":1}"},
		{"overlong UTF-8", "{\"name\":\"ZZSECRETZZ\xc0\xaf\"}"},
		{"UTF-8 surrogate", "{\"name\":\"ZZSECRETZZ\xed\xa0\x80\"}"},
		{"trailing object", `{"name":"ZZSECRETZZ"}{}`},
		{"trailing garbage", `{"name":"a"} ZZSECRETZZ`},
		{"two values", `1 2`},
		{"duplicate name", `{"ZZSECRETZZ":1,"ZZSECRETZZ":2}`},
		{"duplicate name, same value", `{"a":"ZZSECRETZZ","a":"ZZSECRETZZ"}`},
		{"duplicate via escape", `{"a":"ZZSECRETZZ","\u0061":2}`},
		{"duplicate via escaped non-ASCII", `{"é":"ZZSECRETZZ","\u00e9":2}`},
		{"duplicate via solidus escape", `{"a/b":"ZZSECRETZZ","a\/b":2}`},
		{"nested duplicate", `{"name":[{"family":"ZZSECRETZZ","given":[],"family":"x"}]}`},
		{"deeply nested duplicate", `{"a":{"b":{"c":[[{"d":{"e":1,"e":"ZZSECRETZZ"}}]]}}}`},
		{"duplicate after string with braces", `{"s":"{\"a\":1,","a":1,"a":"ZZSECRETZZ"}`},
		{"too deep", strings.Repeat("[", 20000) + `"ZZSECRETZZ"` + strings.Repeat("]", 20000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := fhir.Decode([]byte(tt.in))
			if !errors.Is(err, fhir.ErrInvalidJSON) {
				t.Fatalf("Decode = %v, %v; want ErrInvalidJSON", v, err)
			}
			if strings.Contains(err.Error(), marker) {
				t.Errorf("Decode error quotes the input: %q", err)
			}
			if _, err := fhir.CanonicalJSON([]byte(tt.in)); !errors.Is(err, fhir.ErrInvalidJSON) {
				t.Errorf("CanonicalJSON err = %v, want ErrInvalidJSON", err)
			}
		})
	}
}

// TestDecodeAccepts guards the repeated-name check against false alarms:
// strings that look like members must not confuse it.
func TestDecodeAccepts(t *testing.T) {
	tests := []string{
		`{"a":1,"b":{"a":2}}`,
		`[{"a":1},{"a":2}]`,
		`{"a":"a","b":"a"}`,
		`{"a":"\"a\":1,\"a\":2"}`,
		`{"a\\":1,"a":2}`,
		`{"a\"":1,"a":2}`,
		`{"a":{"a":{"a":1}}}`,
		`{"A":1,"a":2}`,
		`{"é":1,"e\u0301":2}`,
		`{"x":[1,{"y":2},"}",{"y":3}],"y":4}`,
		` "top" `,
		`{}`,
	}
	for _, in := range tests {
		if _, err := fhir.Decode([]byte(in)); err != nil {
			t.Errorf("Decode(%q): %v", in, err)
		}
	}
}

func TestDecodeTree(t *testing.T) {
	v, err := fhir.Decode([]byte(`{"n":1.50,"s":"x","b":true,"z":null,"a":[1],"o":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"n": json.Number("1.50"),
		"s": "x",
		"b": true,
		"z": nil,
		"a": []any{json.Number("1")},
		"o": map[string]any{},
	}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("Decode tree (-want +got):\n%s", diff)
	}
}

func TestCanonicalRejectsUnsupported(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"float64", map[string]any{"a": 1.5}},
		{"int", []any{1}},
		{"typed map", map[string]string{"a": "b"}},
		{"struct", struct{}{}},
		{"invalid UTF-8 value", map[string]any{"id": "a\xffb"}},
		{"invalid UTF-8 name", map[string]any{"a\xff": "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := fhir.Canonical(tt.v); err == nil {
				t.Errorf("Canonical(%#v) = %q, want error", tt.v, b)
			}
		})
	}
}

// TestStoredVersionExample is the worked example of docs/canonical-form.md:
// what the client sent, what the server stores, and the bytes committed.
// anchor's TestCommitVectors commits these same bytes.
func TestStoredVersionExample(t *testing.T) {
	const sent = `{
  "resourceType": "Observation",
  "status": "final",
  "code": {"text": "Body weight"},
  "subject": {"reference": "urn:uuid:7f9c2b1e-3c4d-4e5f-8a6b-0c1d2e3f4a5b"},
  "valueQuantity": {"value": 72.50, "unit": "kg"}
}`
	const want = `{"code":{"text":"Body weight"},"id":"obs-1","meta":{"lastUpdated":"2025-01-02T03:04:05.678901Z","versionId":"1"},"resourceType":"Observation","status":"final","subject":{"reference":"Patient/pat-1"},"valueQuantity":{"unit":"kg","value":72.50}}`

	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Parse([]byte(sent))
	if err != nil {
		t.Fatal(err)
	}
	err = fhir.RewriteReferences(r.Tree, r.Type, func(_, ref string) (string, error) {
		if ref != "urn:uuid:7f9c2b1e-3c4d-4e5f-8a6b-0c1d2e3f4a5b" {
			t.Errorf("unexpected reference %q", ref)
		}
		return "Patient/pat-1", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 678901234 ns: lastUpdated keeps microseconds, truncated.
	r.SetVersion("obs-1", 1, time.Date(2025, 1, 2, 4, 4, 5, 678901234, time.FixedZone("CET", 3600)))
	got, err := fhir.Canonical(r.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("stored version canonical bytes changed; anchored hashes would break:\ngot  %s\nwant %s", got, want)
	}
}

// TestTombstoneCanonical pins the bytes committed for a deletion.
func TestTombstoneCanonical(t *testing.T) {
	tree := fhir.Tombstone("Observation", "obs-1", 2, time.Date(2025, 1, 3, 0, 0, 0, 0, time.FixedZone("CET", 3600)))
	got, err := fhir.Canonical(tree)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"deleted":true,"id":"obs-1","meta":{"lastUpdated":"2025-01-02T23:00:00.000000Z","versionId":"2"},"resourceType":"Observation"}`
	if string(got) != want {
		t.Errorf("tombstone canonical bytes changed; anchored hashes would break:\ngot  %s\nwant %s", got, want)
	}
}

// BenchmarkCanonical: the canonical bytes of every resource of one Synthea
// Bundle (one op), as a write computes them for the version and its copy.
func BenchmarkCanonical(b *testing.B) {
	resources := firstSyntheaResources(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range resources {
			if _, err := fhir.Canonical(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(resources)), "ns/resource")
}

// firstSyntheaResources returns the resources of the first Synthea Bundle,
// decoded: what the benchmarks of canonical bytes work on.
func firstSyntheaResources(b *testing.B) []any {
	data, err := os.ReadFile(shareddata.Files(b, "synthea")[0])
	if err != nil {
		b.Fatal(err)
	}
	tree, err := fhir.DecodeObject(data)
	if err != nil {
		b.Fatal(err)
	}
	var resources []any
	for _, e := range tree["entry"].([]any) {
		resources = append(resources, e.(map[string]any)["resource"])
	}
	return resources
}
