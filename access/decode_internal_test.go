package access

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// decodeSeeds are the golden records compacted as the gateway writes them,
// plus records decodeKindFirst must leave to decodeTwice: legacy shapes, a
// second "kind", a "query" on an access decision, trailing bytes, another
// key order, escapes in the kind, case-folded keys.
func decodeSeeds(t testing.TB) [][]byte {
	paths, err := filepath.Glob("testdata/records/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("golden records: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	for _, s := range []string{
		`{"erased":"Patient/tok-00","erasedAt":"2026-01-01T00:00:00Z","versions":3}`,
		`{"kind":"access-decision","time":"t","client":"c","action":"export","query":"q","shape":"s","allow":true,"reasons":[],"permitted":1,"refused":0,"policyVersion":1}`,
		`{"kind":"access-decision","time":"t","Query":"q"}`,
		`{"kind":"erasure","erased":"Patient/x","kind":"deidentification"}`,
		`{"kind":"erasure","erased":"Patient/x","KIND":"erasure"}`,
		`{"kind":"erasure","erased":"Patient/x","kind":""}`,
		`{"kind":"erasure","erased":"Patient/x","kind":null}`,
		`{"kind":"erasure","erased":"Patient/x"} `,
		`{"kind":"erasure","erased":"Patient/x"}{}`,
		`{"kind":"erasure","erased":"Patient/x"}x`,
		`{"erased":"Patient/x","kind":"erasure"}`,
		`{"kind":"\u0065rasure","erased":"Patient/x"}`,
		`{"kind":"erasure\"","erased":"Patient/x"}`,
		`{"kind":"mystery"}`,
		`{"kind":"erasure"`,
		`{"kind":"erasure","erased":1}`,
		`{"kind":"deidentification","rules":[{"rule":"r","method":"m","paths":["a"]}],"changes":[{"rule":"ids","path":"Observation.id","method":"cryptoHash"}]}`,
		// Where encoding/json/v2 (the one pass) and encoding/json (the
		// two) part: escapes of lone surrogates, invalid UTF-8, a repeated
		// or case-folded member, null for a slice, a raw answer with
		// spaces, numbers an int64 field cannot hold exactly.
		`{"kind":"erasure","erased":"Patient/\ud800x","erasedAt":"\udc00"}`,
		"{\"kind\":\"erasure\",\"erased\":\"Patient/\xff\"}",
		`{"kind":"erasure","erased":"a","erased":"b"}`,
		`{"kind":"erasure","Erased":"a"}`,
		`{"kind":"access-decision","reasons":null,"roles":null,"basedOn":[{"id":"x","versionId":"1"}]}`,
		`{"kind":"research-decision","answer": { "count" : 3 } ,"permitted":2}`,
		`{"kind":"policy-activation","version":1e2}`,
		`{"kind":"policy-activation","version":-0}`,
		`{"kind":"policy-activation","version":9223372036854775808}`,
		`{"kind":"consent-event","commitment":"00ff"}`,
		`{"kind":"consent-event","commitment":"zz"}`,
		`[]`, `null`, ``,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// FuzzDecode holds Decode's one-pass path to the two-pass decoding it
// short-cuts: the same kind, the same record, the same refusals.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, record []byte) {
		kind, rec, err := Decode(record)
		wantKind, wantRec, wantErr := decodeTwice(record)
		if (err == nil) != (wantErr == nil) || kind != wantKind || !reflect.DeepEqual(rec, wantRec) {
			t.Fatalf("Decode(%q) = %q %#v %v; two passes: %q %#v %v", record, kind, rec, err, wantKind, wantRec, wantErr)
		}
	})
}

// TestDecodeKindFirst: records as the gateway writes them take the one
// pass (else it would be dead code that FuzzDecode could not fault).
func TestDecodeKindFirst(t *testing.T) {
	for _, s := range decodeSeeds(t)[:6] {
		if _, _, ok := decodeKindFirst(s); !ok {
			t.Errorf("%.60s...: not decoded in one pass", s)
		}
	}
}
