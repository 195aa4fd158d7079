package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhiranchor/fhiranchor/internal/pgtest"
)

// TestMigrate opens one database from several goroutines at once, as
// gateways starting together do: each migration runs once, and a database
// newer than the build is refused.
func TestMigrate(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	migrations := []string{
		`CREATE TABLE a (x integer PRIMARY KEY)`,
		`ALTER TABLE a ADD COLUMN y text`,
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := Open(t.Context(), Options{DSN: dsn, Component: "test", Migrations: migrations})
			if err == nil {
				p.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Open: %v", err)
	}
	p, err := Open(t.Context(), Options{DSN: dsn, Component: "test", Migrations: migrations})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var n int
	if err := p.QueryRow(t.Context(), `SELECT count(*) FROM schema_versions WHERE component = 'test'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("schema_versions rows = %d, %v; want 2", n, err)
	}
	// Another component's versions are its own.
	if err := Migrate(t.Context(), p, "other", []string{`CREATE TABLE b (x integer)`}); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(t.Context(), p, "test", migrations[:1]); err == nil || !strings.Contains(err.Error(), "this build knows 1") {
		t.Errorf("Migrate with fewer migrations = %v, want a refusal", err)
	}
	if _, err := p.Exec(t.Context(), `INSERT INTO a (x) VALUES (1), (1)`); !IsConflict(err) || Code(err) != UniqueViolation {
		t.Errorf("duplicate insert: IsConflict = false, code %q", Code(err))
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.Context(), Options{}); err == nil {
		t.Error("Open with no DSN succeeded")
	}
	_, err := Open(t.Context(), Options{DSN: "postgres://u:s3cret@[::1", Component: "x"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open of a broken DSN = %v; want an error that does not quote the password", err)
	}
}

// TestIsUnavailable: an unreachable or departing server is unavailable; an
// answer of the server, or the caller's own context ending, is not.
func TestIsUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true},
		{"admin shutdown", &pgconn.PgError{Code: AdminShutdown}, true},
		{"cannot connect now", &pgconn.PgError{Code: CannotConnectNow}, true},
		{"too many connections", &pgconn.PgError{Code: TooManyConnections}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"conn closed", errors.New("conn closed"), true},
		{"unique violation", &pgconn.PgError{Code: UniqueViolation}, false},
		{"syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"caller cancelled", fmt.Errorf("query: %w", context.Canceled), false},
		{"caller's deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{"other", errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := IsUnavailable(tt.err); got != tt.want {
			t.Errorf("IsUnavailable(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestUnavailableWhenStopped: a pool whose server stopped reports errors
// IsUnavailable recognises, and works again once the server is back.
func TestUnavailableWhenStopped(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	pool, err := Open(t.Context(), Options{DSN: c.NewDatabase(t), Component: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, `SELECT 1`); !IsUnavailable(err) {
		t.Fatalf("with the server stopped: %v, want an unavailable error", err)
	}
	c.Restart()
	if _, err := pool.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("with the server back: %v", err)
	}
}
