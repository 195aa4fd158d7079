package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/internal/sqlitedb"
	"github.com/fhiranchor/fhiranchor/vault"
)

// tokenRecord is a version of an Observation carrying tokens.
func tokenRecord(id string, version int64, tokens ...string) vault.Record {
	r := vault.Record{Type: "Observation", ID: id, Version: version, LastUpdated: time.Unix(version, 0), KeyID: "k",
		Ciphertext: []byte("c"), Salt: []byte("s"), Commitment: []byte(id),
		Leaf: vault.Leaf{Type: 1, Data: []byte(id), Ref: fmt.Sprintf("Observation/%s/_history/%d", id, version)}}
	for _, tok := range tokens {
		r.Tokens = append(r.Tokens, []byte(tok))
	}
	return r
}

// TestRecentLevelModel writes, replaces, deletes and re-tokens resources
// at random, in groups of concurrent Updates some of which fail, under
// merge thresholds small and large, reopening the store now and then; after
// each round every lookup and the index listing must say what a model of
// the committed state says. The recent level is rebuilt from the token sets
// on each reopen, so what it held must be exactly what they say.
//
// With two Stores on one file, as the gateway and `fhiranchor reindex` in
// two processes are, each Update and each lookup goes to either: each
// Store's memory must follow the other's commits.
func TestRecentLevelModel(t *testing.T) {
	for _, stores := range []int{1, 2} {
		for _, mergeRows := range []int{3, 40, DefaultMergeRows} {
			t.Run(fmt.Sprintf("stores %d merge %d", stores, mergeRows), func(t *testing.T) {
				testRecentLevelModel(t, stores, mergeRows)
			})
		}
	}
}

