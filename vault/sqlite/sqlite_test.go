package sqlite

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

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
