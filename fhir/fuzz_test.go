package fhir_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// fuzzSeeds are inputs both fuzzers start from, next to the corpus in
// testdata/fuzz/<FuzzName>/.
var fuzzSeeds = []string{
	`{"resourceType":"Patient"}`,
	`{"resourceType":"Patient","id":"p1","active":true,"name":[{"family":"F","given":["A",null],"_given":[null,{"id":"g"}]}],"birthDate":"1970-01-01"}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":1.000000000000000000E-245,"unit":"g"}}`,
	`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`,
	`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"}],"managingOrganization":{"reference":"#o"}}`,
	`{"resourceType":"Patient","name":[{"text":"\u2028\"\\\/\u001f\ud83d\ude42\ud800"}]}`,
	`{"resourceType":"Patient","active":true,"\u0061ctive":false}`,
	`{"resourceType":"Patient","Active":true}`,
	`{"resourceType":"Nope.x\"y"}`,
	`{"resourceType":"Patient","extension":[{"url":"u","extension":[{"url":"u","extension":[{"url":"u","valueDecimal":-0.0e-0}]}]}]}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/John Quillfeather 078-05-1120"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"https://h.example/fhir/Patient/a.b-1/_history/2"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=urn:x|1"}}`,
	`{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"1"},{"system":"Dr Quill","value":"2"}]}`,
	`{"resourceType":"Patient","meta":{"profile":["http://x/a\tb"]},"_birthDate":{"extension":[{"url":"u v"}]},"birthDate":"1970"}`,
	`{"resourceType":"Patient","quillfeather":{"given":"x"}}`,
	`[]`,
	`null`,
	"\xff",
	`{"a":1}{}`,
}

// hl7Seeds adds a handful of small official examples when the shared test
// data is present.
func hl7Seeds(f *testing.F) {
	dir := shareddata.Dir(f)
	for _, name := range []string{"Encounter-example.json", "Organization-1.json", "Bundle-bundle-request-simplesummary.json", "Condition-stroke.json", "Encounter-home.json", "Consent-consent-example-basic.json"} {
		if data, err := os.ReadFile(filepath.Join(dir, "hl7-examples", name)); err == nil {
			f.Add(data)
		}
	}
}

// FuzzParse feeds untrusted bytes to the parser. Parse must not panic, and
// what it accepts must have canonical bytes that are a fixed point of
// CanonicalJSON and that parse again to the same tree.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	hl7Seeds(f)
	p, err := fhir.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := p.Parse(in)
		if err != nil {
			return
		}
		c, err := fhir.Canonical(r.Tree)
		if err != nil {
			t.Fatalf("Canonical of parsed resource: %v", err)
		}
		cc, err := fhir.CanonicalJSON(c)
		if err != nil {
			t.Fatalf("CanonicalJSON of canonical bytes: %v", err)
		}
		if string(cc) != string(c) {
			t.Fatalf("canonical bytes are not a fixed point:\n%q\n%q", c, cc)
		}
		r2, err := p.Parse(c)
		if err != nil {
			t.Fatalf("canonical form does not re-parse: %v\n%q", err, c)
		}
		if r2.Type != r.Type {
			t.Fatalf("re-parsed type %q, was %q", r2.Type, r.Type)
		}
		c2, err := fhir.Canonical(r2.Tree)
		if err != nil {
			t.Fatal(err)
		}
		if string(c2) != string(c) {
			t.Fatalf("re-parsed canonical bytes differ:\n%q\n%q", c, c2)
		}
	})
}

// FuzzDecode: Decode never panics, and whatever it accepts is valid JSON
// whose canonical bytes are valid JSON and a fixed point.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"a":"x","\u0061":"y"}`, `{"s":"{\"a\":1,","a":1}`, `[1.50,1E+05,-0]`, `"\u0000"`, ` 0 `, `{"é":1,"e\u0301":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := fhir.Decode(in)
		if err != nil {
			return
		}
		if !json.Valid(in) {
			t.Fatalf("Decode accepted invalid JSON %q", in)
		}
		c, err := fhir.Canonical(v)
		if err != nil {
			t.Fatalf("Canonical of decoded tree: %v", err)
		}
		if !json.Valid(c) {
			t.Fatalf("canonical bytes are not JSON: %q", c)
		}
		v2, err := fhir.Decode(c)
		if err != nil {
			t.Fatalf("canonical bytes do not decode: %v\n%q", err, c)
		}
		c2, err := fhir.Canonical(v2)
		if err != nil {
			t.Fatal(err)
		}
		if string(c2) != string(c) {
			t.Fatalf("canonical bytes are not a fixed point:\n%q\n%q", c, c2)
		}
	})
}

// FuzzDecodeCanonical holds DecodeCanonical to its definition, computed the
// slow way: it accepts exactly the inputs that Decode accepts and Canonical
// writes back byte for byte, and then returns Decode's tree.
func FuzzDecodeCanonical(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
		if c, err := fhir.CanonicalJSON([]byte(s)); err == nil {
			f.Add(c)
		}
	}
	for _, s := range canonicalDecodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkDecodeCanonical(t, in)
	})
}
