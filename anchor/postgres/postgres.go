// Package postgres implements anchor.Store on PostgreSQL through pgx, in the
// database the vault uses (every table is prefixed log_), so that several
// gateway processes can share one log.
//
// Only one process at a time should run the Log: Store.Lead elects it
// through a PostgreSQL advisory lock. The Store does not rely on that lock
// for its contract, though: every write first locks the one-row table
// log_head, so Append's fence and PutAnchor's checks hold even when two
// writers overlap. Store.Contract records the anchoring contract's address
// so that gateways starting at once deploy it only once.
package postgres

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/merkle/compact"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/internal/pgdb"
)

// schemaV1 is the first schema migration.
//
//go:embed schema.sql
var schemaV1 string

// schemaV2 adds the signed note of each checkpoint.
//
//go:embed schema_v2.sql
var schemaV2 string

// migrations are applied in order, each once (pgdb.Migrate). Never edit a
// released migration; append a new one.
var migrations = []string{schemaV1, schemaV2}

// component names this package's schema versions in schema_versions.
const component = "log"

// Config configures a Store.
type Config struct {
	// DSN is a PostgreSQL connection string (URL or key=value). The password
	// may come from PGPASSWORD or a .pgpass file instead.
	DSN string
	// MaxConns bounds the pool; 0 means pgx's default. Lead holds one more
	// connection of its own.
	MaxConns int32
	// Logger receives leadership changes; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports whether c can be used to open a Store.
func (c Config) Validate() error {
	switch {
	case c.DSN == "":
		return errors.New("postgres: DSN is empty")
	case c.MaxConns < 0:
		return fmt.Errorf("postgres: maxConns %d is negative", c.MaxConns)
	}
	return nil
}

// Store is an anchor.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	// Leadership timings (lead.go); tests shorten them.
	every       time.Duration // between lock attempts, and between checks while leading
	pingTimeout time.Duration // of one lock attempt or check

	running atomic.Bool // Lead is running
	leading atomic.Bool // run is running under the lock
}

var _ anchor.Store = (*Store)(nil)

// New connects to cfg.DSN and applies any pending schema migrations of the
// log (under a lock, so gateways starting at once migrate once).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pool, err := pgdb.Open(ctx, pgdb.Options{DSN: cfg.DSN, MaxConns: cfg.MaxConns, Component: component, Migrations: migrations})
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, log: cfg.Logger, every: defaultEvery, pingTimeout: defaultPingTimeout}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// Close closes the pool; it waits for the connections in use to be
// returned. It does not end Lead: cancel its context first.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// update runs fn in one transaction, after locking the head row, and commits
// if fn returns nil.
func (s *Store) update(ctx context.Context, fn func(tx pgx.Tx, head uint64) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var head int64
		if err := tx.QueryRow(ctx, `SELECT size FROM log_head FOR UPDATE`).Scan(&head); err != nil {
			return fmt.Errorf("lock log head: %w", err)
		}
		return fn(tx, uint64(head))
	})
}

// Append stores nodes and checkpoint cp in one transaction.
func (s *Store) Append(ctx context.Context, from uint64, nodes []anchor.Node, cp anchor.Checkpoint) error {
	if err := anchor.FitsInt64("tree size", cp.Size); err != nil {
		return fmt.Errorf("append checkpoint: %w", err)
	}
	if len(cp.Root) != sha256.Size {
		return fmt.Errorf("append checkpoint: root is %d bytes, want %d", len(cp.Root), sha256.Size)
	}
	levels := make([]int16, len(nodes))
	idxs := make([]int64, len(nodes))
	hashes := make([][]byte, len(nodes))
	for i, n := range nodes {
		if err := anchor.FitsInt64("node index", n.ID.Index); err != nil {
			return fmt.Errorf("append checkpoint %d: %w", cp.Size, err)
		}
		if n.ID.Level > math.MaxInt16 {
			return fmt.Errorf("append checkpoint %d: node level %d is too large", cp.Size, n.ID.Level)
		}
		levels[i], idxs[i], hashes[i] = int16(n.ID.Level), int64(n.ID.Index), n.Hash
	}
	err := s.update(ctx, func(tx pgx.Tx, head uint64) error {
		if head != from {
			return fmt.Errorf("%w: appending from tree size %d, the last checkpoint is %d", anchor.ErrConflict, from, head)
		}
		if cp.Size <= from {
			return fmt.Errorf("%w: checkpoint %d does not grow the tree of size %d", anchor.ErrConflict, cp.Size, from)
		}
		if len(nodes) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO log_nodes (level, idx, hash)
	SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])`, levels, idxs, hashes); err != nil {
				return fmt.Errorf("store nodes: %w", conflict(err))
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO log_checkpoints (size, root, time, note) VALUES ($1, $2, $3, $4)`,
			int64(cp.Size), []byte(cp.Root), cp.Time, text(cp.Note)); err != nil {
			return conflict(err)
		}
		_, err := tx.Exec(ctx, `UPDATE log_head SET size = $1`, int64(cp.Size))
		return err
	})
	if err != nil {
		return fmt.Errorf("append checkpoint %d: %w", cp.Size, err)
	}
	return nil
}

