package postgres

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhiranchor/fhiranchor/internal/pgdb"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/vaulttest"
)

func newStore(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{DSN: dsn, MaxConns: 8})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	vaulttest.Exercise(t, func(t *testing.T) vault.Store { return newStore(t, c.NewDatabase(t)) })
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {DSN: "postgres://x", MaxConns: -1}} {
		if _, err := New(t.Context(), cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

// TestMapErr: PostgreSQL errors keep their SQLSTATE but lose the detail
// that quotes row values; collisions are ErrConflict.
func TestMapErr(t *testing.T) {
	for _, tt := range []struct {
		code     string
		conflict bool
	}{{pgdb.UniqueViolation, true}, {pgdb.DeadlockDetected, true}, {pgdb.LockNotAvailable, true}, {"23502", false}} {
		pe := &pgconn.PgError{Severity: "ERROR", Code: tt.code, Message: "something failed",
			Detail: "Key (token)=(secret-token) already exists.", Where: "secret-where", Hint: "secret-hint"}
		err := mapErr(fmt.Errorf("wrapped: %w", pe))
		if errors.Is(err, vault.ErrConflict) != tt.conflict {
			t.Errorf("mapErr(%s) = %v; ErrConflict %v, want %v", tt.code, err, !tt.conflict, tt.conflict)
		}
		if got := pgdb.Code(err); got != tt.code {
			t.Errorf("pgdb.Code(mapErr(%s)) = %q", tt.code, got)
		}
		var got *pgconn.PgError
		if !errors.As(err, &got) || strings.Contains(fmt.Sprintf("%v %+v", err, *got), "secret") {
			t.Errorf("mapErr(%s) keeps the detail: %+v", tt.code, got)
		}
	}
	if err := mapErr(errBoom); err != errBoom {
		t.Errorf("mapErr(errBoom) = %v", err)
	}
}

// TestMigrate opens one database twice: the second New finds the schema in
// place, and the vault's schema version is the number of migrations.
func TestMigrate(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	s1 := newStore(t, dsn)
	defer s1.Close()
	put(t, s1, testRecord("Patient", "p1", 1))
	s2 := newStore(t, dsn)
	defer s2.Close()
	if r, err := s2.Current(t.Context(), "Patient", "p1"); err != nil || r.Version != 1 || r.Leaf.Seq != 1 {
		t.Errorf("Current through a second Store = %+v, %v; want version 1, leaf 1", r, err)
	}
	var rows, version int
	err := s2.pool.QueryRow(t.Context(), `SELECT count(*), max(version) FROM schema_versions WHERE component = 'vault'`).Scan(&rows, &version)
	if err != nil || rows != len(migrations) || version != len(migrations) {
		t.Errorf("schema_versions of vault: %d rows, version %d, %v; want %d of each", rows, version, err, len(migrations))
	}
}

// testRecord returns a version of typ/id with a 2 KB ciphertext and three
// tokens.
func testRecord(typ, id string, version int64) vault.Record {
	ref := fmt.Sprintf("%s/%s/_history/%d", typ, id, version)
	r := vault.Record{
		Type: typ, ID: id, Version: version, LastUpdated: time.Now(), KeyID: "key-" + id,
		Ciphertext: make([]byte, 2048), Salt: make([]byte, 32), Commitment: make([]byte, 32),
		Leaf: vault.Leaf{Type: 1, Data: make([]byte, 33), Ref: ref},
	}
	rand.Read(r.Ciphertext)
	rand.Read(r.Salt)
	rand.Read(r.Commitment)
	for range 3 {
		tok := make([]byte, 32)
		rand.Read(tok)
		r.Tokens = append(r.Tokens, tok)
	}
	if typ == "Patient" {
		r.Tokens[0] = []byte("mrn " + id)
	}
	return r
}

func put(t testing.TB, s vault.Store, rs ...vault.Record) {
	t.Helper()
	err := s.Update(t.Context(), func(tx vault.Tx) error {
		for _, r := range rs {
			if err := tx.Put(t.Context(), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update(Put): %v", err)
	}
}

var errBoom = errors.New("boom")

// TestProcesses runs writers on two Stores, as two gateway processes would,
// on one database, while a reader tails the leaves: it must see Seqs 1, 2,
// 3... with no gap ever, although Updates commit concurrently, some roll
// back, and all contend on one resource. Every Update succeeds: contended
// read-then-put transactions queue rather than conflict.
func TestProcesses(t *testing.T) {
	const (
		workers = 4  // per Store
		updates = 40 // per worker
	)
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	stores := []*Store{newStore(t, dsn), newStore(t, dsn)}
	for _, s := range stores {
		defer s.Close()
	}
	ctx := t.Context()

	var committed, hot atomic.Int64 // leaves committed; versions of the hot resource
	var wg sync.WaitGroup
	for si, s := range stores {
		for w := range workers {
			wg.Go(func() {
				for u := range updates {
					var leaves int64
					fail := u%7 == 3
					err := s.Update(ctx, func(tx vault.Tx) error {
						leaves = 0
						// The contended read comes first: a transaction
						// that waits for the resource while holding the
						// Seq lock could deadlock with the holder.
						if u%3 == 0 {
							next := int64(1)
							cur, err := tx.Current(ctx, "Patient", "hot")
							switch {
							case err == nil:
								next = cur.Version + 1
							case !errors.Is(err, vault.ErrNotFound):
								return err
							}
							if err := tx.Put(ctx, testRecord("Patient", "hot", next)); err != nil {
								return err
							}
							leaves++
						}
						for i := range u%4 + 1 {
							r := testRecord("Observation", fmt.Sprintf("s%d-w%d-u%d-%d", si, w, u, i), 1)
							if err := tx.Put(ctx, r); err != nil {
								return err
							}
							leaves++
						}
						if _, err := tx.AddLeaf(ctx, vault.Leaf{Type: 3, Data: []byte("event"), Ref: "event",
							Record: []byte(`{}`), Subject: "Patient/hot", Actor: fmt.Sprint("client-", si), Time: time.Now()}); err != nil {
							return err
						}
						leaves++
						if fail {
							return errBoom
						}
						return nil
					})
					switch {
					case fail && errors.Is(err, errBoom):
					case err != nil:
						t.Errorf("Update: %v", err)
						return
					default:
						committed.Add(leaves)
						if u%3 == 0 {
							hot.Add(1)
						}
					}
				}
			})
		}
	}

	done := make(chan struct{})
	var tail sync.WaitGroup
	var seen int64
	tail.Go(func() {
		after := int64(0)
		for i := 0; ; i++ {
			s := stores[i%2]
			ls, err := s.Leaves(ctx, after, 100)
			if err != nil {
				t.Errorf("Leaves(%d): %v", after, err)
				return
			}
			for _, l := range ls {
				if l.Seq != after+1 {
					t.Errorf("Leaves(%d, 100) returned Seq %d next, want %d: a gap", after, l.Seq, after+1)
					return
				}
				after = l.Seq
			}
			if len(ls) == 0 {
				time.Sleep(time.Millisecond)
				select {
				case <-done:
					if ls, err := s.Leaves(ctx, after, 100); err == nil && len(ls) == 0 {
						seen = after
						return
					}
				default:
				}
			}
		}
	})
	wg.Wait()
	close(done)
	tail.Wait()
	if t.Failed() {
		return
	}

	n := committed.Load()
	if seen != n {
		t.Errorf("tailed Seqs 1..%d, want 1..%d (the leaves committed)", seen, n)
	}
	var want vault.Stats
	for i, s := range stores {
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.Leaves != n {
			t.Errorf("Stats of store %d: %d leaves, want %d", i, st.Leaves, n)
		}
		if i == 0 {
			want = st
		} else if st != want {
			t.Errorf("Stats of store %d = %+v, store 0 says %+v", i, st, want)
		}
	}
	hist, err := stores[1].History(ctx, "Patient", "hot")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if int64(len(hist)) != hot.Load() || hist[0].Version != hot.Load() {
		t.Errorf("hot resource has %d versions, the newest %d; want %d", len(hist), hist[0].Version, hot.Load())
	}
	if ids, err := stores[0].Find(ctx, "Patient", []byte("mrn hot")); err != nil || len(ids) != 1 {
		t.Errorf("Find(mrn hot) = %v, %v; want [hot]", ids, err)
	}
}

// TestConditionalCreate runs conditional creates of one resource from two
// Stores at once: Find's lock makes each later one find the first, so one
// resource is created.
func TestConditionalCreate(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	stores := []*Store{newStore(t, dsn), newStore(t, dsn)}
	for _, s := range stores {
		defer s.Close()
	}
	ctx := t.Context()
	token := []byte("identifier|urn:mrn|42")
	var created atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			err := stores[i%2].Update(ctx, func(tx vault.Tx) error {
				ids, err := tx.Find(ctx, "Patient", token)
				if err != nil || len(ids) > 0 {
					return err
				}
				time.Sleep(5 * time.Millisecond) // widen the window a second creator would use
				r := testRecord("Patient", fmt.Sprint("p", i), 1)
				r.Tokens = [][]byte{token}
				if err := tx.Put(ctx, r); err != nil {
					return err
				}
				created.Add(1)
				return nil
			})
			if err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	if n := created.Load(); n != 1 {
		t.Errorf("%d resources created, want 1", n)
	}
	if ids, err := stores[0].Find(ctx, "Patient", token); err != nil || len(ids) != 1 {
		t.Errorf("Find = %v, %v; want one id", ids, err)
	}
}

// TestConflictFailsTransaction: Put goes to the server with the
// transaction's next statement or its commit, so a Put of a version stored
// meanwhile by another transaction is reported then, by that call or by
// Update, as ErrConflict, and the whole Update rolls back: it uses up no
// Seq, and the next transaction numbers its leaves with no gap. Nothing
// after the conflict goes to the server, whatever the caller does.
func TestConflictFailsTransaction(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	s := newStore(t, c.NewDatabase(t))
	defer s.Close()
	ctx := t.Context()
	first := testRecord("Patient", "p1", 1)
	put(t, s, first)

	// The first transaction has stored p2 but not committed when the
	// second puts it: the second waits, then conflicts.
	p2 := testRecord("Patient", "p2", 1)
	stored := make(chan struct{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.Update(ctx, func(tx vault.Tx) error {
			if err := tx.Put(ctx, p2); err != nil {
				return err
			}
			if _, err := tx.Current(ctx, "Patient", "p2"); err != nil { // sends the Put
				return err
			}
			close(stored)
			<-release
			return nil
		})
		if err != nil {
			t.Errorf("first Update: %v", err)
		}
	})
	<-stored
	var after error
	err := s.Update(ctx, func(tx vault.Tx) error {
		go func() { time.Sleep(100 * time.Millisecond); close(release) }()
		if err := tx.Put(ctx, p2); err != nil {
			return err
		}
		// The next call that goes to the server reports it, and so does
		// every call after it.
		_, after = tx.Current(ctx, "Patient", "p1")
		if err := tx.PutDataKey(ctx, "k", []byte("w")); !errors.Is(err, vault.ErrConflict) {
			t.Errorf("PutDataKey after a conflict: %v, want ErrConflict", err)
		}
		return nil // the Update must fail all the same
	})
	wg.Wait()
	if !errors.Is(err, vault.ErrConflict) || !errors.Is(after, vault.ErrConflict) {
		t.Fatalf("Update with a Put of a version stored concurrently: %v (the next call: %v), want ErrConflict", err, after)
	}
	if strings.Contains(fmt.Sprint(err), "mrn") {
		t.Errorf("conflict error quotes a token: %v", err)
	}
	err = s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, first) })
	if !errors.Is(err, vault.ErrConflict) {
		t.Errorf("Update putting a committed version: %v, want ErrConflict", err)
	}
	put(t, s, testRecord("Patient", "p3", 1))
	ls, err := s.Leaves(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		if l.Seq != int64(i+1) {
			t.Errorf("Leaves: Seq %d at %d, want %d", l.Seq, i, i+1)
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 || st.DataKeys != 0 {
		t.Errorf("%d leaves and %d data keys, want 3 and none (the failed Update's key rolled back)", len(ls), st.DataKeys)
	}
}

// TestLeafFailsUpdate: AddLeaf's statements go to the server with the
// transaction's next statement or its commit, so AddLeaf cannot report their
// failure itself. A leaf the server refuses (a Ref that is not UTF-8) must
// fail that next statement or the commit, the Update must roll back whole,
// and the next Update must number its leaves from where the last commit
// left off, with no gap.
func TestLeafFailsUpdate(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	s := newStore(t, c.NewDatabase(t))
	defer s.Close()
	ctx := t.Context()
	put(t, s, testRecord("Patient", "p1", 1))
	bad := vault.Leaf{Type: 2, Data: []byte("d"), Ref: "bad\xff"}
	good := vault.Leaf{Type: 2, Data: []byte("d"), Ref: "good"}

	for _, tt := range []struct {
		name string
		then func(tx vault.Tx) error // after the refused leaf
	}{
		{"commit", func(vault.Tx) error { return nil }},
		{"put", func(tx vault.Tx) error {
			// Put waits for no answer: the Update fails at its commit.
			tx.Put(ctx, testRecord("Patient", "p2", 1))
			return nil // the Update must fail all the same
		}},
		{"current", func(tx vault.Tx) error {
			if _, err := tx.Current(ctx, "Patient", "p1"); err == nil {
				t.Errorf("%s: Current after a refused leaf succeeded", "current")
			}
			return nil
		}},
		{"response", func(tx vault.Tx) error {
			if err := tx.PutResponse(ctx, []byte("key"), []byte("body")); err == nil {
				t.Errorf("%s: PutResponse after a refused leaf succeeded", "response")
			}
			return nil
		}},
	} {
		err := s.Update(ctx, func(tx vault.Tx) error {
			if _, err := tx.AddLeaf(ctx, good); err != nil {
				return err
			}
			if _, err := tx.AddLeaf(ctx, bad); err != nil {
				return err // refused at once: as good as later
			}
			return tt.then(tx)
		})
		if err == nil {
			t.Errorf("%s: Update with a refused leaf committed", tt.name)
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leaves != 1 || st.Versions != 1 || st.Responses != 0 {
		t.Errorf("after failed Updates: %+v, want the first version's leaf alone", st)
	}
	var seqs []int64
	err = s.Update(ctx, func(tx vault.Tx) error {
		for range 2 {
			seq, err := tx.AddLeaf(ctx, good)
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		if err := tx.Put(ctx, testRecord("Patient", "p2", 1)); err != nil {
			return err
		}
		seq, err := tx.AddLeaf(ctx, good)
		seqs = append(seqs, seq)
		return err
	})
	if err != nil {
		t.Fatalf("Update after the failed ones: %v", err)
	}
	if want := []int64{2, 3, 5}; !slices.Equal(seqs, want) {
		t.Errorf("AddLeaf returned Seqs %v, want %v", seqs, want)
	}
	ls, err := s.Leaves(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, fmt.Sprint(l.Seq, " ", l.Ref))
	}
	if want := []string{"1 Patient/p1/_history/1", "2 good", "3 good", "4 Patient/p2/_history/1", "5 good"}; !slices.Equal(got, want) {
		t.Errorf("leaves %q, want %q", got, want)
	}
}

// BenchmarkPut stores Updates of 180 versions as the gateway's ingest
// writes a Synthea Bundle: each version with 28 tokens (the Synthea set's
// mean) and a 2 KB ciphertext, followed by a leaf with a record (its
// research copy's), after one decision leaf. The cluster is durable, as in
// production.
func BenchmarkPut(b *testing.B) {
	const perUpdate, perVersion = 180, 28
	c := pgtest.Start(b, pgtest.Options{Durable: true})
	s := newStore(b, c.NewDatabase(b))
	defer s.Close()
	ctx := b.Context()
	// One random ciphertext for all: PostgreSQL stores it uncompressed
	// either way, and the benchmark measures the store, not crypto/rand.
	ciphertext := make([]byte, 2048)
	rand.Read(ciphertext)
	record := make([]byte, 300)
	rand.Read(record)
	var n atomic.Int64
	update := func() error {
		base := n.Add(1)
		rs := make([]vault.Record, perUpdate)
		for i := range rs {
			id := fmt.Sprintf("b%d-%d", base, i)
			sum := sha256.Sum256([]byte(id))
			tokens := make([][]byte, perVersion)
			for k := range tokens {
				tok := sha256.Sum256(append(sum[:], byte(k)))
				tokens[k] = tok[:]
			}
			rs[i] = vault.Record{
				Type: "Observation", ID: id, Version: 1, LastUpdated: time.Now(), KeyID: "key-patient",
				Ciphertext: ciphertext, Salt: sum[:], Commitment: sum[:], Tokens: tokens,
				Leaf: vault.Leaf{Type: 1, Data: sum[:], Ref: "Observation/" + id + "/_history/1"},
			}
		}
		leaf := func(ref string) vault.Leaf {
			return vault.Leaf{Type: 4, Data: record[:32], Ref: ref, Record: record, Salt: record[:32],
				Subject: "Patient/p", Actor: "client", Time: time.Now()}
		}
		return s.Update(ctx, func(tx vault.Tx) error {
			if _, err := tx.AddLeaf(ctx, leaf("decision")); err != nil {
				return err
			}
			for _, r := range rs {
				if err := tx.Put(ctx, r); err != nil {
					return err
				}
				if _, err := tx.AddLeaf(ctx, leaf("deidentification/"+r.ID)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := update(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*perUpdate)/b.Elapsed().Seconds(), "versions/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(2) // 2 x GOMAXPROCS concurrent Updates
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := update(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N*perUpdate)/b.Elapsed().Seconds(), "versions/s")
	})
}

func TestRecordStorage(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	s := newStore(t, c.NewDatabase(t))
	defer s.Close()
	vaulttest.RecordStorage(t, s, vaulttest.RawRecord{
		Get: func(t *testing.T, seq int64) []byte {
			var b []byte
			if err := s.pool.QueryRow(t.Context(), `SELECT record FROM leaf_records WHERE seq = $1`, seq).Scan(&b); err != nil {
				t.Fatalf("read stored record: %v", err)
			}
			return b
		},
		Set: func(t *testing.T, seq int64, stored []byte) {
			if _, err := s.pool.Exec(t.Context(), `UPDATE leaf_records SET record = $1 WHERE seq = $2`, stored, seq); err != nil {
				t.Fatalf("write stored record: %v", err)
			}
		},
	})
}
