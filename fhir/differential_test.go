package fhir_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// The differential tests hold Parse (validateTree) to jsonformat, which
// ParseJSONFormat still asks: the same verdict and, on refusal, the same
// errors (path, kind and reason) for every input.

// verdict summarizes one Parse result: "ok <type>" or its sorted errors.
func verdict(r *fhir.Resource, err error) []string {
	if err == nil {
		return []string{"ok " + r.Type}
	}
	var ves fhir.ValidationErrors
	if !errors.As(err, &ves) {
		return []string{"error " + err.Error()}
	}
	out := make([]string, 0, len(ves))
	for _, e := range ves {
		kind := "invalid"
		switch {
		case errors.Is(e, fhir.ErrInvalidJSON):
			kind = "json"
		case errors.Is(e, fhir.ErrUnknownResource):
			kind = "unknown-type"
		}
		out = append(out, fmt.Sprintf("%s | %s | %s", e.Path, kind, e.Reason))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// differ returns a description of how Parse and jsonformat disagree on in,
// or "". Where jsonformat's own answer varies between runs (it reads members
// in Go map order, so two choice options or names equal up to their first
// letter can be reported at either), only the verdict must agree.
func differ(p *fhir.Parser, in []byte) string {
	ours := verdict(p.Parse(in))
	theirs := verdict(p.ParseJSONFormat(in))
	if slices.Equal(ours, theirs) {
		return ""
	}
	accepted := func(v []string) bool { return strings.HasPrefix(v[0], "ok ") }
	if accepted(ours) && !accepted(theirs) {
		return fmt.Sprintf("we accept what jsonformat refuses:\n ours:       %q\n jsonformat: %q", ours, theirs)
	}
	// Both read members in Go map order, so where the order matters (two
	// choice options, names equal up to their first letter) either may
	// answer otherwise on another run: one of our answers must be one of
	// jsonformat's, or, where jsonformat's verdict itself varies, we must
	// be the stricter.
	oursSeen, theirsSeen := map[string]bool{}, map[string]bool{}
	key := func(v []string) string { return strings.Join(v, "\n") }
	oursSeen[key(ours)], theirsSeen[key(theirs)] = true, true
	for i := 0; i < 32; i++ {
		oursSeen[key(verdict(p.Parse(in)))] = true
		again := verdict(p.ParseJSONFormat(in))
		theirsSeen[key(again)] = true
		if accepted(again) != accepted(theirs) && !accepted(ours) {
			return ""
		}
	}
	for k := range oursSeen {
		if theirsSeen[k] {
			return ""
		}
	}
	return fmt.Sprintf("errors differ:\n ours:       %q\n jsonformat: %q", ours, theirs)
}

func checkSame(t *testing.T, p *fhir.Parser, name string, in []byte) {
	t.Helper()
	if d := differ(p, in); d != "" {
		t.Errorf("%s: %s\ninput: %.600s", name, d, in)
	}
}

// corpusInputs reads the committed fuzz corpora (go test fuzz v1 files).
func corpusInputs(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	dirs, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*"))
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(data), "\n")
			if len(lines) < 2 || lines[0] != "go test fuzz v1" {
				continue
			}
			lit, ok := strings.CutPrefix(strings.TrimSpace(lines[1]), "[]byte(")
			if !ok {
				continue
			}
			s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[f] = []byte(s)
		}
	}
	return out
}

