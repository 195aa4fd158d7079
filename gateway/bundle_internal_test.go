package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

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
	} {
		if got := entriesOver([]byte(c.body), 5); got != c.want {
			t.Errorf("entriesOver(%.60s…) = %v, want %v", c.body, got, c.want)
		}
	}
}

// FuzzEntriesOver: the cap never misses a Bundle that a JSON decoder would
// read with more entries than the limit.
func FuzzEntriesOver(f *testing.F) {
	for _, s := range []string{`{"entry":[1,2,3]}`, `{"entry":[1],"entry":[1,2,3,4]}`, `{"a":{"entry":[1,2,3]},"entry":[]}`, `[]`, `{"entry":{"x":[1,2,3]}}`} {
		f.Add([]byte(s), 2)
	}
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		if limit < 0 || limit > 1000 {
			return
		}
		n, ok := entryCount(data)
		if ok && n > limit && !entriesOver(data, limit) {
			t.Fatalf("%d entries over a limit of %d not caught: %q", n, limit, data)
		}
	})
}
