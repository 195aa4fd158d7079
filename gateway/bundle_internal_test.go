package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// decoderEntriesOver is entriesOver as a JSON decoder reads it (what it
// was before it scanned bytes): the differential oracle of FuzzEntriesOver.
func decoderEntriesOver(data []byte, limit int) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return false
		}
		if key != "entry" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return false
			}
			continue
		}
		t, err := dec.Token()
		if err != nil {
			return false
		}
		if t == json.Delim('{') {
			return false
		}
		if t != json.Delim('[') {
			continue
		}
		for dec.More() {
			if n++; n > limit {
				return true
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return false
			}
		}
		if _, err := dec.Token(); err != nil {
			return false
		}
	}
	return false
}

// entryCount is the oracle: how many entries the Bundle's tree holds as
// fhir.SplitBundle reads it, decoded to a map (keys exact, the last of
// repeated keys kept).
func entryCount(data []byte) (int, bool) {
	var b map[string]json.RawMessage
	if err := json.Unmarshal(data, &b); err != nil {
		return 0, false
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(b["entry"], &entries); err != nil {
		return 0, false
	}
	return len(entries), true
}

func TestEntriesOverCountsRepeatedKeys(t *testing.T) {
	small := `[{"a":1}]`
	big := "[" + strings.Repeat(`{"a":1},`, 20) + `{"a":1}]`
	for _, c := range []struct {
		body string
		want bool
	}{
		{`{"resourceType":"Bundle","entry":` + big + `}`, true},
		{`{"resourceType":"Bundle","entry":` + small + `}`, false},
		{`{"entry":` + small + `,"resourceType":"Bundle","entry":` + big + `}`, true},
		{`{"entry":null,"entry":` + big + `}`, true},
		{`{"entry":"x","entry":` + big + `}`, true},
		{`{"entr\u0079":` + big + `}`, true},
		{` { "a" : "x\"],[\\" , "b":{"entry":` + big + `}, "entry" : [ "]", {"x":"\\"} , [[]] ] } `, false},
		{`{"entry":[[` + strings.Repeat(`1,`, 20) + `1]]}`, false},
		{`{"entry":[` + strings.Repeat(`"a\"b",`, 20) + `"c"]}`, true},
		{`{"entry":[]}`, false},
	} {
		if got := entriesOver([]byte(c.body), 5); got != c.want {
			t.Errorf("entriesOver(%.60s…) = %v, want %v", c.body, got, c.want)
		}
	}
}

// FuzzEntriesOver: the cap never misses a Bundle that a JSON decoder would
// read with more entries than the limit, and on valid JSON it says what a
// JSON decoder's walk of the same keys says.
func FuzzEntriesOver(f *testing.F) {
	for _, s := range []string{`{"entry":[1,2,3]}`, `{"entry":[1],"entry":[1,2,3,4]}`, `{"a":{"entry":[1,2,3]},"entry":[]}`, `[]`, `{"entry":{"x":[1,2,3]}}`,
		`{"entr\u0079":[1,2,3]}`, `{"a":"\\\"","entry":["]",[1,[2]],{"}":"{"},3]}`, `{"entry":[true,false,null,-1.5e3]}`} {
		f.Add([]byte(s), 2)
	}
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		if limit < 0 || limit > 1000 {
			return
		}
		got := entriesOver(data, limit)
		n, ok := entryCount(data)
		if ok && n > limit && !got {
			t.Fatalf("%d entries over a limit of %d not caught: %q", n, limit, data)
		}
		if json.Valid(data) && got != decoderEntriesOver(data, limit) {
			t.Fatalf("entriesOver(%q, %d) = %v, a JSON decoder's walk says otherwise", data, limit, got)
		}
	})
}
