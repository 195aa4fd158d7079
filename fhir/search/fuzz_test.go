package search

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzExtract feeds untrusted resources to Extract; its corpus is in
// testdata/fuzz/FuzzExtract. Extract must not panic, and what it returns
// must be values of the type's parameters, of their types.
func FuzzExtract(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Patient","name":[{"family":"F","given":["A",null]}],"birthDate":"1970","deceasedDateTime":"2020-01-01T00:00:00.5+01:00"}`,
		`{"resourceType":"Observation","code":{"coding":[{"system":"s","code":"c"}]},"subject":{"reference":"#p"},"contained":[{"resourceType":"Patient","id":"p"}],"valueQuantity":{"value":1E-22}}`,
		`{"resourceType":"Observation","component":[{"code":{"text":"t"},"valueRange":{"low":{"value":1}}},{"valueQuantity":{"value":-0.0}}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}}]}`,
		`{"resourceType":"CarePlan","activity":[{"detail":{"scheduledTiming":{"event":["2020"],"repeat":{"boundsPeriod":{"end":"2021-02"}}}}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var tree map[string]any
		if dec.Decode(&tree) != nil {
			return
		}
		rt, _ := tree["resourceType"].(string)
		vals, err := Extract(rt, tree)
		if err != nil {
			return
		}
		for _, v := range vals {
			p, ok := Lookup(rt, v.Param)
			if !ok || p.Type != v.Type {
				t.Fatalf("value of %s has type %s", v.Param, v.Type)
			}
			if v.Type == TypeComposite && len(v.Components) != len(p.Components) {
				t.Fatalf("%s: %d components, want %d", v.Param, len(v.Components), len(p.Components))
			}
		}
	})
}
