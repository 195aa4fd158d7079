package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/internal/sqlitedb"
	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/vaulttest"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{Path: filepath.Join(t.TempDir(), "vault.db")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	vaulttest.Exercise(t, func(t *testing.T) vault.Store { return newStore(t) })
}

// TestStoreMerging runs the conformance suite with recent postings merged
// after nearly every commit (and the middle level every few), so that
// lookups, replacements, erasures and the audit's listings meet postings
// split between the levels, and merges in the middle of every scenario.
func TestStoreMerging(t *testing.T) {
	vaulttest.Exercise(t, func(t *testing.T) vault.Store {
		s, err := New(t.Context(), Config{Path: filepath.Join(t.TempDir(), "vault.db"), MergeRows: 5})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
}

// TestSettings checks the settings durability and concurrency rest on.
func TestSettings(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := t.Context()
	pragmas := []struct {
		db     string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"writer", "synchronous", "2"}, // FULL
		{"writer", "foreign_keys", "1"},
		{"writer", "busy_timeout", "10000"},
		{"writer", "query_only", "0"},
		{"writer", "temp_store", "2"}, // MEMORY: savepoint journals
		{"reader", "journal_mode", "wal"},
		{"reader", "busy_timeout", "10000"},
		{"reader", "query_only", "1"},
	}
	for _, p := range pragmas {
		db := s.w
		if p.db == "reader" {
			db = s.r
		}
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", p.db, p.pragma, err)
		}
		if got != p.want {
			t.Errorf("%s PRAGMA %s = %q, want %q", p.db, p.pragma, got, p.want)
		}
	}
	if _, err := s.r.ExecContext(ctx, "DELETE FROM leaves"); err == nil {
		t.Errorf("a reader connection accepted a write")
	}
	var version int
	if err := s.r.QueryRowContext(ctx, "SELECT max(version) FROM schema_version").Scan(&version); err != nil || version != len(migrations) {
		t.Errorf("schema version = %d, %v; want %d", version, err, len(migrations))
	}

	// The database and its WAL are private to the owner.
	r := vault.Record{Type: "Patient", ID: "p1", Version: 1, Leaf: vault.Leaf{Ref: "Patient/p1/_history/1"}}
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, r) }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	var path string
	if err := s.w.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&path); err != nil {
		t.Fatalf("database path: %v", err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(p), perm)
		}
	}
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "vault.db")
	s, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r := vault.Record{Type: "Patient", ID: "p1", Version: 1, KeyID: "shared", Ciphertext: []byte("c"),
		LastUpdated: time.Now(), Leaf: vault.Leaf{Type: 1, Data: []byte("l"), Ref: "Patient/p1/_history/1"}}
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, r) }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = New(ctx, Config{Path: path}) // migrations already applied
	if err != nil {
		t.Fatalf("New again: %v", err)
	}
	defer s.Close()
	got, err := s.Current(ctx, "Patient", "p1")
	if err != nil || got.Version != 1 || got.Leaf.Seq != 1 {
		t.Errorf("Current after reopen = %+v, %v; want version 1, leaf 1", got, err)
	}
}

