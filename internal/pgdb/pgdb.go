// Package pgdb holds what every PostgreSQL store of fhiranchor does the same
// way: open a pgx pool from a DSN, bring a component's schema up to date
// under a lock (several gateways may start at once against one database), and
// classify PostgreSQL's errors. The stores (vault/postgres, anchor/postgres)
// keep their own schemas and statements; they share one database, each with
// its own row of schema versions.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure Open.
type Options struct {
	// DSN is a PostgreSQL connection string (URL or key=value). The password
	// may come from the standard PGPASSWORD variable or a .pgpass file
	// instead, so that config files hold no secret.
	DSN string
	// MaxConns bounds the pool; 0 means pgx's default (max(4, CPUs)).
	MaxConns int32
	// Component names the schema migrations belong to ("vault", "log").
	Component string
	// Migrations bring the component's schema to version i+1; see Migrate.
	Migrations []string
}

// Open connects a pool, checks the server answers, and migrates the
// component's schema.
func Open(ctx context.Context, o Options) (*pgxpool.Pool, error) {
	if o.DSN == "" {
		return nil, errors.New("postgres: DSN is empty")
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx quotes the DSN, password included, in its parse errors.
		return nil, errors.New("postgres: the DSN does not parse")
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	// Every session works in UTC and fails a statement stuck on a lock
	// rather than hang a request forever.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "60s"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := Migrate(ctx, pool, o.Component, o.Migrations); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// migrateLock is the advisory lock key Migrate holds: gateways starting at
// once against an empty database migrate one after the other.
const migrateLock = 0x66686972_616e6368 // "fhiranch"

// Migrate applies, in one transaction, the migrations of component the
// database has not had yet; migrations[i] brings the schema to version i+1.
// Released migrations are never edited, only appended to. A database newer
// than the build is refused.
func Migrate(ctx context.Context, pool *pgxpool.Pool, component string, migrations []string) error {
	if component == "" {
		return errors.New("postgres: migrate: component is empty")
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s schema: %w", component, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("migrate %s schema: lock: %w", component, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_versions (
	component text        NOT NULL,
	version   integer     NOT NULL,
	applied   timestamptz NOT NULL,
	PRIMARY KEY (component, version)
)`); err != nil {
		return fmt.Errorf("migrate %s schema: %w", component, err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_versions WHERE component = $1`,
		component).Scan(&have); err != nil {
		return fmt.Errorf("migrate %s schema: %w", component, err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate %s schema: database is at version %d, this build knows %d", component, have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("migrate %s schema to version %d: %w", component, v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_versions (component, version, applied) VALUES ($1, $2, now())`,
			component, v); err != nil {
			return fmt.Errorf("migrate %s schema to version %d: %w", component, v, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %s schema: %w", component, err)
	}
	return nil
}

// SQLSTATE codes the stores act on.
const (
	UniqueViolation      = "23505"
	ForeignKeyViolation  = "23503"
	SerializationFailure = "40001"
	DeadlockDetected     = "40P01"
	LockNotAvailable     = "55P03"
	AdminShutdown        = "57P01"
	CrashShutdown        = "57P02"
	CannotConnectNow     = "57P03"
	TooManyConnections   = "53300"
)

// Code returns err's SQLSTATE, or "" if it is not a PostgreSQL error.
func Code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// IsConflict reports whether err means the transaction collided with
// another: a unique violation, a serialization failure, a deadlock or a
// lock timeout. The caller may retry the whole transaction.
func IsConflict(err error) bool {
	switch Code(err) {
	case UniqueViolation, SerializationFailure, DeadlockDetected, LockNotAvailable:
		return true
	}
	return false
}

// IsUnavailable reports whether err means the server could not be reached
// or dropped the session rather than answered: a failed connect, a lost
// connection, the server shutting down or starting up, no free connection
// slot. Nothing of the statement was committed; the caller may retry later.
// An error caused by the caller's context ending is not one.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	code := Code(err)
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return true
	case code == AdminShutdown, code == CrashShutdown, code == CannotConnectNow, code == TooManyConnections:
		return true
	case code != "":
		return false // the server answered
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.SafeToRetry(err):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	}
	// pgx reports a connection it found closed, or closed itself after an
	// error, and puddle a closed pool, with errors that have no type to test.
	return strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool")
}

// IsNoRows reports whether err is pgx's "no rows in result set".
func IsNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
