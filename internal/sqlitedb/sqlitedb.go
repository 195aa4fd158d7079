// Package sqlitedb holds what every SQLite store of fhiranchor does the
// same way: check the path, create the file private, open one writer
// connection (WAL, synchronous FULL: an acknowledged write is durable) and a
// pool of query-only readers, bring the schema up to date, and close. The
// stores (vault/sqlite, anchor/sqlite) keep their own schemas and
// statements, and import the driver, which registers itself as "sqlite".
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// ValidatePath reports whether path can name a store's database file.
func ValidatePath(path string) error {
	switch {
	case path == "":
		return errors.New("sqlite: path is empty")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return errors.New("sqlite: path must name a file, not a memory database or URI")
	case strings.ContainsAny(path, "?#"):
		return errors.New("sqlite: path must not contain '?' or '#'")
	}
	return nil
}

// Options configure Open.
type Options struct {
	Path       string
	Migrations []string // see Migrate
	// WriterPragmas and ReaderPragmas are extra DSN parameters, such as
	// "&_pragma=cache_size(-32000)", appended to the common ones.
	WriterPragmas, ReaderPragmas string
}

// Open creates the database file if needed, opens the single writer
// connection (immediate transactions, so writers queue instead of failing),
// checks WAL mode, migrates the schema, and opens the readers. busy_timeout
// comes first in each DSN so that the other pragmas wait for a lock instead
// of failing.
func Open(ctx context.Context, o Options) (w, r *sql.DB, err error) {
	if err := ValidatePath(o.Path); err != nil {
		return nil, nil, err
	}
	if err := CreateFile(o.Path); err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			Close(w, r)
			w, r = nil, nil
		}
	}()
	w, err = openOne(o.Path + busyTimeout + "&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(1)" + o.WriterPragmas + "&_txlock=immediate")
	if err != nil {
		return nil, nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return w, nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return w, nil, fmt.Errorf("open sqlite: journal mode is %q, want wal", mode)
	}
	if err := Migrate(ctx, w, o.Migrations); err != nil {
		return w, nil, err
	}
	r, err = sql.Open("sqlite", o.Path+busyTimeout+"&_pragma=query_only(1)"+o.ReaderPragmas)
	if err != nil {
		return w, nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	return w, r, nil
}

// busyTimeout starts every DSN but the Checkpointer's (lockWait): a
// connection waits up to 10 s for a lock rather than fail at once.
var busyTimeout = busyTimeoutDSN(10 * time.Second)

// busyTimeoutDSN is the start of a DSN whose connection waits up to d for
// a lock (SQLite's busy timeout, in milliseconds).
func busyTimeoutDSN(d time.Duration) string {
	return fmt.Sprintf("?_pragma=busy_timeout(%d)", d.Milliseconds())
}

// openOne opens a pool of one connection kept open for good: the writer,
// or a Checkpointer's.
func openOne(dsn string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// Close closes what Open opened; either may be nil.
func Close(w, r *sql.DB) error {
	var errs []error
	for _, db := range []*sql.DB{r, w} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite: %w", err)
	}
	return nil
}

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