// badInputBodies are the resource bodies of gateway/badinput_test.go's table
// that reach the parser, with its marker standing in for PHI.
func badInputBodies() map[string][]byte {
	const marker = "Quillfeather"
	patient := func(extra string) []byte {
		return []byte(`{"resourceType":"Patient","name":[{"family":"` + marker + `"}]` + extra + `}`)
	}
	txn := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	goodPatient := `{"resourceType":"Patient","name":[{"family":"` + marker + `"}]}`
	big := append(append([]byte(`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">`),
		bytes.Repeat([]byte("x"), 2<<20)...), []byte(`</div>"}}`)...)
	return map[string][]byte{
		"bad JSON":             []byte(`{"resourceType":"Patient","name":[{"family":"` + marker),
		"JSON array":           []byte(`[{"resourceType":"Patient"}]`),
		"invalid UTF-8":        []byte("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}"),
		"duplicate member":     []byte(`{"resourceType":"Patient","gender":"male","gender":"female"}`),
		"trailing data":        []byte(`{"resourceType":"Patient"} {"x":1}`),
		"unknown resourceType": []byte(`{"resourceType":"` + marker + `"}`),
		"invalid date":         patient(`,"birthDate":"1970-13-45` + marker + `"`),
		"unknown element":      patient(`,"favouriteColour":"` + marker + `"`),
		"surname element":      patient(`,"` + strings.ToLower(marker) + `":"x"`),
		"reference SSN":        []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/John ` + marker + ` 078-05-1120"}}`),
		"reference no type":    []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"` + marker + `"}}`),
		"system name":          patient(`,"identifier":[{"system":"Dr ` + marker + `","value":"1"}]`),
		"extension url":        patient(`,"extension":[{"url":"http://x.org/` + marker + ` family","valueString":"x"}]`),
		"entry URL name":       txn(`{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/John ` + marker + `"}}`),
		"wrong primitive type": patient(`,"active":"` + marker + `"`),
		"invalid code":         patient(`,"gender":"` + marker + `"`),
		"missing required":     []byte(`{"resourceType":"Observation","status":"final","note":[{"text":"` + marker + `"}]}`),
		"reference wrong type": []byte(`{"resourceType":"Observation","status":"final","code":{"text":"` + marker + `"},"subject":{"reference":"Medication/1"}}`),
		"too deeply nested":    []byte(`{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, 100) + strings.Repeat(`]}`, 100) + `]}`),
		"document Bundle":      []byte(`{"resourceType":"Bundle","type":"document","entry":[{"resource":` + goodPatient + `}]}`),
		"entry no request":     txn(`{"resource":` + goodPatient + `}`),
		"2 MiB narrative":      big,
	}
}

// sharedResources returns every HL7 example, every Synthea Bundle and every
// resource in them, by name.
func sharedResources(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for _, sub := range []string{"hl7-examples", "synthea"} {
		for _, f := range shareddata.Files(t, sub) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(f)
			out[name] = data
			var b struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
			}
			if json.Unmarshal(data, &b) != nil {
				continue
			}
			for i, e := range b.Entry {
				if len(e.Resource) > 0 {
					out[fmt.Sprintf("%s#%d", name, i)] = e.Resource
				}
			}
		}
	}
	return out
}

func TestParseDifferentialCorpus(t *testing.T) {
	p := newParser(t)
	for i, s := range fuzzSeeds {
		checkSame(t, p, fmt.Sprintf("seed %d", i), []byte(s))
	}
	for name, in := range corpusInputs(t) {
		checkSame(t, p, name, in)
	}
	for name, in := range badInputBodies() {
		checkSame(t, p, name, in)
	}
}

// TestParseDifferentialShared compares every HL7 example, every resource
// of every sixth Synthea Bundle and the first Bundle whole; with
// FHIRANCHOR_DIFF_FULL=1 every Synthea resource and every Bundle whole
// (about two minutes on a quiet machine).
func TestParseDifferentialShared(t *testing.T) {
	p := newParser(t)
	full := os.Getenv("FHIRANCHOR_DIFF_FULL") == "1"
	bundles := map[string]int{}
	for _, f := range shareddata.Files(t, "synthea") {
		bundles[filepath.Base(f)] = len(bundles)
	}
	for name, in := range sharedResources(t) {
		file, _, entry := strings.Cut(name, "#")
		if i, ok := bundles[file]; ok && !full && (i%6 != 0 || !entry && i != 0) {
			continue
		}
		checkSame(t, p, name, in)
	}
}

// envInt reads a tuning knob of the long differential runs.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// TestParseDifferentialMutations breaks valid resources the ways clients and
// attackers do, at random elements, and compares each.
func TestParseDifferentialMutations(t *testing.T) {
	p := newParser(t)
	res := sharedResources(t)
	names := make([]string, 0, len(res))
	for name, in := range res {
		if len(in) < 64<<10 { // whole Synthea Bundles are slow to mutate one by one
			names = append(names, name)
		}
	}
	slices.Sort(names)
	// FHIRANCHOR_DIFF_SEED and FHIRANCHOR_DIFF_MUTATIONS run other and
	// longer campaigns than the default one.
	rng := rand.New(rand.NewSource(int64(envInt("FHIRANCHOR_DIFF_SEED", 18))))
	n := envInt("FHIRANCHOR_DIFF_MUTATIONS", 1500)
	for i := 0; i < n; i++ {
		name := names[rng.Intn(len(names))]
		in, how := mutate(rng, res[name])
		if in == nil {
			continue
		}
		checkSame(t, p, name+" "+how, in)
	}
}

// mutate applies one random change to a JSON resource: it picks an element
// anywhere in the tree and drops it, changes its type or format, renames
// it, nests it, or adds something next to it.
func mutate(rng *rand.Rand, in []byte) ([]byte, string) {
	var tree any
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	if dec.Decode(&tree) != nil {
		return nil, ""
	}
	// Collect every (container, key or index) slot.
	type slot struct {
		obj  map[string]any
		key  string
		arr  []any
		idx  int
		path string
	}
	var slots []slot
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				slots = append(slots, slot{obj: x, key: k, path: path + "." + k})
				walk(c, path+"."+k)
			}
		case []any:
			for i, c := range x {
				slots = append(slots, slot{arr: x, idx: i, path: fmt.Sprintf("%s[%d]", path, i)})
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(tree, "")
	if len(slots) == 0 {
		return nil, ""
	}
	s := slots[rng.Intn(len(slots))]
	get := func() any {
		if s.obj != nil {
			return s.obj[s.key]
		}
		return s.arr[s.idx]
	}
	set := func(v any) {
		if s.obj != nil {
			s.obj[s.key] = v
		} else {
			s.arr[s.idx] = v
		}
	}
	values := []any{
		nil, true, false, json.Number("0"), json.Number("-1"), json.Number("1.5"), json.Number("1e3"),
		json.Number("2147483647"), json.Number("2147483648"), json.Number("4294967296"), json.Number("-0"),
		json.Number("123456789012345678901234567890"), json.Number("1E-400"),
		"", " ", "x", "a b", "a  b", " a", "a\tb", "\x01", "\u2028", "\U0001F642", "é",
		"1970", "1970-01", "1970-01-01", "1970-13-01", "1970-02-30", "1970-01-01T10:00:00Z", "1970-01-01T10:00:00+14:00",
		"1970-01-01T10:00:00.123456789-03:30", "1970-01-01T10:00", "1970-01-01T25:00:00Z", "-0001", "10:00:00", "24:00:00",
		"12:30:00.5", "urn:oid:1.2.3", "urn:oid:1.02", "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
		"urn:uuid:0F8FAD5B-D9CB-469F-A165-70867728950E", "http://x.org/a b", "http://[::1", "%zz", ":x", "a:b",
		"Patient/1", "Patient/1/_history/2", "Patient/1/_history/x y", "Patient/", "Organization/1", "Medication/x",
		"Resource/1", "#", "#c1", "Foo/1", "http://h/fhir/Patient/1", "Patient?name=x",
		"final", "FINAL", "entered-in-error", "entered_in_error", "male", "MALE", "fınal",
		"aGVsbG8=", "aGVs bG8=", "aGV sbG8=", "!!!!", strings.Repeat("a", 65),
		map[string]any{}, map[string]any{"extension": []any{map[string]any{"url": "http://x", "valueString": "v"}}},
		map[string]any{"extension": []any{map[string]any{"valueString": "v"}}},
		map[string]any{"value": "x"}, map[string]any{"id": "i"}, map[string]any{"resourceType": "Patient"},
		map[string]any{"reference": "Patient/1"}, map[string]any{"reference": "#x", "fragment": "y"},
		[]any{}, []any{nil}, []any{"x"}, []any{map[string]any{}},
	}
	switch op := rng.Intn(12); op {
	case 0: // drop it
		if s.obj != nil {
			delete(s.obj, s.key)
		} else if len(s.arr) > 0 {
			s.arr[s.idx] = nil
		}
		return marshal(tree), "drop " + s.path
	case 1, 2, 3: // another value
		v := values[rng.Intn(len(values))]
		set(v)
		return marshal(tree), fmt.Sprintf("set %s = %v", s.path, v)
	case 4: // wrap in an array
		set([]any{get()})
		return marshal(tree), "wrap " + s.path
	case 5: // unwrap an array
		if a, ok := get().([]any); ok && len(a) > 0 {
			set(a[0])
			return marshal(tree), "unwrap " + s.path
		}
		return nil, ""
	case 6: // rename: unknown, capitalized, "_" twin, choice type
		if s.obj == nil {
			return nil, ""
		}
		v := s.obj[s.key]
		delete(s.obj, s.key)
		names := []string{"unknownElement", strings.ToUpper(s.key[:1]) + s.key[1:], "_" + s.key, s.key + "String",
			s.key + "Quantity", s.key + "Reference", "resourceType", "fhir_comments", "contained", "extension", "modifierExtension"}
		nk := names[rng.Intn(len(names))]
		s.obj[nk] = v
		return marshal(tree), "rename " + s.path + " to " + nk
	case 7: // add a sibling
		if s.obj == nil {
			return nil, ""
		}
		siblings := []string{"_" + s.key, strings.ToUpper(s.key[:1]) + s.key[1:], "valueString", "valueQuantity", "valueBoolean",
			"_valueString", "id", "_id", "extension", "reference", "fragment", "resourceType", "display"}
		nk := siblings[rng.Intn(len(siblings))]
		s.obj[nk] = values[rng.Intn(len(values))]
		return marshal(tree), "add " + nk + " beside " + s.path
	case 8: // nest deep
		v := get()
		depth := 20 + rng.Intn(50)
		for i := 0; i < depth; i++ {
			v = map[string]any{"url": "http://x", "extension": []any{v}}
		}
		set(v)
		return marshal(tree), fmt.Sprintf("nest %d %s", depth, s.path)
	case 9: // contain a resource
		if s.obj == nil {
			return nil, ""
		}
		s.obj["contained"] = []any{map[string]any{"resourceType": "Organization", "id": "o", s.key: s.obj[s.key]}}
		return marshal(tree), "contain beside " + s.path
	case 10: // change a string's case or add whitespace
		str, ok := get().(string)
		if !ok {
			return nil, ""
		}
		forms := []string{strings.ToUpper(str), " " + str, str + " ", str + "\n", strings.ReplaceAll(str, "-", "_"), str + "/_history/1", "#" + str}
		set(forms[rng.Intn(len(forms))])
		return marshal(tree), "restyle " + s.path
	default: // a number's format
		if _, ok := get().(json.Number); !ok {
			return nil, ""
		}
		set(values[3+rng.Intn(10)])
		return marshal(tree), "renumber " + s.path
	}
}

func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// FuzzParseDifferential: for any input, Parse and jsonformat agree.
func FuzzParseDifferential(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, in := range badInputBodies() {
		if len(in) < 4096 {
			f.Add(in)
		}
	}
	for _, s := range edgeCases {
		f.Add([]byte(s))
	}
	hl7Seeds(f)
	p := newParser(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if d := differ(p, in); d != "" {
			t.Fatalf("%s\ninput: %q", d, in)
		}
	})
}

// edgeCases are hand-written inputs at the edges of what jsonformat
// checks; they seed FuzzParseDifferential too.
var edgeCases = []string{
	// integers, positiveInt, unsignedInt, decimals
	`{"resourceType":"Patient","multipleBirthInteger":2147483647}`,
	`{"resourceType":"Patient","multipleBirthInteger":2147483648}`,
	`{"resourceType":"Patient","multipleBirthInteger":-2147483648}`,
	`{"resourceType":"Patient","multipleBirthInteger":-0}`,
	`{"resourceType":"Patient","multipleBirthInteger":1.0}`,
	`{"resourceType":"Patient","multipleBirthInteger":1e2}`,
	`{"resourceType":"Patient","multipleBirthInteger":"1"}`,
	`{"resourceType":"Patient","multipleBirthInteger":null}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":99999999999999999999999}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.0"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":null}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":-0.0e-0}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"c"},"valueSampledData":{"origin":{"value":1},"period":1,"dimensions":0,"data":"1 2"}}]}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"c"},"valueSampledData":{"origin":{"value":1},"period":1,"dimensions":2147483648}}]}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"c"},"valueSampledData":{"origin":{"value":1},"period":1,"dimensions":4294967296}}]}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"c"},"valueSampledData":{"origin":{"value":1},"period":1,"dimensions":1}}],"referenceRange":[{"age":{"low":{"value":1}}}]}`,
	`{"resourceType":"Patient","photo":[{"size":0}]}`,
	`{"resourceType":"Patient","photo":[{"size":4294967295}]}`,
	`{"resourceType":"Patient","photo":[{"size":01}]}`,
	`{"resourceType":"Patient","photo":[{"size":-1}]}`,
	// base64Binary
	`{"resourceType":"Patient","photo":[{"data":"aGVsbG8="}]}`,
	`{"resourceType":"Patient","photo":[{"data":"aGVs bG8="}]}`,
	`{"resourceType":"Patient","photo":[{"data":"aGVs  bG8= "}]}`,
	`{"resourceType":"Patient","photo":[{"data":"aGVsbG8"}]}`,
	`{"resourceType":"Patient","photo":[{"data":"\u0061GVsbG8="}]}`,
	`{"resourceType":"Patient","photo":[{"data":null}]}`,
	`{"resourceType":"Patient","photo":[{"data":""}]}`,
	// dates and times
	`{"resourceType":"Patient","birthDate":"1970-02-29"}`,
	`{"resourceType":"Patient","birthDate":"1972-02-29"}`,
	`{"resourceType":"Patient","birthDate":"-0001"}`,
	`{"resourceType":"Patient","birthDate":"1970-00"}`,
	`{"resourceType":"Patient","birthDate":null}`,
	`{"resourceType":"Patient","birthDate":19700101}`,
	`{"resourceType":"Patient","deceasedDateTime":"1970-01-01T00:00:00.1234567+14:00"}`,
	`{"resourceType":"Patient","deceasedDateTime":"1970-01-01T00:00:60Z"}`,
	`{"resourceType":"Patient","deceasedDateTime":"1970-01-01T24:00:00Z"}`,
	`{"resourceType":"Patient","deceasedDateTime":"1970-01-01T00:00:00"}`,
	`{"resourceType":"Patient","meta":{"lastUpdated":"1970-01-01"}}`,
	`{"resourceType":"Patient","meta":{"lastUpdated":"1970-01-01T00:00:00.000Z"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueTime":"23:59:59.999"}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueTime":"24:00:00"}`,
	// ids, codes, oids, uuids, uris, strings
	`{"resourceType":"Patient","id":""}`,
	`{"resourceType":"Patient","id":null}`,
	`{"resourceType":"Patient","id":"a_b"}`,
	`{"resourceType":"Patient","_id":{"extension":[{"url":"http://x","valueString":"v"}]}}`,
	`{"resourceType":"Patient","id":"ok","_id":{"extension":[{"url":"http://x","valueString":"v"}]}}`,
	`{"resourceType":"Patient","language":" en"}`,
	`{"resourceType":"Patient","language":"en  US"}`,
	`{"resourceType":"Patient","language":"en\u00a0US"}`,
	`{"resourceType":"Patient","implicitRules":"http://[::1"}`,
	`{"resourceType":"Patient","implicitRules":":x"}`,
	`{"resourceType":"Patient","implicitRules":"%zz"}`,
	`{"resourceType":"Patient","name":[{"family":"a\u0000b"}]}`,
	`{"resourceType":"Patient","name":[{"family":"a\u000bb"}]}`,
	`{"resourceType":"Patient","name":[{"family":"\ud800"}]}`,
	`{"resourceType":"Patient","name":[{"family":"\udc00\ud800"}]}`,
	`{"resourceType":"Patient","name":[{"family":"\u202e\ufeff"}]}`,
	`{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"x"}]}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"\u0007"}`,
	`{"resourceType":"Parameters","parameter":[{"name":"a","valueOid":"urn:oid:1.02"}]}`,
	`{"resourceType":"Parameters","parameter":[{"name":"a","valueUuid":"urn:uuid:0F8FAD5B-D9CB-469F-A165-70867728950E"}]}`,
	`{"resourceType":"Parameters","parameter":[{"name":"a","valueId":"x y"}]}`,
	`{"resourceType":"Parameters","parameter":[{"name":"a","resource":{"resourceType":"Patient","id":"x y"}}]}`,
	`{"resourceType":"Parameters","parameter":[{"name":"a","resource":{"resourceType":"Nope"}}]}`,
	`{"resourceType":"Parameters","parameter":[{"name":"a","resource":{"resourceType":"patient"}}]}`,
	// codes bound to required value sets
	`{"resourceType":"Patient","gender":"MALE"}`,
	`{"resourceType":"Patient","gender":"Male"}`,
	`{"resourceType":"Patient","gender":""}`,
	`{"resourceType":"Patient","gender":null}`,
	`{"resourceType":"Patient","gender":1}`,
	`{"resourceType":"Observation","status":"entered_in_error","code":{"text":"x"}}`,
	`{"resourceType":"Observation","status":"fınal","code":{"text":"x"}}`,
	`{"resourceType":"Observation","status":"INVALID_UNINITIALIZED","code":{"text":"x"}}`,
	// arrays, objects, nulls, primitive extensions
	`{"resourceType":"Patient","name":{"family":"x"}}`,
	`{"resourceType":"Patient","name":[["x"]]}`,
	`{"resourceType":"Patient","name":null}`,
	`{"resourceType":"Patient","name":[]}`,
	`{"resourceType":"Patient","name":[null]}`,
	`{"resourceType":"Patient","active":[true]}`,
	`{"resourceType":"Patient","active":{"value":true}}`,
	`{"resourceType":"Patient","_active":{"id":"a"}}`,
	`{"resourceType":"Patient","_active":[{"id":"a"}]}`,
	`{"resourceType":"Patient","_birthDate":{"extension":[{"valueString":"x"}]}}`,
	`{"resourceType":"Patient","_birthDate":{"valueUs":1}}`,
	`{"resourceType":"Patient","_birthDate":"1970"}`,
	`{"resourceType":"Patient","_name":[{"family":"x"}]}`,
	`{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[null]}]}`,
	`{"resourceType":"Patient","name":[{"given":["a"],"_given":[{"id":"x y"}]}]}`,
	`{"resourceType":"Patient","name":[{"_given":[{"extension":[{"url":"u"}]}]}]}`,
	`{"resourceType":"Patient","code":{}}`,
	`{"resourceType":"Patient","Active":true}`,
	`{"resourceType":"Patient","Active":true,"active":false}`,
	`{"resourceType":"Patient","managingOrganization":{"reference":"Organization/1"},"ManagingOrganization":{"reference":"Organization/2"}}`,
	`{"resourceType":"Patient","resourceType":"Patient"}`,
	`{"resourceType":"Patient","meta":{"resourceType":"Patient"}}`,
	`{"resourceType":"Patient","":1}`,
	`{"resourceType":"Patient","_":1}`,
	`{"resourceType":"Patient","fhir_comments":["x"]}`,
	// choice types
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","_valueString":{"id":"i"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"_valueString":{"id":"i"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"_valueQuantity":{"id":"i"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueFoo":1}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"value":1}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"ValueString":"a"}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":null}`,
	`{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationReference":{"reference":"Patient/1"}}`,
	// references
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Organization/1/_history/x y"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1/_history/"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Resource/1"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"#\u0001"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1","_reference":{"id":"x","extension":[{"valueString":"v"}]}}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"x","_reference":{"extension":[{"valueString":"v"}]}}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"_reference":{"extension":[{"valueString":"v"}]}}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"#a","fragment":"b"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"patientId":"1"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"fragment":"\u0001"}}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"performer":[{"reference":"Patient/1"},{"reference":"Medication/2"},{"reference":"Group/3"}]}`,
	// contained resources
	`{"resourceType":"Patient","contained":[{"resourceType":"Observation","status":"final"}]}`,
	`{"resourceType":"Patient","contained":[{"resourceType":"Observation","status":"nope"}]}`,
	`{"resourceType":"Patient","contained":[{"resourceType":"Nope"}]}`,
	`{"resourceType":"Patient","contained":[{"id":"x"}]}`,
	`{"resourceType":"Patient","contained":[{"resourceType":1}]}`,
	`{"resourceType":"Patient","contained":[{"resourceType":null}]}`,
	`{"resourceType":"Patient","contained":[null]}`,
	`{"resourceType":"Patient","contained":["x"]}`,
	`{"resourceType":"Patient","Contained":[{"resourceType":"Organization"}]}`,
	`{"resourceType":"Patient","Contained":[{"typeUrl":"x","value":"y"}]}`,
	`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation"}}]}`,
	`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Medication/1"}}}]}`,
	`{"resourceType":"Bundle","type":"collection","entry":[{"resource":null}]}`,
	`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"x y"}}]}}]}`,
	// resource types
	`{}`,
	`{"resourceType":null}`,
	`{"resourceType":1}`,
	`{"resourceType":""}`,
	`{"resourceType":"patient"}`,
	`{"resourceType":"Resource"}`,
	`{"resourceType":"DomainResource"}`,
	`{"resourceType":"a.b.c"}`,
}

