// Package sqlite implements anchor.Store on an embedded SQLite database
// through the cgo-free modernc.org/sqlite driver, in a file of its own
// (data/log.db by default) beside the vault's.
//
// The database runs in WAL mode with synchronous=FULL, so a write that
// returned nil survives a crash or a power loss. Writes go through one
// connection and begin with BEGIN IMMEDIATE; reads use a pool of query-only
// connections and never wait for the writer.
package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/transparency-dev/merkle/compact"
	// The driver registers itself as "sqlite". This package is its only
	// user besides vault/sqlite, so the import lives here rather than in
	// cmd/; the named import also gives access to its error codes.
	sqlitedriver "modernc.org/sqlite"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/internal/sqlitedb"
)

// schemaV1 is the first schema migration.
//
//go:embed schema.sql
var schemaV1 string

// schemaV2 adds the signed note of each checkpoint.
//
//go:embed schema_v2.sql
var schemaV2 string

// migrations are applied in order, each once, in one transaction per open.
// Never edit a released migration; append a new one.
var migrations = []string{schemaV1, schemaV2}

// Result codes of modernc.org/sqlite/lib (extended result codes are on).
const (
	sqliteConstraintPrimaryKey = 1555 // SQLITE_CONSTRAINT_PRIMARYKEY
	sqliteConstraintUnique     = 2067 // SQLITE_CONSTRAINT_UNIQUE
	sqliteConstraintForeignKey = 787  // SQLITE_CONSTRAINT_FOREIGNKEY
)

// Config configures a Store.
type Config struct {
	// Path is the database file. It and its parent directory are created if
	// missing (mode 0600 and 0700); SQLite keeps its -wal and -shm files
	// beside it with the same mode.
	Path string
}

// Validate reports whether c can be used to open a Store.
func (c Config) Validate() error { return sqlitedb.ValidatePath(c.Path) }

// Store is an anchor.Store on SQLite. It is safe for concurrent use.
type Store struct {
	w     *sql.DB   // one connection: every write
	r     *sql.DB   // query-only connections: every read
	nodes *sql.Stmt // on r: one node hash
}

var _ anchor.Store = (*Store)(nil)

// New opens the database at cfg.Path, creating it if needed, and applies any
// pending schema migrations.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var err error
	s.w, s.r, err = sqlitedb.Open(ctx, sqlitedb.Options{Path: cfg.Path, Migrations: migrations,
		WriterPragmas: "", ReaderPragmas: ""})
	if err != nil {
		return nil, err
	}
	if s.nodes, err = s.r.PrepareContext(ctx, `SELECT hash FROM nodes WHERE level = ? AND idx = ?`); err != nil {
		return nil, fmt.Errorf("prepare node read: %w", err)
	}
	ok = true
	return s, nil
}

// Close closes the database. Writes and reads in flight fail.
func (s *Store) Close() error { return sqlitedb.Close(s.w, s.r) }

// update runs fn in one immediate transaction on the writer connection and
// commits it if fn returns nil.
func (s *Store) update(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin sqlite transaction: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	// database/sql rolls back once ctx is done; report that rather than the
	// ErrTxDone of Commit.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit sqlite transaction: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit sqlite transaction: %w", err)
	}
	return nil
}

// Append stores nodes and checkpoint cp in one transaction.
func (s *Store) Append(ctx context.Context, from uint64, nodes []anchor.Node, cp anchor.Checkpoint) error {
	if err := anchor.FitsInt64("tree size", cp.Size); err != nil {
		return fmt.Errorf("append checkpoint: %w", err)
	}
	if len(cp.Root) != sha256.Size {
		return fmt.Errorf("append checkpoint: root is %d bytes, want %d", len(cp.Root), sha256.Size)
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		var have int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(size), 0) FROM checkpoints`).Scan(&have); err != nil {
			return err
		}
		if uint64(have) != from {
			return fmt.Errorf("%w: appending from tree size %d, the last checkpoint is %d", anchor.ErrConflict, from, have)
		}
		if cp.Size <= from {
			return fmt.Errorf("%w: checkpoint %d does not grow the tree of size %d", anchor.ErrConflict, cp.Size, from)
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for _, n := range nodes {
			if err := anchor.FitsInt64("node index", n.ID.Index); err != nil {
				return err
			}
			if _, err := ins.ExecContext(ctx, n.ID.Level, int64(n.ID.Index), n.Hash); err != nil {
				return fmt.Errorf("node (%d, %d): %w", n.ID.Level, n.ID.Index, conflict(err))
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (size, root, time, note) VALUES (?, ?, ?, ?)`,
			int64(cp.Size), []byte(cp.Root), cp.Time.UnixMicro(), text(cp.Note))
		return conflict(err)
	})
	if err != nil {
		return fmt.Errorf("append checkpoint %d: %w", cp.Size, err)
	}
	return nil
}

