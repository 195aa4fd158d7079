package sqlite

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/transparency-dev/merkle/compact"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/anchortest"
	"github.com/fhiranchor/fhiranchor/internal/sqlitedb"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{Path: filepath.Join(t.TempDir(), "log.db")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	anchortest.Exercise(t, func(t *testing.T) anchor.Store { return newStore(t) })
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
	if _, err := s.r.ExecContext(ctx, "DELETE FROM nodes"); err == nil {
		t.Errorf("a reader connection accepted a write")
	}
	var version int
	if err := s.r.QueryRowContext(ctx, "SELECT max(version) FROM schema_version").Scan(&version); err != nil || version != len(migrations) {
		t.Errorf("schema version = %d, %v; want %d", version, err, len(migrations))
	}

	// The database and its WAL are private to the owner.
	cp := anchor.Checkpoint{Size: 1, Root: make([]byte, 32)}
	if err := s.Append(ctx, 0, []anchor.Node{{ID: compact.NewNodeID(0, 0), Hash: make([]byte, 32)}}, cp); err != nil {
		t.Fatalf("Append: %v", err)
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

// TestReopen: what a Store wrote is there after it is closed and opened
// again, and a second open does not re-apply migrations.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "log.db")
	s, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	root := make(anchor.Hex, 32)
	root[0] = 7
	if err := s.Append(ctx, 0, []anchor.Node{{ID: compact.NewNodeID(0, 0), Hash: root}}, anchor.Checkpoint{Size: 1, Root: root}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	a := anchor.AnchorRecord{Seq: 1, TreeSize: 1, Root: root, PrevRoot: make(anchor.Hex, 32), ChainID: 1337,
		Contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3", Status: anchor.StatusSubmitted, TxHash: root}
	if err := s.PutAnchor(ctx, a); err != nil {
		t.Fatalf("PutAnchor: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}

	s, err = New(ctx, Config{Path: path})
	if err != nil {
		t.Fatalf("New again: %v", err)
	}
	defer s.Close()
	cp, err := s.LastCheckpoint(ctx)
	if err != nil || cp.Size != 1 || cp.Root[0] != 7 {
		t.Errorf("LastCheckpoint after reopen = %+v, %v", cp, err)
	}
	if got, err := s.LastAnchor(ctx); err != nil || got.Seq != 1 || got.Status != anchor.StatusSubmitted {
		t.Errorf("LastAnchor after reopen = %+v, %v", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"log.db", true},
		{"/var/lib/fhiranchor/log.db", true},
		{"", false},
		{":memory:", false},
		{"file:log.db", false},
		{"log.db?mode=ro", false},
	}
	for _, tt := range tests {
		if err := (Config{Path: tt.path}).Validate(); (err == nil) != tt.ok {
			t.Errorf("Config{Path: %q}.Validate() = %v, want ok %v", tt.path, err, tt.ok)
		}
	}
}

// TestMigrateV1: a log written under schema version 1 opens under the
// current schema with its checkpoints intact and without notes, and new
// checkpoints keep theirs.
func TestMigrateV1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "log.db")
	w, r, err := sqlitedb.Open(ctx, sqlitedb.Options{Path: path, Migrations: migrations[:1]})
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	root[0] = 7
	if _, err := w.ExecContext(ctx, `INSERT INTO nodes (level, idx, hash) VALUES (0, 0, ?)`, root); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ExecContext(ctx, `INSERT INTO checkpoints (size, root, time) VALUES (1, ?, 0)`, root); err != nil {
		t.Fatal(err)
	}
	if err := sqlitedb.Close(w, r); err != nil {
		t.Fatal(err)
	}

	s, err := New(ctx, Config{Path: path})
	if err != nil {
		t.Fatalf("New on a version 1 log: %v", err)
	}
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
