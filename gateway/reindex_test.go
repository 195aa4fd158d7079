package gateway_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestReindexSQLite: blind-index rows deleted, added or repointed at rest
// are reported by the audit; Reindex rewrites exactly the damaged
// resources and drops the entries of a deleted one, after which the audit is clean, a second Reindex rewrites
// nothing, and conditional updates by identifier find their resources
// again.
func TestReindexSQLite(t *testing.T) {
	testReindex(t, "", func(t *testing.T, g *testonly.Gateway, edit string) {
		db, err := sql.Open("sqlite", filepath.Join(g.Dir, "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// The postings the edit changes must be where it looks: in
		// postings, as after the merges the small fixture never reached.
		if _, err := db.Exec(mergePostingsSQL + edit); err != nil {
			t.Fatalf("tamper: %v", err)
		}
	})
}

// TestReindexPostgres is TestReindexSQLite on PostgreSQL.
func TestReindexPostgres(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	testReindex(t, dsn, func(t *testing.T, g *testonly.Gateway, edit string) {
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		for _, stmt := range strings.Split(edit, ";") {
			if _, err := conn.Exec(t.Context(), stmt); err != nil {
				t.Fatalf("tamper: %v", err)
			}
		}
	})
}

func testReindex(t *testing.T, dsn string, tamper func(t *testing.T, g *testonly.Gateway, edit string)) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, PostgresDSN: dsn})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	patient := func(mrn, gender string) []byte {
		return []byte(`{"resourceType":"Patient","identifier":[{"system":"http://h.example/mrn","value":"` + mrn +
			`"}],"gender":"` + gender + `"}`)
	}
	ids := map[string]string{}
	for _, mrn := range []string{"A1", "B2", "C3", "D4"} {
		r := g.Do(t, "PUT", "/Patient?identifier=http://h.example/mrn%7C"+mrn, patient(mrn, "female"), auth...)
		mustStatus(t, r, http.StatusCreated)
		ids[mrn] = idFromLocation(t, r)
	}
	mustStatus(t, g.Do(t, "PUT", "/Patient?identifier=http://h.example/mrn%7CA1", patient("A1", "male"), auth...), http.StatusOK)
	mustStatus(t, g.Do(t, "DELETE", "/Patient/"+ids["D4"], nil, auth...), http.StatusOK)
	g.Stop()

	// A1 loses its postings, B2 gains C3's, C3's are moved to D4's last
	// version (a tombstone); the token sets stay as they were.
	seqOf := func(id string) string {
		return `(SELECT max(seq) FROM versions WHERE type = 'Patient' AND id = '` + id + `')`
	}
	tamper(t, g, `DELETE FROM postings WHERE seq = `+seqOf(ids["A1"])+`;
INSERT INTO postings (token, seq) SELECT token, `+seqOf(ids["B2"])+` FROM postings WHERE seq = `+seqOf(ids["C3"])+`
AND token NOT IN (SELECT token FROM postings WHERE seq = `+seqOf(ids["B2"])+`);
UPDATE postings SET seq = `+seqOf(ids["D4"])+` WHERE seq = `+seqOf(ids["C3"]))
	g.Restart(t)
	ctx := t.Context()

	rep, err := gateway.Audit(ctx, g.Vault, nil)
	if err != nil {
		t.Fatal(err)
	}
	damaged := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Table != "tokens" {
			t.Errorf("audit finding outside the index: %+v", f)
		}
		damaged[f.Ref] = true
	}
	if len(rep.Findings) == 0 {
		t.Fatal("audit of the damaged index found nothing")
	}

	log := slog.New(slog.NewTextHandler(&testonly.SyncBuffer{}, nil))
	st, err := gateway.Reindex(ctx, g.Vault, log)
	if err != nil {
		t.Fatalf("Reindex: %v", err)
	}
	// Three live patients (D4 is deleted) examined; the postings differ
	// from the sets, so the stray ones (B2's gained, D4's) are dropped and
	// every live patient's postings written again.
	if st.Examined != 3 || st.Rewritten != 3 || st.Dropped < 2 || st.Unreadable != 0 {
		t.Errorf("Reindex = %+v, want 3 examined, 3 rewritten, at least 2 dropped", st)
	}
	rep, err = gateway.Audit(ctx, g.Vault, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) > 0 {
		t.Errorf("audit after Reindex: %+v", rep.Findings)
	}
	if st, err := gateway.Reindex(ctx, g.Vault, log); err != nil || st != (gateway.ReindexStats{Examined: 3}) {
		t.Errorf("second Reindex = %+v, %v; want 3 examined, none rewritten", st, err)
	}
	// Conditional updates find each resource by identifier again: an
	// update (200) of the same id, not a create or a 412.
	for _, mrn := range []string{"A1", "B2", "C3"} {
		r := g.Do(t, "PUT", "/Patient?identifier=http://h.example/mrn%7C"+mrn, patient(mrn, "other"), auth...)
		mustStatus(t, r, http.StatusOK)
		if got := idFromLocation(t, r); got != ids[mrn] {
			t.Errorf("conditional update of %s updated %s, want %s", mrn, got, ids[mrn])
		}
	}
	// The deleted patient is not found by its identifier: a new one.
	r := g.Do(t, "PUT", "/Patient?identifier=http://h.example/mrn%7CD4", patient("D4", "other"), auth...)
	mustStatus(t, r, http.StatusCreated)
}