func testRecentLevelModel(t *testing.T, stores, mergeRows int) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "vault.db")
	open := func() *Store {
		s, err := New(ctx, Config{Path: path, MergeRows: mergeRows})
		if err != nil {
			t.Fatal(err)
		}
		if mergeRows == 3 {
			// Merges into postings in chunks smaller than a merge of the
			// recent level, as DefaultMergeRows has them: a posting each.
			s.chunkRows = 1
		}
		return s
	}
	all := make([]*Store, stores)
	for i := range all {
		all[i] = open()
	}
	defer func() {
		for _, s := range all {
			s.Close()
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(stores), uint64(mergeRows)))
	pick := func() *Store { return all[rng.IntN(len(all))] }
	s := all[0]
	type state struct {
		version int64
		tokens  []string // nil: deleted
	}
	model := map[string]state{}
	vocabulary := []string{"a", "b", "c", "d", "e", "f"}
	randomTokens := func() []string {
		var toks []string
		for _, tok := range vocabulary {
			if rng.IntN(3) == 0 {
				toks = append(toks, tok)
			}
		}
		return toks
	}
	for round := range 60 {
		// A group: Updates queued together, one of which may fail after
		// writing, so that its changes must vanish alone.
		var wg sync.WaitGroup
		var mu sync.Mutex
		picked := map[string]bool{}
		for u := range 1 + rng.IntN(6) {
			id := fmt.Sprintf("o%02d", rng.IntN(25))
			if picked[id] {
				continue // one Update a resource a group: no conflicts to model
			}
			picked[id] = true
			mu.Lock() // the group's goroutines write the model
			st := model[id]
			mu.Unlock()
			fails := rng.IntN(5) == 0
			var rec vault.Record
			op := rng.IntN(10)
			var next state
			switch {
			case st.version > 0 && st.tokens != nil && op == 0:
				rec = tokenRecord(id, st.version+1)
				rec.Deleted = true
				next = state{version: st.version + 1}
			default:
				next = state{version: st.version + 1, tokens: randomTokens()}
				if next.tokens == nil {
					next.tokens = []string{}
				}
				rec = tokenRecord(id, st.version+1, next.tokens...)
			}
			retoken := st.version > 0 && st.tokens != nil && op == 1
			var retokens []string
			if retoken {
				retokens = randomTokens()
			}
			w := pick()
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(u) * 50 * time.Microsecond)
				err := w.Update(ctx, func(tx vault.Tx) error {
					if retoken {
						toks := make([][]byte, len(retokens))
						for i, tok := range retokens {
							toks[i] = []byte(tok)
						}
						if err := tx.SetTokens(ctx, "Observation", id, st.version, toks); err != nil {
							return err
						}
					} else if err := tx.Put(ctx, rec); err != nil {
						return err
					}
					if fails {
						return fmt.Errorf("planned failure")
					}
					return nil
				})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case fails:
				case err != nil:
					t.Errorf("round %d: update %s: %v", round, id, err)
				case retoken:
					model[id] = state{version: st.version, tokens: retokens}
				default:
					model[id] = next
				}
			}()
		}
		wg.Wait()
		if rng.IntN(8) == 0 {
			i := rng.IntN(len(all))
			if err := all[i].Close(); err != nil {
				t.Fatal(err)
			}
			all[i] = open()
		}
		s = pick()
		// Every lookup as the model says.
		want := map[string][]string{}
		var entries int
		for id, st := range model {
			for _, tok := range slices.Compact(slices.Sorted(slices.Values(st.tokens))) {
				want[tok] = append(want[tok], id)
				entries++
			}
		}
		for _, tok := range vocabulary {
			slices.Sort(want[tok])
			got, err := s.FindAny(ctx, "Observation", [][]byte{[]byte(tok)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[tok]) {
				t.Fatalf("round %d: FindAny(%s) = %v, want %v", round, tok, got, want[tok])
			}
			one, err := s.Find(ctx, "Observation", []byte(tok))
			slices.Sort(one)
			if err != nil || !slices.Equal(one, want[tok]) {
				t.Fatalf("round %d: Find(%s) = %v, %v; want %v", round, tok, one, err, want[tok])
			}
			other, err := s.Find(ctx, "Patient", []byte(tok))
			if err != nil || len(other) > 0 {
				t.Fatalf("round %d: Find of another type = %v, %v", round, other, err)
			}
		}
		var both []string
		for id, st := range model {
			if slices.Contains(st.tokens, "a") && (slices.Contains(st.tokens, "b") || slices.Contains(st.tokens, "c")) {
				both = append(both, id)
			}
		}
		slices.Sort(both)
		got, err := s.FindAll(ctx, "Observation", [][][]byte{{[]byte("a")}, {[]byte("b"), []byte("c")}})
		if err != nil || !slices.Equal(got, both) {
			t.Fatalf("round %d: FindAll(a, b|c) = %v, %v; want %v", round, got, err, both)
		}
		// The listing in pages of 7 meets every posting once, in order.
		var listed []vault.IndexEntry
		var after vault.IndexEntry
		for {
			page, err := s.IndexEntries(ctx, after, 7)
			if err != nil {
				t.Fatal(err)
			}
			listed = append(listed, page...)
			if len(page) < 7 {
				break
			}
			after = page[len(page)-1]
		}
		if len(listed) != entries || !slices.IsSortedFunc(listed, compareEntries) ||
			len(slices.CompactFunc(slices.Clone(listed), func(a, b vault.IndexEntry) bool { return compareEntries(a, b) == 0 })) != entries {
			t.Fatalf("round %d: IndexEntries listed %d postings (sorted %v), want %d distinct in order", round, len(listed),
				slices.IsSortedFunc(listed, compareEntries), entries)
		}
		// The walk meets the same postings, each once, across the levels.
		var walked []vault.IndexEntry
		err = s.WalkPostings(ctx, func(token []byte, seq int64) {
			walked = append(walked, vault.IndexEntry{Token: bytes.Clone(token), Seq: seq})
		})
		slices.SortFunc(walked, compareEntries)
		if err != nil || !slices.EqualFunc(walked, listed, func(a, b vault.IndexEntry) bool { return compareEntries(a, b) == 0 }) {
			t.Fatalf("round %d: WalkPostings passed %d postings (%v), want the %d IndexEntries lists", round, len(walked), err, len(listed))
		}
	}
	var big, stored int
	if err := s.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM postings), (SELECT count(*) FROM postings) + (SELECT count(*) FROM postings_mid)`).Scan(&big, &stored); err != nil {
		t.Fatal(err)
	}
	if mergeRows < 100 && stored == 0 {
		t.Errorf("merge threshold %d: no posting reached the tables", mergeRows)
	}
	if mergeRows == 3 && big == 0 {
		t.Errorf("merge threshold %d: no posting reached postings", mergeRows)
	}
	if mergeRows == DefaultMergeRows && stored != 0 {
		t.Errorf("%d postings in the tables before any merge", stored)
	}
}

// TestRecentSnapshot reproduces what a reader reading the tables and the
// memory at different moments would see: a resource that carries a token
// in every version, rewritten over and over while merges move its postings
// between memory and postings_mid, must be found by every lookup.
func TestRecentSnapshot(t *testing.T) {
	ctx := t.Context()
	s, err := New(ctx, Config{Path: filepath.Join(t.TempDir(), "vault.db"), MergeRows: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stop atomic.Bool
	var writes atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		defer stop.Store(true)
		for v := int64(1); v <= 400; v++ {
			err := s.Update(ctx, func(tx vault.Tx) error {
				if err := tx.Put(ctx, tokenRecord("steady", v, "always", fmt.Sprint("v", v))); err != nil {
					return err
				}
				// Filler, so that merges come often.
				return tx.Put(ctx, tokenRecord(fmt.Sprint("filler", v), 1, "x", "y"))
			})
			if err != nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	})
	var lookups atomic.Int64
	for range 3 {
		wg.Go(func() {
			for writes.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			for !stop.Load() {
				got, err := s.Find(ctx, "Observation", []byte("always"))
				if err != nil || !slices.Equal(got, []string{"steady"}) {
					t.Errorf("after %d writes: Find(always) = %v, %v", writes.Load(), got, err)
					return
				}
				all, err := s.FindAll(ctx, "Observation", [][][]byte{{[]byte("always")}, {[]byte("always"), []byte("x")}})
				if err != nil || !slices.Equal(all, []string{"steady"}) {
					t.Errorf("after %d writes: FindAll = %v, %v", writes.Load(), all, err)
					return
				}
				lookups.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("%d writes, %d lookups", writes.Load(), lookups.Load())
}

// TestMigrateRecentPostings opens a database written at schema version 9
// with postings in all three tables: after the migration the recent table
// is gone, its postings are in postings_mid, every lookup answers as
// before, and new writes go to memory.
func TestMigrateRecentPostings(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "vault.db")
	w, r, err := sqlitedb.Open(ctx, sqlitedb.Options{Path: path, Migrations: migrations[:9]})
	if err != nil {
		t.Fatal(err)
	}
	var q string
	for i, table := range []string{"postings", "postings_mid", "postings_recent"} {
		seq := i + 1
		id := fmt.Sprint("o", seq)
		q += fmt.Sprintf(`INSERT INTO leaves (seq, type, data, ref) VALUES (%[1]d, 1, X'01', 'Observation/%[2]s/_history/1');