// Nodes returns the hashes of the nodes ids, in order.
func (s *Store) Nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	if len(ids) == 0 {
		return [][]byte{}, nil
	}
	levels := make([]int16, len(ids))
	idxs := make([]int64, len(ids))
	for i, id := range ids {
		if id.Index > math.MaxInt64 || id.Level > math.MaxInt16 {
			return nil, fmt.Errorf("read node (%d, %d): %w", id.Level, id.Index, anchor.ErrNotFound)
		}
		levels[i], idxs[i] = int16(id.Level), int64(id.Index)
	}
	// One round trip: the ids in order, each with its hash or NULL.
	rows, err := s.pool.Query(ctx, `SELECT n.hash
	FROM unnest($1::smallint[], $2::bigint[]) WITH ORDINALITY AS q (level, idx, ord)
	LEFT JOIN log_nodes n ON n.level = q.level AND n.idx = q.idx
	ORDER BY q.ord`, levels, idxs)
	if err != nil {
		return nil, fmt.Errorf("read %d nodes: %w", len(ids), err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("read %d nodes: %w", len(ids), err)
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("read %d nodes: got %d rows", len(ids), len(out))
	}
	for i, h := range out {
		if h == nil {
			return nil, fmt.Errorf("read node (%d, %d): %w", ids[i].Level, ids[i].Index, anchor.ErrNotFound)
		}
	}
	return out, nil
}

