// Package sqlitedb holds what every SQLite store of fhiranchor does the
// same way when it opens a database file: create it private, and bring its
// schema up to date. The stores (vault/sqlite, anchor/sqlite) keep their own
// schemas and connections.
package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// CreateFile creates the database file with mode 0600 (its directory 0700)
// before SQLite opens it: SQLite would create it with the umask's mode, and
// gives its -wal and -shm files the mode of the database file.
func CreateFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create sqlite directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create sqlite database: %w", err)
	}
	return f.Close()
}

// Migrate applies, in one transaction, the migrations the database has not
// had yet; migrations[i] brings the schema to version i+1. Released
// migrations are never edited, only appended to. A database newer than the
// build is refused.
func Migrate(ctx context.Context, db *sql.DB, migrations []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate sqlite schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER PRIMARY KEY,
	applied INTEGER NOT NULL -- microseconds since the Unix epoch, UTC
) STRICT`); err != nil {
		return fmt.Errorf("migrate sqlite schema: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return fmt.Errorf("migrate sqlite schema: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate sqlite schema: database is at version %d, this build knows %d", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("migrate sqlite schema to version %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied) VALUES (?, ?)`,
			v, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("migrate sqlite schema to version %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate sqlite schema: %w", err)
	}
	return nil
}
