package sqlite

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/fhiranchor/fhiranchor/vault"
)

// TestWalkPostingsOfAnEditedFile: the postings tables are STRICT, but an
// intruder who edits the file can drop that and store what SQLite would
// have refused. A token stored as text is walked as its bytes (so the
// audit's digest finds it different from its set); a Seq that is not an
// integer fails the walk rather than being passed as something else.
func TestWalkPostingsOfAnEditedFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "vault.db")
	// A merge threshold of 1: the first commit's postings reach the tables.
	s, err := New(ctx, Config{Path: path, MergeRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, tokenRecord("a", 1, "t1", "t2")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	walk := func() ([]string, error) {
		t.Helper()
		s, err := New(ctx, Config{Path: path, MergeRows: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var got []string
		err = s.WalkPostings(ctx, func(token []byte, seq int64) { got = append(got, string(token)) })
		slices.Sort(got)
		return got, err
	}
	if got, err := walk(); err != nil || !slices.Equal(got, []string{"t1", "t2"}) {
		t.Fatalf("walk of the untouched file = %q, %v; want t1 t2", got, err)
	}
	// STRICT dropped from postings' definition, as an editor of the file can.
	edit(t, path, `PRAGMA writable_schema = ON`,
		`UPDATE sqlite_schema SET sql = replace(sql, ') STRICT, WITHOUT ROWID', ') WITHOUT ROWID') WHERE name = 'postings'`,
		`PRAGMA writable_schema = OFF`)
	edit(t, path, `INSERT INTO postings (token, seq) VALUES ('planted', 1)`)
	if got, err := walk(); err != nil || !slices.Equal(got, []string{"planted", "t1", "t2"}) {
		t.Errorf("walk with a text token = %q, %v; want it passed as its bytes", got, err)
	}
	edit(t, path, `INSERT INTO postings (token, seq) VALUES (x'00', 1.5)`)
	if _, err := walk(); err == nil {
		t.Errorf("walk with a Seq of 1.5 succeeded; want an error")
	}
}
