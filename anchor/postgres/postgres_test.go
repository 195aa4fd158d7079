package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/transparency-dev/merkle/compact"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/anchortest"
	"github.com/fhiranchor/fhiranchor/internal/pgdb"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
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
	anchortest.Exercise(t, func(t *testing.T) anchor.Store { return newStore(t, c.NewDatabase(t)) })
}

// TestSchema: the log's tables are all prefixed log_ (the vault shares the
// database), its version is recorded under "log", and a second New does not
// migrate again.
func TestSchema(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	s := newStore(t, dsn)
	defer s.Close()
	ctx := t.Context()
	root := make(anchor.Hex, 32)
	root[0] = 7
	if err := s.Append(ctx, 0, []anchor.Node{{ID: compact.NewNodeID(0, 0), Hash: root}}, anchor.Checkpoint{Size: 1, Root: root}); err != nil {
		t.Fatalf("Append: %v", err)
	}

	s2 := newStore(t, dsn)
	defer s2.Close()
	if cp, err := s2.LastCheckpoint(ctx); err != nil || cp.Size != 1 || cp.Root[0] != 7 || !cp.Time.IsZero() {
		t.Errorf("LastCheckpoint from a second Store = %+v, %v", cp, err)
	}
	var versions []int
	rows, err := s.pool.Query(ctx, `SELECT version FROM schema_versions WHERE component = 'log' ORDER BY version`)
	if err == nil {
		versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	if err != nil || len(versions) != len(migrations) || versions[len(versions)-1] != len(migrations) {
		t.Errorf("schema versions = %v, %v; want 1..%d", versions, err, len(migrations))
	}
	rows, err = s.pool.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = 'public' AND c.relname NOT LIKE 'log\_%' AND c.relname NOT LIKE 'schema\_versions%'`)
	if err != nil {
		t.Fatal(err)
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(others) > 0 {
		t.Errorf("relations not prefixed log_: %v, %v", others, err)
	}
}

// TestAppendRace: two Stores (two processes, as two leaders that briefly
// overlap) Append from the same size at once; exactly one succeeds, the other
// gets ErrConflict and stores nothing.
func TestAppendRace(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	stores := []*Store{newStore(t, dsn), newStore(t, dsn)}
	for _, s := range stores {
		defer s.Close()
	}
	ctx := t.Context()
	hash := func(round, w int) anchor.Hex {
		h := make(anchor.Hex, 32)
		copy(h, fmt.Sprintf("round %d writer %d", round, w))
		return h
	}
	var size uint64
	for round := range 20 {
		// Writer 0 adds a leaf node, writer 1 none: the fence, not the
		// primary key, must stop the loser.
		errs := make([]error, 2)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w, s := range stores {
			wg.Go(func() {
				var nodes []anchor.Node
				if w == 0 {
					nodes = []anchor.Node{{ID: compact.NewNodeID(0, size), Hash: hash(round, w)}}
				}
				<-start
				errs[w] = s.Append(ctx, size, nodes, anchor.Checkpoint{Size: size + 1, Root: hash(round, w)})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil && winner < 0:
				winner = w
			case err == nil:
				t.Fatalf("round %d: both Appends from %d succeeded", round, size)
			case !errors.Is(err, anchor.ErrConflict):
				t.Fatalf("round %d: writer %d: Append = %v, want nil or ErrConflict", round, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no Append from %d succeeded: %v", round, size, errs)
		}
		cp, err := stores[1-winner].LastCheckpoint(ctx)
		if err != nil || cp.Size != size+1 || string(cp.Root) != string(hash(round, winner)) {
			t.Fatalf("round %d: LastCheckpoint = %d %q, %v; want the winner's", round, cp.Size, cp.Root, err)
		}
		_, err = stores[0].Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, size)})
		if (winner == 0) != (err == nil) {
			t.Fatalf("round %d: node (0, %d) with winner %d: %v", round, size, winner, err)
		}
		size++
	}
}

// TestClosed: a closed Store fails rather than hangs.
func TestClosed(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	s := newStore(t, c.NewDatabase(t))
	s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, err := s.LastCheckpoint(ctx); err == nil || errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("LastCheckpoint on a closed Store = %v, want an error", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg Config
		ok  bool
	}{
		{Config{DSN: "postgres://localhost/fhiranchor"}, true},
		{Config{DSN: "host=localhost dbname=fhiranchor", MaxConns: 4}, true},
		{Config{}, false},
		{Config{DSN: "postgres://localhost/fhiranchor", MaxConns: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tt.cfg, err, tt.ok)
		}
	}
	if _, err := New(t.Context(), Config{}); err == nil {
		t.Error("New with no DSN succeeded")
	}
}

// TestMigrateV1: a log written under schema version 1 opens under the
// current schema with its checkpoints intact and without notes, and new
// checkpoints keep theirs.
func TestMigrateV1(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	ctx := t.Context()
	pool, err := pgdb.Open(ctx, pgdb.Options{DSN: dsn, Component: component, Migrations: migrations[:1]})
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	root[0] = 7
	for _, q := range []string{
		`INSERT INTO log_nodes (level, idx, hash) VALUES (0, 0, $1)`,
		`INSERT INTO log_checkpoints (size, root, time) VALUES (1, $1, now())`,
	} {
		if _, err := pool.Exec(ctx, q, root); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE log_head SET size = 1`); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	s := newStore(t, dsn)
	defer s.Close()
	cp, err := s.LastCheckpoint(ctx)
	if err != nil || cp.Size != 1 || cp.Root[0] != 7 || cp.Note != "" {
		t.Errorf("LastCheckpoint of the version 1 log = %+v, %v; want size 1 without a note", cp, err)
	}
	next := anchor.Checkpoint{Size: 2, Root: root, Note: "signed\n\n— x c2ln\n"}
	if err := s.Append(ctx, 1, []anchor.Node{{ID: compact.NewNodeID(0, 1), Hash: root}}, next); err != nil {
		t.Fatal(err)
	}
	if cps, err := s.Checkpoints(ctx, 0, 10); err != nil || len(cps) != 2 || cps[0].Note != "" || cps[1].Note != next.Note {
		t.Errorf("Checkpoints = %+v, %v", cps, err)
	}
}
