package pgtest

import (
	"testing"

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
}
