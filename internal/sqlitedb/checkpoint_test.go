package sqlitedb

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

func walState(t *testing.T, path string) (frames, backfilled uint32) {
	t.Helper()
	frames, backfilled, err := WALState(path)
	if err != nil {
		t.Fatal(err)
	}
	return frames, backfilled
}

// openCheckpointed opens a database of one table t (k, v) with its writer
// set up for a Checkpointer, and starts one with pause; the connections
// close when the test ends.
func openCheckpointed(t *testing.T, pause time.Duration) (path string, w, r *sql.DB, c *Checkpointer) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "db")
	w, r, err := Open(t.Context(), Options{Path: path,
		Migrations:    []string{`CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL) STRICT`},
		WriterPragmas: CheckpointerPragma})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(w, r) })
	if c, err = StartCheckpointer(path, pause); err != nil {
		t.Fatal(err)
	}
	return path, w, r, c
}

// TestCheckpointer: with the writer opened as CheckpointerPragma says, a
// WAL past SQLite's default threshold (1000 pages) is not checkpointed by
// the writer's commits; after a Kick the Checkpointer copies all of it,
// while the writer's connection stays open and idle; and Close stops it.
func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	path, w, r, c := openCheckpointed(t, time.Millisecond)
	var wait int64
	if err := c.db.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&wait); err != nil || wait != lockWait.Milliseconds() {
		t.Fatalf("the Checkpointer's busy timeout is %d ms (%v), want %d", wait, err, lockWait.Milliseconds())
	}
	// 1500 commits of a 3 KiB row each: some 3000 pages of WAL.
	for i := range 1500 {
		if _, err := w.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, randomblob(3000))`, i); err != nil {
			t.Fatal(err)
		}
	}
	frames, backfilled := walState(t, path)
	if frames < 2000 || frames >= SafetyCheckpointPages {
		t.Fatalf("the WAL holds %d frames; the test needs between 2000 and %d", frames, SafetyCheckpointPages)
	}
	if backfilled != 0 {
		t.Fatalf("%d of %d frames were checkpointed before any Kick: the writer checkpoints in its commits", backfilled, frames)
	}
	c.Kick()
	for deadline := time.Now().Add(time.Minute); ; {
		if frames, backfilled = walState(t, path); backfilled == frames {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after Kick, %d of %d frames are checkpointed", backfilled, frames)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed: a Kick neither blocks nor checkpoints.
	if _, err := w.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (-1, x'00')`); err != nil {
		t.Fatal(err)
	}
	c.Kick()
	time.Sleep(20 * time.Millisecond)
	if frames, backfilled := walState(t, path); frames == backfilled {
		t.Fatalf("a closed Checkpointer checkpointed (%d frames)", frames)
	}
	var n int
	if err := r.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1501 {
		t.Fatalf("count: %d, %v", n, err)
	}
}

// TestTruncateWaitsForReaders: a reader in a transaction holds the WAL;
// Truncate does not report success while it does (SQLite reports that
// checkpoint as busy, not as an error: the erasure's checkpoint before
// the Checkpointer ignored it), and empties the WAL once the reader is
// done.
func TestTruncateWaitsForReaders(t *testing.T) {
	ctx := context.Background()
	path, w, r, c := openCheckpointed(t, time.Hour)
	defer c.Close()
	insert := func(k int) {
		t.Helper()
		if _, err := w.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, randomblob(100))`, k); err != nil {
			t.Fatal(err)
		}
	}
	insert(1)
	reader, err := r.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := reader.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("count: %d, %v", n, err)
	}
	insert(2)
	// The reader outlasts many tries (each waits lockWait): SQLite reports
	// each as busy, not as an error.
	// The reader finishes later; Truncate must not return before.
	var released atomic.Bool
	go func() {
		time.Sleep(300 * time.Millisecond)
		released.Store(true)
		if _, err := reader.ExecContext(ctx, `COMMIT`); err != nil {
			t.Error(err)
		}
	}()
	if err := c.Truncate(ctx); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	if !released.Load() {
		t.Fatal("Truncate returned while a reader held the WAL")
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() != 0 {
		t.Fatalf("after Truncate the WAL file is %v (%v), want empty", fi.Size(), err)
	}
	if err := r.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("count: %d, %v", n, err)
	}
}

// TestWALStartsOver: a writer that commits again and again, with the
// pauses a server's commits have between them, and readers reading all the
// while: the WAL starts over once restartFrames of it are checkpointed, so
// its file stays a few restartFrames long, where it grew with every commit
// (to SafetyCheckpointPages) while the Checkpointer ran PASSIVE alone.
func TestWALStartsOver(t *testing.T) {
	ctx := t.Context()
	path, w, r, c := openCheckpointed(t, 100*time.Millisecond) // the Store's pause
	defer c.Close()
	var stop atomic.Bool
	reads := make(chan error, 2)
	for range 2 {
		go func() {
			var err error
			for k := 0; !stop.Load() && err == nil; k++ {
				var n int
				err = r.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE k = ?`, k%100).Scan(&n)
			}
			reads <- err
		}()
	}
	// 4000 commits of a 3 KiB row: 8,000 to 12,000 frames, under
	// SafetyCheckpointPages, so that the writer's own checkpoint never runs.
	const commits = 4000
	for i := range commits {
		if _, err := w.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, randomblob(3000))`, i); err != nil {
			t.Fatal(err)
		}
		c.Kick()
		time.Sleep(100 * time.Microsecond)
	}
	stop.Store(true)
	for range 2 {
		if err := <-reads; err != nil {
			t.Fatal(err)
		}
	}
	frames, _ := walState(t, path)
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// A frame is a 24-byte header and a page (4096 bytes).
	if most := int64(4*restartFrames) * (24 + 4096); fi.Size() > most {
		t.Fatalf("after %d commits the WAL file is %d bytes (%d frames now): it did not start over", commits, fi.Size(), frames)
	}
	t.Logf("after %d commits the WAL file is %d bytes, %d frames now", commits, fi.Size(), frames)
	var n int
	if err := r.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != commits {
		t.Fatalf("count: %d, %v", n, err)
	}
}