// Checkpoints returns up to limit checkpoints with Size > after, by Size.
func (s *Store) Checkpoints(ctx context.Context, after uint64, limit int) ([]anchor.Checkpoint, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT size, root, time, note FROM log_checkpoints WHERE size > $1 ORDER BY size LIMIT $2`,
		int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	cps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (anchor.Checkpoint, error) { return scanCheckpoint(r) })
	if err != nil || len(cps) == 0 { // nil, not empty, as anchor/sqlite
		return nil, wrapf(err, "read checkpoints")
	}
	return cps, nil
}

// LastCheckpoint returns the largest checkpoint.
func (s *Store) LastCheckpoint(ctx context.Context) (anchor.Checkpoint, error) {
	cp, err := scanCheckpoint(s.pool.QueryRow(ctx, `SELECT size, root, time, note FROM log_checkpoints ORDER BY size DESC LIMIT 1`))
	if err != nil {
		return anchor.Checkpoint{}, fmt.Errorf("read last checkpoint: %w", err)
	}
	return cp, nil
}

func scanCheckpoint(row pgx.Row) (anchor.Checkpoint, error) {
	var size int64
	var root []byte
	var t time.Time
	var note *string
	err := row.Scan(&size, &root, &t, &note)
	if pgdb.IsNoRows(err) {
		return anchor.Checkpoint{}, anchor.ErrNotFound
	}
	if err != nil {
		return anchor.Checkpoint{}, err
	}
	cp := anchor.Checkpoint{Size: uint64(size), Root: root, Time: t.UTC()}
	if note != nil {
		cp.Note = *note
	}
	return cp, nil
}

// PutAnchor records anchor a, or updates the record at a.Seq.
func (s *Store) PutAnchor(ctx context.Context, a anchor.AnchorRecord) error {
	if err := anchor.CheckAnchorRecord(a); err != nil {
		return fmt.Errorf("put anchor %d: %w", a.Seq, err)
	}
	err := s.update(ctx, func(tx pgx.Tx, _ uint64) error {
		var root []byte
		err := tx.QueryRow(ctx, `SELECT root FROM log_checkpoints WHERE size = $1`, int64(a.TreeSize)).Scan(&root)
		if pgdb.IsNoRows(err) {
			return fmt.Errorf("%w: no checkpoint of size %d", anchor.ErrConflict, a.TreeSize)
		}
		if err != nil {
			return err
		}
		if string(root) != string(a.Root) {
			return fmt.Errorf("%w: root is not that of checkpoint %d", anchor.ErrConflict, a.TreeSize)
		}

		old, err := scanAnchor(tx.QueryRow(ctx, selectAnchor+` WHERE seq = $1`, int64(a.Seq)))
		switch {
		case err == nil:
			if err := anchor.CheckAnchorUpdate(old, a); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE log_anchors SET status = $1, tx_hash = $2, submitted = $3, block_number = $4,
	block_hash = $5, block_time = $6, confirmations = $7 WHERE seq = $8`,
				string(a.Status), []byte(a.TxHash), timestamp(a.Submitted), int64(a.BlockNumber),
				blob(a.BlockHash), timestamp(a.BlockTime), int64(a.Confirmations), int64(a.Seq))
			return err
		case !errors.Is(err, anchor.ErrNotFound):
			return err
		}

		var prev *anchor.AnchorRecord
		if a.Seq > 1 {
			p, err := scanAnchor(tx.QueryRow(ctx, selectAnchor+` WHERE seq = $1`, int64(a.Seq-1)))
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
		_, err = tx.Exec(ctx, `INSERT INTO log_anchors (seq, tree_size, root, prev_root, chain_id, contract, status,
	tx_hash, submitted, block_number, block_hash, block_time, confirmations)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			int64(a.Seq), int64(a.TreeSize), []byte(a.Root), []byte(a.PrevRoot), int64(a.ChainID), a.Contract,
			string(a.Status), []byte(a.TxHash), timestamp(a.Submitted), int64(a.BlockNumber), blob(a.BlockHash),
			timestamp(a.BlockTime), int64(a.Confirmations))
		return conflict(err)
	})
	if err != nil {
		return fmt.Errorf("put anchor %d: %w", a.Seq, err)
	}
	return nil
}

const selectAnchor = `SELECT seq, tree_size, root, prev_root, chain_id, contract, status, tx_hash, submitted,
	block_number, block_hash, block_time, confirmations FROM log_anchors`

// Anchors returns up to limit anchors with Seq > after, by Seq.
func (s *Store) Anchors(ctx context.Context, after uint64, limit int) ([]anchor.AnchorRecord, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	return s.queryAnchors(ctx, "read anchors", selectAnchor+` WHERE seq > $1 ORDER BY seq LIMIT $2`, int64(after), limit)
}

// LastAnchor returns the anchor with the largest Seq.
func (s *Store) LastAnchor(ctx context.Context) (anchor.AnchorRecord, error) {
	a, err := scanAnchor(s.pool.QueryRow(ctx, selectAnchor+` ORDER BY seq DESC LIMIT 1`))
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
	a, err := scanAnchor(s.pool.QueryRow(ctx, selectAnchor+` WHERE tree_size > $1 ORDER BY tree_size LIMIT 1`, int64(index)))
	if err != nil {
		return anchor.AnchorRecord{}, fmt.Errorf("read anchor of leaf %d: %w", index, err)
	}
	return a, nil
}

func (s *Store) queryAnchors(ctx context.Context, what, query string, args ...any) ([]anchor.AnchorRecord, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (anchor.AnchorRecord, error) { return scanAnchor(r) })
	if err != nil || len(out) == 0 { // nil, not empty, as anchor/sqlite
		return nil, wrapf(err, what)
	}
	return out, nil
}

func scanAnchor(row pgx.Row) (anchor.AnchorRecord, error) {
	var (
		a                                anchor.AnchorRecord
		seq, size, chainID, block, confs int64
		status                           string
		root, prev, tx, blockHash        []byte
		submitted, blockTime             *time.Time
	)
	err := row.Scan(&seq, &size, &root, &prev, &chainID, &a.Contract, &status, &tx, &submitted,
		&block, &blockHash, &blockTime, &confs)
	if pgdb.IsNoRows(err) {
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
	if submitted != nil {
		a.Submitted = submitted.UTC()
	}
	if blockTime != nil {
		a.BlockTime = blockTime.UTC()
	}
	return a, nil
}

// timestamp binds the zero time as NULL.
func timestamp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// text binds an empty string as NULL.
func text(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// blob binds an empty byte slice as NULL.
func blob(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// wrapf wraps err as "what: err"; nil stays nil.
func wrapf(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// conflict maps a unique or foreign key violation to anchor.ErrConflict.
// Other collisions (a lock timeout, a deadlock) are left as they are: the
// write may succeed if tried again, it does not contradict the Store.
func conflict(err error) error {
	switch pgdb.Code(err) {
	case pgdb.UniqueViolation, pgdb.ForeignKeyViolation:
		return fmt.Errorf("%w: %v", anchor.ErrConflict, err)
	}
	return err
}
