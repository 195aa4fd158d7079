package pgtest

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStart(t *testing.T) {
	c := Start(t, Options{})
	dsn := c.NewDatabase(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var v string
	if err := conn.QueryRow(t.Context(), "SHOW server_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	var fsync string
	if err := conn.QueryRow(t.Context(), "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	if fsync != "off" {
		t.Errorf("fsync = %s, want off for a non-durable cluster", fsync)
	}
	t.Logf("PostgreSQL %s on port %d", v, c.Port)

	// CPU grows when a backend works: a query that burns CPU for a while.
	cpu0, err := c.CPU()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM generate_series(1, 1000000) a WHERE md5(a::text) > 'f'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	cpu1, err := c.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if cpu1-cpu0 < 100*time.Millisecond {
		t.Errorf("CPU grew by %v over a query that hashes a million strings, want at least 100ms", cpu1-cpu0)
	}
	t.Logf("the query took %v of the cluster's CPU", cpu1-cpu0)
}