// Nodes returns the hashes of the nodes ids, in order.
func (s *Store) Nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if id.Index > math.MaxInt64 {
			return nil, fmt.Errorf("read node (%d, %d): %w", id.Level, id.Index, anchor.ErrNotFound)
		}
		err := s.nodes.QueryRowContext(ctx, id.Level, int64(id.Index)).Scan(&out[i])
		if errors.Is(err, sql.ErrNoRows) {
			err = anchor.ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("read node (%d, %d): %w", id.Level, id.Index, err)
		}
	}
	return out, nil
}

// Checkpoints returns up to limit checkpoints with Size > after, by Size.
func (s *Store) Checkpoints(ctx context.Context, after uint64, limit int) ([]anchor.Checkpoint, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT size, root, time, note FROM checkpoints WHERE size > ? ORDER BY size LIMIT ?`,
		int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var cps []anchor.Checkpoint
	for rows.Next() {
		cp, err := scanCheckpoint(rows)
		if err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		cps = append(cps, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return cps, nil
}

// LastCheckpoint returns the largest checkpoint.
func (s *Store) LastCheckpoint(ctx context.Context) (anchor.Checkpoint, error) {
	cp, err := scanCheckpoint(s.r.QueryRowContext(ctx, `SELECT size, root, time, note FROM checkpoints ORDER BY size DESC LIMIT 1`))
	if err != nil {
		return anchor.Checkpoint{}, fmt.Errorf("read last checkpoint: %w", err)
	}
	return cp, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanCheckpoint(sc scanner) (anchor.Checkpoint, error) {
	var size, micros int64
	var root []byte
	var note sql.NullString
	err := sc.Scan(&size, &root, &micros, &note)
	if errors.Is(err, sql.ErrNoRows) {
		return anchor.Checkpoint{}, anchor.ErrNotFound
	}
	if err != nil {
		return anchor.Checkpoint{}, err
	}
	return anchor.Checkpoint{Size: uint64(size), Root: root, Time: time.UnixMicro(micros).UTC(), Note: note.String}, nil
}

// PutAnchor records anchor a, or updates the record at a.Seq.
func (s *Store) PutAnchor(ctx context.Context, a anchor.AnchorRecord) error {
	if err := anchor.CheckAnchorRecord(a); err != nil {
		return fmt.Errorf("put anchor %d: %w", a.Seq, err)
	}
	err := s.update(ctx, func(tx *sql.Tx) error {
		var root []byte
		err := tx.QueryRowContext(ctx, `SELECT root FROM checkpoints WHERE size = ?`, int64(a.TreeSize)).Scan(&root)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no checkpoint of size %d", anchor.ErrConflict, a.TreeSize)
		}
		if err != nil {
			return err
		}
		if string(root) != string(a.Root) {
			return fmt.Errorf("%w: root is not that of checkpoint %d", anchor.ErrConflict, a.TreeSize)
		}

		old, err := scanAnchor(tx.QueryRowContext(ctx, selectAnchor+` WHERE seq = ?`, int64(a.Seq)))
		switch {
		case err == nil:
			if err := anchor.CheckAnchorUpdate(old, a); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `UPDATE anchors SET status = ?, tx_hash = ?, submitted = ?, block_number = ?,
	block_hash = ?, block_time = ?, confirmations = ? WHERE seq = ?`,
				string(a.Status), []byte(a.TxHash), micros(a.Submitted), int64(a.BlockNumber),
				blob(a.BlockHash), micros(a.BlockTime), int64(a.Confirmations), int64(a.Seq))
			return err
		case !errors.Is(err, anchor.ErrNotFound):
			return err
		}

		var prev *anchor.AnchorRecord
		if a.Seq > 1 {
			p, err := scanAnchor(tx.QueryRowContext(ctx, selectAnchor+` WHERE seq = ?`, int64(a.Seq-1)))
			switch {
			case err == nil:
				prev = &p
			case !errors.Is(err, anchor.ErrNotFound):
				return err
			}
		}
		if err := anchor.CheckAnchorNext(prev, a); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO anchors (seq, tree_size, root, prev_root, chain_id, contract, status,
	tx_hash, submitted, block_number, block_hash, block_time, confirmations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			int64(a.Seq), int64(a.TreeSize), []byte(a.Root), []byte(a.PrevRoot), int64(a.ChainID), a.Contract,
			string(a.Status), []byte(a.TxHash), micros(a.Submitted), int64(a.BlockNumber), blob(a.BlockHash),
			micros(a.BlockTime), int64(a.Confirmations))
		return conflict(err)
	})
	if err != nil {
		return fmt.Errorf("put anchor %d: %w", a.Seq, err)
	}
	return nil
}

const selectAnchor = `SELECT seq, tree_size, root, prev_root, chain_id, contract, status, tx_hash, submitted,
	block_number, block_hash, block_time, confirmations FROM anchors`

// Anchors returns up to limit anchors with Seq > after, by Seq.
func (s *Store) Anchors(ctx context.Context, after uint64, limit int) ([]anchor.AnchorRecord, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	return s.queryAnchors(ctx, "read anchors", selectAnchor+` WHERE seq > ? ORDER BY seq LIMIT ?`, int64(after), limit)
}

// LastAnchor returns the anchor with the largest Seq.
func (s *Store) LastAnchor(ctx context.Context) (anchor.AnchorRecord, error) {
	a, err := scanAnchor(s.r.QueryRowContext(ctx, selectAnchor+` ORDER BY seq DESC LIMIT 1`))
	if err != nil {
		return anchor.AnchorRecord{}, fmt.Errorf("read last anchor: %w", err)
	}
	return a, nil
}

// Unconfirmed returns every anchor not confirmed yet, by Seq.
func (s *Store) Unconfirmed(ctx context.Context) ([]anchor.AnchorRecord, error) {
	return s.queryAnchors(ctx, "read unconfirmed anchors", selectAnchor+` WHERE status <> 'confirmed' ORDER BY seq`)
}

// AnchorCovering returns the anchor with the smallest TreeSize > index.
func (s *Store) AnchorCovering(ctx context.Context, index uint64) (anchor.AnchorRecord, error) {
	if index >= math.MaxInt64 {
		return anchor.AnchorRecord{}, fmt.Errorf("read anchor of leaf %d: %w", index, anchor.ErrNotFound)
	}
	a, err := scanAnchor(s.r.QueryRowContext(ctx, selectAnchor+` WHERE tree_size > ? ORDER BY tree_size LIMIT 1`, int64(index)))
	if err != nil {
		return anchor.AnchorRecord{}, fmt.Errorf("read anchor of leaf %d: %w", index, err)
	}
	return a, nil
}

func (s *Store) queryAnchors(ctx context.Context, what, query string, args ...any) ([]anchor.AnchorRecord, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []anchor.AnchorRecord
	for rows.Next() {
		a, err := scanAnchor(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func scanAnchor(sc scanner) (anchor.AnchorRecord, error) {
	var (
		a                                anchor.AnchorRecord
		seq, size, chainID, block, confs int64
		status                           string
		root, prev, tx, blockHash        []byte
		submitted, blockTime             sql.NullInt64
	)
	err := sc.Scan(&seq, &size, &root, &prev, &chainID, &a.Contract, &status, &tx, &submitted,
		&block, &blockHash, &blockTime, &confs)
	if errors.Is(err, sql.ErrNoRows) {
		return anchor.AnchorRecord{}, anchor.ErrNotFound
	}
	if err != nil {
		return anchor.AnchorRecord{}, err
	}
	a.Seq, a.TreeSize, a.ChainID, a.BlockNumber, a.Confirmations = uint64(seq), uint64(size), uint64(chainID), uint64(block), uint64(confs)
	a.Status, a.Root, a.PrevRoot, a.TxHash = anchor.Status(status), root, prev, tx
	if len(blockHash) > 0 {
		a.BlockHash = blockHash
	}
	if submitted.Valid {
		a.Submitted = time.UnixMicro(submitted.Int64).UTC()
	}
	if blockTime.Valid {
		a.BlockTime = time.UnixMicro(blockTime.Int64).UTC()
	}
	return a, nil
}

// micros binds a time as microseconds since the Unix epoch, the zero time as
// NULL.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// text binds an empty string as NULL.
func text(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// blob binds an empty byte slice as NULL.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// conflict maps a constraint violation to anchor.ErrConflict.
func conflict(err error) error {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqliteConstraintPrimaryKey, sqliteConstraintUnique, sqliteConstraintForeignKey:
			return fmt.Errorf("%w: %v", anchor.ErrConflict, err)
		}
	}
	return err
}