// TestMigrateFromV2 opens a database written at schema version 2: the
// version it holds stays readable and the new tables work.
func TestMigrateFromV2(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "vault.db")
	w, r, err := sqlitedb.Open(ctx, sqlitedb.Options{Path: path, Migrations: migrations[:2]})
	if err != nil {
		t.Fatalf("Open at version 2: %v", err)
	}
	_, err = w.ExecContext(ctx, `INSERT INTO leaves (type, data, ref) VALUES (1, X'01', 'Patient/p1/_history/1');
INSERT INTO versions (seq, type, id, version, last_updated, deleted, key_id, ciphertext, salt, commitment)
VALUES (1, 'Patient', 'p1', 1, 0, 0, 'shared', X'02', X'03', X'04')`)
	if err != nil {
		t.Fatalf("write at version 2: %v", err)
	}
	if err := sqlitedb.Close(w, r); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	if got, err := s.Current(ctx, "Patient", "p1"); err != nil || got.Version != 1 {
		t.Errorf("Current after migration = %+v, %v; want version 1", got, err)
	}
	if l, err := s.Leaf(ctx, 1); err != nil || l.Ref != "Patient/p1/_history/1" || len(l.Record) != 0 {
		t.Errorf("Leaf(1) after migration = %+v, %v; want the version's leaf without a record", l, err)
	}
	var seq, v int64
	err = s.Update(ctx, func(tx vault.Tx) error {
		var err error
		if seq, err = tx.AddLeaf(ctx, vault.Leaf{Type: 2, Record: []byte(`{}`), Subject: "Patient/p1", Time: time.Now()}); err != nil {
			return err
		}
		v, err = tx.PutPolicy(ctx, vault.Policy{Revision: "abc", Created: time.Now()})
		return err
	})
	if err != nil || seq != 2 || v != 1 {
		t.Fatalf("AddLeaf, PutPolicy after migration = %d, %d, %v; want 2, 1", seq, v, err)
	}
	if st, err := s.Stats(ctx); err != nil || st != (vault.Stats{Versions: 1, Leaves: 2, Policies: 1}) {
		t.Errorf("Stats after migration = %+v, %v", st, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"vault.db", true},
		{"/var/lib/fhiranchor/vault.db", true},
		{"", false},
		{":memory:", false},
		{"file:vault.db", false},
		{"vault.db?mode=ro", false},
	}
	for _, tt := range tests {
		if err := (Config{Path: tt.path}).Validate(); (err == nil) != tt.ok {
			t.Errorf("Config{Path: %q}.Validate() = %v, want ok %v", tt.path, err, tt.ok)
		}
	}
}