INSERT INTO versions (seq, type, id, version, last_updated, deleted, key_id, ciphertext, salt, commitment, deid, client)
VALUES (%[1]d, 'Observation', '%[2]s', 1, 0, 0, 'k', X'02', X'03', X'04', X'', '');
INSERT INTO token_sets (seq, tokens) VALUES (%[1]d, X'0161');
INSERT INTO %[3]s (token, seq) VALUES (X'61', %[1]d);
`, seq, id, table)
	}
	if _, err := w.ExecContext(ctx, q); err != nil {
		t.Fatalf("write at version 9: %v", err)
	}
	if err := sqlitedb.Close(w, r); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.FindAny(ctx, "Observation", [][]byte{[]byte("a")}); err != nil || !slices.Equal(got, []string{"o1", "o2", "o3"}) {
		t.Errorf("FindAny after migration = %v, %v; want o1 o2 o3", got, err)
	}
	var merged, recentTables int
	if err := s.r.QueryRowContext(ctx, `SELECT merged, (SELECT count(*) FROM sqlite_schema WHERE name = 'postings_recent') FROM index_state`).Scan(&merged, &recentTables); err != nil || merged != 3 || recentTables != 0 {
		t.Errorf("after migration: watermark %d, postings_recent tables %d, %v; want 3, 0", merged, recentTables, err)
	}
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, tokenRecord("o4", 1, "a")) }); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FindAll(ctx, "Observation", [][][]byte{{[]byte("a")}, {[]byte("a"), []byte("b")}}); err != nil || !slices.Equal(got, []string{"o1", "o2", "o3", "o4"}) {
		t.Errorf("FindAll after a write = %v, %v; want o1 to o4", got, err)
	}
	var stored int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM postings_mid WHERE seq = 4`).Scan(&stored); err != nil || stored != 0 {
		t.Errorf("the new write's posting is in postings_mid (%d, %v), want in memory", stored, err)
	}
}

