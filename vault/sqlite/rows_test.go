package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fhiranchor/fhiranchor/vault"
)

// TestListingsOfAnEditedFile holds the listings read through rowsFunc
// (Versions, Leaves, Records, TokenSets) to what database/sql's Rows.Scan
// made of the same rows before them, on a file edited the way an intruder
// can: STRICT dropped from the tables' definitions, then a value of the
// wrong type planted in one column. Scan converts some (a blob of digits
// into an integer, the text "true" into a bool) and refuses others (2 as
// a bool, 2.5 as an integer); the listings must convert and refuse the
// same, so that an audit sees the same rows it saw before. The oracle is
// the old queries, scanned as they were, over the same file.
func TestListingsOfAnEditedFile(t *testing.T) {
	ctx := t.Context()
	base := filepath.Join(t.TempDir(), "base.db")
	s, err := New(ctx, Config{Path: base, MergeRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, tokenRecord("a", 1, "t1", "t2")); err != nil {
			return err
		}
		r := tokenRecord("b", 1, "t3")
		r.Deid = []byte("copy")
		if err := tx.Put(ctx, r); err != nil {
			return err
		}
		_, err := tx.AddLeaf(ctx, vault.Leaf{Type: 3, Data: []byte("d"), Ref: "r", Record: []byte(`{"kind":"x"}`),
			Salt: []byte("salt"), Subject: "Patient/p", Actor: "client", Time: time.UnixMicro(1_700_000_000_000_000)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	edit(t, base, `PRAGMA writable_schema = ON`,
		`UPDATE sqlite_schema SET sql = replace(sql, ') STRICT', ')')
		 WHERE name IN ('versions', 'leaves', 'leaf_records', 'token_sets')`,
		`PRAGMA writable_schema = OFF`)

	for _, plant := range []string{
		``, // the untouched rows
		`UPDATE versions SET version = 'x' WHERE id = 'a'`,
		`UPDATE versions SET version = 2.5 WHERE id = 'a'`,
		`UPDATE versions SET version = x'37' WHERE id = 'a'`,
		`UPDATE versions SET last_updated = 'soon' WHERE id = 'a'`,
		`UPDATE versions SET deleted = 2 WHERE id = 'a'`,
		`UPDATE versions SET deleted = 'true' WHERE id = 'a'`,
		`UPDATE versions SET erased = -1 WHERE id = 'a'`,
		`UPDATE versions SET key_id = x'6b32' WHERE id = 'a'`,
		`UPDATE versions SET type = x'00ff' WHERE id = 'a'`,
		`UPDATE versions SET ciphertext = 'text', salt = 12, commitment = 1.5 WHERE id = 'a'`,
		`UPDATE versions SET deid = 'text' WHERE id = 'b'`,
		`UPDATE leaves SET type = 'x' WHERE seq = 1`,
		`UPDATE leaves SET data = 'text', ref = x'41' WHERE seq = 2`,
		`UPDATE leaf_records SET time = 1.5`,
		`UPDATE leaf_records SET subject = x'50', actor = 7, salt = 'text'`,
		`UPDATE leaf_records SET record = 'not packed'`,
		`UPDATE token_sets SET tokens = 'abc' WHERE seq = 1`,
		`UPDATE token_sets SET tokens = 5 WHERE seq = 2`,
	} {
		name := plant
		if name == "" {
			name = "untouched" // not "#00": a path holding '#' is refused
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vault.db")
			file, err := os.ReadFile(base)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, file, 0o600); err != nil {
				t.Fatal(err)
			}
			if plant != "" {
				edit(t, path, plant)
			}
			s, err := New(ctx, Config{Path: path, MergeRows: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			opts := cmp.Options{cmpopts.EquateEmpty()}
			sameListing(t, "Versions", opts,
				func() (any, error) { return s.Versions(ctx, 0, 10) },
				func() (any, error) { return scannedVersions(ctx, db) })
			sameListing(t, "Leaves", opts,
				func() (any, error) { return s.Leaves(ctx, 0, 10) },
				func() (any, error) { return scannedLeaves(ctx, db) })
			sameListing(t, "Records", opts,
				func() (any, error) { return s.Records(ctx, 0, 10) },
				func() (any, error) { return scannedRecords(ctx, db) })
			sameListing(t, "TokenSets", opts,
				func() (any, error) { return s.TokenSets(ctx, 0, 10) },
				func() (any, error) { return scannedTokenSets(ctx, db) })
		})
	}
}

// sameListing fails t unless got and want both fail or both return the
// same rows.
func sameListing(t *testing.T, what string, opts cmp.Options, got, want func() (any, error)) {
	t.Helper()
	g, gerr := got()
	w, werr := want()
	switch {
	case (gerr == nil) != (werr == nil):
		t.Errorf("%s: error %v; Scan's error %v", what, gerr, werr)
	case gerr == nil:
		if d := cmp.Diff(w, g, opts); d != "" {
			t.Errorf("%s differ from Scan's (-scan +listing):\n%s", what, d)
		}
	}
}

// The listings as they were read before rowsFunc: the same queries,
// through Rows.Scan.

func scannedVersions(ctx context.Context, db *sql.DB) ([]vault.Record, error) {
	return scanned(ctx, db, changesSQL+` ORDER BY v.seq`, func(rows *sql.Rows) (vault.Record, error) {
		var r vault.Record
		var lastUpdated, leafType int64
		err := rows.Scan(&r.Type, &r.ID, &r.Leaf.Seq, &r.Version, &lastUpdated, &r.Deleted, &r.Erased, &r.KeyID,
			&r.Ciphertext, &r.Salt, &r.Commitment, &r.Deid, &leafType, &r.Leaf.Data, &r.Leaf.Ref, &r.Client)
		r.LastUpdated, r.Leaf.Type = time.UnixMicro(lastUpdated).UTC(), uint8(leafType)
		return r, err
	})
}

func scannedLeaves(ctx context.Context, db *sql.DB) ([]vault.Leaf, error) {
	return scanned(ctx, db, `SELECT seq, type, data, ref FROM leaves ORDER BY seq`, func(rows *sql.Rows) (vault.Leaf, error) {
		var l vault.Leaf
		var typ int64
		err := rows.Scan(&l.Seq, &typ, &l.Data, &l.Ref)
		l.Type = uint8(typ)
		return l, err
	})
}

func scannedRecords(ctx context.Context, db *sql.DB) ([]vault.Leaf, error) {
	return scanned(ctx, db, `SELECT seq, type, record, salt, subject, actor, time FROM leaf_records ORDER BY seq`,
		func(rows *sql.Rows) (vault.Leaf, error) {
			var l vault.Leaf
			var typ, at int64
			err := rows.Scan(&l.Seq, &typ, &l.Record, &l.Salt, &l.Subject, &l.Actor, &at)
			l.Record = vault.UnpackRecord(l.Record)
			l.Type, l.Time = uint8(typ), time.UnixMicro(at).UTC()
			return l, err
		})
}

func scannedTokenSets(ctx context.Context, db *sql.DB) ([]vault.TokenSet, error) {
	return scanned(ctx, db, `SELECT seq, tokens FROM token_sets ORDER BY seq`, func(rows *sql.Rows) (vault.TokenSet, error) {
		var seq int64
		var b []byte
		if err := rows.Scan(&seq, &b); err != nil {
			return vault.TokenSet{}, err
		}
		tokens, err := vault.DecodeTokenSet(b)
		return vault.TokenSet{Seq: seq, Tokens: tokens, Bad: err != nil}, nil
	})
}

func scanned[T any](ctx context.Context, db *sql.DB, q string, scan func(*sql.Rows) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// edit runs stmts on the file at path through a connection of its own, as
// an editor of the file would; closing it, the last, checkpoints the WAL
// into the file.
func edit(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range stmts {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