// BenchmarkPut measures bulk ingest: Updates of 500 versions each, with a
// 2 KiB ciphertext, salt, commitment, two tokens and a leaf per version.
func BenchmarkPut(b *testing.B) {
	const batch = 500
	s := newStore(b)
	defer s.Close()
	ctx := b.Context()
	ct := make([]byte, 2048)
	rand.Read(ct)
	salt, commitment := make([]byte, 32), make([]byte, 32)
	rand.Read(salt)
	rand.Read(commitment)
	now := time.Now()
	n := 0
	b.SetBytes(batch * int64(len(ct)))
	b.ResetTimer()
	for b.Loop() {
		err := s.Update(ctx, func(tx vault.Tx) error {
			for range batch {
				n++
				id := fmt.Sprintf("obs-%d", n)
				r := vault.Record{
					Type: "Observation", ID: id, Version: 1, LastUpdated: now, KeyID: "patient:42",
					Ciphertext: ct, Salt: salt, Commitment: commitment,
					Tokens: [][]byte{[]byte("identifier|" + id), []byte("subject|" + id)},
					Leaf:   vault.Leaf{Type: 1, Data: commitment, Ref: "Observation/" + id + "/_history/1"},
				}
				if err := tx.Put(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("Update: %v", err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "versions/s")
}

// TestFindLeavesPlan checks that every FindLeaves query is driven by the
// index of its most selective filter and needs no sort: a patient's records
// list in time proportional to their number, not to all the leaves.
func TestFindLeavesPlan(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	for mask := range numFindLeaves {
		want := "USING INTEGER PRIMARY KEY (rowid<?)"
		switch {
		case mask&filterSubject != 0:
			want = "USING INDEX leaf_records_by_subject (subject=? AND seq<?)"
		case mask&filterActor != 0:
			want = "USING INDEX leaf_records_by_actor (actor=? AND seq<?)"
		case mask&filterType != 0:
			want = "USING INDEX leaf_records_by_type (type=? AND seq<?)"
		}
		got := explain(t, s, findLeavesSQL(mask))
		if !strings.Contains(got, "SEARCH r "+want) || strings.Contains(got, "TEMP B-TREE") || strings.Contains(got, "SCAN") {
			t.Errorf("plan of FindLeaves with filters %03b = %q, want SEARCH r %s and no sort or scan", mask, got, want)
		}
	}
}

// explain returns the query plan of q on the read connections, its
// details joined by "; ", every parameter bound to NULL.
func explain(t *testing.T, s *Store, q string) string {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, make([]any, strings.Count(q, "?"))...)
	if err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN: %v", err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatalf("scan plan: %v", err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read plan: %v", err)
	}
	return strings.Join(plan, "; ")
}

// BenchmarkFindLeaves lists one patient's newest 50 records among 100k
// record leaves of 1000 patients and 20 clients, as a consent or access
// history page does.
func BenchmarkFindLeaves(b *testing.B) {
	const (
		leaves   = 100_000
		patients = 1000
		clients  = 20
		batch    = 5000
	)
	s := newStore(b)
	defer s.Close()
	ctx := b.Context()
	salt := make([]byte, 32)
	rand.Read(salt)
	now := time.Now()
	for start := 0; start < leaves; start += batch {
		err := s.Update(ctx, func(tx vault.Tx) error {
			for i := start; i < start+batch; i++ {
				subject := fmt.Sprintf("Patient/p%d", i%patients)
				actor := fmt.Sprintf("client-%d", i%clients)
				l := vault.Leaf{Type: uint8(i%3 + 2), Data: salt, Ref: fmt.Sprint("record/", i), Salt: salt,
					Record:  fmt.Appendf(nil, `{"patient":%q,"client":%q,"decision":"permit"}`, subject, actor),
					Subject: subject, Actor: actor, Time: now}
				if _, err := tx.AddLeaf(ctx, l); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("Update: %v", err)
		}
	}
	b.ResetTimer()
	n := 0
	for b.Loop() {
		f := vault.LeafFilter{Subject: fmt.Sprintf("Patient/p%d", n%patients), Type: 3, Limit: 50}
		n++
		ls, err := s.FindLeaves(ctx, f)
		if err != nil || len(ls) == 0 {
			b.Fatalf("FindLeaves = %d, %v", len(ls), err)
		}
	}
}

// TestUpdateEndsWithContext: point statements do not watch ctx, so a
// context that ends in the middle of an Update is seen by database/sql,
// which rolls the transaction back. The Update must then fail with the
// context's error (a deadline is a 503, not an internal error) and store
// nothing.
func TestUpdateEndsWithContext(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	put := func(tx vault.Tx, id string) error {
		return tx.Put(ctx, vault.Record{Type: "Observation", ID: id, Version: 1, LastUpdated: time.Now(), KeyID: "shared",
			Ciphertext: []byte("c"), Tokens: [][]byte{[]byte("t1"), []byte("t2")},
			Leaf: vault.Leaf{Type: 1, Data: []byte("l"), Ref: "Observation/" + id + "/_history/1"}})
	}
	var failed error
	err := s.Update(ctx, func(tx vault.Tx) error {
		if err := put(tx, "before"); err != nil {
			return err
		}
		cancel()
		// database/sql rolls back from its own goroutine: give it time, so
		// the Puts below meet a transaction that is done.
		time.Sleep(100 * time.Millisecond)
		for i := range 50 {
			if failed = put(tx, fmt.Sprint("after-", i)); failed != nil {
				return failed
			}
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update = %v (a Put inside failed with %v); want an error wrapping context.Canceled", err, failed)
	}
	if _, err := s.Current(t.Context(), "Observation", "before"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Current of a version put before the cancellation = %v; want ErrNotFound (rolled back)", err)
	}
}

// TestGroupCommit: Updates queued while another runs are committed in
// groups, and each keeps the outcome it would have alone: one that fails,
// panics or whose context ends is rolled back by itself (its panic raised
// in its own caller), and every other one is committed and durable.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	s, err := New(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(id string) vault.Record {
		return vault.Record{Type: "Observation", ID: id, Version: 1, LastUpdated: time.Now(), KeyID: "shared",
			Ciphertext: []byte("c " + id), Tokens: [][]byte{[]byte("t-" + id), []byte("common")},
			Leaf: vault.Leaf{Type: 1, Data: []byte("l " + id), Ref: "Observation/" + id + "/_history/1"}}
	}
	// The first Update holds the writer until the others have queued, so
	// that they run as one group.
	release := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.Update(t.Context(), func(tx vault.Tx) error {
			<-release
			return tx.Put(t.Context(), rec("first"))
		})
	}()
	time.Sleep(50 * time.Millisecond)

	const n = 12
	canceled, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make([]error, n)
	panics := make([]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() { panics[i] = recover() }()
			id := fmt.Sprint("o", i)
			ctx := t.Context()
			if i == 7 {
				ctx = canceled
			}
			errs[i] = s.Update(ctx, func(tx vault.Tx) error {
				if err := tx.Put(t.Context(), rec(id)); err != nil {
					return err
				}
				switch i {
				case 3:
					return errors.New("refused")
				case 5:
					panic("boom")
				case 7:
					cancel()
				case 9:
					// A conflict inside, handled: the Update goes on.
					if err := tx.Put(t.Context(), rec(id)); !errors.Is(err, vault.ErrConflict) {
						return fmt.Errorf("second put: %v", err)
					}
				}
				return nil
			})
		})
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("first Update: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = New(t.Context(), Config{Path: path}) // durable: read back after a reopen
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stored := func(id string) bool {
		_, err := s.Current(t.Context(), "Observation", id)
		if err != nil && !errors.Is(err, vault.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !stored("first") {
		t.Error("the first Update's version is missing")
	}
	var want []string
	for i := range n {
		id := fmt.Sprint("o", i)
		switch i {
		case 3:
			if errs[i] == nil || errs[i].Error() != "refused" || stored(id) {
				t.Errorf("failed Update %d: err %v, stored %v; want its error, nothing stored", i, errs[i], stored(id))
			}
		case 5:
			if panics[i] != "boom" || stored(id) {
				t.Errorf("panicking Update %d: recovered %v, stored %v; want its panic, nothing stored", i, panics[i], stored(id))
			}
		case 7:
			if !errors.Is(errs[i], context.Canceled) || stored(id) {
				t.Errorf("canceled Update %d: err %v, stored %v; want context.Canceled, nothing stored", i, errs[i], stored(id))
			}
		default:
			if errs[i] != nil || panics[i] != nil || !stored(id) {
				t.Errorf("Update %d: err %v, panic %v, stored %v; want it committed", i, errs[i], panics[i], stored(id))
			}
			want = append(want, id)
		}
	}
	// The rolled-back members left no gap in the leaves' numbers, which
	// Stats counts by the last one.
	if st, err := s.Stats(t.Context()); err != nil || st.Leaves != int64(len(want)+1) || st.Versions != st.Leaves {
		t.Errorf("Stats = %+v, %v; want %d versions and leaves", st, err, len(want)+1)
	}
	got, err := s.Find(t.Context(), "Observation", []byte("common"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want = append(want, "first")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Find(common) = %v, want %v", got, want)
	}
}

func TestRecordStorage(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	vaulttest.RecordStorage(t, s, vaulttest.RawRecord{
		Get: func(t *testing.T, seq int64) []byte {
			var b []byte
			if err := s.r.QueryRowContext(t.Context(), `SELECT record FROM leaf_records WHERE seq = ?`, seq).Scan(&b); err != nil {
				t.Fatalf("read stored record: %v", err)
			}
			return b
		},
		Set: func(t *testing.T, seq int64, stored []byte) {
			if _, err := s.w.ExecContext(t.Context(), `UPDATE leaf_records SET record = ? WHERE seq = ?`, stored, seq); err != nil {
				t.Fatalf("write stored record: %v", err)
			}
		},
	})
}

// TestPostingsPlan: every lookup reads both posting tables by their
// (token, seq) keys, the audit's walk merges their orders without a sort,
// and none scans a table.
func TestPostingsPlan(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	tok := func(n int) [][]byte { return make([][]byte, n) }
	queries := []struct {
		name string
		sql  string
	}{
		{"Find", findSQL},
		{"FindAny", findAnySQL(3)},
		{"FindAll", func() string { q, _ := findAllQuery("T", [][][]byte{tok(2), tok(3), tok(1)}, []int{2, 0, 1}); return q }()},
		{"countPostings", countPostingsSQL(2)},
		{"IndexEntries", readSQL[stIndexEntries]},
	}
	for _, q := range queries {
		got := explain(t, s, q.sql)
		for _, table := range postingTables {
			if !regexp.MustCompile(`SEARCH (`+table+`|q\d+_\d+) USING PRIMARY KEY`).MatchString(got) ||
				regexp.MustCompile(`SCAN `+table+`\b`).MatchString(got) {
				t.Errorf("plan of %s = %q, want %s searched by its key, not scanned", q.name, got, table)
			}
		}
		if q.name == "IndexEntries" && (!strings.HasPrefix(got, "MERGE (UNION ALL)") || strings.Contains(got, "TEMP B-TREE")) {
			t.Errorf("plan of IndexEntries = %q, want a merge of the two tables' orders without a sort", got)
		}
	}
}

// TestIDsPlan: listing a type's ids reads the (type, id, version) index
// alone, in its order: no versions row (each holds a sealed body) and no
// sort.
func TestIDsPlan(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	got := explain(t, s, readSQL[stIDs])
	if !strings.Contains(got, "USING COVERING INDEX") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("plan of IDs = %q, want a covering index search without a sort", got)
	}
}

// TestPostingLevels writes resources one Update at a time under a tiny
// merge threshold and checks, after each, that every token finds exactly
// the resources a model says, whichever levels hold their postings; and
// that the writes went through all three levels.
func TestPostingLevels(t *testing.T) {
	ctx := t.Context()
	s, err := New(ctx, Config{Path: filepath.Join(t.TempDir(), "vault.db"), MergeRows: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	model := map[string][]string{} // token -> ids, ascending
	seen := map[string]bool{}
	for i := range 120 {
		id := fmt.Sprintf("r%03d", i)
		toks := []string{"all", fmt.Sprint("mod3-", i%3), fmt.Sprint("own-", i)}
		rec := vault.Record{Type: "Observation", ID: id, Version: 1, LastUpdated: time.Unix(int64(i), 0), KeyID: "k",
			Ciphertext: []byte("c"), Salt: []byte("s"), Commitment: []byte(id), Leaf: vault.Leaf{Type: 1, Data: []byte(id), Ref: "Observation/" + id}}
		for _, tok := range toks {
			rec.Tokens = append(rec.Tokens, []byte(tok))
			model[tok] = append(model[tok], id)
		}
		if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, rec) }); err != nil {
			t.Fatal(err)
		}
		for _, table := range postingTables {
			var n int
			if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				seen[table] = true
			}
		}
		for _, tok := range []string{"all", "mod3-0", "mod3-1", "own-0", fmt.Sprint("own-", i)} {
			got, err := s.FindAny(ctx, "Observation", [][]byte{[]byte(tok)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, model[tok]) {
				t.Fatalf("after %d writes, FindAny(%s) = %v, want %v", i+1, tok, got, model[tok])
			}
		}
		got, err := s.FindAll(ctx, "Observation", [][][]byte{{[]byte("mod3-1")}, {[]byte("own-1"), []byte("own-4"), []byte(fmt.Sprint("own-", i))}})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, k := range []int{1, 4, i} {
			if k <= i && k%3 == 1 && !slices.Contains(want, fmt.Sprintf("r%03d", k)) {
				want = append(want, fmt.Sprintf("r%03d", k))
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("after %d writes, FindAll = %v, want %v", i+1, got, want)
		}
	}
	for _, table := range postingTables {
		if !seen[table] {
			t.Errorf("no posting ever reached %s", table)
		}
	}
	entries, err := s.IndexEntries(ctx, vault.IndexEntry{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3*120 || !slices.IsSortedFunc(entries, func(a, b vault.IndexEntry) int {
		if c := bytes.Compare(a.Token, b.Token); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	}) {
		t.Errorf("IndexEntries: %d entries, sorted %v; want %d in (token, seq) order", len(entries), false, 3*120)
	}
}

// TestCheckpointsBesideTheWriter: the Store's commits leave the WAL to its
// Checkpointer (the writer's own threshold is far above what these writes
// make), which copies all of it into the database file once the writes
// stop, without a Close.
func TestCheckpointsBesideTheWriter(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := t.Context()
	var autocheckpoint int
	if err := s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&autocheckpoint); err != nil || autocheckpoint != sqlitedb.SafetyCheckpointPages {
		t.Fatalf("writer wal_autocheckpoint = %d, %v; want %d", autocheckpoint, err, sqlitedb.SafetyCheckpointPages)
	}
	var path string
	if err := s.w.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&path); err != nil {
		t.Fatal(err)
	}
	// 1500 commits of a record of 3 KB: some 3000 pages of WAL, three times
	// SQLite's default threshold, if nothing checkpointed meanwhile.
	for i := range 1500 {
		r := vault.Record{Type: "Patient", ID: fmt.Sprintf("p%d", i), Version: 1, Ciphertext: make([]byte, 3000),
			Leaf: vault.Leaf{Ref: fmt.Sprintf("Patient/p%d/_history/1", i)}}
		if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, r) }); err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	for deadline := time.Now().Add(time.Minute); ; {
		frames, backfilled, err := sqlitedb.WALState(path)
		if err != nil {
			t.Fatal(err)
		}
		if frames > 0 && backfilled == frames {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the last commit, %d of %d WAL frames are in the database file", backfilled, frames)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
