package cohort

import (
	"errors"
	"testing"
)

// FuzzParseQuery: ParseQuery never panics, fails only with a *QueryError,
// keeps its errors short, and gives a parsed query a stable fingerprint and
// shape that Match can evaluate.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		diabetesQuery,
		`{"criteria":{"gender":"female"},"breakdown":["gender","ageBand"]}`,
		`{"criteria":{"all":[{"condition":{},"as":"a"},{"any":[{"not":{"procedure":{},"within":{"of":"a","to":{"days":-1}}}}]}]}}`,
		`{"criteria":{"all":[{"condition":{},"as":"a","within":{"of":"b"}},{"procedure":{},"as":"b","within":{"of":"a"}}]}}`,
		`{"criteria":{"observation":{"value":{"gt":1e308,"lt":-0},"unit":"%","date":{"ge":"0001-01-01","le":"9999-12-31"}}}}`,
		`{"criteria":{"age":{"eq":90}}}`,
		`{"criteria":{"not":{"not":{"not":{"deceased":true}}}}}`,
		`{"criteria":[[[[[[[[[[]]]]]]]]]]}`,
		`{"criteria":{"gender":"\u0000\ud800"}}`,
		`{}`, `[]`, `null`, ``, `{"criteria":`,
	} {
		f.Add([]byte(s))
	}
	ix := fixture(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		q, err := ParseQuery(in)
		if err != nil {
			var qe *QueryError
			if !errors.As(err, &qe) || !errors.Is(err, ErrInvalidQuery) {
				t.Fatalf("error %T %v is not a *QueryError", err, err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		q2, err := ParseQuery(in)
		if err != nil || q.Fingerprint() != q2.Fingerprint() || q.Shape() != q2.Shape() {
			t.Fatalf("parsing twice differs: %v", err)
		}
		if len(q.Fingerprint()) != 64 || len(q.Shape()) != 64 {
			t.Fatal("fingerprint or shape is not hex SHA-256")
		}
		// Decision records keep CriteriaJSON; the overlap control parses it
		// back and must find the same query.
		q3, err := ParseQuery([]byte(`{"criteria":` + string(q.CriteriaJSON()) + `}`))
		if err != nil || q3.Fingerprint() != q.Fingerprint() {
			t.Fatalf("CriteriaJSON %s does not parse back to the same query: %v", q.CriteriaJSON(), err)
		}
		n := ix.Count(q, at, allow)
		if m := ix.Match(q, at, allow); len(m) != n {
			t.Fatalf("Count %d, Match %d", n, len(m))
		}
		if len(q.Breakdown) > 0 {
			cells, err := ix.Breakdown(q, at, allow)
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, c := range cells {
				total += c.Count
			}
			if total != n {
				t.Fatalf("cells add up to %d, Count %d", total, n)
			}
		}
	})
}
