package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/gateway"
)

// TestReindex runs `fhiranchor reindex` on a data dir: an entry planted in
// the blind index for a resource that does not exist is dropped, and a
// second run finds nothing to do. (gateway's TestReindexSQLite and
// TestReindexPostgres cover what is rewritten.)
func TestReindex(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	reindex := func() gateway.ReindexStats {
		t.Helper()
		var out strings.Builder
		if err := run(ctx, []string{"reindex", "--data", data, "--json"}, &out, io.Discard, noEnv); err != nil {
			t.Fatalf("reindex: %v", err)
		}
		var st gateway.ReindexStats
		if err := json.Unmarshal([]byte(out.String()), &st); err != nil {
			t.Fatalf("reindex output %q: %v", out.String(), err)
		}
		return st
	}
	if st := reindex(); st != (gateway.ReindexStats{}) {
		t.Errorf("reindex of an empty vault = %+v", st)
	}
	db, err := sql.Open("sqlite", filepath.Join(data, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO postings (token, seq) VALUES (randomblob(16), 999999)`)
	db.Close()
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if st := reindex(); st != (gateway.ReindexStats{Dropped: 1}) {
		t.Errorf("reindex of a planted entry = %+v, want 1 dropped", st)
	}
	if st := reindex(); st != (gateway.ReindexStats{}) {
		t.Errorf("second reindex = %+v, want nothing done", st)
	}
	var out strings.Builder
	if err := run(ctx, []string{"reindex", "--data", data}, &out, io.Discard, noEnv); err != nil || !strings.Contains(out.String(), "resources rewritten: 0") {
		t.Errorf("reindex = %v:\n%s", err, out.String())
	}
}
