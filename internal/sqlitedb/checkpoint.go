package sqlitedb

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"time"
)

// SafetyCheckpointPages is the WAL size, in pages, at which the writer
// checkpoints in its own commit when a Checkpointer runs (the
// wal_autocheckpoint the writer is opened with, CheckpointerPragma): only
// if the Checkpointer falls that far behind, or fails.
const SafetyCheckpointPages = 16384

// CheckpointerPragma is the writer's DSN parameter for a database a
// Checkpointer serves: SQLite's own checkpoint moves from every 1000 pages
// of WAL to SafetyCheckpointPages.
var CheckpointerPragma = fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", SafetyCheckpointPages)

// Checkpointer copies a database's WAL into the database file in the
// background, on a connection of its own.
//
// SQLite checkpoints by default in the commit that takes the WAL past
// 1000 pages: that commit reads the WAL's new pages, writes them into the
// database file and fsyncs it before it returns, while every other write
// waits for the one writer connection. At a million resources a commit of
// a postings merge dirties thousands of pages, and the checkpoints after
// it were some 7 % of the writer's time (BenchmarkScale's paired profile).
// A checkpoint does not need the write lock: it runs beside the writer's
// transactions, which go on appending to the WAL (a RESTART after it
// takes the lock briefly, see restartFrames). It copies each page
// once however many commits rewrote it in between, which the hot pages of
// append-only tables (rewritten by every commit) make a large share.
//
// Durability is unchanged: a commit is durable when its WAL frames are
// fsynced (synchronous FULL), checkpointed or not. A checkpoint that fails
// or is held back by a reader leaves its frames in the WAL for the next
// one; the writer's own checkpoint at SafetyCheckpointPages bounds the
// WAL if this one stops keeping up.
type Checkpointer struct {
	db     *sql.DB
	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	pause  time.Duration
}

// StartCheckpointer opens a connection to the database at path (Open has
// created and migrated it) and starts checkpointing after each Kick, at
// most once per pause.
func StartCheckpointer(path string, pause time.Duration) (*Checkpointer, error) {
	// synchronous FULL: the checkpoint fsyncs the database file before the
	// WAL may be restarted over the frames it copied. A short busy
	// timeout: a restart (or a truncation) waits for readers while it holds
	// the write lock, and every write waits with it; so each try waits
	// briefly, and a failed one is tried again later (run, Truncate).
	db, err := openOne(path + busyTimeoutDSN(lockWait) + "&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checkpointer{db: db, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}), pause: pause}
	go c.run(ctx)
	return c, nil
}

// Kick says a commit added to the WAL: a checkpoint follows, after the
// pause since the last one. It never blocks.
func (c *Checkpointer) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Checkpointer) run(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		// PASSIVE: copy what no reader still needs, never wait for
		// readers or the writer. Its error has nowhere better to go than
		// the next checkpoint: a disk that fails it fails the commits too.
		var busy, log, done int
		err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done)
		if err == nil && busy == 0 && done == log && log >= restartFrames {
			// RESTART: see restartFrames. Not when a reader held back part
			// of the PASSIVE copy (done < log): a long one (an export, an
			// audit) would hold the RESTART, and the writer behind it, for
			// lockWait in vain. Busy (the writer or a reader held on past
			// lockWait) is no failure: the next round tries again.
			_ = c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &log, &done)
		}
		t := time.NewTimer(c.pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// restartFrames is the WAL size, in frames, from which a checkpoint also
// makes the WAL start over.
//
// SQLite writes a commit's frames from the start of the WAL again only
// when the write transaction begins with every frame copied into the
// database file and no reader still reading from the WAL. Beside a busy
// writer a PASSIVE checkpoint rarely leaves it so (commits go on appending
// while it copies), and the WAL grew until the writer's own checkpoint at
// SafetyCheckpointPages: every commit until then extended the file. On
// ext4 an fsync that extends a file waits for a journal commit as well:
// 336 µs against 170 for one that overwrites, on this machine, and a
// commit of a few reads' decisions took 680-890 µs instead of 430-610
// (BenchmarkRead, 4 clients). A RESTART checkpoint after the PASSIVE one
// takes the write lock, copies the few frames committed meanwhile, and
// waits for the readers of older frames; the writer's next transaction
// then starts the WAL over, and later commits overwrite the file. Each
// wait is bounded by lockWait, and one that times out is left to the next
// round.
const restartFrames = 1000

// lockWait is how long the Checkpointer's connection waits for a lock
// (its busy timeout) before a try gives up.
const lockWait = 2 * time.Millisecond

// Truncate copies all of the WAL into the database file and truncates the
// WAL to nothing: what an erasure needs, so that no frame holding an erased
// page outlives it. Readers still reading from the WAL hold it back: each
// try waits for them up to lockWait, and Truncate tries again
// until truncateWait has passed or ctx ends. SQLite reports a checkpoint it
// could not finish as busy, not as an error; Truncate makes it one. It
// shares the background checkpoints' one connection, so it never runs
// beside one of them (whose checkpoint lock would make it busy at once).
func (c *Checkpointer) Truncate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, truncateWait)
	defer cancel()
	for {
		var busy, log, done int
		if err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil {
			return fmt.Errorf("truncate the WAL: %w", err)
		}
		if busy == 0 {
			return nil
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("truncate the WAL: readers kept it in use: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// truncateWait bounds how long Truncate tries.
const truncateWait = 30 * time.Second

// Close stops the checkpoints and closes the connection. Call it before
// closing the database's other connections: the last one to close
// checkpoints what is left.
func (c *Checkpointer) Close() error {
	c.cancel()
	<-c.done
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("close sqlite checkpointer: %w", err)
	}
	return nil
}

// WALState reads, from the -shm file of the database at path, how many
// frames its WAL holds (mxFrame of the WAL-index header) and how many of
// them were copied into the database file (nBackfill of the checkpoint
// information after the header's two copies): SQLite's file format, read
// without a connection. For tests and diagnostics; the file is SQLite's
// shared memory, so the two may come from moments apart.
func WALState(path string) (frames, backfilled uint32, err error) {
	shm, err := os.ReadFile(path + "-shm")
	if err != nil {
		return 0, 0, fmt.Errorf("read the WAL index: %w", err)
	}
	if len(shm) < 100 {
		return 0, 0, fmt.Errorf("read the WAL index: %d bytes, too short", len(shm))
	}
	return binary.NativeEndian.Uint32(shm[16:]), binary.NativeEndian.Uint32(shm[96:]), nil
}