func TestParseDifferentialEdgeCases(t *testing.T) {
	p := newParser(t)
	for i, s := range edgeCases {
		checkSame(t, p, fmt.Sprintf("edge case %d", i), []byte(s))
	}
	// Nesting around jsonformat's limit of 64, in extensions, contained
	// resources and Bundles.
	for depth := 28; depth <= 36; depth++ {
		ext := `{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, depth) + `{"url":"http://y","valueString":"v"}` + strings.Repeat(`]}`, depth) + `]}`
		checkSame(t, p, fmt.Sprintf("extensions %d deep", depth), []byte(ext))
	}
	for depth := 28; depth <= 36; depth++ {
		b := strings.Repeat(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":`, depth/2) + `{"resourceType":"Patient"}` + strings.Repeat(`}]}`, depth/2)
		checkSame(t, p, fmt.Sprintf("Bundles %d deep", depth/2), []byte(b))
	}
}

// TestWriteDifferentialCorpus rewrites the committed seed corpus of
// FuzzParseDifferential (testdata/fuzz/FuzzParseDifferential), which every
// `go test` runs: the edge cases and the first mutations of the default
// campaign. It runs only with FHIRANCHOR_WRITE_CORPUS=1.
func TestWriteDifferentialCorpus(t *testing.T) {
	if os.Getenv("FHIRANCHOR_WRITE_CORPUS") != "1" {
		t.Skip("set FHIRANCHOR_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseDifferential")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, in []byte) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range edgeCases {
		write(fmt.Sprintf("edge-%03d", i), []byte(s))
	}
	res := sharedResources(t)
	var names []string
	for name, in := range res {
		if len(in) < 8<<10 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	rng := rand.New(rand.NewSource(18))
	for i := 0; i < 200; {
		in, _ := mutate(rng, res[names[rng.Intn(len(names))]])
		if in != nil {
			write(fmt.Sprintf("mutation-%03d", i), in)
			i++
		}
	}
}