// TestRecentLevelReleasesMemory: after a merge with no reader, the level
// holds nothing; a reader of an older generation keeps what it can see
// until it ends.
func TestRecentLevelReleasesMemory(t *testing.T) {
	rl := newRecentLevel(0, 0)
	var ops []recentOp
	for i := range 100 {
		ops = append(ops, recentOp{token: "t", seq: int64(i + 1), typ: "Observation", id: fmt.Sprint(i)})
	}
	rl.apply(ops, 1, 0)
	rl.pinned[1]++ // a reader of generation 1
	rl.apply(nil, 2, 100)
	if rl.live != 0 || len(rl.byToken["t"]) != 100 {
		t.Fatalf("after a merge with a reader: live %d, held %d; want 0, 100", rl.live, len(rl.byToken["t"]))
	}
	if ids, err := rl.findAny(1, "Observation", [][]byte{[]byte("t")}, nil); err != nil || len(ids) != 100 {
		t.Errorf("the reader of generation 1 sees %d, %v; want 100", len(ids), err)
	}
	if ids, _ := rl.findAny(2, "Observation", [][]byte{[]byte("t")}, nil); len(ids) != 0 {
		t.Errorf("generation 2 sees %d, want none", len(ids))
	}
	delete(rl.pinned, 1)
	rl.apply(nil, 3, 0)
	if len(rl.byToken) != 0 || rl.dead != 0 || len(rl.refs) != 0 {
		t.Errorf("after the reader ended: %d tokens, %d dead, %d versions held; want none", len(rl.byToken), rl.dead, len(rl.refs))
	}
}

// TestRecentSnapshotAcrossReload: a read that began before another
// process's commit made this Store rebuild its memory still answers as of
// its own snapshot.
func TestRecentSnapshotAcrossReload(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "vault.db")
	s1, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	put := func(s *Store, id string) {
		t.Helper()
		if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, tokenRecord(id, 1, "a")) }); err != nil {
			t.Fatal(err)
		}
	}
	a := [][]byte{[]byte("a")}
	put(s1, "o1")
	sn, err := s1.begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put(s2, "o2") // another process's commit
	put(s1, "o3") // s1's writer rebuilds its memory from the database first
	if base := s1.recentLevel.base; base <= sn.gen {
		t.Fatalf("s1's memory was not rebuilt (base %d, snapshot %d)", base, sn.gen)
	}
	got, err := sn.findAny(ctx, "Observation", a)
	sn.end()
	if err != nil || !slices.Equal(got, []string{"o1"}) {
		t.Errorf("the older snapshot finds %v, %v; want o1", got, err)
	}
	for i, s := range []*Store{s1, s2} {
		if got, err := s.FindAny(ctx, "Observation", a); err != nil || !slices.Equal(got, []string{"o1", "o2", "o3"}) {
			t.Errorf("store %d finds %v, %v; want o1 o2 o3", i+1, got, err)
		}
	}
}

// TestRecentGenEditedUnderneath: the generation in the database is moved
// back and forward under an open Store (a restored file, a hand edit, a
// tool of another version). Lookups must still answer from what is stored,
// and writes must go on.
func TestRecentGenEditedUnderneath(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "vault.db")
	s, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var want []string
	put := func(id string) {
		t.Helper()
		if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, tokenRecord(id, 1, "a")) }); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	check := func(when string) {
		t.Helper()
		got, err := s.FindAny(ctx, "Observation", [][]byte{[]byte("a")})
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: FindAny = %v, %v; want %v", when, got, err, want)
		}
		es, err := s.IndexEntries(ctx, vault.IndexEntry{}, 100)
		if err != nil || len(es) != len(want) {
			t.Errorf("%s: IndexEntries lists %d, %v; want %d", when, len(es), err, len(want))
		}
	}
	for _, id := range []string{"o1", "o2", "o3"} {
		put(id)
	}
	for _, gen := range []string{"0", "1000", "2"} {
		if _, err := raw.ExecContext(ctx, `UPDATE index_state SET gen = `+gen); err != nil {
			t.Fatal(err)
		}
		check("gen set to " + gen)
		put(fmt.Sprint("o", len(want)+1))
		check("a write after gen set to " + gen)
	}
}

// TestMergeEntries holds the merge of the two levels' pages to sorting
// their concatenation: the same entries, duplicates kept, cut at limit.
func TestMergeEntries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	list := func() []vault.IndexEntry {
		es := make([]vault.IndexEntry, rng.IntN(12))
		for i := range es {
			es[i] = vault.IndexEntry{Token: []byte{byte(rng.IntN(4))}, Seq: rng.Int64N(5)}
		}
		slices.SortFunc(es, compareEntries)
		return es
	}
	for range 2000 {
		a, b, limit := list(), list(), rng.IntN(30)
		want := slices.SortedFunc(slices.Values(slices.Concat(a, b)), compareEntries)
		want = want[:min(len(want), limit)]
		if got := mergeEntries(a, b, limit); !slices.EqualFunc(got, want, func(x, y vault.IndexEntry) bool { return compareEntries(x, y) == 0 }) {
			t.Fatalf("mergeEntries(%v, %v, %d) = %v, want %v", a, b, limit, got, want)
		}
	}
}
